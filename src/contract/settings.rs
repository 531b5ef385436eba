//! Settings both sides must agree on (where the services are, the queue prefix and bounds), read
//! from the same `CONFAB_*` variables, plus the small helpers both sides' configs use to read
//! variables with documented defaults.

use crate::{BrokerNodes, Names, QueueLimits};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_QUEUE_PREFIX: &str = "confab";

#[derive(Debug, Clone)]
pub struct SharedSettings {
    /// `CONFAB_DATABASE_URL`, default [`DEFAULT_DATABASE_URL`].
    pub database_url: String,
    /// `CONFAB_AMQP_URL`, default [`DEFAULT_AMQP_URL`]: one node's URL, or a cluster's nodes
    /// separated by commas (see [`BrokerNodes`], which every connection goes through).
    pub amqp_url: String,
    /// `CONFAB_QUEUE_PREFIX`, default [`DEFAULT_QUEUE_PREFIX`].
    pub names: Names,
    /// `CONFAB_WORK_QUEUE_MAX_LENGTH`, `CONFAB_JOB_DELIVERY_LIMIT`, `CONFAB_RESUME_RETENTION_SECS`.
    pub queue_limits: QueueLimits,
    /// How long a streamed answer keeps being generated after its client went away, for it to
    /// reconnect. `CONFAB_RESUME_GRACE_SECS`, default 10; 0 stops at once.
    pub resume_grace: std::time::Duration,
}

impl SharedSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = QueueLimits::default();
        let amqp_url = var_or("CONFAB_AMQP_URL", DEFAULT_AMQP_URL);
        BrokerNodes::parse(&amqp_url)?;
        Ok(Self {
            database_url: var_or("CONFAB_DATABASE_URL", DEFAULT_DATABASE_URL),
            amqp_url,
            names: Names::new(var_or("CONFAB_QUEUE_PREFIX", DEFAULT_QUEUE_PREFIX)),
            queue_limits: QueueLimits {
                max_length: parsed_var("CONFAB_WORK_QUEUE_MAX_LENGTH", defaults.max_length)?,
                delivery_limit: parsed_var("CONFAB_JOB_DELIVERY_LIMIT", defaults.delivery_limit)?,
                resume_retention_secs: parsed_var(
                    "CONFAB_RESUME_RETENTION_SECS",
                    defaults.resume_retention_secs,
                )?,
            },
            resume_grace: std::time::Duration::from_secs(parsed_var(
                "CONFAB_RESUME_GRACE_SECS",
                10,
            )?),
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

/// Read a variable, or its default when unset or empty.
pub fn var_or(var: &'static str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Read and parse a variable, or its default when unset or empty.
pub fn parsed_var<T: std::str::FromStr>(var: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(var).ok().filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|e: T::Err| ConfigError {
            var,
            problem: format!("cannot parse {raw:?}: {e}"),
        }),
    }
}
