//! OpenAI-compatible streaming client (OpenAI, vLLM, Ollama, llama.cpp server and the like):
//! `POST {base}/chat/completions` with `stream: true`, read `choices[].delta.content` from the
//! SSE body until `data: [DONE]`, and the usage chunk `stream_options.include_usage` asks for.

use std::time::Duration;

use confab_contract::{FinishReason, Role, Sampling, Usage};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::provider::{ModelError, ModelEvent, ModelRequest, ModelStream, Provider};
use super::sse::{SseError, data_events};

pub struct OpenAi {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    /// Longest wait for the response head or for the next chunk of the body.
    idle_timeout: Duration,
}

impl OpenAi {
    pub fn new(base_url: &str, api_key: &str, idle_timeout: Duration) -> Result<Self, ModelError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ModelError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            idle_timeout,
        })
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

#[derive(Deserialize)]
struct WireError {
    message: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: WireError,
}

impl Provider for OpenAi {
    fn stream(&self, request: ModelRequest) -> ModelStream {
        let messages = wire_messages(&request);
        let mut body = json!({
            "model": request.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": request.max_tokens,
        });
        add_sampling(&mut body, &request.sampling);
        let mut call = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .json(&body);
        if !self.api_key.is_empty() {
            call = call.bearer_auth(&self.api_key);
        }
        let idle = self.idle_timeout;
        Box::pin(async_stream::try_stream! {
            let response = tokio::time::timeout(idle, call.send())
                .await
                .map_err(|_| ModelError::Timeout(idle))?
                .map_err(transport_error)?;
            let status = response.status();
            if !status.is_success() {
                let text = response.text().await.unwrap_or_default();
                let message = serde_json::from_str::<ErrorBody>(&text)
                    .map(|b| b.error.message)
                    .unwrap_or_else(|_| text.chars().take(300).collect());
                Err(ModelError::Http { status: status.as_u16(), message })?;
                return;
            }
            let mut events = std::pin::pin!(data_events(response.bytes_stream(), idle));
            loop {
                let Some(data) = events.next().await else {
                    Err(ModelError::Protocol("stream ended before [DONE]".into()))?;
                    return;
                };
                let data = data.map_err(|e| match e {
                    SseError::Idle(idle) => ModelError::Timeout(idle),
                    SseError::Transport(e) => transport_error(e),
                    SseError::Decode(reason) => ModelError::Protocol(reason),
                })?;
                if data == "[DONE]" {
                    return;
                }
                let chunk: Chunk = serde_json::from_str(&data)
                    .map_err(|e| ModelError::Protocol(format!("bad chunk: {e}")))?;
                if let Some(error) = chunk.error {
                    Err(ModelError::Http { status: 200, message: error.message })?;
                }
                for choice in chunk.choices {
                    if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                        yield ModelEvent::Delta(text);
                    }
                    if choice.finish_reason.as_deref() == Some("length") {
                        yield ModelEvent::Finish(FinishReason::Length);
                    }
                }
                if let Some(usage) = chunk.usage {
                    yield ModelEvent::Usage(Usage {
                        prompt_tokens: usage.prompt_tokens,
                        completion_tokens: usage.completion_tokens,
                    });
                }
            }
        })
    }
}

/// The caller's sampling parameters, as the API names them; those not given are left out, so
/// the provider's defaults apply.
fn add_sampling(body: &mut serde_json::Value, sampling: &Sampling) {
    let given = [
        (
            "temperature",
            sampling.temperature.map(serde_json::Value::from),
        ),
        ("top_p", sampling.top_p.map(serde_json::Value::from)),
        ("seed", sampling.seed.map(serde_json::Value::from)),
        (
            "presence_penalty",
            sampling.presence_penalty.map(serde_json::Value::from),
        ),
        (
            "frequency_penalty",
            sampling.frequency_penalty.map(serde_json::Value::from),
        ),
        (
            "stop",
            (!sampling.stop.is_empty()).then(|| serde_json::Value::from(sampling.stop.clone())),
        ),
        ("response_format", sampling.response_format.clone()),
    ];
    for (name, value) in given {
        if let Some(value) = value {
            body[name] = value;
        }
    }
}

/// Said to a model continuing an answer an earlier attempt streamed in part.
const CONTINUE: &str = "Your reply to the last message was cut off: its beginning is the last \
    assistant message. Continue it from exactly where it stops, without repeating any of it.";

/// The request's messages as the API takes them. A continuation ends with the answer so far as
/// an assistant message, which servers that prefill (llama.cpp, vLLM) extend as it is, and says
/// so in the system message, so that the others write only the rest; the system message stays
/// first, which some chat templates require.
fn wire_messages(request: &ModelRequest) -> Vec<serde_json::Value> {
    let mut messages: Vec<_> = request
        .messages
        .iter()
        .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
        .collect();
    let Some(so_far) = &request.continues else {
        return messages;
    };
    match request.messages.first() {
        Some(first) if first.role == Role::System => {
            messages[0]["content"] = format!("{}\n\n{CONTINUE}", first.content).into();
        }
        _ => messages.insert(0, json!({"role": "system", "content": CONTINUE})),
    }
    messages.push(json!({"role": "assistant", "content": so_far}));
    messages
}

fn transport_error(error: reqwest::Error) -> ModelError {
    if error.is_builder() && error.to_string().contains("scheme") {
        return ModelError::Transport(format!(
            "{error} (HTTPS needs confab built with the `tls` feature)"
        ));
    }
    ModelError::Transport(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChatMessage;

    fn request(messages: Vec<ChatMessage>, continues: Option<&str>) -> ModelRequest {
        ModelRequest {
            model: "m".into(),
            messages,
            passages: Vec::new(),
            max_tokens: 10,
            sampling: Sampling::default(),
            continues: continues.map(str::to_owned),
        }
    }

    fn message(role: Role, content: &str) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
        }
    }

    #[test]
    fn a_continuation_ends_with_the_answer_so_far_and_keeps_the_system_message_first() {
        let asked = vec![
            message(Role::System, "Be brief."),
            message(Role::User, "Hours?"),
        ];
        let plain = wire_messages(&request(asked.clone(), None));
        assert_eq!(plain.len(), 2);
        assert_eq!(plain[0]["content"], "Be brief.");

        let continued = wire_messages(&request(asked, Some("We open at")));
        assert_eq!(continued.len(), 3);
        assert_eq!(continued[0]["role"], "system");
        let system = continued[0]["content"].as_str().unwrap();
        assert!(system.starts_with("Be brief.\n\n") && system.ends_with(CONTINUE));
        assert_eq!(
            continued[2],
            json!({"role": "assistant", "content": "We open at"})
        );

        let without_system = wire_messages(&request(
            vec![message(Role::User, "Hours?")],
            Some("We open at"),
        ));
        assert_eq!(
            without_system[0],
            json!({"role": "system", "content": CONTINUE})
        );
        assert_eq!(without_system.len(), 3);
    }
}
