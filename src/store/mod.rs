//! The ingress's database layer: one module per table family, each the only place that writes
//! its tables, plus the SQL fragments they share (below) and the migration runner. The worker's
//! reads and writes of a turn are in `workers/src/store/`.

pub mod assistant_cache;
pub mod assistants;
pub mod channels;
pub mod conversations;
pub mod documents;
pub mod folders;
pub mod identities;
pub mod key_cache;
pub mod migrate;
pub mod pending_turns;
pub mod tenants;
pub mod visitors;

/// A `timestamptz` column rendered as RFC 3339 UTC with milliseconds, as the API shows times.
pub fn rfc3339(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
}

/// `columns` of the row of `table` with `id`, if the tenant has it. Every tenant-owned table
/// has `tenant_id` and a UUIDv7 `id`.
pub async fn tenant_row(
    client: &impl tokio_postgres::GenericClient,
    table: &'static str,
    columns: &str,
    tenant_id: uuid::Uuid,
    id: uuid::Uuid,
) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
    client
        .query_opt(
            &format!("SELECT {columns} FROM {table} WHERE tenant_id = $1 AND id = $2"),
            &[&tenant_id, &id],
        )
        .await
}

/// A page of the tenant's rows of `table`, newest first (UUIDv7 ids order by creation), after
/// the row whose id is `cursor`.
pub async fn tenant_page(
    client: &impl tokio_postgres::GenericClient,
    table: &'static str,
    columns: &str,
    tenant_id: uuid::Uuid,
    cursor: Option<uuid::Uuid>,
    limit: i64,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    client
        .query(
            &format!(
                "SELECT {columns} FROM {table} WHERE tenant_id = $1 \
                 AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
            ),
            &[&tenant_id, &cursor, &limit],
        )
        .await
}

/// Forget what has expired in every table family (run once a minute by each ingress; the
/// deletes are idempotent, so several ingress processes may run them at once).
pub async fn forget_expired(
    client: &impl tokio_postgres::GenericClient,
) -> Result<(), tokio_postgres::Error> {
    let sql = [
        tenants::FORGET_EXPIRED,
        pending_turns::FORGET_EXPIRED,
        visitors::FORGET_EXPIRED,
    ]
    .join("; ");
    client.batch_execute(&sql).await
}
