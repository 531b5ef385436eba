//! The `messages` array of a chat completion request: each message's role (OpenAI's names
//! mapped to confab's) and text content, and the rule that the last message is the user's new
//! turn. Every problem is a 400 naming its `param`, e.g. `messages[2].role`.

use confab_contract::Role;
use serde_json::{Map, Value};

use crate::dialects::openai::error::OpenAiError;

/// One message of the `messages` array, as confab stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// The earlier messages and the final user message's text.
pub(super) fn messages(value: Option<Value>) -> Result<(Vec<ChatMessage>, String), OpenAiError> {
    let list = match value {
        Some(Value::Array(list)) if !list.is_empty() => list,
        _ => {
            return Err(OpenAiError::invalid(
                "messages",
                "messages must be a non-empty array of {role, content} objects.",
            ));
        }
    };
    let mut parsed = list
        .into_iter()
        .enumerate()
        .map(|(at, message)| chat_message(message, at))
        .collect::<Result<Vec<_>, _>>()?;
    let last = parsed.len() - 1;
    match parsed.pop() {
        Some(ChatMessage {
            role: Role::User,
            content,
        }) if !content.trim().is_empty() => Ok((parsed, content)),
        Some(ChatMessage {
            role: Role::User, ..
        }) => Err(OpenAiError::invalid(
            format!("messages[{last}].content"),
            "The last message must not be empty.",
        )),
        _ => Err(OpenAiError::invalid(
            format!("messages[{last}].role"),
            "The last message must have role 'user'.",
        )),
    }
}

fn chat_message(message: Value, at: usize) -> Result<ChatMessage, OpenAiError> {
    let Value::Object(mut fields) = message else {
        return Err(OpenAiError::invalid(
            format!("messages[{at}]"),
            "Each message must be an object with role and content.",
        ));
    };
    let role = role(fields.remove("role"), at)?;
    let content = content(&mut fields, role, at)?;
    refuse_other_fields(&fields, at)?;
    Ok(ChatMessage { role, content })
}

/// A message's fields besides role and content are refused, unless they ask for nothing (null,
/// an empty `tool_calls`): nothing of a message is accepted and ignored.
fn refuse_other_fields(fields: &Map<String, Value>, at: usize) -> Result<(), OpenAiError> {
    for (name, value) in fields {
        let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
        if empty {
            continue;
        }
        let param = format!("messages[{at}].{name}");
        let why = match name.as_str() {
            "tool_calls" | "function_call" => {
                "tool and function calling is not supported by confab's chat completions yet"
            }
            "name" => "participant names are not supported; put who speaks in the content",
            "audio" => "confab answers with text only",
            _ => {
                return Err(OpenAiError::invalid(
                    param,
                    format!("Unrecognized message field: {name}"),
                ));
            }
        };
        return Err(OpenAiError::invalid(
            param.clone(),
            format!("{param}: {why}."),
        ));
    }
    Ok(())
}

fn role(value: Option<Value>, at: usize) -> Result<Role, OpenAiError> {
    let param = format!("messages[{at}].role");
    match value.as_ref().and_then(Value::as_str) {
        Some("user") => Ok(Role::User),
        Some("assistant") => Ok(Role::Assistant),
        // `developer` is OpenAI's newer name for system instructions.
        Some("system" | "developer") => Ok(Role::System),
        Some(role @ ("tool" | "function")) => Err(OpenAiError::invalid(
            param,
            format!("Messages with role '{role}' are not supported; confab does not call tools."),
        )),
        _ => Err(OpenAiError::invalid(
            param,
            "role must be one of 'system', 'developer', 'user' or 'assistant'.",
        )),
    }
}

/// A string, or text parts joined by newlines; `null` only where OpenAI allows it (assistant).
fn content(fields: &mut Map<String, Value>, role: Role, at: usize) -> Result<String, OpenAiError> {
    let param = format!("messages[{at}].content");
    match fields.remove("content") {
        Some(Value::String(text)) => Ok(text),
        None | Some(Value::Null) if role == Role::Assistant => Ok(String::new()),
        Some(Value::Array(parts)) => {
            let texts = parts
                .iter()
                .map(
                    |part| match (part["type"].as_str(), part["text"].as_str()) {
                        (Some("text"), Some(text)) => Ok(text),
                        _ => Err(OpenAiError::invalid(
                            param.clone(),
                            "Only text content parts ({\"type\": \"text\", \"text\": ...}) are \
                         supported.",
                        )),
                    },
                )
                .collect::<Result<Vec<_>, _>>()?;
            Ok(texts.join("\n"))
        }
        _ => Err(OpenAiError::invalid(
            param,
            "content must be a string or an array of text parts.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn param_of(list: Value) -> Option<String> {
        messages(Some(list)).unwrap_err().param
    }

    #[test]
    fn the_last_message_is_the_users_question() {
        let (earlier, question) = messages(Some(json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ])))
        .unwrap();
        assert_eq!(
            earlier,
            [ChatMessage {
                role: Role::System,
                content: "Be brief.".into()
            }]
        );
        assert_eq!(question, "hi");
    }

    #[test]
    fn fields_that_ask_for_nothing_are_accepted() {
        let quiet = json!([{"role": "assistant", "content": "ok", "tool_calls": [],
                            "refusal": null, "function_call": null},
                           {"role": "user", "content": "y"}]);
        assert!(messages(Some(quiet)).is_ok());
    }

    #[test]
    fn every_invalid_message_is_named_in_param() {
        assert_eq!(
            messages(None).unwrap_err().param.as_deref(),
            Some("messages")
        );
        let cases = [
            (json!([]), "messages"),
            (
                json!([{"role": "assistant", "content": "x"}]),
                "messages[0].role",
            ),
            (
                json!([{"role": "robot", "content": "x"}, {"role": "user", "content": "y"}]),
                "messages[0].role",
            ),
            (
                json!([{"role": "tool", "content": "x"}, {"role": "user", "content": "y"}]),
                "messages[0].role",
            ),
            (
                json!([{"role": "user", "content": [{"type": "image_url"}]}]),
                "messages[0].content",
            ),
            (
                json!([{"role": "user", "content": " "}]),
                "messages[0].content",
            ),
            (json!(["hi"]), "messages[0]"),
            (
                json!([{"role": "assistant", "content": null,
                        "tool_calls": [{"id": "c1", "type": "function"}]},
                       {"role": "user", "content": "y"}]),
                "messages[0].tool_calls",
            ),
            (
                json!([{"role": "user", "content": "y", "name": "ada"}]),
                "messages[0].name",
            ),
            (
                json!([{"role": "user", "content": "y", "mood": "happy"}]),
                "messages[0].mood",
            ),
        ];
        for (list, param) in cases {
            assert_eq!(param_of(list.clone()).as_deref(), Some(param), "{list}");
        }
    }
}
