//! Assistants: stored configurations that answer chat turns, addressed by id or by a slug unique
//! within their tenant.

use confab_shared::tools::ServerTool;
use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct Assistant {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub instructions: String,
    pub model: String,
    pub deployed: bool,
    /// Knowledge folders searched when a request names none.
    pub folder_ids: Vec<Uuid>,
    /// The functions the assistant calls itself while it answers; shown without their secrets.
    #[serde(serialize_with = "public_tools")]
    pub tools: Vec<ServerTool>,
    pub created_at: String,
    pub updated_at: String,
}

fn public_tools<S: serde::Serializer>(tools: &[ServerTool], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(tools.iter().map(ServerTool::public_view))
}

/// Tools as stored (secrets sealed); a column that does not read is no tools, since only this
/// module writes it.
fn tools_of(column: serde_json::Value) -> Vec<ServerTool> {
    serde_json::from_value(column).unwrap_or_default()
}

/// A validated new assistant.
#[derive(Debug, Clone)]
pub struct NewAssistant {
    pub name: String,
    pub slug: String,
    pub description: String,
    pub instructions: String,
    pub model: String,
    pub deployed: bool,
    pub folder_ids: Vec<Uuid>,
    /// With their secrets sealed.
    pub tools: Vec<ServerTool>,
}

#[derive(Debug, thiserror::Error)]
pub enum AssistantError {
    #[error("an assistant with slug '{0}' already exists")]
    SlugTaken(String),
    #[error("a channel is connected to this assistant")]
    InUse,
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

const COLUMNS: &str = "id, name, slug, description, instructions, model, deployed, folder_ids, \
    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
    to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), tools";

fn from_row(row: &tokio_postgres::Row) -> Assistant {
    Assistant {
        id: row.get(0),
        name: row.get(1),
        slug: row.get(2),
        description: row.get(3),
        instructions: row.get(4),
        model: row.get(5),
        deployed: row.get(6),
        folder_ids: row.get(7),
        created_at: row.get(8),
        updated_at: row.get(9),
        tools: tools_of(row.get(10)),
    }
}

