//! A real local HTTP server in place of the channel platforms' APIs: the WhatsApp Graph API
//! (`POST /{version}/{phone_number_id}/messages`) and the Telegram Bot API
//! (`POST /bot{token}/sendMessage`). It records every request and answers as scripted: queued
//! failures first, then success with a fresh message id.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use confab_shared::platforms::Endpoints;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Sent {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    sent: Vec<Sent>,
    /// Status, body and `Retry-After` seconds of each failure to answer.
    failures: VecDeque<(u16, Value, Option<u64>)>,
}

pub struct FakePlatform {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakePlatform {
    pub async fn start() -> FakePlatform {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/{version}/{phone_number_id}/messages", post(graph_send))
            .route("/{bot}/sendMessage", post(telegram_send))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake platform");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePlatform { addr, shared, task }
    }

    /// Endpoints pointing every platform here.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            whatsapp_graph_url: format!("http://{}", self.addr),
            whatsapp_graph_version: "v21.0".into(),
            telegram_api_url: format!("http://{}", self.addr),
        }
    }

    /// Answer the next sends with these failures, in order, before succeeding again.
    pub fn fail_next(&self, failures: impl IntoIterator<Item = (u16, Value)>) {
        let failures = failures
            .into_iter()
            .map(|(status, body)| (status, body, None));
        self.shared.lock().unwrap().failures.extend(failures);
    }

    /// Answer the next send with this failure and a `Retry-After` of `seconds`.
    pub fn fail_next_asking_to_wait(&self, status: u16, body: Value, seconds: u64) {
        let failure = (status, body, Some(seconds));
        self.shared.lock().unwrap().failures.push_back(failure);
    }

    /// Every request received so far, failed ones included.
    pub fn sent(&self) -> Vec<Sent> {
        self.shared.lock().unwrap().sent.clone()
    }

    /// Wait until at least `n` requests arrived; all of them.
    pub async fn wait_for(&self, n: usize) -> Vec<Sent> {
        for _ in 0..300 {
            let sent = self.sent();
            if sent.len() >= n {
                return sent;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} platform requests, got {:?}", self.sent());
    }
}

impl Drop for FakePlatform {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Graph API error body as WhatsApp sends it.
pub fn graph_error(code: i64, message: &str) -> (u16, Value) {
    (
        400,
        json!({"error": {"message": message, "type": "OAuthException", "code": code,
                         "error_data": {"messaging_product": "whatsapp", "details": message},
                         "fbtrace_id": "Atest"}}),
    )
}

fn record(
    shared: &Mutex<Shared>,
    path: String,
    headers: &HeaderMap,
    body: Value,
) -> Option<(u16, Value, Option<u64>)> {
    let mut shared = shared.lock().unwrap();
    shared.sent.push(Sent {
        path,
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    });
    shared.failures.pop_front()
}

fn reply(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
}

fn fail(status: u16, body: Value, retry_after: Option<u64>) -> Response {
    let mut response = reply(status, body);
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

async fn graph_send(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path((version, number)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let path = format!("/{version}/{number}/messages");
    if let Some((status, error, retry_after)) = record(&shared, path, &headers, body.clone()) {
        return fail(status, error, retry_after);
    }
    let n = shared.lock().unwrap().sent.len();
    reply(
        200,
        json!({"messaging_product": "whatsapp",
               "contacts": [{"input": body["to"], "wa_id": body["to"]}],
               "messages": [{"id": format!("wamid.out.{n}")}]}),
    )
}

async fn telegram_send(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(bot): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let path = format!("/{bot}/sendMessage");
    if let Some((status, error, retry_after)) = record(&shared, path, &headers, body.clone()) {
        return fail(status, error, retry_after);
    }
    let n = shared.lock().unwrap().sent.len();
    reply(
        200,
        json!({"ok": true, "result": {"message_id": n, "chat": {"id": body["chat_id"]},
                                       "date": 1_700_000_000, "text": body["text"]}}),
    )
}
