//! The body of `POST /v1/chat/completions`, validated field by field so that every problem is a
//! 400 naming its `param`. No parameter is accepted and ignored: `params.rs` passes sampling on
//! to the model and refuses what confab cannot do, `tools.rs` reads the caller's functions. The
//! `messages` array is read in `messages.rs`; this file reads the rest and the conversation
//! headers.

use axum::http::HeaderMap;
use confab_contract::{Message, Role, Sampling};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::OpenAiError;
use messages::{ChatMessage, messages};
pub use tools::RequestedTools;

mod messages;
mod params;
mod tools;

/// A validated chat completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The assistant slug.
    pub model: String,
    /// Every message before the last, in order (their positions are their ids).
    pub earlier: Vec<ChatMessage>,
    /// The last message: the user's new turn, or a function's result.
    pub question: ChatMessage,
    pub stream: bool,
    pub include_usage: bool,
    /// The `conversation_id` body field (SDKs send it through `extra_body`).
    pub conversation_id: Option<String>,
    /// OpenAI's `store`: `false` keeps nothing of a stateless exchange.
    pub store: bool,
    /// How the answer is sampled.
    pub sampling: Sampling,
    /// `user` and `metadata`, stored with the user's turn.
    pub metadata: serde_json::Map<String, Value>,
    /// The caller's functions the model may call.
    pub tools: RequestedTools,
}

impl ChatRequest {
    pub fn parse(body: Value) -> Result<ChatRequest, OpenAiError> {
        let Value::Object(mut fields) = body else {
            return Err(OpenAiError::invalid(
                "body",
                "The request body must be a JSON object.",
            ));
        };
        let model = match fields.remove("model") {
            Some(Value::String(model)) if !model.trim().is_empty() => model,
            None | Some(Value::Null) => {
                return Err(OpenAiError::invalid(
                    "model",
                    "You must provide a model parameter.",
                ));
            }
            Some(_) => {
                return Err(OpenAiError::invalid(
                    "model",
                    "model must be a non-empty string.",
                ));
            }
        };
        check_n(fields.remove("n"))?;
        let (earlier, question) = messages(fields.remove("messages"))?;
        let stream = optional_bool(fields.remove("stream"), "stream")?.unwrap_or(false);
        let store = optional_bool(fields.remove("store"), "store")?.unwrap_or(true);
        let include_usage = match fields.remove("stream_options") {
            None | Some(Value::Null) => false,
            Some(Value::Object(mut options)) => optional_bool(
                options.remove("include_usage"),
                "stream_options.include_usage",
            )?
            .unwrap_or(false),
            Some(_) => {
                return Err(OpenAiError::invalid(
                    "stream_options",
                    "stream_options must be an object.",
                ));
            }
        };
        let conversation_id = match fields.remove("conversation_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if is_valid_conversation_id(&id) => Some(id),
            Some(_) => return Err(invalid_conversation_id("conversation_id")),
        };
        let sampling = params::sampling(&mut fields)?;
        let tools = tools::tools(&mut fields)?;
        let metadata = params::caller_metadata(&mut fields)?;
        params::refuse_the_rest(&fields)?;
        Ok(ChatRequest {
            model,
            earlier,
            question,
            stream,
            include_usage,
            conversation_id,
            store,
            sampling,
            metadata,
            tools,
        })
    }

    /// Where the request carries the whole exchange, every tool result must answer a call in it.
    pub fn check_results_answer_calls(&self) -> Result<(), OpenAiError> {
        let all: Vec<&ChatMessage> = self.earlier.iter().chain([&self.question]).collect();
        messages::check_results_answer_calls(&all)
    }

    /// The position of the first function result among the messages, if any.
    pub fn first_tool_result(&self) -> Option<usize> {
        self.earlier
            .iter()
            .chain([&self.question])
            .position(|m| m.role == Role::Tool)
    }

