//! Turns of one conversation are answered in arrival order, so a second message sees the first
//! answer. The ingress records each turn in `pending_turns`, at the next place of its
//! conversation, before publishing its job (`migrations/0006_turn_places.sql`); this
//! module is the worker's side of that table: the check whether earlier turns are still
//! pending (or this one was cancelled), the wait for them, and the removal of a turn's row once
//! it is settled without an answer. The first check and the removal after an answer are taken
//! by the store's own statements (`store/prepare.rs`, `store/answer.rs`), through the same SQL
//! functions (`migrations/0012_turn_functions.sql`). Waiting polls with short queries, so
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

/// One look at the order (`confab_turn_place`, `migrations/0012_turn_functions.sql`), which
/// the turn's preparation takes in its own statement, so a turn that need not wait pays nothing
/// extra; this is the look of a turn waiting for its place.
pub async fn check(client: &impl GenericClient, job: &Job) -> Result<Place, DbError> {
    let row = client
        .query_one(
            &client
                .prepare_cached("SELECT confab_turn_place($1, $2, $3)")
                .await?,
            &[&job.tenant_id, &job.conversation_id, &job.request_id],
        )
        .await?;
    Ok(match row.get::<_, &str>(0) {
        "cancelled" => Place::Cancelled,
        "behind" => Place::Behind,
        _ => Place::Free,
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
