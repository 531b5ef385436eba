//! An identity's memory (seed 000): preferences, data and associations (key-value objects) and a
//! stage. Written by the management API (`/v1/identities/{id}/memory`) and by an assistant's
//! memory tool (the worker), both through this module, so a write has the same rules wherever
//! it comes from: [`MemoryUpdate::parse`] checks it and [`write_memory`] applies it.

use serde::Serialize;
use serde_json::{Map, Value};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::text::{MAX_NESTING, depth, json_contains_nul};

/// What the assistant knows about an identity; included in the context of its every turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Memory {
    pub preferences: Value,
    pub data: Value,
    pub stage: Option<String>,
    pub associations: Value,
}

/// The columns [`Memory::from_row`] reads, in its order.
pub const MEMORY_COLUMNS: &str = "preferences, data, stage, associations";

impl Memory {
    /// Fallible: every section is JSON a client wrote.
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Memory, tokio_postgres::Error> {
        Ok(Memory {
            preferences: row.try_get(0)?,
            data: row.try_get(1)?,
            stage: row.try_get(2)?,
            associations: row.try_get(3)?,
        })
    }
}

/// A write to memory; `None` leaves a part as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryUpdate {
    pub preferences: Option<Value>,
    pub data: Option<Value>,
    pub associations: Option<Value>,
    /// `Some(None)` clears the stage.
    pub stage: Option<Option<String>>,
}

/// A write [`MemoryUpdate::parse`] refuses: which field, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct MemoryError {
    pub field: String,
    pub message: String,
}

/// Longest stage, in characters.
pub const MAX_STAGE_CHARS: usize = 100;

impl MemoryUpdate {
    /// Read a write (`{preferences?, data?, associations?, stage?}`): each section an object
    /// (or null: left as it is), the stage a string of at most 100 characters or null (cleared),
    /// nothing else, nothing Postgres could not store or hand back.
    pub fn parse(body: &Map<String, Value>) -> Result<MemoryUpdate, MemoryError> {
        let refuse = |field: &str, message: String| MemoryError {
            field: field.to_owned(),
            message,
        };
        if let Some(unknown) = body
            .keys()
            .find(|k| !["preferences", "data", "associations", "stage"].contains(&k.as_str()))
        {
            return Err(refuse(
                unknown,
                "unknown field; memory has preferences, data, associations and stage".into(),
            ));
        }
        let whole = Value::Object(body.clone());
        if json_contains_nul(&whole) {
            return Err(refuse(
                "body",
                "must not contain NUL (\\u0000) characters".into(),
            ));
        }
        if depth(&whole) > MAX_NESTING {
            return Err(refuse(
                "body",
                format!("is nested deeper than {MAX_NESTING} levels"),
            ));
        }
        let section = |name: &str| match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(object @ Value::Object(_)) => Ok(Some(object.clone())),
            Some(_) => Err(refuse(name, "must be an object".into())),
        };
        let stage = match body.get("stage") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) if s.chars().count() <= MAX_STAGE_CHARS => Some(Some(s.clone())),
            Some(_) => {
                return Err(refuse(
                    "stage",
                    format!("must be a string of at most {MAX_STAGE_CHARS} characters, or null"),
                ));
            }
        };
        Ok(MemoryUpdate {
            preferences: section("preferences")?,
            data: section("data")?,
            associations: section("associations")?,
            stage,
        })
    }
}

/// Replace the whole memory (`replace`), or merge into it: objects key by key (a `null` value
/// removes a key), the stage when given (`Some(None)` clears it). `None` if the tenant has no
/// such identity.
pub async fn write_memory(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
    memory: &MemoryUpdate,
    replace: bool,
) -> Result<Option<Memory>, tokio_postgres::Error> {
    let sql = if replace {
        format!(
            "UPDATE identities SET preferences = coalesce($3::jsonb, '{{}}'), \
               data = coalesce($4::jsonb, '{{}}'), associations = coalesce($5::jsonb, '{{}}'), \
               stage = $6::text, updated_at = now() \
             WHERE tenant_id = $1 AND id = $2 RETURNING {MEMORY_COLUMNS}"
        )
    } else {
        format!(
            "UPDATE identities SET \
               preferences = jsonb_strip_nulls(preferences || coalesce($3::jsonb, '{{}}')), \
               data = jsonb_strip_nulls(data || coalesce($4::jsonb, '{{}}')), \
               associations = jsonb_strip_nulls(associations || coalesce($5::jsonb, '{{}}')), \
               stage = CASE WHEN $7::bool THEN $6::text ELSE stage END, updated_at = now() \
             WHERE tenant_id = $1 AND id = $2 RETURNING {MEMORY_COLUMNS}"
        )
    };
    let stage_given = memory.stage.is_some();
    let stage = memory.stage.clone().flatten();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
        &tenant_id,
        &id,
        &memory.preferences,
        &memory.data,
        &memory.associations,
        &stage,
        &stage_given,
    ];
    let row = if replace {
        client.query_opt(&sql, &params[..6]).await?
    } else {
        client.query_opt(&sql, &params).await?
    };
    row.map(|row| Memory::from_row(&row)).transpose()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<MemoryUpdate, MemoryError> {
        MemoryUpdate::parse(body.as_object().unwrap())
    }

    #[test]
    fn a_write_is_read_section_by_section() {
        let update = parse(json!({"preferences": {"colour": "teal"}, "stage": null})).unwrap();
        assert_eq!(update.preferences, Some(json!({"colour": "teal"})));
        assert_eq!(update.data, None);
        assert_eq!(update.stage, Some(None));
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!([deep]);
        }
        for (body, field) in [
            (json!({"data": [1]}), "data"),
            (json!({"stage": "x".repeat(101)}), "stage"),
            (json!({"mood": "happy"}), "mood"),
            (json!({"data": {"a": "\u{0}"}}), "body"),
            (json!({"data": {"deep": deep}}), "body"),
        ] {
            assert_eq!(parse(body.clone()).unwrap_err().field, field, "{body}");
        }
    }
}
