//! A real local HTTP server standing in for an assistant's server-side tools: `POST
//! /tools/{name}` answers as scripted for that name and records every call it receives (its
//! headers and body), so a test can check what confab sent and how often.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use tokio::sync::Notify;

/// How a tool answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// 200 with this JSON.
    Answer(Value),
    /// Wait this long first, then answer with this JSON.
    Slow(Duration, Value),
    /// Wait until this many calls (of any tool) have arrived, then answer with this JSON;
    /// after 5 s without them, answer 504: calls made one after another never meet.
    Meet(usize, Value),
}

#[derive(Debug, Clone)]
pub struct Call {
    pub tool: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Clone)]
struct ServerState {
    behaviours: Arc<HashMap<String, Behaviour>>,
    calls: Arc<Mutex<Vec<Call>>>,
    arrived: Arc<Notify>,
}

pub struct ToolServer {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ToolServer {
    pub async fn start(behaviours: impl IntoIterator<Item = (&'static str, Behaviour)>) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let state = ServerState {
            behaviours: Arc::new(
                behaviours
                    .into_iter()
                    .map(|(name, b)| (name.to_owned(), b))
                    .collect(),
            ),
            calls: calls.clone(),
            arrived: Arc::new(Notify::new()),
        };
        let app = Router::new()
            .route("/tools/{name}", post(call))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the tool server");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ToolServer { addr, calls, task }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/tools/{name}", self.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }
}

impl Drop for ToolServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn call(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let arrived = {
        let mut calls = state.calls.lock().expect("lock");
        calls.push(Call {
            tool: name.clone(),
            headers,
            body: body.to_vec(),
        });
        calls.len()
    };
    state.arrived.notify_waiters();
    match state.behaviours.get(&name).cloned() {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(Behaviour::Answer(answer)) => Json(answer).into_response(),
        Some(Behaviour::Slow(wait, answer)) => {
            tokio::time::sleep(wait).await;
            Json(answer).into_response()
        }
        Some(Behaviour::Meet(count, answer)) => {
            let met = tokio::time::timeout(Duration::from_secs(5), async {
                let mut seen = arrived;
                while seen < count {
                    let notified = state.arrived.notified();
                    seen = state.calls.lock().expect("lock").len();
                    if seen >= count {
                        break;
                    }
                    notified.await;
                }
            })
            .await;
            match met {
                Ok(()) => Json(answer).into_response(),
                Err(_) => StatusCode::GATEWAY_TIMEOUT.into_response(),
            }
        }
    }
}
