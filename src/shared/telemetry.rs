//! OpenTelemetry traces, off unless an OTLP endpoint is configured.
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, the
//! process's `tracing` spans are exported as OTLP over HTTP/protobuf: a batch span processor
//! queues finished spans (bounded, `OTEL_BSP_*`) and a thread of its own sends them, so an
//! export that is slow or fails never holds or fails a request; spans that do not fit are
//! dropped. The OpenTelemetry SDK reads the rest of its conventions itself:
//! `OTEL_SERVICE_NAME` (default the process's role, `confab-ingress` or `confab-worker`),
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`. Unset, no OpenTelemetry layer, tracer or thread exists, and
//! the helpers below do nothing.
//!
//! The trace crosses RabbitMQ in the job's W3C headers (`confab_contract::TraceHeaders`):
//! [`current_trace_headers`] on the ingress's publish, [`set_remote_parent`] on the worker's
//! turn, so that one request is one trace across both processes.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::SystemTime;

use confab_contract::TraceHeaders;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The variables that turn tracing on: where the OTLP collector is.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// The process's tracer, set once when tracing is on; its absence is "off" for every helper.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether and as what this process exports traces, read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// An endpoint variable is set (non-empty), and neither `OTEL_SDK_DISABLED=true` nor
    /// `OTEL_TRACES_EXPORTER=none` says otherwise.
    pub enabled: bool,
    /// `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
    pub default_service_name: &'static str,
}

impl TelemetrySettings {
    pub fn from_env(default_service_name: &'static str) -> Self {
        Self::from_vars(|name| std::env::var(name).ok(), default_service_name)
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>, default_service_name: &'static str) -> Self {
        let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
        let says = |name: &str, value: &str| {
            var(name).is_some_and(|v| v.trim().eq_ignore_ascii_case(value))
        };
        let enabled = ENDPOINT_VARS.iter().any(|name| set(name))
            && !says("OTEL_SDK_DISABLED", "true")
            && !says("OTEL_TRACES_EXPORTER", "none");
        Self {
            enabled,
            default_service_name,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("OpenTelemetry exporter: {0}")]
pub struct TelemetryError(#[from] opentelemetry_otlp::ExporterBuildError);

/// The exporting half of tracing; [`Telemetry::shutdown`] flushes what is still queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Start the exporter and its batch thread, and return the layer that feeds it `tracing`
    /// spans. Called once per process, by `process::init_logging`.
    pub(crate) fn start<S>(
        settings: &TelemetrySettings,
    ) -> Result<
        (
            Telemetry,
            tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>,
        ),
        TelemetryError,
    >
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        // The endpoint, headers, timeout and compression come from the OTEL_EXPORTER_OTLP_*
        // variables, which the exporter reads itself. Its HTTP client is reqwest's blocking one,
        // used only from the batch processor's own thread, never from the runtime's.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(settings.default_service_name))
            .build();
        let tracer = provider.tracer("confab");
        let _ = TRACER.set(tracer.clone());
        Ok((
            Telemetry { provider },
            tracing_opentelemetry::layer().with_tracer(tracer),
        ))
    }

    /// Export what is still queued (bounded by the exporter's timeout) and stop the batch
    /// thread; on a graceful exit, after the last request.
    pub async fn shutdown(self) {
        // Waits for the batch thread's last export: a blocking wait, off the runtime's threads.
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// The detected resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, the SDK's own), named
/// after the process's role when nothing names it.
fn resource(default_service_name: &'static str) -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    if named {
        detected
    } else {
        Resource::builder()
            .with_service_name(default_service_name)
            .build()
    }
}

/// Whether this process exports traces.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// The current span's trace context as W3C headers, for a message that continues the trace in
/// another process; empty when tracing is off.
pub fn current_trace_headers() -> TraceHeaders {
    if !enabled() {
        return TraceHeaders::default();
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut carrier);
    TraceHeaders {
        traceparent: carrier.remove("traceparent"),
        tracestate: carrier.remove("tracestate"),
    }
}

/// The OpenTelemetry context a message's trace headers name (empty if they name none).
fn remote_context(headers: &TraceHeaders) -> Context {
    let mut carrier = HashMap::new();
    if let Some(traceparent) = &headers.traceparent {
        carrier.insert("traceparent".to_owned(), traceparent.clone());
    }
    if let Some(tracestate) = &headers.tracestate {
        carrier.insert("tracestate".to_owned(), tracestate.clone());
    }
    TraceContextPropagator::new().extract(&carrier)
}

/// Make `span`, not yet entered, a child of the span that `headers` name, so that it joins
/// that trace; without headers (or with tracing off) it stays the root of a trace of its own.
pub fn set_remote_parent(span: &tracing::Span, headers: &TraceHeaders) {
    if !enabled() || headers.traceparent.is_none() {
        return;
    }
    let parent = remote_context(headers);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Record `span`'s trace id in its `trace_id` field (declared `tracing::field::Empty`), so that
/// every log line in the span names the trace. Starts the span's OpenTelemetry half: call it
/// after [`set_remote_parent`].
pub fn record_trace_id(span: &tracing::Span) {
    if !enabled() {
        return;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", tracing::field::display(span_context.trace_id()));
    }
}

/// A span that has already ended, from `start` to `end`, as a child of the span that `headers`
/// name (or, without them, of `local`): for time spent outside this process's code, like a
/// job's wait in its queue, whose start only a timestamp records.
pub fn past_span(
    name: &'static str,
    headers: &TraceHeaders,
    local: &tracing::Span,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<(&'static str, String)>,
) {
    let Some(tracer) = TRACER.get() else {
        return;
    };
    let remote = remote_context(headers);
    let parent = if remote.span().span_context().is_valid() {
        remote
    } else {
        local.context()
    };
    let attributes = attributes
        .into_iter()
        .map(|(key, value)| KeyValue::new(key, value));
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Consumer)
        .with_start_time(start)
        .with_attributes(attributes)
        .start_with_context(tracer, &parent);
    span.end_with_timestamp(end.max(start));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> TelemetrySettings {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TelemetrySettings::from_vars(|name| vars.get(name).cloned(), "confab-test")
    }

    #[test]
    fn tracing_is_off_unless_an_otlp_endpoint_is_set() {
        assert!(!settings(&[]).enabled);
        assert!(!settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).enabled);
        assert!(!settings(&[("OTEL_SERVICE_NAME", "x")]).enabled);
        assert!(settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]).enabled);
        assert!(
            settings(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://127.0.0.1:4318/v1/traces"
            )])
            .enabled
        );
    }

    #[test]
    fn the_sdk_switches_turn_tracing_off_whatever_the_endpoint() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert!(!settings(&[endpoint, ("OTEL_SDK_DISABLED", "true")]).enabled);
        assert!(!settings(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]).enabled);
        assert!(settings(&[endpoint, ("OTEL_SDK_DISABLED", "false")]).enabled);
    }

    #[test]
    fn with_tracing_off_nothing_is_propagated() {
        assert!(current_trace_headers().is_empty());
    }

    #[test]
    fn a_traceparent_names_its_trace_and_parent_span() {
        let headers = TraceHeaders {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: None,
        };
        let context = remote_context(&headers);
        let span = context.span();
        let parent = span.span_context();
        assert!(parent.is_remote());
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
        assert!(
            !remote_context(&TraceHeaders::default())
                .span()
                .span_context()
                .is_valid()
        );
    }
}
