//! `confab`: the ingress and the tools around it.
//!
//! The command line is declared once, with clap, in [`Cli`]: `confab --help` and each
//! subcommand's `--help` are generated from it, flags that a `CONFAB_*` variable also sets are
//! one argument with it (`env =`), and `confab completions <shell>` prints a completion script.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use confab::IngressConfig;
use confab_shared::process::{init_logging, init_tracing, shutdown_signal};
use confab_worker::{WorkerArgs, WorkerConfig};

/// confab: a conversation service for AI assistants (axum ingress, RabbitMQ jobs, Postgres
/// memory).
///
/// Settings are read once at start from CONFAB_* environment variables (the README's
/// "Configuration" lists every one with its default); a command's flags and the variables that
/// set them are in its own --help. The ingress and workers export OpenTelemetry traces when
/// OTEL_EXPORTER_OTLP_ENDPOINT is set (README "Tracing").
#[derive(Debug, Parser)]
#[command(name = "confab", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations (safe to run from several processes at once)
    Migrate,
    /// Serve the HTTP API (CONFAB_LISTEN; CONFAB_MIGRATE_ON_START=true migrates first)
    Ingress,
    /// Run one assistant worker process (the same as confab-worker)
    Worker(WorkerArgs),
    /// Bootstrap and maintenance of the database
    #[command(subcommand)]
    Admin(Admin),
    /// The knowledge base
    #[command(subcommand)]
    Kb(Kb),
    /// The whole stack on one machine: migrates, a demo tenant and assistant, worker processes
    /// and the ingress, and prints curl lines that work as pasted
    Dev {
        /// Worker processes to start, at least 1
        #[arg(
            long,
            value_name = "N",
            env = "CONFAB_DEV_WORKERS",
            default_value_t = DEV_WORKERS,
            value_parser = dev_workers
        )]
        workers: u16,
    },
    /// Print a shell completion script, e.g. `confab completions bash > /etc/bash_completion.d/confab`
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

const DEV_WORKERS: u16 = 2;

/// At least one; empty means the default, as for every `CONFAB_*` variable (clap takes a
/// variable that is set but empty as a value).
fn dev_workers(value: &str) -> Result<u16, String> {
    match value.trim() {
        "" => Ok(DEV_WORKERS),
        value => value
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{value:?} is not a whole number from 1 to {}", u16::MAX)),
    }
}

#[derive(Debug, Subcommand)]
enum Admin {
    /// Create a tenant and its first API key, printed once as JSON
    CreateTenant {
        /// The tenant's name
        #[arg(long, value_name = "NAME")]
        name: String,
    },
    /// Encrypt every channel's credentials and assistant tool's secret under the first
    /// CONFAB_SECRET_KEYS key
    ResealSecrets,
}

