//! Turns of one conversation are answered in order: two messages sent at once are not answered
//! side by side, and the second is answered after the first answer is stored. The order is the
//! order in which turns were recorded, whatever their request ids say.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::stack::{Options, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_messages_sent_at_once_are_answered_in_order() {
    let stack = Stack::start(Options {
        workers: 2,
        builtin_token_delay: Duration::from_millis(30),
        ..Options::default()
    })
    .await;
    stack.support_agent().await;
    let first: Value = stack
        .chat("support-agent", json!({"message": "Hello"}))
        .await
        .json()
        .await
        .unwrap();
    let conversation = first["data"]["conversationId"].as_str().unwrap().to_owned();

    let send = |text: &'static str| {
        let http = stack.http.clone();
        let url = stack.url("/v1/api/chat/support-agent");
        let key = stack.api_key.clone();
        let conversation = conversation.clone();
        tokio::spawn(async move {
            let response = http
                .post(url)
                .bearer_auth(key)
                .json(&json!({"message": text, "conversationId": conversation}))
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        })
    };
    // Two workers are free, so without ordering both would be answered side by side.
    let a = send("My name is Ada.");
    // Well inside the first answer's generation (about half a second at this pace), and long
    // enough for the first request to reach the ingress first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = send("What is my name?");
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(b.0, 200, "{}", b.1);
    assert_eq!(
        b.1["data"]["response"],
        "You told me earlier: \"My name is Ada.\""
    );

    let db = stack.db().await;
    let turns: Vec<(String, String)> = db
        .query(
            "SELECT m.role, m.content FROM messages m JOIN conversations c \
             ON c.pk = m.conversation_pk WHERE c.id = $1 ORDER BY m.pk",
            &[&conversation],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let roles: Vec<&str> = turns.iter().map(|(role, _)| role.as_str()).collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant"
        ]
    );
    assert_eq!(turns[2].1, "My name is Ada.");
    assert_eq!(turns[4].1, "What is my name?");
    // Nothing is left pending.
    let pending: i64 = db
        .query_one("SELECT count(*) FROM pending_turns", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
}

/// A later request can record its turn before an earlier one does; the turn recorded first must
/// still hold the other up. Made deterministic by recording a turn by hand whose request id is an
/// hour in the future: by id it comes after the real request, by record it comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_recorded_first_holds_up_a_later_one_whatever_their_request_ids() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let first: Value = stack
        .chat("support-agent", json!({"message": "Hello"}))
        .await
        .json()
        .await
        .unwrap();
    let conversation = first["data"]["conversationId"].as_str().unwrap().to_owned();
    let db = stack.db().await;
    let tenant_id: uuid::Uuid = db
        .query_one(
            "SELECT tenant_id FROM conversations WHERE id = $1",
            &[&conversation],
        )
        .await
        .unwrap()
        .get(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let in_an_hour = uuid::Timestamp::from_unix(uuid::NoContext, now.as_secs() + 3600, 0);
    let held = uuid::Uuid::new_v7(in_an_hour);
    let deadline_ms = now.as_millis() as i64 + 60_000;
    let pooled = stack.pooled_db().await;
    confab::store::pending_turns::record(&pooled, tenant_id, &conversation, held, deadline_ms)
        .await
        .unwrap();

    let http = stack.http.clone();
    let url = stack.url("/v1/api/chat/support-agent");
    let key = stack.api_key.clone();
    let body = json!({"message": "Still there?", "conversationId": conversation});
    let later = tokio::spawn(async move {
        let response = http
            .post(url)
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !later.is_finished(),
        "answered while a turn recorded before it was still pending"
    );
    confab::store::pending_turns::forget(&db, tenant_id, &conversation, held).await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), later)
        .await
        .expect("answered once the earlier turn was settled")
        .unwrap();
    assert_eq!(status, 200, "{body}");
}
