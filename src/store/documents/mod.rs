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

/// What one document and one folder may hold, so that one upload's work stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnowledgeLimits {
    /// Passages one document may split into (each is a row and an index entry).
    pub max_passages: usize,
    /// Bytes of content all documents of one folder may hold together.
    pub max_folder_bytes: u64,
}

impl KnowledgeLimits {
    /// 2,000 passages hold about 1.6 MB of prose at 800 bytes a passage, more than the default
    /// 1 MiB body, so only documents cut into many tiny passages (a heading per line) meet it.
    pub const DEFAULT: Self = Self {
        max_passages: 2_000,
        max_folder_bytes: 64 * 1024 * 1024,
    };
}

/// Why a document was not stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "content splits into {passages} passages; a document may have at most {limit} \
         (CONFAB_MAX_PASSAGES_PER_DOCUMENT)"
    )]
    TooManyPassages { passages: usize, limit: usize },
    #[error(
        "the folder would hold {would_hold} bytes of content; a folder may hold at most {limit} \
         (CONFAB_MAX_FOLDER_BYTES)"
    )]
    FolderFull { would_hold: u64, limit: u64 },
    #[error("folder not found")]
    FolderNotFound,
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// A document ready to store: split into its passages and checked against the passage limit,
/// before any database work.
#[derive(Debug)]
pub struct Draft<'a> {
    title: &'a str,
    format: &'a str,
    content: &'a str,
    hash: Vec<u8>,
    passages: Vec<chunk::Chunk>,
}

impl<'a> Draft<'a> {
    pub fn new(
        title: &'a str,
        format: &'a str,
        content: &'a str,
        limits: &KnowledgeLimits,
    ) -> Result<Self, StoreError> {
        let passages = chunk::split(content, format == "markdown");
        if passages.len() > limits.max_passages {
            return Err(StoreError::TooManyPassages {
                passages: passages.len(),
                limit: limits.max_passages,
            });
        }
        Ok(Self {
            title,
            format,
            content,
            hash: content_hash(format, title, content),
            passages,
        })
    }
}

/// Store a document in a folder of the tenant (identified by title within it) with its
/// passages, replacing a changed one; an unchanged one is left alone. Call inside a
/// transaction: the folder's row stays locked until it ends, so uploads to one folder take
/// turns and the folder's byte budget is checked against what is committed, never raced past.
pub async fn store(
    tx: &tokio_postgres::Transaction<'_>,
    tenant_id: Uuid,
    folder_id: Uuid,
    draft: &Draft<'_>,
    limits: &KnowledgeLimits,
) -> Result<(Document, Stored), StoreError> {
    lock_folder(tx, tenant_id, folder_id).await?;
    let existing = tx
        .query_opt(
            "SELECT id, content_hash FROM documents WHERE folder_id = $1 AND title = $2 FOR UPDATE",
            &[&folder_id, &draft.title],
        )
        .await?;
    let (id, stored) = match existing {
        Some(row) if row.get::<_, Vec<u8>>(1) == draft.hash => (row.get(0), Stored::Unchanged),
        Some(row) => {
            let id: Uuid = row.get(0);
            check_budget(tx, folder_id, Some(id), draft, limits).await?;
            replace(tx, id, draft).await?;
            (id, Stored::Updated)
        }
        None => {
            check_budget(tx, folder_id, None, draft, limits).await?;
            (
                insert(tx, tenant_id, folder_id, draft).await?,
                Stored::Created,
            )
        }
    };
    if stored != Stored::Unchanged {
        insert_passages(tx, id, folder_id, draft).await?;
    }
    let row = tx
        .query_one(
            &format!("SELECT {} FROM documents d WHERE d.id = $1", columns()),
            &[&id],
        )
        .await?;
    Ok((from_row(&row), stored))
}