#[derive(Debug, Subcommand)]
enum Kb {
    /// Load text and Markdown files into a knowledge folder through the HTTP API
    Import(confab::cli::kb::ImportArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only the long-running roles export traces; the one-shot commands only log.
    let traced_as = match &cli.command {
        Command::Ingress | Command::Dev { .. } => Some("confab-ingress"),
        Command::Worker(_) => Some("confab-worker"),
        _ => None,
    };
    let telemetry = match traced_as.map(init_tracing) {
        None => {
            init_logging();
            None
        }
        Some(Ok(telemetry)) => telemetry,
        Some(Err(e)) => {
            eprintln!("confab: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Migrate => migrate().await,
        Command::Ingress => ingress().await,
        Command::Worker(args) => worker(args).await,
        Command::Admin(Admin::CreateTenant { name }) => create_tenant(&name).await,
        Command::Admin(Admin::ResealSecrets) => reseal_secrets().await,
        Command::Kb(Kb::Import(args)) => confab::cli::kb::import(args)
            .await
            .map_err(|e| e.to_string()),
        Command::Dev { workers } => dev(usize::from(workers)).await,
        Command::Completions { shell } => completions(shell),
    };
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("confab: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The script is written whole, and a closed pipe (`| head`) is an error, not a panic.
fn completions(shell: clap_complete::Shell) -> Result<(), String> {
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "confab", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing the completion script: {e}"))
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

async fn worker(args: WorkerArgs) -> Result<(), String> {
    let config = WorkerConfig::from_env(args).map_err(|e| e.to_string())?;
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
    let resealed = confab::cli::admin::reseal_secrets(&mut client, &config.secrets)
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", serde_json::json!(resealed));
    Ok(())
}

async fn dev(workers: usize) -> Result<(), String> {
    let config = ingress_config()?;
    confab::cli::dev::run(config, workers)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("confab").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn dev_takes_its_worker_count_with_an_equals_sign_or_a_space() {
        for args in [&["dev", "--workers=3"][..], &["dev", "--workers", "3"]] {
            match parse(args).map(|cli| cli.command) {
                Ok(Command::Dev { workers }) => assert_eq!(workers, 3, "{args:?}"),
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        assert!(matches!(
            parse(&["dev"]).map(|cli| cli.command),
            Ok(Command::Dev { workers: 2 })
        ));
        let refused = parse(&["dev", "--workers=0"]).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ValueValidation);
        assert_eq!(refused.exit_code(), 2);
    }

    #[test]
    fn a_mistyped_flag_is_refused_naming_it_and_suggesting_the_right_one() {
        for (args, typed, meant) in [
            (&["dev", "--worker", "3"][..], "--worker", "--workers"),
            (
                &["worker", "--concurency", "3"],
                "--concurency",
                "--concurrency",
            ),
            (
                &["kb", "import", "docs", "--folders", "help"],
                "--folders",
                "--folder",
            ),
            (
                &["admin", "create-tenant", "--nme", "Acme"],
                "--nme",
                "--name",
            ),
        ] {
            let refused = parse(args).unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::UnknownArgument, "{args:?}");
            assert_eq!(refused.exit_code(), 2);
            let message = refused.to_string();
            assert!(message.contains(&format!("'{typed}'")), "{message}");
            assert!(
                message.contains(&format!("a similar argument exists: '{meant}'")),
                "{message}"
            );
        }
        let refused = parse(&["kb", "imprt"]).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::InvalidSubcommand);
        assert!(refused.to_string().contains("'import'"), "{refused}");
    }

    #[test]
    fn each_subcommands_help_lists_its_flags_and_the_variables_that_set_them() {
        let expected: &[(&[&str], &[&str])] = &[
            (&["migrate"], &["--help", "--version"]),
            (&["ingress"], &["--help", "CONFAB_LISTEN"]),
            (
                &["worker"],
                &[
                    "--concurrency <N>",
                    "[env: CONFAB_WORKER_CONCURRENCY",
                    "--roles <ROLES>",
                    "[env: CONFAB_WORKER_ROLES",
                ],
            ),
            (&["admin", "create-tenant"], &["--name <NAME>"]),
            (&["admin", "reseal-secrets"], &["CONFAB_SECRET_KEYS"]),
            (
                &["kb", "import"],
                &[
                    "<PATH>",
                    "--folder <NAME>",
                    "--url <URL>",
                    "[env: CONFAB_URL",
                    "--api-key <KEY>",
                    "[env: CONFAB_API_KEY]",
                ],
            ),
            (&["dev"], &["--workers <N>", "[env: CONFAB_DEV_WORKERS"]),
            (&["completions"], &["<SHELL>", "bash"]),
        ];
        let mut root = Cli::command();
        root.build();
        for (path, wanted) in expected {
            let mut command = root.clone();
            for name in *path {
                command = command
                    .find_subcommand(name)
                    .unwrap_or_else(|| panic!("no subcommand {path:?}"))
                    .clone();
            }
            let help = command.render_long_help().to_string();
            for want in *wanted {
                assert!(help.contains(want), "{path:?}: {want} missing from\n{help}");
            }
            // Every flag of the command is in its help, with its variable if it has one.
            for arg in command.get_arguments() {
                if let Some(long) = arg.get_long() {
                    assert!(help.contains(&format!("--{long}")), "{path:?}: --{long}");
                }
                if let Some(var) = arg.get_env() {
                    let var = var.to_string_lossy();
                    assert!(help.contains(&format!("[env: {var}")), "{path:?}: {var}");
                }
            }
        }
        // The key's value never shows in help, even when it is set.
        let key = root
            .find_subcommand("kb")
            .and_then(|kb| kb.find_subcommand("import"))
            .and_then(|import| import.get_arguments().find(|a| a.get_id() == "api_key"))
            .map(|arg| arg.is_hide_env_values_set());
        assert_eq!(key, Some(true));
    }

    #[test]
    fn every_command_is_reachable_and_completions_name_a_shell() {
        assert!(matches!(
            parse(&["migrate"]).map(|c| c.command),
            Ok(Command::Migrate)
        ));
        assert!(matches!(
            parse(&["ingress"]).map(|c| c.command),
            Ok(Command::Ingress)
        ));
        assert!(matches!(
            parse(&["admin", "create-tenant", "--name", "Acme"]).map(|c| c.command),
            Ok(Command::Admin(Admin::CreateTenant { name })) if name == "Acme"
        ));
        assert!(matches!(
            parse(&["admin", "reseal-secrets"]).map(|c| c.command),
            Ok(Command::Admin(Admin::ResealSecrets))
        ));
        assert!(matches!(
            parse(&["kb", "import", "docs", "--folder=help"]).map(|c| c.command),
            Ok(Command::Kb(Kb::Import(args))) if args.folder == "help"
                && args.path == std::path::Path::new("docs")
        ));
        assert!(matches!(
            parse(&["completions", "zsh"]).map(|c| c.command),
            Ok(Command::Completions {
                shell: clap_complete::Shell::Zsh
            })
        ));
        let refused = parse(&["completions", "tcsh"]).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::InvalidValue);
        assert_eq!(
            parse(&["--version"]).unwrap_err().kind(),
            ErrorKind::DisplayVersion
        );
        assert_eq!(parse(&[]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn an_empty_worker_count_means_the_default() {
        assert_eq!(dev_workers(""), Ok(DEV_WORKERS));
        assert!(dev_workers("0").is_err());
    }
}
