//! A real local HTTP server speaking the OpenAI streaming chat protocol, started by a test in
//! place of a model vendor. It answers as scripted and records every request it receives.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

#[derive(Clone)]
pub enum Script {
    /// Stream these content pieces, then a usage chunk, then `[DONE]`.
    Tokens {
        pieces: Vec<String>,
        prompt_tokens: u32,
        completion_tokens: u32,
    },
    /// Answer with this HTTP status and OpenAI error body.
    Fail { status: u16, message: String },
    /// Send the response head, then nothing.
    Stall,
    /// Call these functions (id, name, arguments), streamed as OpenAI does: a call's first
    /// fragment has its index, id and name, its arguments follow in two more fragments; then
    /// finish reason `tool_calls`, a usage chunk and `[DONE]`.
    Calls(Vec<(String, String, String)>),
    /// Answer the first request with the first script, the second with the second, and so on;
    /// the last answers every request after.
    Sequence(Vec<Script>),
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Clone)]
struct ServerState {
    script: Script,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

impl ServerState {
    /// The script of the request just recorded.
    fn script_now(&self) -> Script {
        let served = self.recorded.lock().expect("lock").len();
        match &self.script {
            Script::Sequence(scripts) => {
                let at = served
                    .saturating_sub(1)
                    .min(scripts.len().saturating_sub(1));
                scripts.get(at).cloned().unwrap_or(Script::Stall)
            }
            script => script.clone(),
        }
    }
}

pub struct FakeOpenAi {
    pub addr: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeOpenAi {
    pub async fn start(script: Script) -> FakeOpenAi {
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let state = ServerState {
            script,
            recorded: recorded.clone(),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake OpenAI server");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOpenAi {
            addr,
            recorded,
            task,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().expect("lock").clone()
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn completions(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    state.recorded.lock().expect("lock").push(Recorded {
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: body.clone(),
    });
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    match state.script_now() {
        Script::Sequence(_) => unreachable!("a sequence names its scripts"),
        Script::Calls(calls) => sse(Body::from_stream(call_chunks(model, calls))),
        Script::Fail { status, message } => (
            StatusCode::from_u16(status).expect("status"),
            Json(json!({"error": {"message": message, "type": "invalid_request_error"}})),
        )
            .into_response(),
        Script::Stall => {
            let stream = async_stream::stream! {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                yield Ok::<Bytes, Infallible>(Bytes::new());
            };
            sse(Body::from_stream(stream))
        }
        Script::Tokens {
            pieces,
            prompt_tokens,
            completion_tokens,
        } => {
            let stream = async_stream::stream! {
                for piece in pieces {
                    let chunk = json!({
                        "id": "chatcmpl-test", "object": "chat.completion.chunk", "model": model,
                        "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}],
                    });
                    yield Ok::<Bytes, Infallible>(Bytes::from(format!("data: {chunk}\n\n")));
                }
                let usage = json!({
                    "id": "chatcmpl-test", "object": "chat.completion.chunk", "model": model,
                    "choices": [],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens},
                });
                yield Ok(Bytes::from(format!("data: {usage}\n\ndata: [DONE]\n\n")));
            };
            sse(Body::from_stream(stream))
        }
    }
}

fn call_chunks(
    model: String,
    calls: Vec<(String, String, String)>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    let chunk = move |delta: Value, finish: Value| {
        let chunk = json!({
            "id": "chatcmpl-test", "object": "chat.completion.chunk", "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        Ok::<Bytes, Infallible>(Bytes::from(format!("data: {chunk}\n\n")))
    };
    let mut chunks = vec![chunk(
        json!({"role": "assistant", "content": null}),
        Value::Null,
    )];
    for (index, (id, name, arguments)) in calls.into_iter().enumerate() {
        let first = json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                                           "function": {"name": name, "arguments": ""}}]});
        chunks.push(chunk(first, Value::Null));
        let half = arguments.len() / 2;
        let half = (0..=half)
            .rev()
            .find(|&i| arguments.is_char_boundary(i))
            .unwrap_or(0);
        for piece in [&arguments[..half], &arguments[half..]] {
            let more = json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]});
            chunks.push(chunk(more, Value::Null));
        }
    }
    chunks.push(chunk(json!({}), json!("tool_calls")));
    let usage = json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "choices": [],
                       "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}});
    chunks.push(Ok(Bytes::from(format!(
        "data: {usage}\n\ndata: [DONE]\n\n"
    ))));
    futures_util::stream::iter(chunks)
}

fn sse(body: Body) -> Response {
    ([("content-type", "text/event-stream")], body).into_response()
}
