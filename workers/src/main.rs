//! `confab-worker`: one assistant worker process. `--concurrency N` overrides
//! `CONFAB_WORKER_CONCURRENCY`; every other setting comes from `CONFAB_*` variables.

use std::process::ExitCode;

use confab_worker::WorkerConfig;

#[tokio::main]
async fn main() -> ExitCode {
    confab_shared::process::init_logging();
    let mut config = match WorkerConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("confab-worker: {e}");
            return ExitCode::from(2);
        }
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = confab_worker::config::apply_args(&mut config, &args) {
        eprintln!(
            "confab-worker: {e}\nusage: confab-worker [--concurrency N] [--roles chat,delivery]"
        );
        return ExitCode::from(2);
    }
    match confab_worker::run(config, confab_shared::process::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "worker failed");
            ExitCode::FAILURE
        }
    }
}
