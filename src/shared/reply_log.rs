//! The reply log's writer: every record a process appends to the reply log (a RabbitMQ stream)
//! goes out on a connection of the writer's own, from a task of its own, and the caller never
//! waits for it unless it asks to.
//!
//! Why a connection of its own: the broker blocks a channel once a stream has left too many of
//! its publishes unconfirmed (`stream_messages_soft_limit`, 256), and once the channel's credit
//! is spent its whole connection stops being read. A stream without the majority of its replicas
//! confirms nothing, and across a leader change a confirm can be lost for good
//! (rabbitmq-server#9457), so a log that cannot confirm used to stop every job, reply and ack of
//! the connection it shared. Here only the writer stalls: once its oldest record has waited
//! [`STALL`] for its confirm it drops its connection (and the broker's blocked state with it)
//! and connects again. A record that finds the writer behind or reconnecting is dropped and
//! counted; a stream whose records are missing can still be followed live, only resuming it
//! from the log cannot (readers notice the gap by `seq`).

use std::collections::VecDeque;
use std::time::Duration;

use confab_contract::BrokerNodes;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::warn;

use crate::retry::Policy;

/// How long the oldest record may wait for its confirm before the writer starts over.
pub const STALL: Duration = Duration::from_secs(10);

/// Records waiting to be written; more than a burst of every stream at once.
const QUEUE: usize = 4096;

/// A writer connection that lasted this long was a working one: the next failure starts the
/// pauses over.
const SETTLED: Duration = Duration::from_secs(30);

/// Appends records to the reply log. Dropping it ends its task and closes its connection.
pub struct LogWriter {
    entries: mpsc::Sender<Entry>,
    log: String,
}

struct Entry {
    body: Vec<u8>,
    properties: BasicProperties,
    /// Told once the record is written to the writer's connection; dropped unsent if it never
    /// will be.
    sent: Option<oneshot::Sender<()>>,
    /// Told once the log confirmed the record; dropped unsent if it never will.
    confirmed: Option<oneshot::Sender<()>>,
}

/// Resolves once its record is on the writer's connection (in the socket, ahead of anything
/// the caller publishes after it on another connection), or with an error once it never will.
pub type Sent = oneshot::Receiver<()>;

/// Resolves once the log confirmed its record, or with an error once it never will.
pub type Logged = oneshot::Receiver<()>;

impl LogWriter {
    /// A writer to the stream `log` through `nodes`, whose connection is named `name`. It
    /// connects at once.
    pub fn start(nodes: BrokerNodes, name: String, log: String) -> LogWriter {
        let (entries, queued) = mpsc::channel(QUEUE);
        tokio::spawn(run(nodes, name, log.clone(), queued));
        LogWriter { entries, log }
    }

    /// The stream it writes.
    pub fn log(&self) -> &str {
        &self.log
    }

    /// Append a record and learn when it is written to the broker, not waiting for its confirm.
    pub fn append(&self, body: Vec<u8>, properties: BasicProperties) -> Sent {
        let (sent, on_its_way) = oneshot::channel();
        self.push(Entry {
            body,
            properties,
            sent: Some(sent),
            confirmed: None,
        });
        on_its_way
    }

    /// Append a record and learn when the log has it.
    pub fn append_confirmed(&self, body: Vec<u8>, properties: BasicProperties) -> Logged {
        let (confirmed, logged) = oneshot::channel();
        self.push(Entry {
            body,
            properties,
            sent: None,
            confirmed: Some(confirmed),
        });
        logged
    }

    fn push(&self, entry: Entry) {
        if self.entries.try_send(entry).is_err() {
            dropped("behind", 1);
        }
    }
}

fn dropped(reason: &'static str, records: u64) {
    metrics::counter!("confab_reply_log_dropped_total", "reason" => reason).increment(records);
}

/// Why a writer connection ended.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("the writer was dropped")]
    Closed,
    #[error("the oldest record went unconfirmed for {STALL:?}")]
    Stalled,
    #[error("the broker refused a record")]
    Refused,
    #[error(transparent)]
    Broker(lapin::Error),
}

