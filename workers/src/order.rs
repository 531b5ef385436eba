//! Turns of one conversation are answered in arrival order, so a second message sees the first
//! answer. The ingress records each turn in `pending_turns`, at the next place of its
//! conversation, before publishing its job (`migrations/0006_turn_places.sql`); this
//! module is the worker's whole side of that table: the check whether earlier turns are still
//! pending (or this one was cancelled), the wait for them, and the removal of a turn's row once
//! it is settled. It depends on no other worker module, so the store can take the check inside
//! its own transaction without the two knowing each other. Waiting polls with short queries, so
//! no database connection is held while a turn waits or a model generates.

use std::time::Duration;

use confab_contract::{Job, now_ms};
use deadpool_postgres::GenericClient;
use deadpool_postgres::Pool;
use tokio::sync::watch;

use confab_shared::db::DbError;

/// How often a waiting turn looks again.
const POLL: Duration = Duration::from_millis(20);

/// How a wait for earlier turns ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnded {
    /// The turn may start.
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
) -> Result<WaitEnded, DbError> {
    loop {
        let place = {
            let client = pool.get().await?;
            check(&client, job).await?
        };
        match place {
            Place::Cancelled => return Ok(WaitEnded::Cancelled),
            Place::Free => return Ok(WaitEnded::Go),
            Place::Behind if now_ms() >= job.deadline_ms || *gone.borrow() => {
                return Ok(WaitEnded::Go);
            }
            Place::Behind => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = gone.changed() => {}
        }
    }
}

/// Where a turn stands in its conversation's order right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// No earlier turn is pending: it may start.
    Free,
    /// An earlier turn of the conversation is still pending.
    Behind,
    /// The request was cancelled before it started.
    Cancelled,
}

/// One look at the order, on any connection or transaction: the turn's preparation takes it in
/// the same round trip as its first reads, so a turn that need not wait pays nothing extra.
pub async fn check(client: &impl GenericClient, job: &Job) -> Result<Place, DbError> {
    let row = client
        .query_one(
            &client
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM pending_turns earlier, pending_turns me \
               WHERE me.tenant_id = $1 AND me.conversation_id = $2 AND me.request_id = $3 \
                 AND earlier.tenant_id = $1 AND earlier.conversation_id = $2 \
                 AND earlier.place < me.place AND earlier.deadline > now()), \
             EXISTS (SELECT 1 FROM pending_turns WHERE tenant_id = $1 \
               AND conversation_id = $2 AND request_id = $3 AND cancelled)",
                )
                .await?,
            &[&job.tenant_id, &job.conversation_id, &job.request_id],
        )
        .await?;
    Ok(match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
        (_, true) => Place::Cancelled,
        (true, false) => Place::Behind,
        (false, false) => Place::Free,
    })
}

/// The job's turn is settled: remove its row, so later turns of its conversation may go ahead.
pub async fn release(pool: &Pool, job: &Job) -> Result<(), DbError> {
    let client = pool.get().await?;
    client
        .execute(
            &client
                .prepare_cached(
                    "DELETE FROM pending_turns \
             WHERE tenant_id = $1 AND conversation_id = $2 AND request_id = $3",
                )
                .await?,
            &[&job.tenant_id, &job.conversation_id, &job.request_id],
        )
        .await?;
    Ok(())
}
