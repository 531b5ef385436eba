//! Text from outside, made storable in one place. Postgres `text` and `jsonb` cannot hold NUL
//! (U+0000): a NUL that gets in fails every later write of the turn, in the worker, long after the
//! caller was told the message was taken. The chat dialects refuse such input with a 400
//! ([`json_contains_nul`]); channel webhooks cannot be refused (the platform would retry the same
//! signed payload forever), so their payloads lose their NULs instead ([`strip_nul_from_json`]).

use serde_json::Value;

/// Whether any string (or object key) in `value` holds a NUL.
pub fn json_contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_contains_nul),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, value)| key.contains('\0') || json_contains_nul(value)),
        _ => false,
    }
}

/// How deep a body's arrays and objects may nest: what is stored must read back, and serde_json
/// refuses documents nested deeper than 128 when Postgres hands them back; stored JSON sits a
/// few levels below a body (memory sections, metadata), so bodies get a limit well inside that.
pub const MAX_NESTING: usize = 32;

/// Nesting depth of arrays and objects (a scalar is 0). Bounded by serde_json's own recursion
/// limit of 128, so this recursion cannot run away.
pub fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Remove every NUL from the strings and object keys of `value`.
pub fn strip_nul_from_json(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => s.retain(|c| c != '\0'),
        Value::Array(items) => items.iter_mut().for_each(strip_nul_from_json),
        Value::Object(fields) if fields.keys().any(|k| k.contains('\0')) => {
            let cleaned = std::mem::take(fields).into_iter().map(|(key, mut value)| {
                strip_nul_from_json(&mut value);
                (key.replace('\0', ""), value)
            });
            *fields = cleaned.collect();
        }
        Value::Object(fields) => fields.values_mut().for_each(strip_nul_from_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_is_found_in_nested_strings_and_keys_only() {
        assert!(json_contains_nul(&json!({"a": ["x", {"b": "y\u{0}"}]})));
        assert!(json_contains_nul(&json!({"k\u{0}": 1})));
        assert!(!json_contains_nul(
            &json!({"a": ["x", 0, null, {"b": "y"}]})
        ));
    }

    #[test]
    fn stripping_removes_every_nul_and_keeps_everything_else() {
        let mut value = json!({"id": "wa\u{0}mid", "k\u{0}ey": ["t\u{0}\u{0}ext", 7], "n": null});
        strip_nul_from_json(&mut value);
        assert_eq!(value, json!({"id": "wamid", "key": ["text", 7], "n": null}));
        assert!(!json_contains_nul(&value));
    }
}
