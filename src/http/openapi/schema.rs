//! Small constructors for the JSON-Schema (2020-12, as OpenAPI 3.1 uses it) the document needs.
//!
//! Only a deliberate subset is used: `type` (an array of types for nullable values), `properties`,
//! `required`, `additionalProperties: false`, `items`, `enum`, `oneOf`, `$ref`, `format` and
//! `description`. `tests/e2e/openapi.rs` validates live responses with exactly this subset, and
//! refuses schemas that use anything else, so a keyword added here must be added there too.
//!
//! [`obj`] is an object that may hold more fields than listed, [`closed`] one that may not. Request
//! bodies are closed only where the handler refuses unknown fields (the management API); response
//! bodies are closed because the code writes every field itself, so the live test catches a field
//! added without being documented.

use serde_json::{Map, Value, json};

/// `#/components/schemas/<name>`.
pub fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

pub fn string() -> Value {
    json!({"type": "string"})
}

pub fn uuid() -> Value {
    json!({"type": "string", "format": "uuid"})
}

/// RFC 3339, as every time the API writes.
pub fn date_time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

pub fn integer() -> Value {
    json!({"type": "integer"})
}

pub fn number() -> Value {
    json!({"type": "number"})
}

/// The knowledge passages an answer drew on, as the stored history keeps them.
pub fn sources() -> Value {
    described(
        array(record([
            ("document_id", uuid()),
            ("title", string()),
            ("folder_id", uuid()),
            ("score", number()),
        ])),
        "Knowledge documents the answer drew on, best first",
    )
}

pub fn boolean() -> Value {
    json!({"type": "boolean"})
}

/// The JSON `null` and nothing else.
pub fn null() -> Value {
    json!({"type": "null"})
}

/// Any JSON object: the caller's own data (metadata, profiles).
pub fn any_object() -> Value {
    json!({"type": "object"})
}

/// One of the given strings.
pub fn enum_of(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

/// Exactly `value` (`true`, `"list"`, ...), typed as what it is.
pub fn literal(value: Value) -> Value {
    let kind = match &value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    json!({"type": kind, "enum": [value]})
}

pub fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

pub fn one_of(schemas: impl IntoIterator<Item = Value>) -> Value {
    json!({"oneOf": schemas.into_iter().collect::<Vec<_>>()})
}

/// `schema`, or `null`. A typed schema gets `"null"` added to its types (and to its `enum`); a
/// `$ref` or `oneOf` becomes a `oneOf` with `{"type": "null"}`.
pub fn nullable(schema: Value) -> Value {
    let Value::Object(mut fields) = schema else {
        return schema;
    };
    let types = match fields.get("type") {
        Some(Value::String(kind)) => vec![Value::from(kind.as_str())],
        Some(Value::Array(kinds)) => kinds.clone(),
        _ => return one_of([Value::Object(fields), null()]),
    };
    let mut types = types;
    if !types.contains(&Value::from("null")) {
        types.push(Value::from("null"));
    }
    fields.insert("type".into(), Value::Array(types));
    if let Some(Value::Array(values)) = fields.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
    Value::Object(fields)
}

/// `schema` with a `description`.
pub fn described(schema: Value, description: &str) -> Value {
    let mut schema = schema;
    if let Value::Object(fields) = &mut schema {
        fields.insert("description".into(), Value::from(description));
    }
    schema
}

fn object(
    fields: impl IntoIterator<Item = (&'static str, Value)>,
    required: &[&str],
) -> Map<String, Value> {
    let properties: Map<String, Value> = fields
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect();
    let mut object = Map::new();
    object.insert("type".into(), Value::from("object"));
    object.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        object.insert("required".into(), json!(required));
    }
    object
}

/// An object with these fields, which may also hold others (they are ignored).
pub fn obj(fields: impl IntoIterator<Item = (&'static str, Value)>, required: &[&str]) -> Value {
    Value::Object(object(fields, required))
}

/// An object with these fields and no others.
pub fn closed(fields: impl IntoIterator<Item = (&'static str, Value)>, required: &[&str]) -> Value {
    let mut object = object(fields, required);
    object.insert("additionalProperties".into(), Value::Bool(false));
    Value::Object(object)
}

/// An object with exactly these fields, every one always present: the shape of most responses.
pub fn record(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    let fields: Vec<(&'static str, Value)> = fields.into_iter().collect();
    let required: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    closed(fields, &required)
}

/// A page of a management list: `{data: [item], next_cursor}`.
pub fn page(item: &str) -> Value {
    record([
        ("data", array(reference(item))),
        (
            "next_cursor",
            described(
                nullable(string()),
                "Pass back as `cursor` for the next page; null on the last page",
            ),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_adds_null_to_types_enums_and_references() {
        assert_eq!(nullable(string()), json!({"type": ["string", "null"]}));
        assert_eq!(
            nullable(enum_of(&["stop"])),
            json!({"type": ["string", "null"], "enum": ["stop", null]})
        );
        assert_eq!(
            nullable(reference("Usage")),
            json!({"oneOf": [{"$ref": "#/components/schemas/Usage"}, {"type": "null"}]})
        );
        assert_eq!(nullable(nullable(integer())), nullable(integer()));
    }

    #[test]
    fn closed_objects_refuse_other_fields_and_open_ones_do_not_say() {
        let open = obj([("a", string())], &["a"]);
        assert_eq!(open.get("additionalProperties"), None);
        assert_eq!(open["required"], json!(["a"]));
        let shut = closed([("a", string())], &[]);
        assert_eq!(shut["additionalProperties"], false);
        assert_eq!(shut.get("required"), None);
    }
}
