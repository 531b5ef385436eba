//! The `messages` array of a chat completion request: each message's role (OpenAI's names
//! mapped to confab's), text content and function calls, and the rule that the last message is
//! the new turn: the user's words, or the result of a call of the caller's function. Every
//! problem is a 400 naming its `param`, e.g. `messages[2].role`.
//!
//! Legacy function calling is read as tool calling: an assistant's `function_call` is a call
//! with the id `call_fn_<position>`, and the `function` message after it is that call's result.

use confab_contract::{Role, ToolCall};
use serde_json::{Map, Value};

use crate::dialects::openai::error::OpenAiError;

/// One message of the `messages` array, as confab stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// An assistant message's calls of the caller's functions.
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    fn text(role: Role, content: String) -> ChatMessage {
        ChatMessage {
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// The earlier messages and the last one, the new turn.
pub(super) fn messages(
    value: Option<Value>,
) -> Result<(Vec<ChatMessage>, ChatMessage), OpenAiError> {
    let list = match value {
        Some(Value::Array(list)) if !list.is_empty() => list,
        _ => {
            return Err(OpenAiError::invalid(
                "messages",
                "messages must be a non-empty array of {role, content} objects.",
            ));
        }
    };
    let mut parsed = Vec::with_capacity(list.len());
    // The id of the newest legacy `function_call`, which the next `function` message answers.
    let mut legacy_call: Option<String> = None;
    for (at, message) in list.into_iter().enumerate() {
        let message = chat_message(message, at, &mut legacy_call)?;
        parsed.push(message);
    }
    let last = parsed.len() - 1;
    match parsed.pop() {
        Some(message) if message.role == Role::Tool => Ok((parsed, message)),
        Some(message) if message.role == Role::User && !message.content.trim().is_empty() => {
            Ok((parsed, message))
        }
        Some(message) if message.role == Role::User => Err(OpenAiError::invalid(
            format!("messages[{last}].content"),
            "The last message must not be empty.",
        )),
        _ => Err(OpenAiError::invalid(
            format!("messages[{last}].role"),
            "The last message must have role 'user' (or 'tool', with a function's result).",
        )),
    }
}

/// Every tool result answers a call an earlier assistant message made, as OpenAI requires;
/// checked where the request carries the whole exchange (not a named conversation's new turn,
/// whose calls are stored).
pub(super) fn check_results_answer_calls(messages: &[&ChatMessage]) -> Result<(), OpenAiError> {
    for (at, message) in messages.iter().enumerate() {
        let Some(id) = &message.tool_call_id else {
            continue;
        };
        let called = messages[..at]
            .iter()
            .any(|earlier| earlier.tool_calls.iter().any(|call| &call.id == id));
        if !called {
            return Err(OpenAiError::invalid(
                format!("messages[{at}].tool_call_id"),
                format!(
                    "messages[{at}]: a message with role 'tool' must answer a call of a                      preceding assistant message's tool_calls; no call has the id '{id}'."
                ),
            ));
        }
    }
    Ok(())
}

fn chat_message(
    message: Value,
    at: usize,
    legacy_call: &mut Option<String>,
) -> Result<ChatMessage, OpenAiError> {
    let Value::Object(mut fields) = message else {
        return Err(OpenAiError::invalid(
            format!("messages[{at}]"),
            "Each message must be an object with role and content.",
        ));
    };
    let (role, legacy) = role(fields.remove("role"), at)?;
    let content = content(&mut fields, role, at)?;
    let mut message = ChatMessage::text(role, content);
    match role {
        Role::Assistant => {
            message.tool_calls = tool_calls(fields.remove("tool_calls"), at)?;
            if let Some(call) = function_call(fields.remove("function_call"), at)? {
                *legacy_call = Some(call.id.clone());
                message.tool_calls.push(call);
            }
        }
        Role::Tool if legacy => {
            // The legacy message names its function; the call it answers is the newest.
            fields.remove("name");
            message.tool_call_id = Some(legacy_call.clone().ok_or_else(|| {
                OpenAiError::invalid(
                    format!("messages[{at}].role"),
                    "A message with role 'function' must follow an assistant message with a                      function_call.",
                )
            })?);
        }
        Role::Tool => message.tool_call_id = Some(tool_call_id(fields.remove("tool_call_id"), at)?),
        Role::User | Role::System => {}
    }
    refuse_other_fields(&fields, at)?;
    Ok(message)
}

/// An assistant message's `tool_calls`: `[{id, type: "function", function: {name, arguments}}]`.
fn tool_calls(value: Option<Value>, at: usize) -> Result<Vec<ToolCall>, OpenAiError> {
    let list = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(OpenAiError::invalid(
                format!("messages[{at}].tool_calls"),
                "tool_calls must be an array.",
            ));
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, call)| {
            let param = format!("messages[{at}].tool_calls[{i}]");
            let id = call["id"].as_str().filter(|id| !id.is_empty());
            let function = &call["function"];
            let (Some(id), Some("function"), Some(name), Some(arguments)) = (
                id,
                call["type"].as_str(),
                function["name"].as_str().filter(|n| !n.is_empty()),
                function["arguments"].as_str(),
            ) else {
                return Err(OpenAiError::invalid(
                    param,
                    "Each tool call needs an id, type 'function' and a function with a name and                      its arguments as a JSON string.",
                ));
            };
            Ok(ToolCall {
                id: id.to_owned(),
                name: name.to_owned(),
                arguments: arguments.to_owned(),
            })
        })
        .collect()
}

