//! What the earlier attempts of a redelivered stream already sent, read back from the reply log,
//! so that this attempt continues their answer instead of starting a second one: the caller may
//! have shown every word of it, and a client resuming the stream reads it from the log.
//!
//! The log holds every streamed event in publish order, among all other requests' events. To
//! know where the earlier attempts' events end, the worker first logs a fence (a record under an
//! id of its own, which no reader of the request looks at) and reads the request's events up to
//! it. An earlier attempt's events are all before the fence: the job came back because that
//! attempt's connection closed, or after it stopped publishing.

use std::time::Duration;

use confab_contract::{ReplyEvent, reply_log_from};
use confab_shared::reply_log::LogWriter;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::{BasicProperties, Connection};
use uuid::Uuid;

/// The answer as the earlier attempts streamed it: delta `i` has `seq` `i`.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Earlier {
    deltas: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum EarlierError {
    #[error("reading the reply log failed: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the reply log's reader was closed")]
    Closed,
    #[error("the reply log's writer could not log this attempt's fence")]
    FenceLost,
    #[error("the reply log did not reach this attempt's fence within {0:?}")]
    Timeout(Duration),
}

impl Earlier {
    /// The `seq` this attempt's own deltas start at.
    pub fn next_seq(&self) -> u32 {
        self.deltas.len() as u32
    }

    /// The answer so far.
    pub fn text(&self) -> String {
        self.deltas.concat()
    }

    /// The earlier deltas, to be sent again to a caller that may have missed some.
    pub fn deltas(&self) -> impl Iterator<Item = ReplyEvent> + '_ {
        self.deltas
            .iter()
            .zip(0..)
            .map(|(text, seq)| ReplyEvent::Delta {
                seq,
                text: text.clone(),
            })
    }

    /// Take in one logged event of the request, in log order.
    fn follow(&mut self, event: ReplyEvent) {
        match event {
            // An attempt that started over (its deltas restart at 0), or the first one.
            ReplyEvent::Accepted {
                continues: None, ..
            } => self.deltas.clear(),
            ReplyEvent::Accepted {
                continues: Some(from),
                ..
            } => self.deltas.truncate(from as usize),
            ReplyEvent::Delta { seq, text } if seq as usize == self.deltas.len() => {
                self.deltas.push(text);
            }
            // A complete answer's last delta came with its `done`.
            ReplyEvent::Done(done) => {
                if let Some(last) = done.last_delta
                    && last.seq as usize == self.deltas.len()
                {
                    self.deltas.push(last.text);
                }
            }
            _ => {}
        }
    }
}

/// Read `request_id`'s earlier events from the reply log that `log` writes, on a channel of
/// `connection` of its own (a consume that fails closes its channel), while `log` logs the fence.
pub(super) async fn read(
    connection: &Connection,
    log: &LogWriter,
    request_id: Uuid,
    within: Duration,
) -> Result<Earlier, EarlierError> {
    let reader = connection.create_channel().await?;
    let mut consuming = None;
    let read = tokio::time::timeout(within, async {
        // A stream consumer needs a prefetch.
        reader
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        let consumer = reader
            .basic_consume(
                log.log().into(),
                "earlier".into(),
                BasicConsumeOptions::default(),
                reply_log_from(request_id),
            )
            .await?;
        consuming = Some(consumer.clone());
        until_fence(consumer, log, request_id).await
    })
    .await
    .unwrap_or(Err(EarlierError::Timeout(within)));
    confab_contract::close_log_reader(&reader, consuming).await;
    read
}

/// Log records read before acknowledging.
const PREFETCH: u16 = 512;

async fn until_fence(
    mut consumer: lapin::Consumer,
    publisher: &LogWriter,
    request_id: Uuid,
) -> Result<Earlier, EarlierError> {
    let fence = Uuid::now_v7().to_string();
    let properties = BasicProperties::default().with_correlation_id(fence.as_str().into());
    publisher
        .append_confirmed(Vec::new(), properties)
        .await
        .map_err(|_| EarlierError::FenceLost)?;
    let ours = request_id.to_string();
    let mut earlier = Earlier::default();
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        // Acknowledged as read, which only moves the reader's window on.
        delivery.ack(BasicAckOptions::default()).await?;
        let Some(id) = delivery.properties.correlation_id() else {
            continue;
        };
        if id.as_str() == fence {
            return Ok(earlier);
        }
        // The request's stream-format record is not an event and does not decode as one.
        if id.as_str() == ours
            && let Ok(event) = ReplyEvent::decode(&delivery.data)
        {
            earlier.follow(event);
        }
    }
    Err(EarlierError::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(attempt: u32, continues: Option<u32>) -> ReplyEvent {
        ReplyEvent::Accepted {
            worker: "w".into(),
            attempt,
            continues,
        }
    }

    fn delta(seq: u32, text: &str) -> ReplyEvent {
        ReplyEvent::Delta {
            seq,
            text: text.into(),
        }
    }

    #[test]
    fn the_answer_so_far_follows_continuing_attempts_and_restarts_with_one_that_started_over() {
        let mut earlier = Earlier::default();
        for event in [
            accepted(1, None),
            delta(0, "Our "),
            delta(1, "hours "),
            ReplyEvent::Keepalive,
            accepted(2, Some(2)),
            delta(2, "are "),
        ] {
            earlier.follow(event);
        }
        assert_eq!(earlier.text(), "Our hours are ");
        assert_eq!(earlier.next_seq(), 3);

        // A third attempt that continued from less than the log holds truncates to there.
        earlier.follow(accepted(3, Some(1)));
        earlier.follow(delta(1, "days "));
        assert_eq!(earlier.text(), "Our days ");

        // One that started over leaves only its own deltas; a gap is not the answer's.
        earlier.follow(accepted(4, None));
        earlier.follow(delta(0, "Hello"));
        earlier.follow(delta(2, " there"));
        assert_eq!(earlier.text(), "Hello");
        assert_eq!(
            earlier.deltas().collect::<Vec<_>>(),
            vec![delta(0, "Hello")]
        );
    }

    #[test]
    fn a_first_attempt_logs_no_accepted_and_its_last_delta_comes_with_done() {
        let done = |last_delta| {
            ReplyEvent::Done(Box::new(confab_contract::Done {
                message_id: "m".into(),
                conversation_id: "c".into(),
                text: "Our hours are long".into(),
                created_ms: 0,
                usage: Default::default(),
                model: "builtin".into(),
                sources: Vec::new(),
                timing: Default::default(),
                finish_reason: Default::default(),
                tool_calls: Vec::new(),
                last_delta,
            }))
        };
        let last = |seq| {
            Some(confab_contract::LastDelta {
                seq,
                text: "are long".into(),
            })
        };
        let mut earlier = Earlier::default();
        for event in [delta(0, "Our "), delta(1, "hours "), done(last(2))] {
            earlier.follow(event);
        }
        assert_eq!(earlier.text(), "Our hours are long");
        assert_eq!(earlier.next_seq(), 3);
        // A last delta that does not follow the deltas logged is not the answer's.
        let mut earlier = Earlier::default();
        for event in [delta(0, "Our "), done(last(5))] {
            earlier.follow(event);
        }
        assert_eq!(earlier.text(), "Our ");
    }
}
