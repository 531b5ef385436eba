//! The reply path: how a request's reply events get from the worker back to the ingress task
//! serving the request. One seam, two strategies (`CONFAB_REPLY_MODE`):
//!
//! - `per-request` (default): each request declares its own exclusive, auto-deleting queue and
//!   consumes it. Deleting the queue when the request ends makes the worker's next mandatory
//!   publish come back unroutable. Costs a queue declaration per request (see ARCHITECTURE.md).
//! - `shared`: one exclusive queue per ingress process; events carry the request id as
//!   correlation id and are routed to the waiting request in memory.
//!
//! In both, a worker learns that its caller is gone the same two ways: the cancel broadcast the
//! ingress sends when a request ends early, and mandatory publishes that come back unroutable
//! when the reply queue is gone (per-request queue deleted, or the ingress process died).

pub mod log;
mod per_request;
mod shared;

use confab_contract::{Names, ReplyEvent, TopologyError};
use futures_util::StreamExt;
use lapin::Channel;
use lapin::types::AMQPValue;
use tokio::sync::mpsc;
use uuid::Uuid;

pub use shared::SharedRoutes;

use crate::config::ReplyMode;

pub enum Relay {
    PerRequest(per_request::PerRequest),
    Shared(shared::Shared),
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
}

/// A request's subscription to its reply events. Dropping it tears the reply path down.
pub struct Subscription {
    /// Routing key the worker publishes reply events with.
    pub reply_to: String,
    pub events: Events,
    _teardown: Teardown,
}

/// Where a subscription's events arrive: its own queue's consumer (per-request), read directly
/// so that an idle request holds no forwarding task or channel, or the routes of the shared
/// queue.
pub enum Events {
    Queue {
        consumer: lapin::Consumer,
        request_id: Uuid,
    },
    Routed(mpsc::UnboundedReceiver<ReplyEvent>),
    /// The reply log, read again from the request's start (a resumed stream).
    Log {
        consumer: lapin::Consumer,
        request_id: Uuid,
        /// Events read while looking for the stream's format, to be read again, in order.
        held: std::collections::VecDeque<ReplyEvent>,
    },
}

/// One of a request's records in the reply log: an event, the stream's format, or both (see
/// [`confab_contract::HEADER_STREAM_FORMAT`]).
struct Logged {
    format: Option<serde_json::Value>,
    event: Option<ReplyEvent>,
}

impl Events {
    /// The next event; `None` once the reply path is gone (the broker connection was lost).
    pub async fn recv(&mut self) -> Option<ReplyEvent> {
        match self {
            Events::Routed(events) => events.recv().await,
            Events::Queue {
                consumer,
                request_id,
            } => loop {
                let delivery = consumer.next().await?.ok()?;
                if let Some((id, event)) = decode_for(&delivery)
                    && id == *request_id
                {
                    return Some(event);
                }
            },
            Events::Log {
                consumer,
                request_id,
                held,
            } => {
                if let Some(event) = held.pop_front() {
                    return Some(event);
                }
                loop {
                    if let Some(event) = next_logged(consumer, *request_id).await?.event {
                        return Some(event);
                    }
                }
            }
        }
    }
}

/// Held only for its `Drop`, which removes the reply path.
#[allow(dead_code)]
enum Teardown {
    Queue(per_request::QueueTeardown),
    Route(shared::RouteTeardown),
    Log(log::LogTeardown),
}

/// The next record of `request_id` in the reply log.
async fn next_logged(consumer: &mut lapin::Consumer, request_id: Uuid) -> Option<Logged> {
    loop {
        let delivery = consumer.next().await?.ok()?;
        // Acknowledged as read, which only moves the reader's window on.
        let _ = delivery
            .ack(lapin::options::BasicAckOptions::default())
            .await;
        let ours = delivery
            .properties
            .correlation_id()
            .as_ref()
            .is_some_and(|id| id.as_str() == request_id.to_string());
        if !ours {
            continue;
        }
        let format = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(confab_contract::HEADER_STREAM_FORMAT));
        let logged = match format {
            // A record of its own, whose body is the format.
            Some(AMQPValue::Boolean(true)) => Logged {
                format: serde_json::from_slice(&delivery.data).ok(),
                event: None,
            },
            // The format beside the event that went first.
            Some(AMQPValue::LongString(format)) => Logged {
                format: serde_json::from_slice(format.as_bytes()).ok(),
                event: decode_for(&delivery).map(|(_, event)| event),
            },
            _ => Logged {
                format: None,
                event: decode_for(&delivery).map(|(_, event)| event),
            },
        };
        if logged.format.is_some() || logged.event.is_some() {
            return Some(logged);
        }
    }
}

