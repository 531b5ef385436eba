//! OpenAI-compatible streaming client (OpenAI, vLLM, Ollama, llama.cpp server and the like):
//! `POST {base}/chat/completions` with `stream: true`, read `choices[].delta.content` from the
//! SSE body until `data: [DONE]`, and the usage chunk `stream_options.include_usage` asks for.
//! The caller's functions go as `tools`; the calls the model streams back as
//! `delta.tool_calls` fragments are put together by their `index` (`tool_calls.rs`) and
//! reported whole at the end.

use std::time::Duration;

use confab_contract::{ClientTools, FinishReason, Role, Sampling, Usage};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::provider::{ChatMessage, ModelError, ModelEvent, ModelRequest, ModelStream, Provider};
use super::sse::{SseError, data_events};
use super::tool_calls::{CallFragment, ToolCalls};

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
    #[serde(default)]
    tool_calls: Vec<CallFragment>,
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
        add_tools(&mut body, &request.tools);
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
            let mut calls = ToolCalls::default();
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
                    if !calls.is_empty() {
                        yield ModelEvent::ToolCalls(calls.finish().map_err(ModelError::Protocol)?);
                    }
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
                    for fragment in choice.delta.tool_calls {
                        calls.add(fragment);
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

/// The caller's functions, as it gave them; nothing when it gave none.
fn add_tools(body: &mut serde_json::Value, tools: &ClientTools) {
    if tools.is_empty() {
        return;
    }
    body["tools"] = tools.definitions.clone().into();
    if let Some(choice) = &tools.choice {
        body["tool_choice"] = choice.clone();
    }
    if let Some(parallel) = tools.parallel {
        body["parallel_tool_calls"] = parallel.into();
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
    let mut messages: Vec<_> = request.messages.iter().map(wire_message).collect();
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

/// One message as the API takes it: an assistant's calls with their arguments as JSON text, a
/// tool result with the id of its call.
fn wire_message(message: &ChatMessage) -> serde_json::Value {
    let mut wire = json!({"role": message.role.as_str(), "content": message.content});
    if !message.tool_calls.is_empty() {
        let calls: Vec<_> = message
            .tool_calls
            .iter()
            .map(|call| {
                json!({"id": call.id, "type": "function",
                       "function": {"name": call.name, "arguments": call.arguments}})
            })
            .collect();
        wire["tool_calls"] = calls.into();
        if message.content.is_empty() {
            wire["content"] = serde_json::Value::Null;
        }
    }
    if let Some(id) = &message.tool_call_id {
        wire["tool_call_id"] = id.as_str().into();
    }
    wire
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

    fn request(messages: Vec<ChatMessage>, continues: Option<&str>) -> ModelRequest {
        ModelRequest {
            model: "m".into(),
            messages,
            passages: Vec::new(),
            max_tokens: 10,
            sampling: Sampling::default(),
            continues: continues.map(str::to_owned),
            tools: ClientTools::default(),
        }
    }

    fn message(role: Role, content: &str) -> ChatMessage {
        ChatMessage::text(role, content)
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
