//! Schema migrations: the plain SQL files of `migrations/`, compiled into the binary, applied in
//! order, each in its own transaction, and recorded with a checksum. A session-level advisory
//! lock serialises migrators, so two processes starting at once apply each file exactly once.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// Every migration, in order. Add new files at the end; never edit an applied one.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_init",
        include_str!("../../migrations/0001_init.sql"),
    ),
    (
        2,
        "0002_identities_channels",
        include_str!("../../migrations/0002_identities_channels.sql"),
    ),
    (
        3,
        "0003_memory_knowledge",
        include_str!("../../migrations/0003_memory_knowledge.sql"),
    ),
    (
        4,
        "0004_turn_order",
        include_str!("../../migrations/0004_turn_order.sql"),
    ),
    (
        5,
        "0005_channel_messages",
        include_str!("../../migrations/0005_channel_messages.sql"),
    ),
    (
        6,
        "0006_turn_places",
        include_str!("../../migrations/0006_turn_places.sql"),
    ),
    (
        7,
        "0007_rate_gcra",
        include_str!("../../migrations/0007_rate_gcra.sql"),
    ),
    (
        9,
        "0008_stream_token_scope",
        include_str!("../../migrations/0008_stream_token_scope.sql"),
    ),
    (
        10,
        "0009_messages_by_request",
        include_str!("../../migrations/0009_messages_by_request.sql"),
    ),
    (
        11,
        "0010_web_visitors",
        include_str!("../../migrations/0010_web_visitors.sql"),
    ),
    (
        12,
        "0011_tools",
        include_str!("../../migrations/0011_tools.sql"),
    ),
    (
        13,
        "0012_turn_functions",
        include_str!("../../migrations/0012_turn_functions.sql"),
    ),
    (
        14,
        "0013_assistant_changes",
        include_str!("../../migrations/0013_assistant_changes.sql"),
    ),
];

/// Arbitrary constant naming confab's migration lock in `pg_advisory_lock`.
const MIGRATION_LOCK: i64 = 0x0c0f_ab00_0000_0001_i64;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(
        "migration {name} was changed after it was applied (checksum {applied} in the database, \
         {current} in this build); add a new migration instead"
    )]
    Changed {
        name: String,
        applied: String,
        current: String,
    },
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Apply every pending migration; returns the names of those applied now.
pub async fn run(client: &mut Client) -> Result<Vec<String>, MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = apply_pending(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let applied = result?;
    unlocked?;
    Ok(applied)
}

async fn apply_pending(client: &mut Client) -> Result<Vec<String>, MigrateError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version     integer PRIMARY KEY,
                name        text NOT NULL,
                checksum    text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await?;
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        let current = checksum(sql);
        let row = client
            .query_opt(
                "SELECT checksum FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .await?;
        if let Some(row) = row {
            let recorded: String = row.get(0);
            if recorded != current {
                return Err(MigrateError::Changed {
                    name: (*name).to_owned(),
                    applied: recorded,
                    current,
                });
            }
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[version, name, &current],
        )
        .await?;
        tx.commit().await?;
        applied.push((*name).to_owned());
    }
    Ok(applied)
}
