//! Rendering a turn as OpenAI does: one `chat.completion` object, or a stream of
//! `chat.completion.chunk` objects on SSE `data:` lines ending with `data: [DONE]`.

use std::convert::Infallible;

use axum::Json;
use axum::http::{HeaderName, HeaderValue};
use axum::response::sse::Event;
use axum::response::{AppendHeaders, IntoResponse, Response};
use confab_contract::{FinishReason, Usage};
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
        }
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
    pub fn completion(&self, text: &str, usage: Usage, finish: FinishReason) -> Value {
        let mut object = self.object(
            "chat.completion",
            json!([{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": null,
                "finish_reason": finish.as_str(),
            }]),
        );
        object["usage"] = usage_json(usage);
        object
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
    let body = Json(completion.completion(&done.text, done.usage, done.finish_reason));
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
    })
}

/// A reconnect's stream, rendered from its logged format.
pub async fn resumed_stream(format: &Value, turn: Turn, after: u64) -> Option<Response> {
    let completion = Completion {
        id: format["id"].as_str()?.to_owned(),
        created: format["created"].as_u64()?,
        model: format["model"].as_str()?.to_owned(),
        stored: format["stored"].as_bool()?,
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
                    let finish = done.finish_reason.as_str();
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
        let body = completion.completion("Hi.", usage, FinishReason::Stop);
        assert_eq!(body["id"], format!("chatcmpl-{}", Uuid::nil().simple()));
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "support-agent");
        assert_eq!(body["choices"][0]["message"]["content"], "Hi.");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["total_tokens"], 14);
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
