//! The Postgres connection pool both processes use, and how a database failure is classified:
//! worth retrying (unreachable, restarting, a lost race) or not.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// A connection pool for `url` with at most `size` connections.
pub fn pool(url: &str, size: usize) -> Result<Pool, DbError> {
    let config = tokio_postgres::Config::from_str(url)
        .map_err(|e| DbError::Config(format!("CONFAB_DATABASE_URL: {e}")))?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(10)))
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
}

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        // Connection loss has no SQLSTATE; class 08 is a connection exception, 57P0x an
        // administrator shutdown or a server still starting, 40xxx a lost race to retry.
        // A value that will not convert (a column that does not read back, a parameter that
        // does not encode) has no SQLSTATE either, but retrying it fails the same way.
        let transient = match error.code() {
            None => !is_conversion(&error),
            Some(code) => {
                let code = code.code();
                code.starts_with("08") || code.starts_with("57P") || code.starts_with("40")
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
