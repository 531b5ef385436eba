//! A validator for the JSON-Schema subset confab's OpenAPI document uses: `type` (one or an array,
//! for nullable values), `properties`, `required`, `additionalProperties: false`, `items`, `enum`,
//! `oneOf`, `$ref` into the document, `format` (`uuid`, `date-time`) and `description`. A schema
//! using any other keyword is an error, so the document cannot silently say more than is checked.

use serde_json::{Map, Value};

const KEYWORDS: &[&str] = &[
    "$ref",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "oneOf",
    "format",
    "description",
];

/// Check `value` against `schema`; the error names the JSON path of the first mismatch.
pub fn validate(doc: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    check(doc, schema, value, "$")
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(value: &Value, kind: &str) -> bool {
    let actual = type_name(value);
    actual == kind || (kind == "number" && actual == "integer")
}

/// `2024-01-20T15:30:05.000Z` or with a numeric offset; any fraction of a second.
fn is_date_time(text: &str) -> bool {
    let shape: String = text
        .chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect();
    let Some(rest) = shape.strip_prefix("dddd-dd-ddTdd:dd:dd") else {
        return false;
    };
    let rest = match rest.strip_prefix('.') {
        Some(fraction) => fraction.trim_start_matches('d'),
        None => rest,
    };
    rest == "Z" || rest == "+dd:dd" || rest == "-dd:dd"
}

fn resolve<'a>(doc: &'a Value, target: &str, at: &str) -> Result<&'a Value, String> {
    target
        .strip_prefix('#')
        .and_then(|pointer| doc.pointer(pointer))
        .ok_or_else(|| format!("{at}: $ref {target} does not resolve"))
}

fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let Value::Object(schema) = schema else {
        return Err(format!("{at}: the schema is not an object: {schema}"));
    };
    if let Some(unknown) = schema.keys().find(|k| !KEYWORDS.contains(&k.as_str())) {
        return Err(format!("{at}: unsupported schema keyword {unknown:?}"));
    }
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        check(doc, resolve(doc, target, at)?, value, at)?;
    }
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(kind) => vec![kind.as_str()],
            Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{at}: bad type {types}")),
        };
        if !allowed.iter().any(|kind| has_type(value, kind)) {
            return Err(format!(
                "{at}: expected {}, got {} {value}",
                allowed.join(" or "),
                type_name(value)
            ));
        }
    }
    if let Some(Value::Array(values)) = schema.get("enum")
        && !values.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {values:?}"));
    }
    if let (Some(format), Value::String(text)) = (schema.get("format"), value) {
        let ok = match format.as_str() {
            Some("uuid") => uuid::Uuid::parse_str(text).is_ok(),
            Some("date-time") => is_date_time(text),
            _ => return Err(format!("{at}: unsupported format {format}")),
        };
        if !ok {
            return Err(format!("{at}: {text:?} is not a {format}"));
        }
    }
    if let Value::Object(fields) = value {
        check_object(doc, schema, fields, at)?;
    }
    if let (Some(items), Value::Array(values)) = (schema.get("items"), value) {
        for (index, item) in values.iter().enumerate() {
            check(doc, items, item, &format!("{at}[{index}]"))?;
        }
    }
    if let Some(Value::Array(branches)) = schema.get("oneOf") {
        let outcomes: Vec<Result<(), String>> = branches
            .iter()
            .map(|branch| check(doc, branch, value, at))
            .collect();
        let passed = outcomes.iter().filter(|o| o.is_ok()).count();
        if passed != 1 {
            let reasons: Vec<String> = outcomes.into_iter().filter_map(Result::err).collect();
            return Err(format!(
                "{at}: matches {passed} of the oneOf branches, not one ({})",
                reasons.join("; ")
            ));
        }
    }
    Ok(())
}

fn check_object(
    doc: &Value,
    schema: &Map<String, Value>,
    fields: &Map<String, Value>,
    at: &str,
) -> Result<(), String> {
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !fields.contains_key(name) {
            return Err(format!("{at}: required field {name:?} is missing"));
        }
    }
    for (name, field) in fields {
        match properties.get(name) {
            Some(property) => check(doc, property, field, &format!("{at}.{name}"))?,
            None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                return Err(format!("{at}.{name}: not in the schema"));
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::validate;

    #[test]
    fn mismatches_are_reported_with_their_json_path() {
        let doc = json!({"components": {"schemas": {
            "Item": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}},
                     "required": ["id"], "additionalProperties": false},
        }}});
        let schema = json!({"type": "object", "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
            "next": {"type": ["string", "null"]},
            "kind": {"type": "string", "enum": ["a"]},
            "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        }, "required": ["items"]});
        let good = json!({"items": [{"id": "0190f0f0-0000-7000-8000-000000000000"}], "next": null,
                          "kind": "a", "either": 5, "other": true});
        assert_eq!(validate(&doc, &schema, &good), Ok(()));
        let cases = [
            (json!({}), "$: required field \"items\" is missing"),
            (
                json!({"items": [{}]}),
                "$.items[0]: required field \"id\" is missing",
            ),
            (
                json!({"items": [{"id": "x"}]}),
                "$.items[0].id: \"x\" is not a \"uuid\"",
            ),
            (
                json!({"items": [{"id": "0190f0f0-0000-7000-8000-000000000000", "x": 1}]}),
                "$.items[0].x: not in the schema",
            ),
            (
                json!({"items": [], "next": 5}),
                "$.next: expected string or null",
            ),
            (
                json!({"items": [], "kind": "b"}),
                "$.kind: \"b\" is not one of",
            ),
            (
                json!({"items": [], "either": true}),
                "$.either: matches 0 of",
            ),
        ];
        for (value, expected) in cases {
            let error = validate(&doc, &schema, &value).unwrap_err();
            assert!(error.starts_with(expected), "{value}: {error}");
        }
        let unsupported = json!({"allOf": []});
        assert!(validate(&doc, &unsupported, &json!(1)).is_err());
    }

    #[test]
    fn date_times_are_rfc_3339() {
        for good in [
            "2024-01-20T15:30:05.000Z",
            "2024-01-20T15:30:05Z",
            "2024-01-20T15:30:05+02:00",
        ] {
            assert!(super::is_date_time(good), "{good}");
        }
        for bad in ["2024-01-20", "20 Jan 2024", "2024-01-20T15:30:05"] {
            assert!(!super::is_date_time(bad), "{bad}");
        }
    }
}
