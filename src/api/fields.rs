//! Reading fields out of a JSON object body with the management API's errors: each problem names
//! its field. Handlers take what they know with these and then refuse whatever is left over.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::ApiError;

pub type Fields = Map<String, Value>;

pub fn optional_string(fields: &mut Fields, field: &str) -> Result<Option<String>, ApiError> {
    match fields.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be a string"),
        )),
    }
}

/// A string that, when given, is not blank and at most `max` characters; trimmed.
pub fn optional_text(
    fields: &mut Fields,
    field: &str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match optional_string(fields, field)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Err(ApiError::invalid(
            field,
            format!("{field} must not be empty"),
        )),
        Some(s) if s.chars().count() > max => Err(ApiError::invalid(
            field,
            format!("{field} must be at most {max} characters"),
        )),
        Some(s) => Ok(Some(s.trim().to_owned())),
    }
}

pub fn required_text(fields: &mut Fields, field: &str, max: usize) -> Result<String, ApiError> {
    optional_text(fields, field, max)?
        .ok_or_else(|| ApiError::invalid(field, format!("{field} is required")))
}

pub fn optional_bool(fields: &mut Fields, field: &str) -> Result<Option<bool>, ApiError> {
    match fields.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be a boolean"),
        )),
    }
}

pub fn optional_object(fields: &mut Fields, field: &str) -> Result<Option<Fields>, ApiError> {
    match fields.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be an object"),
        )),
    }
}

pub fn optional_uuid(fields: &mut Fields, field: &str) -> Result<Option<Uuid>, ApiError> {
    match optional_string(fields, field)? {
        None => Ok(None),
        Some(s) => Uuid::parse_str(&s)
            .map(Some)
            .map_err(|_| ApiError::invalid(field, format!("{field} must be a UUID"))),
    }
}

pub fn optional_uuids(fields: &mut Fields, field: &str) -> Result<Option<Vec<Uuid>>, ApiError> {
    let invalid = || ApiError::invalid(field, format!("{field} must be an array of UUIDs"));
    match fields.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().and_then(|s| Uuid::parse_str(s).ok()))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(invalid),
        Some(_) => Err(invalid()),
    }
}

pub fn optional_positive_int(fields: &mut Fields, field: &str) -> Result<Option<i32>, ApiError> {
    match fields.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|n| (1..=i64::from(i32::MAX)).contains(n))
            .map(|n| Some(n as i32))
            .ok_or_else(|| {
                ApiError::invalid(field, format!("{field} must be a positive whole number"))
            }),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be a positive whole number"),
        )),
    }
}

/// Refuse fields the handler did not take.
pub fn no_unknown(fields: &Fields) -> Result<(), ApiError> {
    match fields.keys().next() {
        Some(unknown) => Err(ApiError::invalid(
            unknown,
            format!("unknown field {unknown:?}"),
        )),
        None => Ok(()),
    }
}

/// A path id: a UUID, or the resource does not exist (ids are never distinguishable by shape).
pub fn path_uuid(id: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found(what))
}
