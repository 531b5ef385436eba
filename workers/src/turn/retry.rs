//! A database outage shorter than a job's deadline delays its turn instead of failing it: each
//! database step of a turn is retried, with a growing pause, while the database is unavailable
//! and the deadline leaves room. Any other error is the step's answer.

use std::time::Duration;

use confab_contract::now_ms;
use confab_shared::db::DbError;
use tracing::warn;

/// Retry a database step while the database is unavailable, until the job's deadline.
pub(super) async fn until_deadline<T, F, Fut>(deadline_ms: i64, mut step: F) -> Result<T, DbError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DbError>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match step().await {
            Err(DbError::Unavailable(reason))
                if now_ms() + (backoff.as_millis() as i64) < deadline_ms =>
            {
                warn!(%reason, retry_in = ?backoff, "database unavailable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}
