//! Reading an ask request's body: every field is checked and every problem reported at once, as
//! `{field, message}` issues whose field names are the body's own (`message.content`,
//! `foldersId[1]`, `previewAssistantData.model`). `null` counts as absent for optional fields.
//!
//! Whether the folders exist and whether the assistant is deployed needs the database; the
//! handler checks those (see `Parsed::folders` and [`AssistantChoice`]).

mod preview;

use confab_contract::{Message, PreviewAssistant, Role, now_ms};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::time::parse_rfc3339;
use crate::store::conversations;

/// Longest conversation or message id a client may choose (they are stored and indexed).
const MAX_ID_CHARS: usize = 200;

/// Most folders one request may name.
const MAX_FOLDERS: usize = 100;

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Issue {
    pub field: String,
    pub message: String,
}

/// Which assistant answers.
#[derive(Debug, Clone, PartialEq)]
pub enum AssistantChoice {
    /// `assistantId` as sent: it must name a deployed assistant of the caller's tenant.
    Stored(String),
    /// `previewAssistantData` is present: an unsaved assistant answers.
    Preview(PreviewAssistant),
}

/// A request whose every field is valid.
#[derive(Debug, Clone, PartialEq)]
pub struct AskRequest {
    /// With an id minted when the client sent none, and `createdAt` (or now) in ms.
    pub message: Message,
    pub conversation_id: String,
    /// `assistantId` as sent, for error bodies.
    pub assistant_id: String,
    pub assistant: AssistantChoice,
    /// Top-level keys lowercased.
    pub metadata: Map<String, Value>,
    pub folder_ids: Vec<Uuid>,
}

/// What a body holds: the request if every field was valid, and the issues otherwise.
#[derive(Debug)]
pub struct Parsed {
    request: Option<AskRequest>,
    issues: Vec<Issue>,
    /// The well-formed folder ids with their position in `foldersId`, so the handler can check
    /// them against the database even when other fields are invalid.
    pub folders: Vec<(usize, Uuid)>,
}

impl Parsed {
    /// The request, or every issue: those found in the body and the positions of `foldersId`
    /// that name no folder of the caller.
    pub fn finish(mut self, unknown_folders: &[usize]) -> Result<AskRequest, Vec<Issue>> {
        for index in unknown_folders {
            self.issues.push(issue(
                format!("foldersId[{index}]"),
                "The folder does not exist",
            ));
        }
        // Stable: issues of one field keep the order they were found in.
        self.issues.sort_by_key(|issue| field_rank(&issue.field));
        match self.request {
            Some(request) if self.issues.is_empty() => Ok(request),
            _ => Err(self.issues),
        }
    }
}

/// The body's fields in the order issues are listed.
const FIELD_ORDER: [&str; 7] = [
    "body",
    "message",
    "id",
    "assistantId",
    "metadata",
    "foldersId",
    "previewAssistantData",
];

/// Where an issue on `field` (`message.role`, `foldersId[3]`) is listed: by top-level field, then
/// by position in an array.
fn field_rank(field: &str) -> (usize, usize) {
    let (top, rest) = field
        .find(['.', '['])
        .map_or((field, ""), |at| field.split_at(at));
    let top_rank = FIELD_ORDER
        .iter()
        .position(|name| *name == top)
        .unwrap_or(FIELD_ORDER.len());
    let index = rest
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(index, _)| index.parse().ok())
        .unwrap_or(0);
    (top_rank, index)
}

fn issue(field: impl Into<String>, message: impl Into<String>) -> Issue {
    Issue {
        field: field.into(),
        message: message.into(),
    }
}

/// A present, non-null field.
fn given<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields.get(name).filter(|value| !value.is_null())
}

/// The issue of a body that is not a JSON object at all.
pub fn not_an_object() -> Issue {
    issue("body", "The request body must be a JSON object")
}

/// Read a body already parsed as JSON.
pub fn parse(body: &Value) -> Parsed {
    let mut issues = Vec::new();
    let Value::Object(fields) = body else {
        return Parsed {
            request: None,
            issues: vec![not_an_object()],
            folders: Vec::new(),
        };
    };
    let message = message(given(fields, "message"), &mut issues);
    let conversation_id = conversation_id(given(fields, "id"), &mut issues);
    let assistant_id = assistant_id(given(fields, "assistantId"), &mut issues);
    let metadata = metadata(given(fields, "metadata"), &mut issues);
    let folders = folders(given(fields, "foldersId"), &mut issues);
    let preview = given(fields, "previewAssistantData")
        .map(|data| preview::preview(data, &mut issues))
        .map_or(Some(None), |preview| preview.map(Some));
    let request = (|| {
        let assistant_id = assistant_id?;
        let assistant = match preview? {
            Some(preview) => AssistantChoice::Preview(preview),
            None => AssistantChoice::Stored(assistant_id.clone()),
        };
        let mut folder_ids: Vec<Uuid> = Vec::with_capacity(folders.len());
        for (_, id) in &folders {
            if !folder_ids.contains(id) {
                folder_ids.push(*id);
            }
        }
        Some(AskRequest {
            message: message?,
            conversation_id: conversation_id?,
            assistant_id,
            assistant,
            metadata: metadata?,
            folder_ids,
        })
    })();
    Parsed {
        request,
        issues,
        folders,
    }
}