/// Lock the tenant's folder for the transaction (`NO KEY UPDATE`: readers and the foreign keys
/// of other rows are not held up, another upload to the folder is).
async fn lock_folder(
    tx: &tokio_postgres::Transaction<'_>,
    tenant_id: Uuid,
    folder_id: Uuid,
) -> Result<(), StoreError> {
    tx.query_opt(
        "SELECT 1 FROM folders WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE",
        &[&tenant_id, &folder_id],
    )
    .await?
    .map(|_| ())
    .ok_or(StoreError::FolderNotFound)
}

/// Refuse the draft if the folder's other documents and it together exceed the byte budget.
/// `octet_length` of a stored text reads its size without decompressing it.
async fn check_budget(
    tx: &tokio_postgres::Transaction<'_>,
    folder_id: Uuid,
    replacing: Option<Uuid>,
    draft: &Draft<'_>,
    limits: &KnowledgeLimits,
) -> Result<(), StoreError> {
    let others: i64 = tx
        .query_one(
            "SELECT coalesce(sum(octet_length(content)), 0)::bigint FROM documents \
             WHERE folder_id = $1 AND id IS DISTINCT FROM $2",
            &[&folder_id, &replacing],
        )
        .await?
        .get(0);
    let would_hold = u64::try_from(others).unwrap_or(0) + draft.content.len() as u64;
    if would_hold > limits.max_folder_bytes {
        return Err(StoreError::FolderFull {
            would_hold,
            limit: limits.max_folder_bytes,
        });
    }
    Ok(())
}

async fn replace(
    tx: &tokio_postgres::Transaction<'_>,
    id: Uuid,
    draft: &Draft<'_>,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "UPDATE documents SET format = $2, content = $3, content_hash = $4, \
           updated_at = now() WHERE id = $1",
        &[&id, &draft.format, &draft.content, &draft.hash],
    )
    .await?;
    tx.execute("DELETE FROM chunks WHERE document_id = $1", &[&id])
        .await?;
    Ok(())
}

async fn insert(
    tx: &tokio_postgres::Transaction<'_>,
    tenant_id: Uuid,
    folder_id: Uuid,
    draft: &Draft<'_>,
) -> Result<Uuid, tokio_postgres::Error> {
    let id = Uuid::now_v7();
    tx.execute(
        "INSERT INTO documents (id, tenant_id, folder_id, title, format, content, content_hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &id,
            &tenant_id,
            &folder_id,
            &draft.title,
            &draft.format,
            &draft.content,
            &draft.hash,
        ],
    )
    .await?;
    Ok(id)
}

/// Every passage in one statement (one round trip however many there are), indexed in the
/// folder's language.
async fn insert_passages(
    tx: &tokio_postgres::Transaction<'_>,
    document_id: Uuid,
    folder_id: Uuid,
    draft: &Draft<'_>,
) -> Result<(), tokio_postgres::Error> {
    let passages = &draft.passages;
    let ordinals: Vec<i32> = (0..passages.len()).map(|i| i as i32).collect();
    let headings: Vec<&str> = passages.iter().map(|p| p.heading.as_str()).collect();
    let contents: Vec<&str> = passages.iter().map(|p| p.content.as_str()).collect();
    let tokens: Vec<i32> = passages
        .iter()
        .map(|p| confab_shared::tokens::estimate_tokens(&p.content) as i32)
        .collect();
    tx.execute(
        "INSERT INTO chunks (document_id, folder_id, ordinal, heading, content, tokens, search) \
         SELECT $1, $2, p.ordinal, p.heading, p.content, p.tokens, \
                setweight(to_tsvector(f.language::regconfig, $3::text || ' ' || p.heading), 'A') || \
                setweight(to_tsvector(f.language::regconfig, p.content), 'B') \
         FROM unnest($4::int[], $5::text[], $6::text[], $7::int[]) \
                AS p (ordinal, heading, content, tokens) \
         CROSS JOIN folders f WHERE f.id = $2",
        &[
            &document_id,
            &folder_id,
            &draft.title,
            &ordinals,
            &headings,
            &contents,
            &tokens,
        ],
    )
    .await?;
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
