//! A handler that panics still answers its client: a 500 in its family's error shape, on a
//! connection that keeps serving.

use serde_json::{Value, json};

use super::{Family, family};
use crate::http::{ApiRouter, Operation};

async fn boom() -> &'static str {
    panic!("a bug in a handler")
}

async fn fine() -> &'static str {
    "fine"
}

/// Serve the two routes behind `family`'s layers; the base URL.
async fn serve(kind: Family) -> String {
    let op = |id| Operation::new(id, "test").errors("Error", &[500]);
    let routes =
        ApiRouter::<()>::new()
            .get("/boom", boom, op("boom"))
            .get("/fine", fine, op("fine"));
    let (router, _) = family(kind, routes).into_parts();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("a bound port");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    let response = client.get(url).send().await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_panicking_handler_answers_500_in_its_familys_shape() {
    let client = reqwest::Client::new();
    let agents = serve(Family::Agents).await;
    let (status, body) = get(&client, format!("{agents}/boom")).await;
    assert_eq!(status, 500);
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["error"]["name"], "InternalServerError");
    // The panic's message is logged, never shown.
    assert!(!body.to_string().contains("a bug"), "{body}");

    let ai_hub = serve(Family::AiHub).await;
    let (status, body) = get(&client, format!("{ai_hub}/boom")).await;
    assert_eq!(status, 500);
    assert_eq!(body["success"], false);
    assert_eq!(body["error"], "Internal server error");

    let openai = serve(Family::OpenAi).await;
    let (status, body) = get(&client, format!("{openai}/boom")).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["type"], "server_error");

    let management = serve(Family::Management).await;
    let (status, body) = get(&client, format!("{management}/boom")).await;
    assert_eq!((status, &body["error"]["code"]), (500, &json!("internal")));
    // The same client, and the server, go on.
    let (status, _) = get(&client, format!("{management}/fine")).await;
    assert_eq!(status, 200);
}
