//! Ingress configuration, read once from `CONFAB_*` variables at start. Every variable and its
//! default is listed in the README.

use std::net::SocketAddr;
use std::time::Duration;

use confab_contract::settings::{ConfigError, SharedSettings, parsed_var, var_or};
use confab_shared::db::PoolSettings;
use confab_shared::secrets::SecretBox;

pub use crate::store::documents::KnowledgeLimits;

/// How reply events travel back to the ingress (see `relay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    /// One exclusive queue per request.
    PerRequest,
    /// One exclusive queue per ingress process, events routed by correlation id.
    Shared,
}

impl std::str::FromStr for ReplyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "per-request" => Ok(ReplyMode::PerRequest),
            "shared" => Ok(ReplyMode::Shared),
            other => Err(format!("{other:?} is neither `per-request` nor `shared`")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct IngressConfig {
    pub shared: SharedSettings,
    /// `CONFAB_LISTEN`, default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// `CONFAB_REPLY_MODE`, default `per-request`.
    pub reply_mode: ReplyMode,
    /// How long a request may take before the ingress gives up and the job expires.
    /// `CONFAB_JOB_DEADLINE_SECS`, default 120.
    pub job_deadline: Duration,
    /// Largest request body accepted. `CONFAB_MAX_BODY_BYTES`, default 1 MiB.
    pub max_body_bytes: usize,
    /// Requests per minute per API key unless the key has its own limit.
    /// `CONFAB_RATE_LIMIT_PER_MIN`, default 600.
    pub rate_limit_per_min: i32,
    /// The pool (`CONFAB_DATABASE_POOL_SIZE`, default 16), the wait for a connection and the
    /// statement timeout.
    pub database: PoolSettings,
    /// The share of the pool that document uploads may hold at once.
    pub heavy_writes: HeavyWrites,
    /// What one document and one folder may hold.
    pub knowledge: KnowledgeLimits,
    /// How long a stopping ingress lets open streams finish. `CONFAB_SHUTDOWN_GRACE_SECS`,
    /// default 30.
    pub shutdown_grace: Duration,
    /// Deadlines and caps of every connection: `CONFAB_HEADER_READ_TIMEOUT_SECS` (default 10),
    /// `CONFAB_WRITE_STALL_SECS` (default 60), `CONFAB_MAX_CONNECTIONS` (default 4096).
    pub connection_limits: ConnectionLimits,
    /// Longest wait for the next piece of a request body. `CONFAB_BODY_READ_TIMEOUT_SECS`,
    /// default 30.
    pub body_read_timeout: Duration,
    /// How long a stream waits for its client to read before it stops relaying (the answer
    /// is still finished and stored). `CONFAB_STREAM_STALL_SECS`, default 30.
    pub stream_stall: Duration,
    /// Channel messages (WhatsApp, Telegram) older than this when they arrive, as after an
    /// outage when the platform replays its backlog, are stored but not answered.
    /// `CONFAB_WEBHOOK_MAX_AGE_SECS`, default 900.
    pub webhook_max_age: Duration,
    /// The keys channel secrets are sealed with. `CONFAB_SECRET_KEYS`, default none.
    pub secrets: SecretBox,
    /// What the visitors of public web channels may do.
    pub visitors: VisitorLimits,
}

/// The visitors of public web channels (the widget, the hosted chat page): their own rate
/// limits, apart from the tenant's API keys, and how long a visitor token lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisitorLimits {
    /// Sessions and turns per minute of one visitor. `CONFAB_VISITOR_RATE_PER_MIN`, default 20.
    pub per_visitor_per_min: i32,
    /// Sessions and turns per minute of all the visitors of one channel.
    /// `CONFAB_WEB_CHANNEL_RATE_PER_MIN`, default 600.
    pub per_channel_per_min: i32,
    /// How long a visitor token lasts; the widget renews it before then.
    /// `CONFAB_VISITOR_TOKEN_TTL_SECS`, default 900.
    pub token_ttl_secs: i32,
}

impl VisitorLimits {
    fn from_env() -> Result<Self, ConfigError> {
        let at_least_one = |var: &'static str, default: i32| {
            let value: i32 = parsed_var(var, default)?;
            if value < 1 {
                return Err(ConfigError {
                    var,
                    problem: "must be at least 1".into(),
                });
            }
            Ok(value)
        };
        Ok(Self {
            per_visitor_per_min: at_least_one("CONFAB_VISITOR_RATE_PER_MIN", 20)?,
            per_channel_per_min: at_least_one("CONFAB_WEB_CHANNEL_RATE_PER_MIN", 600)?,
            token_ttl_secs: at_least_one("CONFAB_VISITOR_TOKEN_TTL_SECS", 900)?,
        })
    }
}

impl Default for VisitorLimits {
    fn default() -> Self {
        Self {
            per_visitor_per_min: 20,
            per_channel_per_min: 600,
            token_ttl_secs: 900,
        }
    }
}