    /// The turn of a stateless request: every earlier message becomes history with id `h<i>`,
    /// the question the message with id `m<n>` (`i`, `n`: positions in `messages`). The ids are
    /// stable so a redelivered job stores each message once. Empty earlier messages (no text
    /// and no calls) carry nothing and are left out.
    pub fn stateless_turn(&self, created_ms: i64) -> (Vec<Message>, Message) {
        let history = self
            .earlier
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.content.trim().is_empty() || !m.tool_calls.is_empty())
            .map(|(i, m)| contract_message(m, format!("h{i}"), created_ms))
            .collect();
        let message = self.question_message(format!("m{}", self.earlier.len()), created_ms);
        (history, message)
    }

    /// The new turn of a named conversation under the given id: the user's message, or the
    /// function results that end the messages (a model may call several functions at once), the
    /// earlier of them as history with ids derived from `id`.
    pub fn named_turn(&self, id: String, created_ms: i64) -> (Vec<Message>, Message) {
        let results_before = self
            .earlier
            .iter()
            .rev()
            .take_while(|m| m.role == Role::Tool && self.question.role == Role::Tool)
            .count();
        let first = self.earlier.len() - results_before;
        let history = self.earlier[first..]
            .iter()
            .enumerate()
            .map(|(k, m)| contract_message(m, format!("{id}.r{k}"), created_ms))
            .collect();
        (history, self.question_message(id, created_ms))
    }

    /// The new turn under the given id.
    pub fn question_message(&self, id: String, created_ms: i64) -> Message {
        contract_message(&self.question, id, created_ms)
    }
}

fn contract_message(message: &ChatMessage, id: String, created_ms: i64) -> Message {
    Message {
        id,
        role: message.role,
        content: message.content.clone(),
        created_ms,
        tool_calls: message.tool_calls.clone(),
        tool_call_id: message.tool_call_id.clone(),
    }
}

/// The conversation the caller names, from the body or the `X-Conversation-Id` header.
pub fn named_conversation(
    body_id: Option<String>,
    headers: &HeaderMap,
) -> Result<Option<String>, OpenAiError> {
    const HEADER: &str = "X-Conversation-Id";
    let header_id = match headers.get(HEADER) {
        None => None,
        Some(value) => match value.to_str().map(str::trim) {
            Ok("") => None,
            Ok(id) if is_valid_conversation_id(id) => Some(id.to_owned()),
            _ => return Err(invalid_conversation_id(HEADER)),
        },
    };
    match (body_id, header_id) {
        (Some(body), Some(header)) if body != header => Err(OpenAiError::invalid(
            "conversation_id",
            "conversation_id and the X-Conversation-Id header name different conversations.",
        )),
        (body, header) => Ok(body.or(header)),
    }
}

/// The id of the user message of a named conversation's turn. With an `Idempotency-Key`, it is
/// derived from the key, so a client's retry of the same request (an SDK retrying after a
/// timeout) is stored once and answered with the first answer instead of a second turn.
pub fn message_id(headers: &HeaderMap) -> Result<String, OpenAiError> {
    Ok(match idempotency_digest(headers)? {
        Some(hex) => format!("msg_idem_{hex}"),
        None => crate::store::conversations::new_message_id(),
    })
}

/// The conversation a stateless exchange with an `Idempotency-Key` is stored as, derived from
/// the key, so that a retry finds its first turn there (its messages' ids are positional) and is
/// answered with the first answer; `None` without the header (the exchange gets a new one).
pub fn keyed_conversation_id(headers: &HeaderMap) -> Result<Option<String>, OpenAiError> {
    Ok(idempotency_digest(headers)?.map(|hex| format!("chatcmpl-idem-{hex}")))
}

/// A digest of the request's `Idempotency-Key`, if it sent one.
fn idempotency_digest(headers: &HeaderMap) -> Result<Option<String>, OpenAiError> {
    const HEADER: &str = "Idempotency-Key";
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            let digest = Sha256::digest(key.as_bytes());
            Ok(Some(hex::encode(&digest[..16])))
        }
        _ => Err(OpenAiError::invalid(
            HEADER,
            format!("{HEADER} must be 1 to 255 visible ASCII characters (no spaces)."),
        )),
    }
}

/// Conversation ids travel back in a response header, so they are visible ASCII only.
fn is_valid_conversation_id(id: &str) -> bool {
    (1..=200).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

fn invalid_conversation_id(param: &str) -> OpenAiError {
    OpenAiError::invalid(
        param,
        format!("{param} must be 1 to 200 visible ASCII characters (no spaces)."),
    )
}

fn optional_bool(value: Option<Value>, param: &str) -> Result<Option<bool>, OpenAiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(OpenAiError::invalid(
            param,
            format!("{param} must be a boolean."),
        )),
    }
}