impl Subscription {
    /// A replayed stream's format. A worker logs it with the first event it logs for the
    /// stream, but a record of an attempt that wrote none (or of an older writer, which logged
    /// it as a record of its own) may come before it: those events are kept for
    /// [`Events::recv`] while it is looked for. Waits until it comes; the caller bounds the wait
    /// (a stream whose format was never logged has none, nor does a JSON turn, which logs
    /// nothing).
    pub async fn stream_format(&mut self) -> Option<serde_json::Value> {
        let Events::Log {
            consumer,
            request_id,
            held,
        } = &mut self.events
        else {
            return None;
        };
        loop {
            let logged = next_logged(consumer, *request_id).await?;
            held.extend(logged.event);
            if let Some(format) = logged.format {
                return Some(format);
            }
        }
    }

    /// `request_id`'s events read again from the reply log, from its start to its end.
    pub async fn replay(
        connection: &lapin::Connection,
        names: &Names,
        request_id: Uuid,
    ) -> Result<Subscription, RelayError> {
        let (_channel, consumer, teardown) = log::open(connection, names, request_id).await?;
        Ok(Subscription {
            reply_to: String::new(),
            events: Events::Log {
                consumer,
                request_id,
                held: Default::default(),
            },
            _teardown: Teardown::Log(teardown),
        })
    }
}

impl Relay {
    /// The reply path of `mode` on `channel`; `ingress_id` names a shared reply queue.
    pub async fn open(
        mode: ReplyMode,
        names: &Names,
        ingress_id: &str,
        channel: Channel,
        routes: SharedRoutes,
    ) -> Result<Relay, RelayError> {
        Ok(match mode {
            ReplyMode::PerRequest => {
                Relay::PerRequest(per_request::PerRequest::new(channel, names.clone()))
            }
            ReplyMode::Shared => {
                Relay::Shared(shared::Shared::open(channel, names, ingress_id, routes).await?)
            }
        })
    }

    /// Start listening for `request_id`'s events; call before publishing its job.
    pub async fn subscribe(
        &self,
        request_id: Uuid,
        expires_ms: u32,
    ) -> Result<Subscription, RelayError> {
        match self {
            Relay::PerRequest(relay) => {
                let (reply_to, consumer, teardown) =
                    relay.subscribe(request_id, expires_ms).await?;
                Ok(Subscription {
                    reply_to,
                    events: Events::Queue {
                        consumer,
                        request_id,
                    },
                    _teardown: Teardown::Queue(teardown),
                })
            }
            Relay::Shared(relay) => {
                let (reply_to, events, teardown) = relay.subscribe(request_id);
                Ok(Subscription {
                    reply_to,
                    events: Events::Routed(events),
                    _teardown: Teardown::Route(teardown),
                })
            }
        }
    }
}

/// Decode a reply delivery addressed to `request_id`; anything else is dropped with a warning.
fn decode_for(delivery: &lapin::message::Delivery) -> Option<(Uuid, ReplyEvent)> {
    let request_id = delivery
        .properties
        .correlation_id()
        .as_ref()
        .and_then(|id| Uuid::parse_str(id.as_str()).ok());
    match (request_id, ReplyEvent::decode(&delivery.data)) {
        (Some(id), Ok(event)) => Some((id, event)),
        (_, Err(e)) => {
            tracing::warn!(error = %e, "dropping an undecodable reply event");
            None
        }
        (None, Ok(_)) => {
            tracing::warn!("dropping a reply event without a correlation id");
            None
        }
    }
}
