//! Process plumbing shared by confab's binaries: logging (and tracing) set-up, the shutdown signal and a name
//! for the process.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::telemetry::{Telemetry, TelemetryError, TelemetrySettings};

/// lapin logs every message the broker returns, body included, as a warning. confab returns
/// reply events on purpose (a mandatory publish to a caller who has gone is how a worker learns
/// it) and handles them itself; their bodies are model output, which must never reach a log.
const QUIET_RETURNS: &str = "lapin::returned_messages=error";

/// The log filter: `RUST_LOG` (default `info`), never showing returned messages' bodies.
fn log_filter(rust_log: Option<&str>) -> EnvFilter {
    let base = rust_log
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    match QUIET_RETURNS.parse() {
        Ok(directive) => base.add_directive(directive),
        Err(_) => base,
    }
}

/// Structured logs to stderr, filtered by `RUST_LOG` (default `info`). Message text and secrets
/// are never logged; the request id is a field of every line of a turn.
pub fn init_logging() {
    let _ = tracing_subscriber::registry().with(log_layer()).try_init();
}

/// The logs of [`init_logging`], plus OpenTelemetry traces of confab's own spans when an OTLP
/// endpoint is configured (see [`crate::telemetry`]), `default_service_name` naming the
/// process unless `OTEL_SERVICE_NAME` does. Then every log line in a request's span carries
/// its `trace_id` beside its `request_id`. The returned handle flushes the last spans at exit.
pub fn init_tracing(
    default_service_name: &'static str,
) -> Result<Option<Telemetry>, TelemetryError> {
    let settings = TelemetrySettings::from_env(default_service_name);
    if !settings.enabled {
        init_logging();
        return Ok(None);
    }
    let (telemetry, traces) = Telemetry::start(&settings)?;
    let _ = tracing_subscriber::registry()
        .with(log_layer())
        .with(traces.with_filter(traced_targets()))
        .try_init();
    Ok(Some(telemetry))
}

/// The fmt layer with its own filter, so that `RUST_LOG` chooses log lines without changing
/// which spans are traced.
fn log_layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let rust_log = std::env::var("RUST_LOG").ok();
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(log_filter(rust_log.as_deref()))
}

/// Traces hold confab's own spans (the request, auth, publish, the turn and its phases) and
/// the events inside them, not those of the libraries underneath. A target matches by prefix,
/// so `confab` covers `confab_worker`, `confab_shared` and `confab_contract` too.
fn traced_targets() -> Targets {
    Targets::new().with_target("confab", tracing::Level::INFO)
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// A name for this process, unique enough to tell workers apart in logs and queue names.
pub fn instance_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(32)
        .collect();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged_with(rust_log: Option<&str>) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(log_filter(rust_log))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "lapin::returned_messages", "returned body: the model's answer");
            tracing::warn!(target: "lapin::channel", "connection trouble");
        });
        let bytes = captured.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn returned_message_bodies_never_reach_the_log_whatever_rust_log_says() {
        for rust_log in [None, Some("info"), Some("debug"), Some("lapin=trace")] {
            let logged = logged_with(rust_log);
            assert!(
                !logged.contains("the model's answer"),
                "{rust_log:?}: {logged}"
            );
            assert!(
                logged.contains("connection trouble"),
                "{rust_log:?}: {logged}"
            );
        }
    }
}