/// confab gives one answer per turn: `n` may only be 1.
fn check_n(value: Option<Value>) -> Result<(), OpenAiError> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(n) => match n.as_u64() {
            Some(1) => Ok(()),
            Some(n) if n > 1 => Err(OpenAiError::invalid(
                "n",
                format!("n={n} is not supported; only one choice (n=1) is generated per request."),
            )),
            _ => Err(OpenAiError::invalid("n", "n must be a positive integer.")),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn param_of(body: Value) -> Option<String> {
        ChatRequest::parse(body).unwrap_err().param
    }

    #[test]
    fn a_minimal_request_is_a_stateless_json_turn() {
        let request = ChatRequest::parse(json!({
            "model": "support-agent",
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.2, "max_tokens": 50, "top_p": 1, "user": "u1", "n": 1,
        }))
        .unwrap();
        assert_eq!(request.sampling.max_tokens, Some(50));
        assert_eq!(request.metadata["user"], "u1");
        assert_eq!(request.model, "support-agent");
        assert_eq!(request.question.content, "hi");
        assert!(request.earlier.is_empty());
        assert!(!request.stream && !request.include_usage);
        assert_eq!(request.conversation_id, None);
    }

    #[test]
    fn earlier_messages_become_history_with_positional_ids() {
        let request = ChatRequest::parse(json!({
            "model": "m",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "next"},
            ],
        }))
        .unwrap();
        let (history, message) = request.stateless_turn(5);
        let summary: Vec<_> = history
            .iter()
            .map(|m| (m.id.as_str(), m.role, m.content.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("h0", Role::System, "Be brief."),
                ("h1", Role::User, "a\nb"),
                ("h3", Role::Assistant, "ok"),
            ]
        );
        assert_eq!(
            (message.id.as_str(), message.content.as_str()),
            ("m4", "next")
        );
    }

    #[test]
    fn a_named_conversations_new_turn_is_every_function_result_that_ends_the_messages() {
        let call = |id: &str| {
            json!({"id": id, "type": "function",
                                     "function": {"name": "f", "arguments": "{}"}})
        };
        let request = ChatRequest::parse(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "both, please"},
                {"role": "assistant", "content": null, "tool_calls": [call("c1"), call("c2")]},
                {"role": "tool", "tool_call_id": "c1", "content": "one"},
                {"role": "tool", "tool_call_id": "c2", "content": "two"},
            ],
        }))
        .unwrap();
        let (history, message) = request.named_turn("msg_9".into(), 5);
        let ids: Vec<_> = history
            .iter()
            .map(|m| (m.id.as_str(), m.tool_call_id.as_deref()))
            .collect();
        assert_eq!(ids, [("msg_9.r0", Some("c1"))]);
        assert_eq!(
            (message.id.as_str(), message.tool_call_id.as_deref()),
            ("msg_9", Some("c2"))
        );
        let (history, _) = request.stateless_turn(5);
        assert_eq!(
            history[1].tool_calls.len(),
            2,
            "the calls are kept with their turn"
        );
    }

    #[test]
    fn every_invalid_parameter_is_named_in_param() {
        let user = json!([{"role": "user", "content": "hi"}]);
        let cases = [
            (json!({"messages": user}), "model"),
            (json!({"model": "m"}), "messages"),
            (json!({"model": "m", "messages": user, "n": 2}), "n"),
            (
                json!({"model": "m", "messages": user, "stream": "yes"}),
                "stream",
            ),
            (
                json!({"model": "m", "messages": user, "stream_options": {"include_usage": 1}}),
                "stream_options.include_usage",
            ),
            (
                json!({"model": "m", "messages": user, "conversation_id": "has space"}),
                "conversation_id",
            ),
        ];
        for (body, param) in cases {
            assert_eq!(param_of(body.clone()).as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn the_header_and_the_body_must_agree_on_the_conversation() {
        let mut headers = HeaderMap::new();
        headers.insert("x-conversation-id", "conv-a".parse().unwrap());
        assert_eq!(
            named_conversation(None, &headers).unwrap().as_deref(),
            Some("conv-a")
        );
        assert_eq!(
            named_conversation(Some("conv-a".into()), &headers)
                .unwrap()
                .as_deref(),
            Some("conv-a")
        );
        assert!(named_conversation(Some("conv-b".into()), &headers).is_err());
        assert_eq!(named_conversation(None, &HeaderMap::new()).unwrap(), None);
    }
}