async fn run(nodes: BrokerNodes, name: String, log: String, mut entries: mpsc::Receiver<Entry>) {
    let mut pauses = Policy::BROKER_SESSION.pauses();
    // Connected before the first record comes, and again at once after a failure's pause: a
    // record waits for its connection only while one is being made.
    while !entries.is_closed() {
        let started = Instant::now();
        let ended = match connect(&nodes, &name).await {
            Ok((connection, channel)) => {
                let ended = write(&channel, &log, &mut entries).await;
                // A blocked connection never answers the close: it is dropped either way.
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    connection.close(200, "reply log writer done".into()),
                )
                .await;
                ended
            }
            Err(e) => Ended::Broker(e),
        };
        if let Ended::Closed = ended {
            return;
        }
        if started.elapsed() > SETTLED {
            pauses = Policy::BROKER_SESSION.pauses();
        }
        let pause = pauses.next_pause();
        metrics::counter!("confab_reply_log_reconnects_total").increment(1);
        warn!(error = %ended, retry_in = ?pause, "the reply log's writer starts over");
        // Records of the pause are dropped rather than written late, after what a later attempt
        // of their request logs.
        let resume = Instant::now() + pause;
        loop {
            tokio::select! {
                entry = entries.recv() => match entry {
                    Some(_) => dropped("disconnected", 1),
                    None => return,
                },
                _ = tokio::time::sleep_until(resume) => break,
            }
        }
    }
}

async fn connect(nodes: &BrokerNodes, name: &str) -> Result<(Connection, Channel), lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let (connection, _node) = nodes.connect(properties).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((connection, channel))
}

/// Write records on `channel` until the writer is dropped or the connection fails or stalls.
/// Records sent and not confirmed then are lost to their waiters.
async fn write(channel: &Channel, log: &str, entries: &mut mpsc::Receiver<Entry>) -> Ended {
    let mut confirms = FuturesOrdered::new();
    let mut sent_at = VecDeque::new();
    let mut next: Option<Entry> = None;
    let ended = loop {
        if let Some(entry) = next.take() {
            // The publish itself waits once the broker stops reading this connection.
            let publish = channel.basic_publish(
                "".into(),
                log.into(),
                BasicPublishOptions::default(),
                &entry.body,
                entry.properties,
            );
            let confirm = match tokio::time::timeout(STALL, publish).await {
                Ok(Ok(confirm)) => confirm,
                Ok(Err(e)) => break Ended::Broker(e),
                Err(_) => break Ended::Stalled,
            };
            if let Some(sent) = entry.sent {
                let _ = sent.send(());
            }
            sent_at.push_back(Instant::now());
            let confirmed = entry.confirmed;
            confirms.push_back(async move { (confirm.await, confirmed) });
        }
        let stall = sent_at.front().map(|sent| *sent + STALL);
        tokio::select! {
            entry = entries.recv() => match entry {
                // What is still queued when the writer is dropped (its session ended) is not
                // written: it would land after what a later attempt of its request logs.
                Some(_) if entries.is_closed() => break Ended::Closed,
                Some(entry) => next = Some(entry),
                None => break Ended::Closed,
            },
            Some((confirmation, confirmed)) = confirms.next() => {
                sent_at.pop_front();
                match confirmation {
                    Ok(Confirmation::Ack(_) | Confirmation::NotRequested) => {
                        if let Some(confirmed) = confirmed {
                            let _ = confirmed.send(());
                        }
                    }
                    Ok(Confirmation::Nack(_)) => {
                        dropped("refused", 1);
                        break Ended::Refused;
                    }
                    Err(e) => {
                        dropped("unconfirmed", 1);
                        break Ended::Broker(e);
                    }
                }
            }
            _ = sleep_until(stall) => break Ended::Stalled,
        }
    };
    if !confirms.is_empty() {
        dropped("unconfirmed", confirms.len() as u64);
    }
    ended
}

/// Until `at`, or for ever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
