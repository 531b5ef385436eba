//! Rendering a turn as OpenAI does: one `chat.completion` object, or a stream of
//! `chat.completion.chunk` objects on SSE `data:` lines ending with `data: [DONE]`.
//!
//! An answer that calls the caller's functions has them in `message.tool_calls` (finish reason
//! `tool_calls`); streamed, each call is one `delta.tool_calls` fragment holding the whole call,
//! sent once the model has finished it. A request that named its functions the legacy way gets
//! the legacy `function_call` (finish reason `function_call`).

use std::convert::Infallible;

use axum::Json;
use axum::http::{HeaderName, HeaderValue};
use axum::response::sse::Event;
use axum::response::{AppendHeaders, IntoResponse, Response};
use confab_contract::{Done, FinishReason, ToolCall, Usage};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::OpenAiError;
use crate::http::{resumed_sse_response, sse_response};
use crate::pipeline::{Turn, TurnEvent};

/// What every object of one completion repeats: its id, creation time and model.
#[derive(Debug, Clone)]
pub struct Completion {
    id: String,
    created: u64,
    model: String,
    /// Whether the exchange is stored (`store`), so that its conversation can be named.
    stored: bool,
    /// Whether function calls are rendered the legacy way (`function_call`).
    legacy_functions: bool,
}

impl Completion {
    /// The completion id is derived from the request id, so logs and replies correlate.
    pub fn new(request_id: Uuid, model: String, stored: bool) -> Self {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0);
        Self {
            id: format!("chatcmpl-{}", request_id.simple()),
            created,
            model,
            stored,
            legacy_functions: false,
        }
    }

    pub fn legacy_functions(mut self, legacy: bool) -> Self {
        self.legacy_functions = legacy;
        self
    }

    fn finish_reason(&self, finish: FinishReason) -> &'static str {
        match finish {
            FinishReason::ToolCalls if self.legacy_functions => "function_call",
            finish => finish.as_str(),
        }
    }

    /// The answer's calls, as its message (or a chunk's delta) carries them.
    fn calls_json(&self, calls: &[ToolCall], streamed: bool) -> (&'static str, Value) {
        if self.legacy_functions {
            // The legacy form has room for one call.
            let call = calls
                .first()
                .map(|call| json!({"name": call.name, "arguments": call.arguments}));
            return ("function_call", call.unwrap_or(Value::Null));
        }
        let calls = calls
            .iter()
            .enumerate()
            .map(|(index, call)| {
                let mut call = json!({"id": call.id, "type": "function",
                                      "function": {"name": call.name, "arguments": call.arguments}});
                if streamed {
                    call["index"] = index.into();
                }
                call
            })
            .collect();
        ("tool_calls", Value::Array(calls))
    }

    /// The completion id of a turn a client may send again (an `Idempotency-Key`), derived from
    /// the turn rather than the request, so that the retry's answer has the first one's id.
    pub fn for_turn(mut self, conversation_id: &str, message_id: &str) -> Self {
        let digest = Sha256::digest(format!("{conversation_id}\n{message_id}").as_bytes());
        let hex = hex::encode(&digest[..16]);
        self.id = format!("chatcmpl-{hex}");
        self
    }

    fn object(&self, object: &str, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        })
    }

    /// The whole answer (`stream: false`).
    pub fn completion(&self, done: &Done) -> Value {
        let mut message = json!({"role": "assistant", "content": done.text, "refusal": null});
        if !done.tool_calls.is_empty() {
            let (field, calls) = self.calls_json(&done.tool_calls, false);
            message[field] = calls;
            if done.text.is_empty() {
                message["content"] = Value::Null;
            }
        }
        let mut object = self.object(
            "chat.completion",
            json!([{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": self.finish_reason(done.finish_reason),
            }]),
        );
        object["usage"] = usage_json(done.usage);
        object
    }

    /// The chunks that carry the answer's calls: one per call, each whole.
    fn call_chunks(&self, calls: &[ToolCall], include_usage: bool) -> Vec<Value> {
        if calls.is_empty() {
            return Vec::new();
        }
        if self.legacy_functions {
            let (field, call) = self.calls_json(calls, true);
            return vec![self.chunk(json!({ field: call }), None, include_usage)];
        }
        let (_, Value::Array(calls)) = self.calls_json(calls, true) else {
            return Vec::new();
        };
        calls
            .into_iter()
            .map(|call| self.chunk(json!({"tool_calls": [call]}), None, include_usage))
            .collect()
    }

    /// One streamed chunk with a single choice. With `include_usage`, OpenAI sends
    /// `usage: null` on every chunk but the final usage chunk.
    pub fn chunk(&self, delta: Value, finish_reason: Option<&str>, include_usage: bool) -> Value {
        let mut chunk = self.object(
            "chat.completion.chunk",
            json!([{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }]),
        );
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    /// The final chunk of `stream_options.include_usage`: no choices, the usage.
    pub fn usage_chunk(&self, usage: Usage) -> Value {
        let mut chunk = self.object("chat.completion.chunk", json!([]));
        chunk["usage"] = usage_json(usage);
        chunk
    }
}

fn usage_json(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total(),
    })
}

/// `X-Conversation-Id`, to continue the exchange server-side; none when nothing was kept.
fn conversation_header(
    completion: &Completion,
    conversation_id: &str,
) -> Vec<(HeaderName, HeaderValue)> {
    completion
        .stored
        .then(|| crate::http::conversation_header(conversation_id))
        .into_iter()
        .collect()
}

/// Wait for the whole answer and send it as one `chat.completion`.
pub async fn json_reply(turn: Turn, completion: Completion) -> Result<Response, OpenAiError> {
    let headers = conversation_header(&completion, &turn.conversation_id);
    let done = turn.collect().await?;
    let body = Json(completion.completion(&done));
    Ok((AppendHeaders(headers), body).into_response())
}

