//! Management request bodies as typed structs: each resource derives `Deserialize` for its body
//! (with `deny_unknown_fields`) and reads it with [`read`], through `serde_path_to_error`, so a
//! problem names its field in `details.field`. The checks the API words itself (a string that is
//! not blank and at most so many characters, a positive whole number, a UUID) are the
//! `deserialize_with` functions here; each reads an `Option`, where `null` is the same as
//! leaving the field out, and says what is wrong in the words "`<field>` must be ...".

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{ApiError, object_body};

/// The body as `T`, or the API's error naming the field at fault.
pub fn read<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    typed(object_body(body)?)
}

/// A body already read as a JSON object (a handler that answers 404 for a missing resource
/// before it looks at the fields) as `T`.
pub fn typed<T: DeserializeOwned>(fields: Map<String, Value>) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(Value::Object(fields)).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { "body" } else { &path };
        let problem = error.into_inner().to_string();
        // serde's own refusal of an unknown field already names it, and lists the known ones;
        // the checks below say only what the field must be.
        let message = if problem.starts_with("unknown field") {
            problem
        } else {
            format!("{field} {problem}")
        };
        ApiError::invalid(field, message)
    })
}

/// A field the handler cannot do without.
pub fn required<T>(value: Option<T>, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::invalid(field, format!("{field} is required")))
}

fn given<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Ok(Some(Value::deserialize(d)?).filter(|value| !value.is_null()))
}

pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match given(d)? {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(D::Error::custom("must be a string")),
    }
}

/// A string that, when given, is not blank and at most `MAX` characters; trimmed.
pub fn text<'de, const MAX: usize, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match string(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Err(D::Error::custom("must not be empty")),
        Some(s) if s.chars().count() > MAX => Err(D::Error::custom(format!(
            "must be at most {MAX} characters"
        ))),
        Some(s) => Ok(Some(s.trim().to_owned())),
    }
}

pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match given(d)? {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(D::Error::custom("must be a boolean")),
    }
}

pub fn object<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Map<String, Value>>, D::Error> {
    match given(d)? {
        None => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(_) => Err(D::Error::custom("must be an object")),
    }
}

pub fn uuid<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
    let invalid = || D::Error::custom("must be a UUID");
    match given(d)? {
        None => Ok(None),
        Some(Value::String(s)) => Uuid::parse_str(&s).map(Some).map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

pub fn uuids<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Uuid>>, D::Error> {
    let invalid = || D::Error::custom("must be an array of UUIDs");
    match given(d)? {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().and_then(|s| Uuid::parse_str(s).ok()))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(invalid),
        Some(_) => Err(invalid()),
    }
}

pub fn positive_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    match given(d)? {
        None => Ok(None),
        Some(value) => value
            .as_i64()
            .filter(|n| (1..=i64::from(i32::MAX)).contains(n))
            .map(|n| Some(n as i32))
            .ok_or_else(|| D::Error::custom("must be a positive whole number")),
    }
}

/// A positive whole number that may be `null` on purpose: `Some(None)` is a given `null`, told
/// apart from a field left out (`None`, with `#[serde(default)]`).
pub fn nullable_positive_int<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<i32>>, D::Error> {
    positive_int(d).map(Some)
}

/// A path id: a UUID, or the resource does not exist (ids are never distinguishable by shape).
pub fn path_uuid(id: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(what))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default, deserialize_with = "text::<5, _>")]
        name: Option<String>,
        #[serde(default, deserialize_with = "uuids")]
        ids: Option<Vec<Uuid>>,
        #[serde(default, deserialize_with = "nullable_positive_int")]
        limit: Option<Option<i32>>,
        #[serde(default, deserialize_with = "boolean")]
        on: Option<bool>,
    }

    fn parse(body: Value) -> Result<Body, ApiError> {
        read(Ok(Bytes::from(body.to_string())))
    }

    fn refusal(body: Value) -> (String, String) {
        let error = parse(body).expect_err("refused");
        assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(error.code, "invalid_request");
        (
            error.details["field"].as_str().expect("a field").to_owned(),
            error.message,
        )
    }

    #[test]
    fn each_problem_names_its_field_in_the_apis_words() {
        let cases = [
            (json!({"name": 5}), "name", "name must be a string"),
            (json!({"name": "  "}), "name", "name must not be empty"),
            (
                json!({"name": "toolong"}),
                "name",
                "name must be at most 5 characters",
            ),
            (
                json!({"ids": ["x"]}),
                "ids",
                "ids must be an array of UUIDs",
            ),
            (
                json!({"limit": 0}),
                "limit",
                "limit must be a positive whole number",
            ),
            (
                json!({"limit": 1.5}),
                "limit",
                "limit must be a positive whole number",
            ),
            (json!({"on": "yes"}), "on", "on must be a boolean"),
        ];
        for (body, field, message) in cases {
            assert_eq!(
                refusal(body.clone()),
                (field.to_owned(), message.to_owned()),
                "{body}"
            );
        }
        let (field, message) = refusal(json!({"name": "a", "colour": "red"}));
        assert_eq!(field, "colour");
        assert!(message.starts_with("unknown field `colour`"), "{message}");
        let (field, _) = refusal(json!([1]));
        assert_eq!(field, "body");
    }

    #[test]
    fn null_is_a_field_left_out_unless_it_can_be_given_on_purpose() {
        let body = parse(json!({"name": " Ana ", "ids": null, "on": null})).expect("valid");
        assert_eq!(body.name.as_deref(), Some("Ana"));
        assert!(body.ids.is_none() && body.on.is_none() && body.limit.is_none());
        assert_eq!(
            parse(json!({"limit": null})).expect("valid").limit,
            Some(None)
        );
        assert_eq!(
            parse(json!({"limit": 7})).expect("valid").limit,
            Some(Some(7))
        );
    }
}
