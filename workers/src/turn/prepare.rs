//! Getting a turn ready to answer: its message stored and its context read, in its
//! conversation's order. A turn behind an earlier one of its conversation waits here (holding no
//! connection) until that one is settled, so a second message sees the first answer; a turn
//! cancelled before it started ends here, before any model call.

use confab_contract::Job;
use confab_shared::db::DbError;
use tokio::sync::watch;

use super::env::TurnEnv;
use super::retry;
use crate::order;
use crate::store::prepare::{Prepared, PreparedTurn, prepare_turn};

/// Whether a turn may be answered.
pub(super) enum Readiness {
    Ready(Box<PreparedTurn>),
    /// The request was cancelled before it started.
    Cancelled,
}

/// Prepare the job's turn once no earlier turn of its conversation is pending.
///
/// The order is checked while the turn is prepared; only a turn behind an earlier one of its
/// conversation polls for it, and is then prepared without checking again (it may go after
/// its deadline or once its caller is gone, to settle).
pub(super) async fn in_order(
    env: &TurnEnv,
    job: &Job,
    gone: watch::Receiver<bool>,
) -> Result<Readiness, DbError> {
    let mut check_order = true;
    loop {
        let prepared = retry::until_deadline(job.deadline_ms, || {
            prepare_turn(&env.pool, job, &env.windows, check_order)
        })
        .await?;
        match prepared {
            Prepared::Ready(prepared) => return Ok(Readiness::Ready(prepared)),
            Prepared::Cancelled => return Ok(Readiness::Cancelled),
            Prepared::Wait => {
                let waited = retry::until_deadline(job.deadline_ms, || {
                    order::wait_for_earlier_turns(&env.pool, job, gone.clone())
                })
                .await?;
                if waited == order::WaitEnded::Cancelled {
                    return Ok(Readiness::Cancelled);
                }
                check_order = false;
            }
        }
    }
}
