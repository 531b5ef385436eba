//! A database outage shorter than a job's deadline delays its turn instead of failing it: each
//! database step of a turn is retried, on the shared policy's growing pauses, while the database
//! is unavailable and the deadline leaves room. Any other error is the step's answer.

use confab_contract::now_ms;
use confab_shared::db::DbError;
use confab_shared::retry::{Policy, Retryable};
use tracing::warn;

/// Retry a database step while the database is unavailable, until the job's deadline.
pub(super) async fn until_deadline<T, F, Fut>(deadline_ms: i64, step: F) -> Result<T, DbError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DbError>>,
{
    step.retry(Policy::DATABASE.backoff())
        .when(|e| matches!(e, DbError::Unavailable(_)))
        // A pause that would end past the deadline is not taken: the step's error is the answer.
        .adjust(|_, pause| pause.filter(|p| now_ms() + (p.as_millis() as i64) < deadline_ms))
        .notify(|e, pause| warn!(error = %e, retry_in = ?pause, "database step failed; retrying"))
        .await
}
