//! Knowledge folders: named groups of documents searched for context, each with the text search
//! language its documents are indexed in.

use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct Folder {
    pub id: Uuid,
    pub name: String,
    pub language: String,
    pub created_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("a folder named '{0}' already exists")]
    NameTaken(String),
    #[error("'{0}' is not a text search language of this database")]
    UnknownLanguage(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

fn columns() -> String {
    format!(
        "id, name, language, {}",
        crate::store::rfc3339("created_at")
    )
}

fn from_row(row: &tokio_postgres::Row) -> Folder {
    Folder {
        id: row.get(0),
        name: row.get(1),
        language: row.get(2),
        created_at: row.get(3),
    }
}

pub async fn create(
    client: &impl GenericClient,
    tenant_id: Uuid,
    name: &str,
    language: &str,
) -> Result<Folder, FolderError> {
    let known = client
        .query_opt(
            "SELECT 1 FROM pg_ts_config WHERE cfgname = $1",
            &[&language],
        )
        .await?;
    if known.is_none() {
        return Err(FolderError::UnknownLanguage(language.to_owned()));
    }
    let row = client
        .query_opt(
            &format!(
                "INSERT INTO folders (id, tenant_id, name, language) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, name) DO NOTHING RETURNING {}",
                columns()
            ),
            &[&Uuid::now_v7(), &tenant_id, &name, &language],
        )
        .await?;
    row.map(|row| from_row(&row))
        .ok_or_else(|| FolderError::NameTaken(name.to_owned()))
}

pub async fn list(
    client: &impl GenericClient,
    tenant_id: Uuid,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Folder>, tokio_postgres::Error> {
    let rows =
        crate::store::tenant_page(client, "folders", &columns(), tenant_id, cursor, limit).await?;
    Ok(rows.iter().map(from_row).collect())
}

pub async fn by_id(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<Folder>, tokio_postgres::Error> {
    let row = crate::store::tenant_row(client, "folders", &columns(), tenant_id, id).await?;
    Ok(row.map(|row| from_row(&row)))
}