fn data(value: Value) -> Result<Event, Infallible> {
    Ok(Event::default().data(value.to_string()))
}

/// Relay the answer as chunks: the role first (at once, before the model speaks), a chunk per
/// delta, the finish reason, the usage if asked for, then `[DONE]`.
pub fn stream_reply(turn: Turn, completion: Completion, include_usage: bool) -> Response {
    let headers = conversation_header(&completion, &turn.conversation_id);
    let (stall, request_id) = (turn.stream_stall, turn.request_id);
    let events = chunk_events(turn, completion, include_usage);
    sse_response(events, request_id, &headers, stall)
}

/// The family's name in a logged stream format (`TurnRequest::stream_format`).
pub const FORMAT: &str = "openai";

/// How a stream of `completion` is rendered again after a reconnect: the same id, `created`
/// and model in every chunk, and the same usage chunk.
pub fn stream_format(completion: &Completion, include_usage: bool) -> Value {
    json!({
        "family": FORMAT,
        "id": completion.id,
        "created": completion.created,
        "model": completion.model,
        "stored": completion.stored,
        "include_usage": include_usage,
        "legacy_functions": completion.legacy_functions,
    })
}

/// A reconnect's stream, rendered from its logged format.
pub async fn resumed_stream(format: &Value, turn: Turn, after: u64) -> Option<Response> {
    let completion = Completion {
        id: format["id"].as_str()?.to_owned(),
        created: format["created"].as_u64()?,
        model: format["model"].as_str()?.to_owned(),
        stored: format["stored"].as_bool()?,
        // Absent from streams logged before function calling.
        legacy_functions: format["legacy_functions"].as_bool().unwrap_or(false),
    };
    let include_usage = format["include_usage"].as_bool()?;
    let headers = conversation_header(&completion, &turn.conversation_id);
    let (stall, request_id) = (turn.stream_stall, turn.request_id);
    let events = chunk_events(turn, completion, include_usage);
    resumed_sse_response(events, request_id, after, &headers, stall).await
}

fn chunk_events(
    mut turn: Turn,
    completion: Completion,
    include_usage: bool,
) -> impl futures_util::Stream<Item = Result<Event, Infallible>> {
    async_stream::stream! {
        let role = json!({"role": "assistant", "content": ""});
        yield data(completion.chunk(role, None, include_usage));
        while let Some(event) = turn.next().await {
            match event {
                TurnEvent::Delta(text) => {
                    let delta = json!({"content": text});
                    yield data(completion.chunk(delta, None, include_usage));
                }
                TurnEvent::Done(done) => {
                    for chunk in completion.call_chunks(&done.tool_calls, include_usage) {
                        yield data(chunk);
                    }
                    let finish = completion.finish_reason(done.finish_reason);
                    yield data(completion.chunk(json!({}), Some(finish), include_usage));
                    if include_usage {
                        yield data(completion.usage_chunk(done.usage));
                    }
                    yield Ok(Event::default().data("[DONE]"));
                }
                TurnEvent::Failed(failure) => {
                    // OpenAI's SDKs raise an APIError on a `data:` object with an `error` key.
                    yield data(OpenAiError::from(failure).body());
                    yield Ok(Event::default().data("[DONE]"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_has_openais_fields_and_total_tokens() {
        let completion = Completion::new(Uuid::nil(), "support-agent".into(), true);
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 4,
        };
        let body = completion.completion(&done("Hi.", usage, Vec::new()));
        assert_eq!(body["id"], format!("chatcmpl-{}", Uuid::nil().simple()));
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "support-agent");
        assert_eq!(body["choices"][0]["message"]["content"], "Hi.");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["total_tokens"], 14);
    }

    fn done(text: &str, usage: Usage, tool_calls: Vec<ToolCall>) -> Done {
        Done {
            message_id: "msg_1".into(),
            conversation_id: "c".into(),
            text: text.into(),
            created_ms: 0,
            usage,
            model: "m".into(),
            last_delta: None,
            sources: Vec::new(),
            timing: Default::default(),
            finish_reason: if tool_calls.is_empty() {
                FinishReason::Stop
            } else {
                FinishReason::ToolCalls
            },
            tool_calls,
        }
    }

    #[test]
    fn calls_are_rendered_as_tool_calls_or_the_legacy_function_call() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "weather".into(),
            arguments: r#"{"city":"Paris"}"#.into(),
        };
        let answer = done("", Usage::default(), vec![call]);
        let completion = Completion::new(Uuid::nil(), "m".into(), true);
        let body = completion.completion(&answer);
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([{"id": "call_1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}])
        );
        let chunks = completion.call_chunks(&answer.tool_calls, false);
        assert_eq!(
            chunks[0]["choices"][0]["delta"]["tool_calls"][0]["index"],
            0
        );

        let legacy = completion.legacy_functions(true);
        let body = legacy.completion(&answer);
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "function_call");
        assert_eq!(choice["message"]["function_call"]["name"], "weather");
        assert!(choice["message"].get("tool_calls").is_none());
    }

    #[test]
    fn chunks_carry_usage_null_only_when_usage_was_asked_for() {
        let completion = Completion::new(Uuid::nil(), "m".into(), true);
        let plain = completion.chunk(json!({"content": "a"}), None, false);
        assert!(plain.get("usage").is_none());
        let with_usage = completion.chunk(json!({}), Some("stop"), true);
        assert_eq!(with_usage["usage"], Value::Null);
        assert!(with_usage.get("usage").is_some());
        assert_eq!(with_usage["choices"][0]["finish_reason"], "stop");
        let last = completion.usage_chunk(Usage::default());
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["total_tokens"], 0);
    }
}