/// What the server holds every connection to.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From a connection's first byte (or the end of its previous response) to the end of its
    /// request headers.
    pub header_read_timeout: Duration,
    /// How long a response's writes may make no progress before the connection is closed.
    pub write_stall: Duration,
    /// Open connections at most; more are answered 503 and closed.
    pub max_connections: usize,
}

impl IngressConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let job_deadline = positive_secs("CONFAB_JOB_DEADLINE_SECS", 120)?;
        // The limiter divides a minute by the limit: zero would fail every request, and a
        // negative limit would admit every one.
        let rate_limit_per_min = parsed_var("CONFAB_RATE_LIMIT_PER_MIN", 600)?;
        if rate_limit_per_min < 1 {
            return Err(ConfigError {
                var: "CONFAB_RATE_LIMIT_PER_MIN",
                problem: "must be at least 1".into(),
            });
        }
        let database = PoolSettings::from_env(16)?;
        Ok(Self {
            shared: SharedSettings::from_env()?,
            listen: parsed_var("CONFAB_LISTEN", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            reply_mode: var_or("CONFAB_REPLY_MODE", "per-request")
                .parse()
                .map_err(|problem| ConfigError {
                    var: "CONFAB_REPLY_MODE",
                    problem,
                })?,
            job_deadline,
            max_body_bytes: parsed_var("CONFAB_MAX_BODY_BYTES", 1024 * 1024)?,
            rate_limit_per_min,
            database,
            heavy_writes: HeavyWrites::from_env(database.size)?,
            knowledge: knowledge_limits()?,
            shutdown_grace: Duration::from_secs(parsed_var("CONFAB_SHUTDOWN_GRACE_SECS", 30)?),
            connection_limits: ConnectionLimits {
                header_read_timeout: positive_secs("CONFAB_HEADER_READ_TIMEOUT_SECS", 10)?,
                write_stall: positive_secs("CONFAB_WRITE_STALL_SECS", 60)?,
                max_connections: max_connections()?,
            },
            body_read_timeout: positive_secs("CONFAB_BODY_READ_TIMEOUT_SECS", 30)?,
            stream_stall: positive_secs("CONFAB_STREAM_STALL_SECS", 30)?,
            webhook_max_age: Duration::from_secs(parsed_var("CONFAB_WEBHOOK_MAX_AGE_SECS", 900)?),
            secrets: SecretBox::from_env()?,
            visitors: VisitorLimits::from_env()?,
        })
    }
}

/// Heavy writes (document uploads, so `confab kb import` too) may hold at most `permits` pool
/// connections at once, so that a burst of them leaves the rest of the pool to chat and
/// management; one that finds no permit within `wait` is refused with a 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeavyWrites {
    /// `CONFAB_HEAVY_WRITE_PERMITS`, default a quarter of the pool, at least 1.
    pub permits: usize,
    /// `CONFAB_HEAVY_WRITE_WAIT_MS`, default 2000.
    pub wait: Duration,
}

impl HeavyWrites {
    fn from_env(pool_size: usize) -> Result<Self, ConfigError> {
        let permits = parsed_var("CONFAB_HEAVY_WRITE_PERMITS", (pool_size / 4).max(1))?;
        at_least_one("CONFAB_HEAVY_WRITE_PERMITS", permits as u64)?;
        let wait = parsed_var("CONFAB_HEAVY_WRITE_WAIT_MS", 2_000)?;
        Ok(Self {
            permits,
            wait: Duration::from_millis(wait),
        })
    }
}

fn max_connections() -> Result<usize, ConfigError> {
    let max = parsed_var("CONFAB_MAX_CONNECTIONS", 4096)?;
    at_least_one("CONFAB_MAX_CONNECTIONS", max as u64)?;
    Ok(max)
}

fn knowledge_limits() -> Result<KnowledgeLimits, ConfigError> {
    let limits = KnowledgeLimits {
        max_passages: parsed_var(
            "CONFAB_MAX_PASSAGES_PER_DOCUMENT",
            KnowledgeLimits::DEFAULT.max_passages,
        )?,
        max_folder_bytes: parsed_var(
            "CONFAB_MAX_FOLDER_BYTES",
            KnowledgeLimits::DEFAULT.max_folder_bytes,
        )?,
    };
    at_least_one(
        "CONFAB_MAX_PASSAGES_PER_DOCUMENT",
        limits.max_passages as u64,
    )?;
    at_least_one("CONFAB_MAX_FOLDER_BYTES", limits.max_folder_bytes)?;
    Ok(limits)
}

fn at_least_one(var: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError {
            var,
            problem: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// Whole seconds from `var`; zero would make every deadline expire at once.
fn positive_secs(var: &'static str, default: u64) -> Result<Duration, ConfigError> {
    let secs = parsed_var(var, default)?;
    at_least_one(var, secs)?;
    Ok(Duration::from_secs(secs))
}
