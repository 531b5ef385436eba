//! Turns of one conversation are answered in order: two messages sent at once are not answered
//! side by side, and the second is answered after the first answer is stored.

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
