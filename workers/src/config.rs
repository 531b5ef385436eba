//! Worker configuration, read once from `CONFAB_*` variables at start.

use std::time::Duration;

use confab_contract::settings::{ConfigError, SharedSettings, parsed_var, var_or};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub shared: SharedSettings,
    /// Jobs this process works on at once (the consumer prefetch). `--concurrency` or
    /// `CONFAB_WORKER_CONCURRENCY`, default 16.
    pub concurrency: u16,
    /// `CONFAB_OPENAI_BASE_URL`, default `http://127.0.0.1:11434/v1` (a local Ollama).
    pub openai_base_url: String,
    /// `CONFAB_OPENAI_API_KEY`, default empty (no Authorization header).
    pub openai_api_key: String,
    /// Longest silence allowed from the model provider before the turn fails.
    /// `CONFAB_MODEL_TIMEOUT_SECS`, default 60.
    pub model_timeout: Duration,
    /// Window over which tokens are merged into one reply event. `CONFAB_COALESCE_MS`, default 5.
    pub coalesce: Duration,
    /// Delay before the built-in provider's first token, to simulate a model's latency.
    /// `CONFAB_BUILTIN_LATENCY_MS`, default 0.
    pub builtin_latency: Duration,
    /// Delay before each token of the built-in provider, to simulate a model's pace.
    /// `CONFAB_BUILTIN_TOKEN_DELAY_MS`, default 0.
    pub builtin_token_delay: Duration,
    /// Context window (tokens) assumed for models confab does not know, and for the built-in
    /// one. `CONFAB_DEFAULT_CONTEXT_TOKENS`, default 8192.
    pub default_context_window: u32,
    /// Database connections of this process. `CONFAB_DATABASE_POOL_SIZE`, default 8.
    pub database_pool_size: usize,
    /// How long a stopping worker waits for its jobs before returning them to the queue.
    /// `CONFAB_SHUTDOWN_GRACE_SECS`, default 30.
    pub shutdown_grace: Duration,
}

impl WorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let concurrency = parsed_var("CONFAB_WORKER_CONCURRENCY", 16u16)?;
        if concurrency == 0 {
            return Err(ConfigError {
                var: "CONFAB_WORKER_CONCURRENCY",
                problem: "must be at least 1".into(),
            });
        }
        Ok(Self {
            shared: SharedSettings::from_env()?,
            concurrency,
            openai_base_url: var_or("CONFAB_OPENAI_BASE_URL", "http://127.0.0.1:11434/v1"),
            openai_api_key: var_or("CONFAB_OPENAI_API_KEY", ""),
            model_timeout: Duration::from_secs(parsed_var("CONFAB_MODEL_TIMEOUT_SECS", 60)?),
            coalesce: Duration::from_millis(parsed_var("CONFAB_COALESCE_MS", 5)?),
            builtin_latency: Duration::from_millis(parsed_var("CONFAB_BUILTIN_LATENCY_MS", 0)?),
            builtin_token_delay: Duration::from_millis(parsed_var(
                "CONFAB_BUILTIN_TOKEN_DELAY_MS",
                0,
            )?),
            default_context_window: parsed_var("CONFAB_DEFAULT_CONTEXT_TOKENS", 8_192)?,
            database_pool_size: parsed_var("CONFAB_DATABASE_POOL_SIZE", 8)?,
            shutdown_grace: Duration::from_secs(parsed_var("CONFAB_SHUTDOWN_GRACE_SECS", 30)?),
        })
    }
}

/// Apply command-line flags (`--concurrency N`) over the environment's settings.
pub fn apply_args(config: &mut WorkerConfig, args: &[String]) -> Result<(), ConfigError> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = match arg.split_once('=') {
            Some(("--concurrency", value)) => Some(value.to_owned()),
            None if arg == "--concurrency" => args.next().cloned(),
            _ => {
                return Err(ConfigError {
                    var: "arguments",
                    problem: format!("unknown argument {arg:?}"),
                });
            }
        };
        config.concurrency = value
            .and_then(|v| v.parse().ok())
            .filter(|n: &u16| *n > 0)
            .ok_or(ConfigError {
                var: "--concurrency",
                problem: "needs a whole number of at least 1".into(),
            })?;
    }
    Ok(())
}
