//! Keys an ingress remembers for its chat turn routes (`store::key_cache`). Such a key is checked,
//! and its request counted, in the statement that records the turn; a request that records no
//! turn is charged after its handler. Both paths must refuse a revoked or throttled key exactly
//! as a lookup before the handler did, and record nothing for it.

use serde_json::{Value, json};

use crate::support::stack::{Options, Stack};

/// A new key of the stack's tenant (its secret, its id).
async fn new_key(stack: &Stack, body: Value) -> (String, String) {
    let (status, created) = stack.api("POST", "/v1/keys", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    (
        created["api_key"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    )
}

/// A seed 001 turn on the ingress at `base` with `key`.
async fn agents_turn(stack: &Stack, base: &str, key: &str, body: Value) -> (u16, Value) {
    let response = stack
        .http
        .post(format!("{base}/v1/api/chat/support-agent"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn count(stack: &Stack, table: &str) -> i64 {
    let db = stack.db().await;
    db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_ingress_is_refused_at_once_by_another_that_remembers_it() {
    let mut stack = Stack::start(Options::default()).await;
    let assistant = stack.support_agent().await;
    let (secret, key_id) = new_key(&stack, json!({"name": "soon revoked"})).await;
    let other = stack.another_ingress().await;
    // The first turn looks the key up and remembers it; the second is charged as it is recorded.
    for _ in 0..2 {
        let (status, body) = agents_turn(&stack, &other, &secret, json!({"message": "hi"})).await;
        assert_eq!(status, 200, "{body}");
    }

    let (status, _) = stack
        .api("DELETE", &format!("/v1/keys/{key_id}"), None)
        .await;
    assert_eq!(status, 204);

    // At once, on the other ingress: a turn, a request that records none, and every turn route.
    for body in [json!({"message": "hi"}), json!({"message": ""})] {
        let (status, refused) = agents_turn(&stack, &other, &secret, body).await;
        assert_eq!(status, 401, "{refused}");
        assert_eq!(refused["error"]["name"], "UnauthorizedError");
    }
    let openai = stack
        .http
        .post(format!("{other}/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": "support-agent", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(openai.status(), 401);
    let openai: Value = openai.json().await.unwrap();
    assert_eq!(openai["error"]["code"], "invalid_api_key", "{openai}");
    let ai_hub = stack
        .http
        .post(format!("{other}/api/ai-hub/assistant/ask"))
        .bearer_auth(&secret)
        .json(&json!({
            "message": {"role": "user", "content": "hi"},
            "id": "conv_revoked",
            "assistantId": assistant["id"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(ai_hub.status(), 401);
    let ai_hub: Value = ai_hub.json().await.unwrap();
    assert_eq!(ai_hub["error"], "Unauthorized", "{ai_hub}");

    // Nothing of the refused turns was recorded: the two answered ones are all there is.
    assert_eq!(count(&stack, "conversations").await, 2);
    assert_eq!(count(&stack, "turn_places").await, 2);
    assert_eq!(count(&stack, "pending_turns").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_key_counts_every_request_and_over_its_limit_even_a_bad_one_gets_429() {
    let mut stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    // A burst of three, then one request per 20 s: the test ends long before a refill.
    let (secret, _) = new_key(&stack, json!({"name": "three", "rate_limit_per_min": 3})).await;
    let other = stack.another_ingress().await;
    let turn = |body: Value| agents_turn(&stack, &other, &secret, body);

    // Looked up and counted before the handler, then counted as the turn is recorded, then
    // counted after a handler that recorded nothing.
    assert_eq!(turn(json!({"message": "hi"})).await.0, 200);
    assert_eq!(turn(json!({"message": "hi"})).await.0, 200);
    let (status, invalid) = turn(json!({"message": ""})).await;
    assert_eq!(status, 400, "{invalid}");

    // The burst is spent: a bad request is refused as throttled, not as bad, and so is a turn.
    for body in [json!({"message": ""}), json!({"message": "hi"})] {
        let (status, refused) = turn(body).await;
        assert_eq!(status, 429, "{refused}");
        assert_eq!(refused["error"]["name"], "RateLimitError");
    }
    assert_eq!(count(&stack, "conversations").await, 2);
    assert_eq!(count(&stack, "pending_turns").await, 0);
}
