//! SQL shared by the ingress's data modules.

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
