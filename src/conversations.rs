//! Conversations as the ingress sees them: ids to mint and ids to check before a job is sent.
//! The worker creates the row on the conversation's first turn.

use tokio_postgres::GenericClient;
use uuid::Uuid;

/// A fresh public conversation id.
pub fn new_id() -> String {
    format!("conv_{}", Uuid::now_v7().simple())
}

/// A fresh public message id.
pub fn new_message_id() -> String {
    format!("msg_{}", Uuid::now_v7().simple())
}

/// Whether the tenant has conversation `id` with `assistant_id`.
pub async fn exists_for_assistant(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: &str,
    assistant_id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT 1 FROM conversations \
             WHERE tenant_id = $1 AND id = $2 AND assistant_id = $3",
            &[&tenant_id, &id, &assistant_id],
        )
        .await?;
    Ok(row.is_some())
}
