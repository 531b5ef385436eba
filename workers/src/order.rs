//! Turns of one conversation are answered in arrival order. The ingress records each turn in
//! `pending_turns` before publishing its job; a worker holding a job waits until no earlier turn
//! of the same conversation is pending, so a second message sees the first answer, and removes
//! its own row once the turn is settled. Waiting polls with short queries, so no database
//! connection is held while a turn waits or a model generates.

use std::time::Duration;

use confab_contract::{Job, now_ms};
use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio_postgres::GenericClient;

use confab_shared::db::DbError;

/// How often a waiting turn looks again.
const POLL: Duration = Duration::from_millis(20);

/// Whether a turn may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Go,
    /// The request was cancelled before it started.
    Cancelled,
}

/// Wait until every earlier turn of the job's conversation is settled (or past its deadline),
/// the job's own deadline passes, or its caller is gone.
pub async fn wait_for_earlier_turns(
    pool: &Pool,
    job: &Job,
    mut gone: watch::Receiver<bool>,
) -> Result<Turn, DbError> {
    loop {
        let state = {
            let client = pool.get().await?;
            state(&**client, job).await?
        };
        match state {
            State::Cancelled => return Ok(Turn::Cancelled),
            State::Free => return Ok(Turn::Go),
            State::Behind if now_ms() >= job.deadline_ms || *gone.borrow() => return Ok(Turn::Go),
            State::Behind => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = gone.changed() => {}
        }
    }
}

/// Where a turn stands in its conversation's order right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No earlier turn is pending: it may start.
    Free,
    /// An earlier turn of the conversation is still pending.
    Behind,
    /// The request was cancelled before it started.
    Cancelled,
}

/// One look at the order, on any connection (`store::prepare_turn` takes it in the same round
/// trip as its first reads, so a turn that need not wait pays nothing extra).
pub async fn state(client: &impl GenericClient, job: &Job) -> Result<State, DbError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pending_turns WHERE tenant_id = $1 \
               AND conversation_id = $2 AND request_id < $3 AND deadline > now()), \
             EXISTS (SELECT 1 FROM pending_turns WHERE tenant_id = $1 \
               AND conversation_id = $2 AND request_id = $3 AND cancelled)",
            &[&job.tenant_id, &job.conversation_id, &job.request_id],
        )
        .await?;
    Ok(match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
        (_, true) => State::Cancelled,
        (true, false) => State::Behind,
        (false, false) => State::Free,
    })
}

/// The job's turn is settled: later turns of its conversation may go ahead.
pub async fn settled(pool: &Pool, job: &Job) -> Result<(), DbError> {
    let client = pool.get().await?;
    client
        .execute(
            "DELETE FROM pending_turns \
             WHERE tenant_id = $1 AND conversation_id = $2 AND request_id = $3",
            &[&job.tenant_id, &job.conversation_id, &job.request_id],
        )
        .await?;
    Ok(())
}
