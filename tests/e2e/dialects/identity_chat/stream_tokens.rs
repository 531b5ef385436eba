//! Stream tokens, as a browser's EventSource uses them: one identity on one channel, one stream,
//! one minute. A token leaked from a URL must not read anyone else's conversation.

use serde_json::{Value, json};

use super::{assert_seed_stream, events, identity_and_channel};
use crate::support::stack::{Options, Stack};

/// A stream token for `identity` on `channel`, minted with the stack's key.
pub(super) async fn mint(stack: &Stack, identity: &str, channel: &str) -> String {
    let (status, minted) = stack
        .api(
            "POST",
            "/v1/stream-tokens",
            Some(json!({"identity_id": identity, "channel_id": channel})),
        )
        .await;
    assert_eq!(status, 201, "{minted}");
    minted["token"].as_str().unwrap().to_owned()
}

/// `GET .../streaming` with the token in the query and no Authorization header.
async fn stream(
    stack: &Stack,
    identity: &str,
    channel: &str,
    message: &str,
    token: &str,
) -> (u16, String) {
    let url = stack.url(&format!(
        "/conversation/{identity}/streaming?channel_id={channel}&message={message}&token={token}"
    ));
    let response = stack.http.get(&url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn second_identity(stack: &Stack) -> String {
    let (status, identity) = stack
        .api(
            "POST",
            "/v1/identities",
            Some(json!({"name": "Bob", "external_id": "+15550002"})),
        )
        .await;
    assert_eq!(status, 201, "{identity}");
    identity["id"].as_str().unwrap().to_owned()
}

async fn second_channel(stack: &Stack) -> String {
    let agent = stack
        .create_assistant(json!({"name": "Shop Agent", "instructions": "Sell things."}))
        .await;
    let (status, channel) = stack
        .api(
            "POST",
            "/v1/channels",
            Some(json!({"name": "Shop", "kind": "web", "assistant_id": agent["id"]})),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    channel["id"].as_str().unwrap().to_owned()
}

async fn user_turns(stack: &Stack, identity: &str) -> i64 {
    let db = stack.db().await;
    let identity = uuid::Uuid::parse_str(identity).unwrap();
    db.query_one(
        "SELECT count(*) FROM messages m JOIN conversations c ON c.pk = m.conversation_pk \
         WHERE c.identity_id = $1 AND m.role = 'user'",
        &[&identity],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_opens_only_the_identity_and_channel_it_was_minted_for() {
    let stack = Stack::start(Options::default()).await;
    let (ada, website) = identity_and_channel(&stack).await;
    let bob = second_identity(&stack).await;
    let shop = second_channel(&stack).await;
    let (status, body) = stack
        .api(
            "POST",
            &format!("/conversation/{bob}/chat/{website}"),
            Some(json!({"text": "My secret PIN is 9911"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let token = mint(&stack, &ada, &website).await;
    for (identity, channel) in [(&bob, &website), (&ada, &shop), (&bob, &shop)] {
        let (status, body) = stream(&stack, identity, channel, "repeat", &token).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
            "forbidden"
        );
        assert!(!body.contains("9911"), "{body}");
    }
    assert_eq!(user_turns(&stack, &bob).await, 1, "nothing was sent as Bob");

    // A refusal does not spend the token: its own identity still streams, from its own history.
    let (status, body) = stream(&stack, &ada, &website, "repeat", &token).await;
    assert_eq!(status, 200, "{body}");
    let text = assert_seed_stream(&events(&body));
    assert!(!text.contains("9911"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_starts_one_stream_and_a_second_use_is_refused() {
    let stack = Stack::start(Options::default()).await;
    let (identity, channel) = identity_and_channel(&stack).await;
    let token = mint(&stack, &identity, &channel).await;
    let (status, body) = stream(&stack, &identity, &channel, "first", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_seed_stream(&events(&body));

    let (status, body) = stream(&stack, &identity, &channel, "second", &token).await;
    assert_eq!(status, 409, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "stream_token_used", "{body}");
    assert_eq!(user_turns(&stack, &identity).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_racing_with_one_token_get_one_stream() {
    let stack = Stack::start(Options::default()).await;
    let (identity, channel) = identity_and_channel(&stack).await;
    let token = mint(&stack, &identity, &channel).await;
    let (a, b) = tokio::join!(
        stream(&stack, &identity, &channel, "one", &token),
        stream(&stack, &identity, &channel, "two", &token),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    assert_eq!(user_turns(&stack, &identity).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused() {
    let stack = Stack::start(Options::default()).await;
    let (identity, channel) = identity_and_channel(&stack).await;
    let token = mint(&stack, &identity, &channel).await;
    stack
        .db()
        .await
        .execute(
            "UPDATE stream_tokens SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let (status, body) = stream(&stack, &identity, &channel, "late", &token).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(user_turns(&stack, &identity).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_could_not_start_leaves_its_token_usable() {
    let stack = Stack::start(Options::default()).await;
    let (identity, channel) = identity_and_channel(&stack).await;
    let (_, web) = stack
        .api("GET", &format!("/v1/channels/{channel}"), None)
        .await;
    let assistant = format!("/v1/assistants/{}", web["assistant_id"].as_str().unwrap());
    let token = mint(&stack, &identity, &channel).await;

    let (status, _) = stack
        .api("PATCH", &assistant, Some(json!({"deployed": false})))
        .await;
    assert_eq!(status, 200);
    let (status, body) = stream(&stack, &identity, &channel, "hello", &token).await;
    assert_eq!(status, 404, "{body}");

    let (status, _) = stack
        .api("PATCH", &assistant, Some(json!({"deployed": true})))
        .await;
    assert_eq!(status, 200);
    let (status, body) = stream(&stack, &identity, &channel, "hello", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_seed_stream(&events(&body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_mint_a_token_for_another_tenant_s_identity() {
    let stack = Stack::start(Options::default()).await;
    let (identity, channel) = identity_and_channel(&stack).await;
    let other = stack.other_tenant().await;
    let (status, body) = stack
        .api_as(
            &other,
            "POST",
            "/v1/stream-tokens",
            Some(json!({"identity_id": identity, "channel_id": channel})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let count: i64 = stack
        .db()
        .await
        .query_one("SELECT count(*) FROM stream_tokens", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
}