/// The slug a name gets when none is given: lowercase, words joined by hyphens
/// ("Customer Support" -> "customer-support").
pub fn slug_from_name(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-')
        .chars()
        .take(64)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

/// Whether `slug` is lowercase letters and digits in hyphen-separated words, at most 64 long.
pub fn is_valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 64
        && slug.split('-').all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// Create assistant `id` (the caller mints it, since the tools' secrets are sealed for it).
pub async fn create(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
    new: &NewAssistant,
) -> Result<Assistant, AssistantError> {
    let row = client
        .query_opt(
            &format!(
                "INSERT INTO assistants (id, tenant_id, name, slug, description, instructions, \
                   model, deployed, folder_ids, tools) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (tenant_id, slug) DO NOTHING \
                 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &tenant_id,
                &new.name,
                &new.slug,
                &new.description,
                &new.instructions,
                &new.model,
                &new.deployed,
                &new.folder_ids,
                &serde_json::json!(new.tools),
            ],
        )
        .await?;
    row.map(|row| from_row(&row))
        .ok_or_else(|| AssistantError::SlugTaken(new.slug.clone()))
}

/// The tenant's assistant with this slug, read once. Requests find theirs through the ingress's
/// [`AssistantCache`](super::assistant_cache::AssistantCache) instead.
pub async fn by_slug(
    client: &impl GenericClient,
    tenant_id: Uuid,
    slug: &str,
) -> Result<Option<Assistant>, tokio_postgres::Error> {
    let row = client
        .query_opt(&by_slug_sql(), &[&tenant_id, &slug])
        .await?;
    Ok(row.map(|row| from_row(&row)))
}

/// [`by_slug`] as a statement prepared once per pooled connection.
pub(super) async fn by_slug_cached(
    client: &impl deadpool_postgres::GenericClient,
    tenant_id: Uuid,
    slug: &str,
) -> Result<Option<Assistant>, tokio_postgres::Error> {
    let statement = client.prepare_cached(&by_slug_sql()).await?;
    let row = client.query_opt(&statement, &[&tenant_id, &slug]).await?;
    Ok(row.map(|row| from_row(&row)))
}

fn by_slug_sql() -> String {
    format!("SELECT {COLUMNS} FROM assistants WHERE tenant_id = $1 AND slug = $2")
}

pub async fn by_id(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<Assistant>, tokio_postgres::Error> {
    let row = crate::store::tenant_row(client, "assistants", COLUMNS, tenant_id, id).await?;
    Ok(row.map(|row| from_row(&row)))
}

/// A page of the tenant's assistants, newest first, after `cursor` (an assistant id).
pub async fn list(
    client: &impl GenericClient,
    tenant_id: Uuid,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Assistant>, tokio_postgres::Error> {
    let rows =
        crate::store::tenant_page(client, "assistants", COLUMNS, tenant_id, cursor, limit).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Replace an assistant's settings with `new`; `None` if the tenant has no such assistant.
pub async fn update(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
    new: &NewAssistant,
) -> Result<Option<Assistant>, AssistantError> {
    let updated = client
        .query_opt(
            &format!(
                "UPDATE assistants SET name = $3, slug = $4, description = $5, \
                   instructions = $6, model = $7, deployed = $8, folder_ids = $9, \
                   tools = $10, updated_at = now() \
                 WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
            ),
            &[
                &tenant_id,
                &id,
                &new.name,
                &new.slug,
                &new.description,
                &new.instructions,
                &new.model,
                &new.deployed,
                &new.folder_ids,
                &serde_json::json!(new.tools),
            ],
        )
        .await;
    match updated {
        Ok(row) => Ok(row.map(|row| from_row(&row))),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            Err(AssistantError::SlugTaken(new.slug.clone()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Delete an assistant; false if the tenant has no such assistant. Refused (an error) while a
/// channel is connected to it.
pub async fn delete(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<bool, AssistantError> {
    let deleted = client
        .execute(
            "DELETE FROM assistants WHERE tenant_id = $1 AND id = $2",
            &[&tenant_id, &id],
        )
        .await;
    match deleted {
        Ok(n) => Ok(n > 0),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
            Err(AssistantError::InUse)
        }
        Err(e) => Err(e.into()),
    }
}

impl NewAssistant {
    /// The settings of an existing assistant, to apply a partial update to.
    pub fn from_existing(assistant: &Assistant) -> NewAssistant {
        NewAssistant {
            name: assistant.name.clone(),
            slug: assistant.slug.clone(),
            description: assistant.description.clone(),
            instructions: assistant.instructions.clone(),
            model: assistant.model.clone(),
            deployed: assistant.deployed,
            folder_ids: assistant.folder_ids.clone(),
            tools: assistant.tools.clone(),
        }
    }
}

/// A deployed assistant as a model list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedAssistant {
    pub slug: String,
    /// Creation time, seconds since the epoch.
    pub created_secs: i64,
}

/// Every deployed assistant of the tenant, oldest first (what `GET /v1/models` lists).
pub async fn list_deployed(
    client: &impl GenericClient,
    tenant_id: Uuid,
) -> Result<Vec<DeployedAssistant>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT slug, extract(epoch FROM created_at)::bigint FROM assistants \
             WHERE tenant_id = $1 AND deployed ORDER BY created_at, slug",
            &[&tenant_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| DeployedAssistant {
            slug: row.get(0),
            created_secs: row.get(1),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_seed_examples() {
        assert_eq!(slug_from_name("Customer Support"), "customer-support");
        assert_eq!(slug_from_name("Sales Bot"), "sales-bot");
        assert_eq!(slug_from_name("  ¡Hola, Señor!  "), "hola-se-or");
        assert_eq!(slug_from_name("!!!"), "");
    }

    #[test]
    fn slug_validation_rejects_empty_words_and_uppercase() {
        assert!(is_valid_slug("support-agent"));
        assert!(is_valid_slug("a1"));
        assert!(!is_valid_slug("Support"));
        assert!(!is_valid_slug("a--b"));
        assert!(!is_valid_slug("-a"));
        assert!(!is_valid_slug(""));
    }
}
