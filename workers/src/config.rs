//! Worker configuration, read once from `CONFAB_*` variables at start.

use std::time::Duration;

use confab_contract::settings::{ConfigError, SharedSettings, parsed_var, var_or};

use confab_shared::db::PoolSettings;
use confab_shared::platforms::Endpoints;
use confab_shared::secrets::SecretBox;

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
    /// Database connections of this process (`CONFAB_DATABASE_POOL_SIZE`, default 8), the wait
    /// for one and the statement timeout.
    pub database: PoolSettings,
    /// How long a stopping worker waits for its jobs before returning them to the queue.
    /// `CONFAB_SHUTDOWN_GRACE_SECS`, default 30.
    pub shutdown_grace: Duration,
    /// What this process does. `--roles` or `CONFAB_WORKER_ROLES`, default `chat,delivery`.
    pub roles: Roles,
    pub delivery: DeliveryConfig,
    /// Where this process serves `GET /metrics` (Prometheus text), if anywhere.
    /// `CONFAB_WORKER_METRICS_LISTEN`, e.g. `0.0.0.0:9091`; default empty: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// The jobs a worker process takes: any mix, so operators can scale each on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Answer chat jobs from `<prefix>.jobs`.
    pub chat: bool,
    /// Send channel answers (WhatsApp, Telegram) from `<prefix>.deliveries` to their platform.
    pub delivery: bool,
}

impl Roles {
    fn parse(list: &str, var: &'static str) -> Result<Roles, ConfigError> {
        let mut roles = Roles {
            chat: false,
            delivery: false,
        };
        for role in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "chat" => roles.chat = true,
                "delivery" => roles.delivery = true,
                other => {
                    return Err(ConfigError {
                        var,
                        problem: format!("unknown role {other:?} (known: chat, delivery)"),
                    });
                }
            }
        }
        if !roles.chat && !roles.delivery {
            return Err(ConfigError {
                var,
                problem: "names no role (known: chat, delivery)".into(),
            });
        }
        Ok(roles)
    }
}

/// The delivery role's settings.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub endpoints: Endpoints,
    /// Answers sent at once. `CONFAB_DELIVERY_CONCURRENCY`, default 8.
    pub concurrency: u16,
    /// Tries per message part before it is recorded as failed; only throttling and transient
    /// failures are retried. `CONFAB_DELIVERY_MAX_ATTEMPTS`, default 5.
    pub max_attempts: u32,
    /// First pause between tries, doubled each time (up to a minute) unless the platform names
    /// one. `CONFAB_DELIVERY_RETRY_BASE_MS`, default 1000.
    pub retry_base: Duration,
    /// Longest wait for a platform's answer. `CONFAB_DELIVERY_HTTP_TIMEOUT_SECS`, default 15.
    pub http_timeout: Duration,
    /// Opens the channel credentials the sends need. `CONFAB_SECRET_KEYS`, default none.
    pub secrets: SecretBox,
}

impl DeliveryConfig {
    fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            endpoints: Endpoints {
                whatsapp_graph_url: var_or(
                    "CONFAB_WHATSAPP_GRAPH_URL",
                    "https://graph.facebook.com",
                ),
                whatsapp_graph_version: var_or("CONFAB_WHATSAPP_GRAPH_VERSION", "v21.0"),
                telegram_api_url: var_or("CONFAB_TELEGRAM_API_URL", "https://api.telegram.org"),
            },
            concurrency: parsed_var("CONFAB_DELIVERY_CONCURRENCY", 8u16)?.max(1),
            max_attempts: parsed_var("CONFAB_DELIVERY_MAX_ATTEMPTS", 5u32)?.max(1),
            retry_base: Duration::from_millis(parsed_var("CONFAB_DELIVERY_RETRY_BASE_MS", 1000)?),
            http_timeout: Duration::from_secs(parsed_var("CONFAB_DELIVERY_HTTP_TIMEOUT_SECS", 15)?),
            secrets: SecretBox::from_env()?,
        })
    }
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
            database: PoolSettings::from_env(8)?,
            shutdown_grace: Duration::from_secs(parsed_var("CONFAB_SHUTDOWN_GRACE_SECS", 30)?),
            roles: Roles::parse(
                &var_or("CONFAB_WORKER_ROLES", "chat,delivery"),
                "CONFAB_WORKER_ROLES",
            )?,
            delivery: DeliveryConfig::from_env()?,
            metrics_listen: match var_or("CONFAB_WORKER_METRICS_LISTEN", "").as_str() {
                "" => None,
                addr => Some(addr.parse().map_err(|e| ConfigError {
                    var: "CONFAB_WORKER_METRICS_LISTEN",
                    problem: format!("{addr:?} is not an address like 0.0.0.0:9091 ({e})"),
                })?),
            },
        })
    }
}

/// Apply command-line flags (`--concurrency N`, `--roles chat,delivery`) over the
/// environment's settings.
pub fn apply_args(config: &mut WorkerConfig, args: &[String]) -> Result<(), ConfigError> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next().cloned());
        match flag {
            "--concurrency" => {
                config.concurrency = value()
                    .and_then(|v| v.parse().ok())
                    .filter(|n: &u16| *n > 0)
                    .ok_or(ConfigError {
                        var: "--concurrency",
                        problem: "needs a whole number of at least 1".into(),
                    })?;
            }
            "--roles" => {
                config.roles = Roles::parse(&value().unwrap_or_default(), "--roles")?;
            }
            _ => {
                return Err(ConfigError {
                    var: "arguments",
                    problem: format!("unknown argument {arg:?}"),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_read_from_a_comma_separated_list() {
        let both = Roles::parse("chat, delivery", "v").unwrap();
        assert!(both.chat && both.delivery);
        let delivery = Roles::parse("delivery", "v").unwrap();
        assert!(!delivery.chat && delivery.delivery);
        assert!(Roles::parse("chat,mail", "v").is_err());
        assert!(Roles::parse(" , ", "v").is_err());
    }

    #[test]
    fn the_roles_flag_limits_a_process_to_some_roles() {
        let mut config = WorkerConfig::from_env().unwrap();
        apply_args(
            &mut config,
            &[
                "--roles=delivery".into(),
                "--concurrency".into(),
                "2".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            config.roles,
            Roles {
                chat: false,
                delivery: true
            }
        );
        assert_eq!(config.concurrency, 2);
        assert!(apply_args(&mut config, &["--roles".into(), "cook".into()]).is_err());
    }
}
