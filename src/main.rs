//! `confab`: the ingress and the tools around it.
//!
//! ```text
//! confab migrate                          apply pending database migrations
//! confab ingress                          serve the HTTP API
//! confab worker [--concurrency N]         run one assistant worker (same as confab-worker)
//! confab admin create-tenant --name NAME  create a tenant and its first API key (JSON)
//! confab admin reseal-secrets             seal channel secrets under the first CONFAB_SECRET_KEYS key
//! confab kb import PATH --folder NAME     load text/Markdown files into a knowledge folder
//! confab dev [--workers N]                the whole stack locally, with a demo assistant
//! ```

use std::process::ExitCode;

use confab::IngressConfig;
use confab_shared::process::{init_logging, shutdown_signal};
use confab_worker::WorkerConfig;

const USAGE: &str = "usage: confab <migrate | ingress | worker [--concurrency N] [--roles chat,delivery] | \
                     admin create-tenant --name NAME | admin reseal-secrets | kb import PATH --folder NAME | \
                     dev [--workers N]>";

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["migrate"] => migrate().await,
        ["ingress"] => ingress().await,
        ["worker", rest @ ..] => worker(rest).await,
        ["admin", "create-tenant", "--name", name] => create_tenant(name).await,
        ["admin", "reseal-secrets"] => reseal_secrets().await,
        ["kb", "import", path, "--folder", folder] => {
            confab::cli::kb::import(std::path::Path::new(path), folder)
                .await
                .map_err(|e| e.to_string())
        }
        ["dev"] => dev(2).await,
        ["dev", "--workers", n] => match n.parse() {
            Ok(n) if n > 0 => dev(n).await,
            _ => Err(format!(
                "--workers needs a whole number of at least 1\n{USAGE}"
            )),
        },
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("confab: {message}");
            ExitCode::FAILURE
        }
    }
}

fn ingress_config() -> Result<IngressConfig, String> {
    IngressConfig::from_env().map_err(|e| e.to_string())
}

async fn migrate() -> Result<(), String> {
    let config = ingress_config()?;
    let mut client = confab::cli::admin::connect(&config.shared.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let applied = confab::store::migrate::run(&mut client)
        .await
        .map_err(|e| e.to_string())?;
    if applied.is_empty() {
        println!("database is up to date");
    }
    for name in applied {
        println!("applied {name}");
    }
    Ok(())
}

async fn ingress() -> Result<(), String> {
    let config = ingress_config()?;
    if confab_contract::settings::parsed_var("CONFAB_MIGRATE_ON_START", false)
        .map_err(|e| e.to_string())?
    {
        migrate().await?;
    }
    let app = confab::Application::build(&config)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(addr = %app.local_addr(), "ingress listening");
    app.run_until_stopped(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn worker(args: &[&str]) -> Result<(), String> {
    let mut config = WorkerConfig::from_env().map_err(|e| e.to_string())?;
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    confab_worker::config::apply_args(&mut config, &args).map_err(|e| e.to_string())?;
    confab_worker::run(config, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn create_tenant(name: &str) -> Result<(), String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("--name must not be empty".into());
    }
    let config = ingress_config()?;
    let mut client = confab::cli::admin::connect(&config.shared.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let created = confab::cli::admin::create_tenant(&mut client, name)
        .await
        .map_err(|e| e.to_string())?;
    println!("{created}");
    Ok(())
}

async fn reseal_secrets() -> Result<(), String> {
    let config = ingress_config()?;
    let mut client = confab::cli::admin::connect(&config.shared.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let changed = confab::cli::admin::reseal_secrets(&mut client, &config.secrets)
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", serde_json::json!({ "channels_resealed": changed }));
    Ok(())
}

async fn dev(workers: usize) -> Result<(), String> {
    let config = ingress_config()?;
    confab::cli::dev::run(config, workers)
        .await
        .map_err(|e| e.to_string())
}