/// A legacy assistant `function_call: {name, arguments}`, as a call with an id of its own.
fn function_call(value: Option<Value>, at: usize) -> Result<Option<ToolCall>, OpenAiError> {
    let call = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(call) => call,
    };
    match (call["name"].as_str(), call["arguments"].as_str()) {
        (Some(name), Some(arguments)) if !name.is_empty() => Ok(Some(ToolCall {
            id: format!("call_fn_{at}"),
            name: name.to_owned(),
            arguments: arguments.to_owned(),
        })),
        _ => Err(OpenAiError::invalid(
            format!("messages[{at}].function_call"),
            "function_call must have a name and its arguments as a JSON string.",
        )),
    }
}

fn tool_call_id(value: Option<Value>, at: usize) -> Result<String, OpenAiError> {
    match value {
        Some(Value::String(id)) if (1..=256).contains(&id.len()) => Ok(id),
        _ => Err(OpenAiError::invalid(
            format!("messages[{at}].tool_call_id"),
            "A message with role 'tool' needs the tool_call_id of the call it answers.",
        )),
    }
}

/// A message's fields besides those read are refused, unless they ask for nothing (null, an
/// empty list): nothing of a message is accepted and ignored.
fn refuse_other_fields(fields: &Map<String, Value>, at: usize) -> Result<(), OpenAiError> {
    for (name, value) in fields {
        let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
        if empty {
            continue;
        }
        let param = format!("messages[{at}].{name}");
        let why = match name.as_str() {
            "tool_calls" | "function_call" => "only assistant messages call functions",
            "tool_call_id" => "only messages with role 'tool' answer a call",
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

/// The message's role, and whether it is a legacy `function` result.
fn role(value: Option<Value>, at: usize) -> Result<(Role, bool), OpenAiError> {
    match value.as_ref().and_then(Value::as_str) {
        Some("user") => Ok((Role::User, false)),
        Some("assistant") => Ok((Role::Assistant, false)),
        // `developer` is OpenAI's newer name for system instructions.
        Some("system" | "developer") => Ok((Role::System, false)),
        Some("tool") => Ok((Role::Tool, false)),
        Some("function") => Ok((Role::Tool, true)),
        _ => Err(OpenAiError::invalid(
            format!("messages[{at}].role"),
            "role must be one of 'system', 'developer', 'user', 'assistant' or 'tool'.",
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
            [ChatMessage::text(Role::System, "Be brief.".into())]
        );
        assert_eq!(question, ChatMessage::text(Role::User, "hi".into()));
    }

    #[test]
    fn calls_and_their_results_are_read_and_the_last_result_is_the_new_turn() {
        let (earlier, last) = messages(Some(json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
        ])))
        .unwrap();
        assert_eq!(earlier[1].tool_calls[0].name, "weather");
        assert_eq!(earlier[1].tool_calls[0].arguments, r#"{"city":"Paris"}"#);
        assert_eq!(
            (last.role, last.tool_call_id.as_deref()),
            (Role::Tool, Some("call_1"))
        );
        let all: Vec<_> = earlier.iter().chain([&last]).collect();
        assert!(check_results_answer_calls(&all).is_ok());
        let orphan = ChatMessage {
            tool_call_id: Some("call_x".into()),
            ..last.clone()
        };
        let error = check_results_answer_calls(&[&earlier[0], &orphan]).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("messages[1].tool_call_id"));
    }

    #[test]
    fn a_legacy_function_result_answers_the_newest_function_call() {
        let (earlier, last) = messages(Some(json!([
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null,
             "function_call": {"name": "weather", "arguments": "{}"}},
            {"role": "function", "name": "weather", "content": "sunny"},
        ])))
        .unwrap();
        assert_eq!(earlier[1].tool_calls[0].id, "call_fn_1");
        assert_eq!(last.tool_call_id.as_deref(), Some("call_fn_1"));
        let error = messages(Some(json!([
            {"role": "function", "name": "weather", "content": "sunny"},
        ])))
        .unwrap_err();
        assert_eq!(error.param.as_deref(), Some("messages[0].role"));
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
                "messages[0].tool_call_id",
            ),
            (
                json!([{"role": "user", "content": "y", "tool_call_id": "c1"}]),
                "messages[0].tool_call_id",
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
                "messages[0].tool_calls[0]",
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