/// A client-chosen id: a non-blank string of at most [`MAX_ID_CHARS`] characters.
fn client_id(value: &Value) -> Option<String> {
    value
        .as_str()
        .filter(|id| !id.trim().is_empty() && id.chars().count() <= MAX_ID_CHARS)
        .map(str::to_owned)
}

fn message(value: Option<&Value>, issues: &mut Vec<Issue>) -> Option<Message> {
    let fields = match value {
        None => {
            issues.push(issue("message", "The message is required!"));
            return None;
        }
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            issues.push(issue("message", "The message must be an object"));
            return None;
        }
    };
    let id = match given(fields, "id") {
        None => Some(conversations::new_message_id()),
        Some(value) => client_id(value),
    };
    if id.is_none() {
        issues.push(issue(
            "message.id",
            "The message id must be a non-empty string of at most 200 characters",
        ));
    }
    let role = match given(fields, "role") {
        None => {
            issues.push(issue("message.role", "The message role is required!"));
            None
        }
        Some(value) => {
            let role = value.as_str().and_then(Role::parse);
            if role.is_none() {
                issues.push(issue(
                    "message.role",
                    "The message role must be one of \"user\", \"assistant\", \"system\"",
                ));
            }
            role
        }
    };
    let content = match given(fields, "content") {
        None => {
            issues.push(issue("message.content", "The message content is required!"));
            None
        }
        Some(Value::String(text)) if text.trim().is_empty() => {
            issues.push(issue(
                "message.content",
                "The message content must not be empty",
            ));
            None
        }
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            issues.push(issue(
                "message.content",
                "The message content must be a string",
            ));
            None
        }
    };
    let created_ms = match given(fields, "createdAt") {
        None => Some(now_ms()),
        Some(value) => {
            let created = value.as_str().and_then(parse_rfc3339);
            if created.is_none() {
                issues.push(issue(
                    "message.createdAt",
                    "The message createdAt must be an RFC 3339 date-time, e.g. 2024-01-20T15:30:00Z",
                ));
            }
            created
        }
    };
    Some(Message::text(id?, role?, content?, created_ms?))
}

fn conversation_id(value: Option<&Value>, issues: &mut Vec<Issue>) -> Option<String> {
    let Some(value) = value else {
        issues.push(issue("id", "The conversation id is required!"));
        return None;
    };
    let id = client_id(value);
    if id.is_none() {
        issues.push(issue(
            "id",
            "The conversation id must be a non-empty string of at most 200 characters",
        ));
    }
    id
}

fn assistant_id(value: Option<&Value>, issues: &mut Vec<Issue>) -> Option<String> {
    match value {
        Some(Value::String(id)) if !id.trim().is_empty() => Some(id.clone()),
        None | Some(Value::String(_)) => {
            issues.push(issue("assistantId", "The assistant id is required!"));
            None
        }
        Some(_) => {
            issues.push(issue("assistantId", "The assistant id must be a string"));
            None
        }
    }
}

/// The metadata with its top-level keys lowercased (nested objects are the caller's own data and
/// are kept as sent). Two keys that differ only in case would silently lose one value, so that is
/// an issue rather than a guess.
fn metadata(value: Option<&Value>, issues: &mut Vec<Issue>) -> Option<Map<String, Value>> {
    let fields = match value {
        None => return Some(Map::new()),
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            issues.push(issue("metadata", "The metadata must be an object"));
            return None;
        }
    };
    let mut lowered = Map::new();
    let mut clean = true;
    for (key, value) in fields {
        let key = key.to_lowercase();
        if lowered.contains_key(&key) {
            issues.push(issue(
                format!("metadata.{key}"),
                "Metadata keys must differ by more than letter case",
            ));
            clean = false;
        }
        lowered.insert(key, value.clone());
    }
    clean.then_some(lowered)
}

/// The well-formed folder ids with their positions; issues for the rest.
fn folders(value: Option<&Value>, issues: &mut Vec<Issue>) -> Vec<(usize, Uuid)> {
    let items = match value {
        None => return Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_FOLDERS => items,
        Some(Value::Array(_)) => {
            issues.push(issue(
                "foldersId",
                format!("At most {MAX_FOLDERS} folders may be searched at once"),
            ));
            return Vec::new();
        }
        Some(_) => {
            issues.push(issue(
                "foldersId",
                "foldersId must be an array of folder ids",
            ));
            return Vec::new();
        }
    };
    let mut folders = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item.as_str().map(Uuid::parse_str) {
            Some(Ok(id)) => folders.push((index, id)),
            _ => issues.push(issue(
                format!("foldersId[{index}]"),
                "The folder id must be a UUID",
            )),
        }
    }
    folders
}

#[cfg(test)]
mod tests;
