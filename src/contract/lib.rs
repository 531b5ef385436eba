//! The ingress-worker contract of confab, version 1.
//!
//! Everything that crosses RabbitMQ is defined here and nowhere else: the job the ingress
//! publishes, the reply events a worker sends back, the cancel broadcast, the names of every
//! exchange and queue, their arguments, and the message headers (the trace context's among
//! them, `trace.rs`). Both `confab` (the ingress) and `confab-worker` depend on this crate; a
//! change to the wire format bumps [`VERSION`].

mod job;
mod names;
mod nodes;
mod reply;
pub mod settings;
mod tools;
mod topology;
mod trace;

pub use job::{AssistantRef, Cancel, CancelKind, Job, Message, PreviewAssistant, Role, Sampling};
pub use names::Names;
pub use nodes::BrokerNodes;
pub use reply::{Done, ErrorCode, FinishReason, LastDelta, ReplyEvent, Source, Timing, Usage};
pub use settings::{ConfigError, SharedSettings};
pub use tools::{ClientTools, ToolCall};
pub use topology::{
    QueueLimits, TopologyError, close_log_reader, declare_cancel_queue, declare_reply_log,
    declare_reply_queue, declare_work_topology, reply_log_from,
};
pub use trace::{HEADER_TRACEPARENT, HEADER_TRACESTATE, TraceHeaders};

/// Wire version of every message body in this crate. Carried in the [`HEADER_VERSION`] header and
/// in the body's `v` field; a consumer refuses a version it does not know.
pub const VERSION: u16 = 1;

/// AMQP header carrying [`VERSION`] on jobs, reply events and cancels.
pub const HEADER_VERSION: &str = "x-confab-contract";

/// Header RabbitMQ quorum queues set on redelivered messages: how many times the message was
/// returned to the queue before (absent on the first delivery).
pub const HEADER_DELIVERY_COUNT: &str = "x-delivery-count";

/// How a stream is rendered (its API family and what the family needs to render it again, the
/// family's own JSON, `Job::stream_format`), on the first record a worker logs for the stream:
/// the header's value is that JSON as a string and the body is the event. An older ingress logged
/// it as a record of its own, header `true` and the format as the body; readers take both.
/// Nothing but the ingress reads it.
pub const HEADER_STREAM_FORMAT: &str = "x-confab-stream-format";

/// Milliseconds since the Unix epoch, the one clock format of the contract.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Serialise a contract message body. The types here contain only plain data, so this cannot
/// fail in practice; the `Result` keeps callers honest anyway.
pub fn encode<T: serde::Serialize>(message: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(message)
}

/// Parse a contract message body, refusing other wire versions.
pub fn decode<T: serde::de::DeserializeOwned + Versioned>(body: &[u8]) -> Result<T, DecodeError> {
    let message: T = serde_json::from_slice(body)?;
    match message.version() {
        VERSION => Ok(message),
        other => Err(DecodeError::Version(other)),
    }
}

/// A contract message that states its wire version.
pub trait Versioned {
    fn version(&self) -> u16;
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed contract message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("contract version {0} is not supported (this build speaks {VERSION})")]
    Version(u16),
}
