//! The trace context of a job, carried in its AMQP headers as W3C Trace Context
//! (<https://www.w3.org/TR/trace-context/>), so that the worker's spans join the trace the
//! ingress started for the request instead of stopping at the broker.
//!
//! The headers are optional and outside the body: a job without them (tracing off, or an older
//! ingress) is answered as before, in a trace of its own, so they do not change [`crate::VERSION`].
//! This module only moves the two strings; what they mean is the OpenTelemetry propagator's
//! business (`confab_shared::telemetry`).

use lapin::types::{AMQPValue, FieldTable, LongString};

/// W3C `traceparent`: version, trace id, parent span id and flags, e.g.
/// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
pub const HEADER_TRACEPARENT: &str = "traceparent";

/// W3C `tracestate`: vendor-specific trace data, passed on unchanged.
pub const HEADER_TRACESTATE: &str = "tracestate";

/// A message's trace context, as its two W3C headers (either may be absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceHeaders {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl TraceHeaders {
    /// The trace headers of a message's header table; absent or non-text values count as none.
    pub fn read(headers: Option<&FieldTable>) -> TraceHeaders {
        let text = |name: &str| {
            headers
                .and_then(|h| h.inner().get(name))
                .and_then(|value| match value {
                    AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes())),
                    AMQPValue::ShortString(s) => Some(std::borrow::Cow::Borrowed(s.as_str())),
                    _ => None,
                })
                .map(|s| s.into_owned())
                .filter(|s| !s.is_empty())
        };
        TraceHeaders {
            traceparent: text(HEADER_TRACEPARENT),
            tracestate: text(HEADER_TRACESTATE),
        }
    }

    /// Add the headers that are present to `headers`.
    pub fn write(&self, headers: &mut FieldTable) {
        for (name, value) in [
            (HEADER_TRACEPARENT, &self.traceparent),
            (HEADER_TRACESTATE, &self.tracestate),
        ] {
            if let Some(value) = value {
                headers.insert(
                    name.into(),
                    AMQPValue::LongString(LongString::from(value.as_str())),
                );
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.traceparent.is_none() && self.tracestate.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_headers_written_to_a_table_read_back_the_same() {
        let trace = TraceHeaders {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: Some("vendor=value".into()),
        };
        let mut table = FieldTable::default();
        trace.write(&mut table);
        assert_eq!(TraceHeaders::read(Some(&table)), trace);
    }

    #[test]
    fn a_message_without_trace_headers_has_an_empty_context() {
        let mut table = FieldTable::default();
        TraceHeaders::default().write(&mut table);
        assert!(table.inner().is_empty());
        assert!(TraceHeaders::read(Some(&table)).is_empty());
        assert!(TraceHeaders::read(None).is_empty());
        table.insert(HEADER_TRACEPARENT.into(), AMQPValue::ShortUInt(1));
        assert!(TraceHeaders::read(Some(&table)).is_empty());
    }
}
