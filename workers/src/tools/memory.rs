//! The memory tool: what the model learned about the identity it talks to, merged into the
//! identity's memory under the memory API's own rules (`confab_shared::memory`), so the next
//! turn (on any channel) knows it.

use confab_shared::memory::{MemoryUpdate, write_memory};
use deadpool_postgres::Pool;
use serde_json::{Value, json};

use super::CallContext;

/// Merge `arguments` into the memory of the call's identity: the memory as it now is, or why
/// nothing was written.
pub(super) async fn remember(
    pool: &Pool,
    context: &CallContext,
    arguments: &Value,
) -> Result<String, String> {
    let Some(identity_id) = context.identity_id else {
        return Err(
            "this conversation is not with a known identity, so there is nobody to remember \
             anything about"
                .into(),
        );
    };
    let empty = serde_json::Map::new();
    let update = MemoryUpdate::parse(arguments.as_object().unwrap_or(&empty))
        .map_err(|e| format!("nothing was remembered: {e}"))?;
    let client = pool
        .get()
        .await
        .map_err(|e| format!("memory is unavailable: {e}"))?;
    let written = write_memory(&**client, context.tenant_id, identity_id, &update, false)
        .await
        .map_err(|e| format!("memory could not be written: {e}"))?;
    match written {
        Some(memory) => Ok(json!({"remembered": true, "memory": memory}).to_string()),
        None => Err("the identity no longer exists".into()),
    }
}
