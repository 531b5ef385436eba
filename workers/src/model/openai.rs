//! OpenAI-compatible streaming client (OpenAI, vLLM, Ollama, llama.cpp server and the like):
//! `POST {base}/chat/completions` with `stream: true`, read `choices[].delta.content` from the
//! SSE body until `data: [DONE]`, and the usage chunk `stream_options.include_usage` asks for.

use std::time::Duration;

use confab_contract::Usage;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::provider::{ModelError, ModelEvent, ModelRequest, ModelStream, Provider};
use super::sse::DataLines;

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
        let messages: Vec<_> = request
            .messages
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        let body = json!({
            "model": request.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": request.max_tokens,
        });
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
            let mut body = response.bytes_stream();
            let mut lines = DataLines::default();
            loop {
                let bytes = tokio::time::timeout(idle, body.next())
                    .await
                    .map_err(|_| ModelError::Timeout(idle))?;
                let Some(bytes) = bytes else {
                    Err(ModelError::Protocol("stream ended before [DONE]".into()))?;
                    return;
                };
                lines.push(&bytes.map_err(transport_error)?);
                while let Some(data) = lines.next_data() {
                    let data = data.map_err(|e| ModelError::Protocol(e.to_string()))?;
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
                    }
                    if let Some(usage) = chunk.usage {
                        yield ModelEvent::Usage(Usage {
                            prompt_tokens: usage.prompt_tokens,
                            completion_tokens: usage.completion_tokens,
                        });
                    }
                }
            }
        })
    }
}

fn transport_error(error: reqwest::Error) -> ModelError {
    if error.is_builder() && error.to_string().contains("scheme") {
        return ModelError::Transport(format!(
            "{error} (HTTPS needs confab built with the `tls` feature)"
        ));
    }
    ModelError::Transport(error.to_string())
}
