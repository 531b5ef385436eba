//! Tenants are isolated: every route that takes an id answers another tenant's id with 404, and
//! lists never show another tenant's resources.

use serde_json::{Value, json};

use crate::support::stack::{Options, Stack};

/// Every resource kind of tenant A, created through the API.
struct Owned {
    assistant: String,
    slug: String,
    channel: String,
    identity: String,
    folder: String,
    key: String,
    conversation: String,
    document: String,
}

async fn tenant_a_resources(stack: &Stack) -> Owned {
    let agent = stack.support_agent().await;
    let (_, channel) = stack
        .api(
            "POST",
            "/v1/channels",
            Some(json!({"name": "Web", "kind": "web", "assistant_id": agent["id"]})),
        )
        .await;
    let (_, identity) = stack
        .api("POST", "/v1/identities", Some(json!({"name": "Ada"})))
        .await;
    let (_, folder) = stack
        .api("POST", "/v1/folders", Some(json!({"name": "FAQ"})))
        .await;
    let (_, key) = stack
        .api("POST", "/v1/keys", Some(json!({"name": "second"})))
        .await;
    let (_, document) = stack
        .api(
            "POST",
            &format!("/v1/folders/{}/documents", folder["id"].as_str().unwrap()),
            Some(json!({"title": "Secret", "content": "Only for tenant A."})),
        )
        .await;
    let chat: Value = stack
        .chat("support-agent", json!({"message": "hello"}))
        .await
        .json()
        .await
        .unwrap();
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    Owned {
        assistant: id(&agent),
        slug: agent["slug"].as_str().unwrap().to_owned(),
        channel: id(&channel),
        identity: id(&identity),
        folder: id(&folder),
        key: id(&key),
        conversation: chat["data"]["conversationId"].as_str().unwrap().to_owned(),
        document: id(&document),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_s_ids_are_404_on_every_route() {
    let stack = Stack::start(Options::default()).await;
    let a = tenant_a_resources(&stack).await;
    let b = stack.other_tenant().await;
    // Tenant B has an assistant of its own, so "not found" cannot come from having none.
    let (status, _) = stack
        .api_as(
            &b,
            "POST",
            "/v1/assistants",
            Some(json!({"name": "B bot", "slug": "b-bot"})),
        )
        .await;
    assert_eq!(status, 201);

    let patch = Some(json!({"name": "stolen"}));
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/v1/assistants/{}", a.assistant), None),
        (
            "PATCH",
            format!("/v1/assistants/{}", a.assistant),
            patch.clone(),
        ),
        ("DELETE", format!("/v1/assistants/{}", a.assistant), None),
        ("GET", format!("/v1/channels/{}", a.channel), None),
        (
            "PATCH",
            format!("/v1/channels/{}", a.channel),
            patch.clone(),
        ),
        ("DELETE", format!("/v1/channels/{}", a.channel), None),
        ("GET", format!("/v1/identities/{}", a.identity), None),
        (
            "PATCH",
            format!("/v1/identities/{}", a.identity),
            patch.clone(),
        ),
        ("DELETE", format!("/v1/identities/{}", a.identity), None),
        ("GET", format!("/v1/folders/{}", a.folder), None),
        ("GET", format!("/v1/folders/{}/documents", a.folder), None),
        (
            "POST",
            format!("/v1/folders/{}/documents", a.folder),
            Some(json!({"title": "Planted", "content": "x"})),
        ),
        ("GET", format!("/v1/documents/{}", a.document), None),
        ("DELETE", format!("/v1/documents/{}", a.document), None),
        ("GET", format!("/v1/identities/{}/memory", a.identity), None),
        (
            "PUT",
            format!("/v1/identities/{}/memory", a.identity),
            Some(json!({"stage": "x"})),
        ),
        (
            "PATCH",
            format!("/v1/identities/{}/memory", a.identity),
            Some(json!({"stage": "x"})),
        ),
        (
            "PUT",
            format!("/v1/identities/{}/memory/data/k", a.identity),
            Some(json!("v")),
        ),
        (
            "DELETE",
            format!("/v1/identities/{}/memory/data/k", a.identity),
            None,
        ),
        ("GET", format!("/v1/keys/{}", a.key), None),
        (
            "PATCH",
            format!("/v1/keys/{}", a.key),
            Some(json!({"rate_limit_per_min": 1})),
        ),
        ("DELETE", format!("/v1/keys/{}", a.key), None),
        ("GET", format!("/v1/conversations/{}", a.conversation), None),
        (
            "GET",
            format!("/v1/conversations/{}/messages", a.conversation),
            None,
        ),
        (
            "DELETE",
            format!("/v1/conversations/{}", a.conversation),
            None,
        ),
        (
            "POST",
            format!("/conversation/{}/chat/{}", a.identity, a.channel),
            Some(json!({"text": "hi"})),
        ),
        (
            "GET",
            format!(
                "/conversation/{}/streaming?channel_id={}&message=hi",
                a.identity, a.channel
            ),
            None,
        ),
        (
            "POST",
            format!("/v1/api/chat/{}", a.slug),
            Some(json!({"message": "hi"})),
        ),
        (
            "POST",
            "/v1/api/chat/b-bot".to_owned(),
            Some(json!({"message": "hi", "conversationId": a.conversation})),
        ),
        (
            "POST",
            "/v1/chat/completions".to_owned(),
            Some(json!({"model": a.slug, "messages": [{"role": "user", "content": "hi"}]})),
        ),
        (
            "POST",
            "/api/ai-hub/assistant/ask".to_owned(),
            Some(
                json!({"message": {"role": "user", "content": "hi"}, "id": "c1", "assistantId": a.assistant}),
            ),
        ),
    ];
    for (method, path, body) in routes {
        let (status, response) = stack.api_as(&b, method, &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {response}");
    }

    // Lists show tenant B nothing of tenant A's.
    for list in [
        "/v1/assistants",
        "/v1/channels",
        "/v1/identities",
        "/v1/folders",
        "/v1/conversations",
        "/v1/keys",
        "/v1/models",
    ] {
        let (status, body) = stack.api_as(&b, "GET", list, None).await;
        assert_eq!(status, 200, "{list}");
        let text = body.to_string();
        for id in [
            &a.assistant,
            &a.channel,
            &a.identity,
            &a.folder,
            &a.key,
            &a.conversation,
        ] {
            assert!(!text.contains(id.as_str()), "{list} shows {id}");
        }
        assert!(!text.contains("\"support-agent\""), "{list}");
    }

    // And tenant A still has everything.
    for path in [
        format!("/v1/assistants/{}", a.assistant),
        format!("/v1/channels/{}", a.channel),
        format!("/v1/identities/{}", a.identity),
        format!("/v1/keys/{}", a.key),
        format!("/v1/conversations/{}", a.conversation),
        format!("/v1/documents/{}", a.document),
    ] {
        let (status, body) = stack.api("GET", &path, None).await;
        assert_eq!(status, 200, "{path}");
        assert_ne!(body["name"], "stolen");
        assert_eq!(body["revoked_at"], Value::Null);
    }
}
