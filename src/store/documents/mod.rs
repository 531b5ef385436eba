//! The knowledge base: documents in folders, stored with their passages (`chunk`) indexed for
//! Postgres full-text search in the folder's language. Workers search it (`confab_worker::
//! knowledge`); this module writes it.

pub mod chunk;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub id: Uuid,
    pub folder_id: Uuid,
    pub title: String,
    pub format: String,
    pub chunks: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// What storing a document did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stored {
    Created,
    Updated,
    /// Same title, format and content as stored: nothing was written.
    Unchanged,
}

fn content_hash(format: &str, title: &str, content: &str) -> Vec<u8> {
    let mut hash = Sha256::new();
    for part in [format, title, content] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().to_vec()
}

fn columns() -> String {
    format!(
        "d.id, d.folder_id, d.title, d.format, \
         (SELECT count(*) FROM chunks c WHERE c.document_id = d.id), {}, {}",
        crate::store::rfc3339("d.created_at"),
        crate::store::rfc3339("d.updated_at")
    )
}

fn from_row(row: &tokio_postgres::Row) -> Document {
    Document {
        id: row.get(0),
        folder_id: row.get(1),
        title: row.get(2),
        format: row.get(3),
        chunks: row.get(4),
        created_at: row.get(5),
        updated_at: row.get(6),
    }
}

/// Store a document in a folder (identified by title within it) with its passages, replacing
/// a changed one; an unchanged one is left alone. Call inside a transaction.
pub async fn store(
    tx: &tokio_postgres::Transaction<'_>,
    tenant_id: Uuid,
    folder_id: Uuid,
    title: &str,
    format: &str,
    content: &str,
) -> Result<(Document, Stored), tokio_postgres::Error> {
    let hash = content_hash(format, title, content);
    let existing = tx
        .query_opt(
            "SELECT id, content_hash FROM documents WHERE folder_id = $1 AND title = $2 FOR UPDATE",
            &[&folder_id, &title],
        )
        .await?;
    let (id, stored) = match existing {
        Some(row) if row.get::<_, Vec<u8>>(1) == hash => (row.get(0), Stored::Unchanged),
        Some(row) => {
            let id: Uuid = row.get(0);
            tx.execute(
                "UPDATE documents SET format = $2, content = $3, content_hash = $4, \
                   updated_at = now() WHERE id = $1",
                &[&id, &format, &content, &hash],
            )
            .await?;
            tx.execute("DELETE FROM chunks WHERE document_id = $1", &[&id])
                .await?;
            (id, Stored::Updated)
        }
        None => {
            let id = Uuid::now_v7();
            tx.execute(
                "INSERT INTO documents (id, tenant_id, folder_id, title, format, content, content_hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&id, &tenant_id, &folder_id, &title, &format, &content, &hash],
            )
            .await?;
            (id, Stored::Created)
        }
    };
    if stored != Stored::Unchanged {
        insert_chunks(tx, id, folder_id, title, format, content).await?;
    }
    let row = tx
        .query_one(
            &format!("SELECT {} FROM documents d WHERE d.id = $1", columns()),
            &[&id],
        )
        .await?;
    Ok((from_row(&row), stored))
}

async fn insert_chunks(
    tx: &tokio_postgres::Transaction<'_>,
    document_id: Uuid,
    folder_id: Uuid,
    title: &str,
    format: &str,
    content: &str,
) -> Result<(), tokio_postgres::Error> {
    let insert = tx
        .prepare(
            "INSERT INTO chunks (document_id, folder_id, ordinal, heading, content, tokens, search) \
             SELECT $1, $2, $3, $4, $5, $6, \
                    setweight(to_tsvector(f.language::regconfig, $7 || ' ' || $4), 'A') || \
                    setweight(to_tsvector(f.language::regconfig, $5), 'B') \
             FROM folders f WHERE f.id = $2",
        )
        .await?;
    for (ordinal, chunk) in chunk::split(content, format == "markdown")
        .iter()
        .enumerate()
    {
        let tokens = confab_shared::tokens::estimate_tokens(&chunk.content) as i32;
        tx.execute(
            &insert,
            &[
                &document_id,
                &folder_id,
                &(ordinal as i32),
                &chunk.heading,
                &chunk.content,
                &tokens,
                &title,
            ],
        )
        .await?;
    }
    Ok(())
}

pub async fn list(
    client: &impl GenericClient,
    tenant_id: Uuid,
    folder_id: Uuid,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Document>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {} FROM documents d WHERE d.tenant_id = $1 AND d.folder_id = $2 \
                   AND ($3::uuid IS NULL OR d.id < $3) ORDER BY d.id DESC LIMIT $4",
                columns()
            ),
            &[&tenant_id, &folder_id, &cursor, &limit],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

pub async fn by_id(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<Document>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {} FROM documents d WHERE d.tenant_id = $1 AND d.id = $2",
                columns()
            ),
            &[&tenant_id, &id],
        )
        .await?;
    Ok(row.map(|row| from_row(&row)))
}

pub async fn delete(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let n = client
        .execute(
            "DELETE FROM documents WHERE tenant_id = $1 AND id = $2",
            &[&tenant_id, &id],
        )
        .await?;
    Ok(n > 0)
}
