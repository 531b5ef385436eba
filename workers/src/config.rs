//! Worker configuration, read once from `CONFAB_*` variables at start.

use std::time::Duration;

use confab_contract::settings::{ConfigError, SharedSettings, parsed_var, var_or};

use confab_shared::db::PoolSettings;
use confab_shared::platforms::Endpoints;
use confab_shared::retry::Policy;
use confab_shared::secrets::SecretBox;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub shared: SharedSettings,
    /// Jobs this process works on at once (the consumer prefetch). `--concurrency` or
    /// `CONFAB_WORKER_CONCURRENCY`, default 16 ([`WorkerArgs`]).
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
    /// What this process does. `--roles` or `CONFAB_WORKER_ROLES`, default `chat,delivery`
    /// ([`WorkerArgs`]).
    pub roles: Roles,
    pub delivery: DeliveryConfig,
    /// Where this process serves `GET /metrics` (Prometheus text), if anywhere.
    /// `CONFAB_WORKER_METRICS_LISTEN`, e.g. `0.0.0.0:9091`; default empty: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub tools: ToolLimits,
}

/// How far an assistant's tool loop may go in one turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolLimits {
    /// Rounds of tool calls before the model must answer (`CONFAB_TOOL_MAX_STEPS`, default 5).
    pub max_steps: u32,
    /// Largest answer of a tool the model reads; a larger one is an error result
    /// (`CONFAB_TOOL_RESULT_MAX_BYTES`, default 16384).
    pub result_max_bytes: usize,
}

impl ToolLimits {
    fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            max_steps: parsed_var("CONFAB_TOOL_MAX_STEPS", 5u32)?,
            result_max_bytes: parsed_var("CONFAB_TOOL_RESULT_MAX_BYTES", 16_384usize)?.max(1),
        })
    }
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
    fn parse(list: &str) -> Result<Roles, String> {
        let mut roles = Roles {
            chat: false,
            delivery: false,
        };
        for role in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "chat" => roles.chat = true,
                "delivery" => roles.delivery = true,
                other => return Err(format!("unknown role {other:?} (known: chat, delivery)")),
            }
        }
        if !roles.chat && !roles.delivery {
            return Err("names no role (known: chat, delivery)".into());
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
    /// How a message part is retried: `max_attempts` tries, pauses from `retry_base` doubling up
    /// to a minute, or what the platform asks for.
    pub fn retry_policy(&self) -> Policy {
        Policy::doubling(self.retry_base, Duration::from_secs(60)).tries(self.max_attempts)
    }

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

/// The worker's settings that a flag may set, each flag and its `CONFAB_*` variable one argument
/// (the flag wins): `confab-worker` and `confab worker` take these. Their defaults and checks
/// live here; every other setting is read from the environment by [`WorkerConfig::from_env`].
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Jobs this process works on at once (the consumer prefetch), at least 1
    #[arg(
        long,
        value_name = "N",
        env = "CONFAB_WORKER_CONCURRENCY",
        default_value_t = DEFAULT_CONCURRENCY,
        value_parser = concurrency
    )]
    pub concurrency: u16,
    /// What this process does, comma-separated: `chat` answers chat jobs, `delivery` sends
    /// channel answers to WhatsApp and Telegram
    #[arg(
        long,
        value_name = "ROLES",
        env = "CONFAB_WORKER_ROLES",
        default_value = DEFAULT_ROLES,
        value_parser = roles
    )]
    pub roles: Roles,
}

const DEFAULT_CONCURRENCY: u16 = 16;
const DEFAULT_ROLES: &str = "chat,delivery";

/// An empty value means the default, as for every `CONFAB_*` variable (clap takes a variable
/// that is set but empty as a value).
fn concurrency(value: &str) -> Result<u16, String> {
    match value.trim() {
        "" => Ok(DEFAULT_CONCURRENCY),
        value => value
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{value:?} is not a whole number from 1 to {}", u16::MAX)),
    }
}

fn roles(value: &str) -> Result<Roles, String> {
    match value.trim() {
        "" => Roles::parse(DEFAULT_ROLES),
        value => Roles::parse(value),
    }
}

impl WorkerConfig {
    /// The settings of a worker process: `args` (flags or their variables, see [`WorkerArgs`])
    /// and every other setting from its `CONFAB_*` variable.
    pub fn from_env(args: WorkerArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            shared: SharedSettings::from_env()?,
            concurrency: args.concurrency,
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
            roles: args.roles,
            delivery: DeliveryConfig::from_env()?,
            metrics_listen: match var_or("CONFAB_WORKER_METRICS_LISTEN", "").as_str() {
                "" => None,
                addr => Some(addr.parse().map_err(|e| ConfigError {
                    var: "CONFAB_WORKER_METRICS_LISTEN",
                    problem: format!("{addr:?} is not an address like 0.0.0.0:9091 ({e})"),
                })?),
            },
            tools: ToolLimits::from_env()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// The worker's command line as `confab-worker` has it.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: WorkerArgs,
    }

    #[test]
    fn roles_are_read_from_a_comma_separated_list() {
        let both = Roles::parse("chat, delivery").unwrap();
        assert!(both.chat && both.delivery);
        let delivery = Roles::parse("delivery").unwrap();
        assert!(!delivery.chat && delivery.delivery);
        assert!(Roles::parse("chat,mail").is_err());
        assert!(Roles::parse(" , ").is_err());
    }

    #[test]
    fn the_roles_flag_limits_a_process_to_some_roles() {
        let cli = Cli::try_parse_from(["confab-worker", "--roles=delivery", "--concurrency", "2"])
            .unwrap();
        assert_eq!(
            cli.args.roles,
            Roles {
                chat: false,
                delivery: true
            }
        );
        assert_eq!(cli.args.concurrency, 2);
        let refused = Cli::try_parse_from(["confab-worker", "--roles", "cook"]).unwrap_err();
        assert_eq!(refused.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(refused.to_string().contains("cook"), "{refused}");
    }

    #[test]
    fn a_concurrency_of_zero_or_not_a_number_is_refused_naming_the_flag() {
        for bad in ["0", "many", "70000"] {
            let refused = Cli::try_parse_from(["confab-worker", "--concurrency", bad]).unwrap_err();
            assert_eq!(refused.kind(), clap::error::ErrorKind::ValueValidation);
            assert!(refused.to_string().contains("--concurrency"), "{refused}");
        }
        let cli = Cli::try_parse_from(["confab-worker", "--concurrency=3"]).unwrap();
        assert_eq!(cli.args.concurrency, 3);
    }

    #[test]
    fn worker_help_lists_each_flag_with_its_variable_and_default() {
        let help = Cli::command().render_long_help().to_string();
        for expected in [
            "--concurrency <N>",
            "CONFAB_WORKER_CONCURRENCY",
            "default: 16",
            "--roles <ROLES>",
            "CONFAB_WORKER_ROLES",
            "default: chat,delivery",
        ] {
            assert!(help.contains(expected), "{expected} missing from\n{help}");
        }
    }

    #[test]
    fn an_empty_value_means_the_default_as_for_every_variable() {
        assert_eq!(concurrency(""), Ok(16));
        assert_eq!(
            roles(" "),
            Ok(Roles {
                chat: true,
                delivery: true
            })
        );
    }
}
