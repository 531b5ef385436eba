//! `pending_turns`: the turns the ingress has accepted and no worker has settled yet. The
//! ingress records a turn here before its job is published, so that workers answer the turns of
//! one conversation in the order they were recorded (`migrations/0006_turn_places.sql`); a cancel flags it, so a
//! turn no worker has taken never starts. The worker's side (the order check, settling) is
//! `workers/src/order.rs`.

use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::tenants::{self, KeyCharge, KeyRefused, gcra_use, unrevoked_key_by_id};

/// Record a turn as pending, at the next place of its conversation. Must be committed before
/// its job is published. One statement: the counter's row lock is held until the pending row is
/// committed, so places follow the order in which turns are recorded (`0006_turn_places.sql`).
pub async fn record(
    client: &impl deadpool_postgres::GenericClient,
    tenant_id: Uuid,
    conversation_id: &str,
    request_id: Uuid,
    deadline_ms: i64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &client
                .prepare_cached(
                    "WITH place AS ( \
               INSERT INTO turn_places (tenant_id, conversation_id, last_place) VALUES ($1, $2, 1) \
               ON CONFLICT (tenant_id, conversation_id) DO UPDATE \
                 SET last_place = turn_places.last_place + 1, recorded_at = now() \
               RETURNING last_place \
             ) \
             INSERT INTO pending_turns (tenant_id, conversation_id, request_id, deadline, place) \
             SELECT $1, $2, $3, to_timestamp($4::float8 / 1000), last_place FROM place \
             ON CONFLICT DO NOTHING",
                )
                .await?,
            &[
                &tenant_id,
                &conversation_id,
                &request_id,
                &(deadline_ms as f64),
            ],
        )
        .await?;
    Ok(())
}

/// [`record`], for a request whose key is charged here rather than before (a key the ingress
/// remembers, `store::key_cache`): the key's check, its rate limit and the pending turn are one
/// statement, and the turn is recorded only if the key is not revoked and its limit admits the
/// request. The turn is the key's tenant's.
pub async fn record_charged(
    client: &impl deadpool_postgres::GenericClient,
    charge: KeyCharge,
    conversation_id: &str,
    request_id: Uuid,
    deadline_ms: i64,
) -> Result<Result<(), KeyRefused>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(gcra_use!(
            unrevoked_key_by_id!(),
            "",
            ", place AS ( \
               INSERT INTO turn_places (tenant_id, conversation_id, last_place) \
               SELECT p.tenant_id, $3, 1 FROM g, p \
               ON CONFLICT (tenant_id, conversation_id) DO UPDATE \
                 SET last_place = turn_places.last_place + 1, recorded_at = now() \
               RETURNING tenant_id, last_place \
             ), pending AS ( \
               INSERT INTO pending_turns (tenant_id, conversation_id, request_id, deadline, place) \
               SELECT tenant_id, $3, $4, to_timestamp($5::float8 / 1000), last_place FROM place \
               ON CONFLICT DO NOTHING \
             )"
        ))
        .await?;
    let row = client
        .query_opt(
            &statement,
            &[
                &charge.key_id,
                &charge.default_limit,
                &conversation_id,
                &request_id,
                &(deadline_ms as f64),
            ],
        )
        .await?;
    Ok(tenants::admitted(row.as_ref().map(tenants::charged_use)).map(|_| ()))
}

/// Forget a turn whose job was never queued: it holds nothing up. Best effort; a row left
/// behind stops holding anything up at its deadline.
pub async fn forget(
    client: &impl GenericClient,
    tenant_id: Uuid,
    conversation_id: &str,
    request_id: Uuid,
) {
    let _ = client
        .execute(
            "DELETE FROM pending_turns \
             WHERE tenant_id = $1 AND conversation_id = $2 AND request_id = $3",
            &[&tenant_id, &conversation_id, &request_id],
        )
        .await;
}

/// How long the tenant's turn `request_id` may still be answered: `None` once it was answered,
/// forgotten, or is past its deadline.
pub async fn time_left(
    client: &impl GenericClient,
    tenant_id: Uuid,
    request_id: Uuid,
) -> Result<Option<std::time::Duration>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT (extract(epoch FROM deadline - now()) * 1000)::int8 FROM pending_turns \
              WHERE tenant_id = $1 AND request_id = $2 AND deadline > now()",
            &[&tenant_id, &request_id],
        )
        .await?;
    Ok(row.map(|row| std::time::Duration::from_millis(row.get::<_, i64>(0).max(0) as u64)))
}

/// Flag the tenant's turn `request_id` as cancelled, if it is still being answered; whether it was.
pub async fn flag_cancelled(
    client: &impl GenericClient,
    tenant_id: Uuid,
    request_id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let marked = client
        .execute(
            "UPDATE pending_turns SET cancelled = true \
             WHERE tenant_id = $1 AND request_id = $2 AND deadline > now()",
            &[&tenant_id, &request_id],
        )
        .await?;
    Ok(marked > 0)
}

/// SQL that forgets turns a minute past their deadline, and the places of conversations with no
/// turn left (housekeeping). A counter recorded in the last minute is kept: its turn's row may
/// not be visible yet, and a fresh `recorded_at` is re-checked under the row's lock.
pub const FORGET_EXPIRED: &str = "DELETE FROM pending_turns WHERE deadline < now() - interval '1 minute'; \
     DELETE FROM turn_places c WHERE recorded_at < now() - interval '1 minute' \
       AND NOT EXISTS (SELECT 1 FROM pending_turns p \
                       WHERE p.tenant_id = c.tenant_id AND p.conversation_id = c.conversation_id)";
