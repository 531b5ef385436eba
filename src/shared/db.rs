//! The Postgres connection pool both processes use, and how a database failure is classified:
//! worth retrying (unreachable, restarting, a lost race) or not.

use std::str::FromStr;
use std::time::Duration;

use confab_contract::settings::{ConfigError, parsed_var};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// SQLSTATE 57014, query_canceled: what a statement past `statement_timeout` fails with.
pub const QUERY_CANCELED: &str = "57014";

/// How a process's pool is sized and how long anything may wait on the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Connections at most. `CONFAB_DATABASE_POOL_SIZE`.
    pub size: usize,
    /// How long a request waits for a free connection before it is refused (503), so a
    /// starved pool answers quickly instead of stacking up callers.
    /// `CONFAB_DATABASE_POOL_WAIT_MS`, default 5000.
    pub wait: Duration,
    /// Longest a statement may run (lock waits included) before the server cancels it, so one
    /// runaway query cannot hold a connection indefinitely. `CONFAB_STATEMENT_TIMEOUT_MS`,
    /// default 30000.
    pub statement_timeout: Duration,
}

impl PoolSettings {
    /// The settings from the environment; `default_size` differs by process.
    pub fn from_env(default_size: usize) -> Result<Self, ConfigError> {
        let settings = Self {
            size: parsed_var("CONFAB_DATABASE_POOL_SIZE", default_size)?,
            wait: Duration::from_millis(parsed_var("CONFAB_DATABASE_POOL_WAIT_MS", 5_000)?),
            statement_timeout: Duration::from_millis(parsed_var(
                "CONFAB_STATEMENT_TIMEOUT_MS",
                30_000,
            )?),
        };
        // Zero would mean no connection at all, no wait at all, or (to Postgres) no timeout.
        for (var, value) in [
            ("CONFAB_DATABASE_POOL_SIZE", settings.size as u128),
            ("CONFAB_DATABASE_POOL_WAIT_MS", settings.wait.as_millis()),
            (
                "CONFAB_STATEMENT_TIMEOUT_MS",
                settings.statement_timeout.as_millis(),
            ),
        ] {
            if value == 0 {
                return Err(ConfigError {
                    var,
                    problem: "must be at least 1".into(),
                });
            }
        }
        Ok(settings)
    }
}

/// The connection settings `url` names (libpq style: several hosts, `target_session_attrs`).
pub fn config(url: &str) -> Result<tokio_postgres::Config, DbError> {
    tokio_postgres::Config::from_str(url)
        .map_err(|e| DbError::Config(format!("CONFAB_DATABASE_URL: {e}")))
}

/// A connection pool for `url`: at most `settings.size` connections, a wait for one bounded by
/// `settings.wait`, every statement bounded by `settings.statement_timeout`.
pub fn pool(url: &str, settings: PoolSettings) -> Result<Pool, DbError> {
    let mut config = config(url)?;
    // A startup option, so every connection has it from its first statement and no session
    // can forget it (a URL's own `options` come first and are kept).
    let timeout = format!(
        "-c statement_timeout={}",
        settings.statement_timeout.as_millis()
    );
    let options = match config.get_options() {
        Some(given) if !given.is_empty() => format!("{given} {timeout}"),
        _ => timeout,
    };
    config.options(&options);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    // The wait timeout needs the runtime to time it; without one deadpool would wait forever.
    Pool::builder(manager)
        .max_size(settings.size)
        .wait_timeout(Some(settings.wait))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Config(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database is unreachable or restarting; worth retrying.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("database configuration: {0}")]
    Config(String),
    #[error("database error: {0}")]
    Query(tokio_postgres::Error),
    /// A value read back in a shape this build does not know (a schema older or newer than it).
    #[error("unexpected value from the database: {0}")]
    Unexpected(String),
}

impl From<serde_json::Error> for DbError {
    fn from(error: serde_json::Error) -> Self {
        DbError::Unexpected(error.to_string())
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        // Connection loss has no SQLSTATE; class 08 is a connection exception, 57P0x an
        // administrator shutdown or a server still starting, 40xxx a lost race to retry.
        // 57014 a statement past its timeout, usually a busy moment that a retry outlives.
        // A value that will not convert (a column that does not read back, a parameter that
        // does not encode) has no SQLSTATE either, but retrying it fails the same way.
        let transient = match error.code() {
            None => !is_conversion(&error),
            Some(code) => {
                let code = code.code();
                code.starts_with("08")
                    || code.starts_with("57P")
                    || code.starts_with("40")
                    || code == QUERY_CANCELED
            }
        };
        if transient {
            DbError::Unavailable(error.to_string())
        } else {
            DbError::Query(error)
        }
    }
}

/// tokio-postgres tells its conversion errors only by their message ("error serializing
/// parameter N", "error deserializing column N").
fn is_conversion(error: &tokio_postgres::Error) -> bool {
    let message = error.to_string();
    message.starts_with("error serializing") || message.starts_with("error deserializing")
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => DbError::Unavailable(other.to_string()),
        }
    }
}
