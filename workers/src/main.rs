//! `confab-worker`: one assistant worker process. `--concurrency` and `--roles` (or their
//! `CONFAB_*` variables) are its flags; every other setting comes from `CONFAB_*` variables
//! (and traces, when on, from the OpenTelemetry `OTEL_*` ones).
//! `confab-worker --help` lists them.

use std::process::ExitCode;

use clap::Parser;
use confab_worker::{WorkerArgs, WorkerConfig};

/// One confab worker: answers chat jobs from RabbitMQ and sends channel answers.
///
/// Every other setting is read from CONFAB_* environment variables (the README's
/// "Configuration" lists them); scale out by starting more processes. Traces go to an
/// OpenTelemetry collector when OTEL_EXPORTER_OTLP_ENDPOINT is set (README "Tracing").
#[derive(Debug, Parser)]
#[command(name = "confab-worker", version)]
struct Cli {
    #[command(flatten)]
    args: WorkerArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = match confab_shared::process::init_tracing("confab-worker") {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("confab-worker: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match WorkerConfig::from_env(cli.args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("confab-worker: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match confab_worker::run(config, confab_shared::process::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "worker failed");
            ExitCode::FAILURE
        }
    };
    // The last turns' spans, still queued for export, go out before the process ends.
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    code
}
