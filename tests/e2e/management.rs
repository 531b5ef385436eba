//! `POST /v1/assistants` and `GET /v1/assistants/{id}`: creation, validation, tenant isolation.

use serde_json::{Value, json};

use crate::support::stack::{Options, Stack};

async fn post(stack: &Stack, key: &str, body: Value) -> (u16, Value) {
    let response = stack
        .http
        .post(stack.url("/v1/assistants"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_an_assistant_returns_201_with_id_and_slug() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let (status, created) = post(&stack, &stack.api_key, json!({"name": "Customer Support"})).await;
    assert_eq!(status, 201);
    assert_eq!(created["slug"], "customer-support");
    assert_eq!(created["model"], "builtin");
    assert_eq!(created["deployed"], true);
    let id = created["id"].as_str().unwrap();

    let (status, explicit) = post(
        &stack,
        &stack.api_key,
        json!({"name": "Sales", "slug": "sales-bot", "instructions": "Sell.", "model": "openai/gpt-4o-mini"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(explicit["slug"], "sales-bot");
    assert_eq!(explicit["model"], "openai/gpt-4o-mini");

    let read: Value = stack
        .http
        .get(stack.url(&format!("/v1/assistants/{id}")))
        .bearer_auth(&stack.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read, created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_assistants_are_refused_with_the_field_named() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let cases = [
        (json!({}), 400, "name"),
        (json!({"name": "  "}), 400, "name"),
        (json!({"name": "A", "model": "gpt-4"}), 400, "model"),
        (json!({"name": "A", "slug": "Not A Slug"}), 400, "slug"),
        (json!({"name": "!!!"}), 400, "slug"),
        (json!({"name": "A", "colour": "red"}), 400, "colour"),
    ];
    for (body, status, field) in cases {
        let (got, error) = post(&stack, &stack.api_key, body.clone()).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(error["error"]["code"], "invalid_request", "{body}");
        assert_eq!(error["error"]["details"]["field"], field, "{body}");
    }
    let (status, _) = post(&stack, &stack.api_key, json!({"name": "Twice"})).await;
    assert_eq!(status, 201);
    let (status, error) = post(&stack, &stack.api_key, json!({"name": "Twice"})).await;
    assert_eq!(status, 409);
    assert_eq!(error["error"]["code"], "conflict");
    let (status, error) = post(&stack, "cfk_wrong", json!({"name": "Nope"})).await;
    assert_eq!(status, 401);
    assert_eq!(error["error"]["code"], "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_s_assistant_is_a_404_everywhere() {
    let stack = Stack::start(Options::default()).await;
    let mine = stack.support_agent().await;
    let mut db = stack.db().await;
    let other = confab::cli::admin::create_tenant(&mut db, "other")
        .await
        .unwrap();
    let other_key = other["api_key"].as_str().unwrap();

    let response = stack
        .http
        .get(stack.url(&format!("/v1/assistants/{}", mine["id"].as_str().unwrap())))
        .bearer_auth(other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = stack
        .http
        .post(stack.url("/v1/api/chat/support-agent"))
        .bearer_auth(other_key)
        .json(&json!({"message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Agent with slug 'support-agent' not found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assistants_list_in_pages_update_and_delete() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    for name in ["One", "Two", "Three"] {
        stack.create_assistant(json!({"name": name})).await;
    }
    let (status, first) = stack.api("GET", "/v1/assistants?limit=2", None).await;
    assert_eq!(status, 200);
    let slugs: Vec<&str> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["three", "two"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = stack
        .api(
            "GET",
            &format!("/v1/assistants?limit=2&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(second["data"][0]["slug"], "one");
    assert_eq!(second["next_cursor"], Value::Null);
    let (status, _) = stack.api("GET", "/v1/assistants?limit=0", None).await;
    assert_eq!(status, 400);

    let id = second["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, patched) = stack
        .api(
            "PATCH",
            &format!("/v1/assistants/{id}"),
            Some(json!({"deployed": false, "instructions": "Be brief."})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["deployed"], false);
    assert_eq!(patched["instructions"], "Be brief.");
    assert_eq!(patched["name"], "One", "untouched fields stay");
    let (status, _) = stack
        .api(
            "PATCH",
            &format!("/v1/assistants/{id}"),
            Some(json!({"slug": "two"})),
        )
        .await;
    assert_eq!(status, 409);

    let (status, _) = stack
        .api("DELETE", &format!("/v1/assistants/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = stack
        .api("GET", &format!("/v1/assistants/{id}"), None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeployed_assistant_does_not_answer() {
    let stack = Stack::start(Options::default()).await;
    let agent = stack.support_agent().await;
    let id = agent["id"].as_str().unwrap();
    stack
        .api(
            "PATCH",
            &format!("/v1/assistants/{id}"),
            Some(json!({"deployed": false})),
        )
        .await;
    let response = stack.chat("support-agent", json!({"message": "hi"})).await;
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_keep_their_secrets_and_their_assistant_must_exist() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let agent = stack.support_agent().await;
    let (status, channel) = stack
        .api(
            "POST",
            "/v1/channels",
            Some(
                json!({"name": "WhatsApp", "kind": "whatsapp", "assistant_id": agent["id"],
                        "config": {"app_secret": "s3cret", "verify_token": "v"}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    assert_eq!(
        channel["config_keys"],
        json!(["app_secret", "verify_token"])
    );
    assert!(!channel.to_string().contains("s3cret"));
    let id = channel["id"].as_str().unwrap();
    let (_, read) = stack.api("GET", &format!("/v1/channels/{id}"), None).await;
    assert!(!read.to_string().contains("s3cret"));
    let (status, patched) = stack
        .api(
            "PATCH",
            &format!("/v1/channels/{id}"),
            Some(json!({"config": {"verify_token": null}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(patched["config_keys"], json!(["app_secret"]));

    for (body, field) in [
        (
            json!({"name": "x", "kind": "fax", "assistant_id": agent["id"]}),
            "kind",
        ),
        (json!({"name": "x", "kind": "web"}), "assistant_id"),
        (
            json!({"name": "x", "kind": "web", "assistant_id": "0190f0f0-0000-7000-8000-000000000000"}),
            "assistant_id",
        ),
    ] {
        let (status, error) = stack.api("POST", "/v1/channels", Some(body)).await;
        assert_eq!(status, 400);
        assert_eq!(error["error"]["details"]["field"], field);
    }
    // An assistant with a channel cannot be deleted from under it.
    let (status, _) = stack
        .api(
            "DELETE",
            &format!("/v1/assistants/{}", agent["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_are_found_by_external_id_which_is_unique() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let (status, ada) = stack
        .api(
            "POST",
            "/v1/identities",
            Some(json!({"name": "Ada", "external_id": "+15550001", "profile": {"tier": "gold"}})),
        )
        .await;
    assert_eq!(status, 201);
    stack
        .api("POST", "/v1/identities", Some(json!({"name": "Bob"})))
        .await;
    let (status, _) = stack
        .api(
            "POST",
            "/v1/identities",
            Some(json!({"external_id": "+15550001"})),
        )
        .await;
    assert_eq!(status, 409);
    let (_, found) = stack
        .api("GET", "/v1/identities?external_id=%2B15550001", None)
        .await;
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert_eq!(found["data"][0]["id"], ada["id"]);
    let id = ada["id"].as_str().unwrap();
    let (_, patched) = stack
        .api(
            "PATCH",
            &format!("/v1/identities/{id}"),
            Some(json!({"profile": {"language": "pt-BR"}})),
        )
        .await;
    assert_eq!(
        patched["profile"],
        json!({"tier": "gold", "language": "pt-BR"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_list_show_their_history_in_order_and_delete() {
    let stack = Stack::start(Options::default()).await;
    let agent = stack.support_agent().await;
    let first: Value = stack
        .chat("support-agent", json!({"message": "My name is Ada."}))
        .await
        .json()
        .await
        .unwrap();
    let id = first["data"]["conversationId"].as_str().unwrap();
    stack
        .chat(
            "support-agent",
            json!({"message": "What is my name?", "conversationId": id}),
        )
        .await;
    stack
        .chat("support-agent", json!({"message": "Another conversation"}))
        .await;

    let (_, all) = stack.api("GET", "/v1/conversations", None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let (_, mine) = stack
        .api(
            "GET",
            &format!(
                "/v1/conversations?assistant_id={}",
                agent["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(mine["data"].as_array().unwrap().len(), 2);
    let (_, none) = stack
        .api(
            "GET",
            "/v1/conversations?identity_id=0190f0f0-0000-7000-8000-000000000000",
            None,
        )
        .await;
    assert_eq!(none["data"], json!([]));

    let (status, history) = stack
        .api("GET", &format!("/v1/conversations/{id}/messages"), None)
        .await;
    assert_eq!(status, 200);
    let turns: Vec<(String, String)> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(turns[0], ("user".into(), "My name is Ada.".into()));
    assert_eq!(turns[2], ("user".into(), "What is my name?".into()));
    assert_eq!(
        turns[3],
        (
            "assistant".into(),
            "You told me earlier: \"My name is Ada.\"".into()
        )
    );
    assert_eq!(history["data"][3]["answers"], history["data"][2]["id"]);

    let (status, _) = stack
        .api("DELETE", &format!("/v1/conversations/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = stack
        .api("GET", &format!("/v1/conversations/{id}/messages"), None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_shown_once_listed_without_secrets_and_revocable() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let (status, created) = stack
        .api(
            "POST",
            "/v1/keys",
            Some(json!({"name": "ci", "rate_limit_per_min": 2})),
        )
        .await;
    assert_eq!(status, 201);
    let secret = created["api_key"].as_str().unwrap().to_owned();
    assert_eq!(created["rate_limit_per_min"], 2);
    let (_, listed) = stack.api("GET", "/v1/keys", None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&secret));

    // The key's own limit applies to it: a burst of two, then one request per 30 s.
    let (status, _) = stack.api_as(&secret, "GET", "/v1/keys", None).await;
    assert_eq!(status, 200);
    let (status, _) = stack.api_as(&secret, "GET", "/v1/keys", None).await;
    assert_eq!(status, 200);
    let (status, limited) = stack.api_as(&secret, "GET", "/v1/keys", None).await;
    assert_eq!(status, 429, "{limited}");
    assert_eq!(limited["error"]["code"], "rate_limited");

    let id = created["id"].as_str().unwrap();
    let (status, _) = stack
        .api(
            "PATCH",
            &format!("/v1/keys/{id}"),
            Some(json!({"rate_limit_per_min": 1000})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = stack.api("DELETE", &format!("/v1/keys/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = stack.api_as(&secret, "GET", "/v1/keys", None).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_have_a_text_search_language() {
    let stack = Stack::start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let (status, folder) = stack
        .api("POST", "/v1/folders", Some(json!({"name": "FAQ"})))
        .await;
    assert_eq!(status, 201);
    assert_eq!(folder["language"], "english");
    let (status, folder_pt) = stack
        .api(
            "POST",
            "/v1/folders",
            Some(json!({"name": "Ajuda", "language": "portuguese"})),
        )
        .await;
    assert_eq!(status, 201, "{folder_pt}");
    let (status, _) = stack
        .api("POST", "/v1/folders", Some(json!({"name": "FAQ"})))
        .await;
    assert_eq!(status, 409);
    let (status, error) = stack
        .api(
            "POST",
            "/v1/folders",
            Some(json!({"name": "X", "language": "klingon"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["details"]["field"], "language");
    let (_, listed) = stack.api("GET", "/v1/folders", None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
}

/// `POST /v1/api/chat/support-agent` on the ingress at `base`; its status.
async fn chat_status(stack: &Stack, base: &str) -> u16 {
    stack
        .chat_at(base, "support-agent", json!({"message": "hi"}))
        .await
        .status()
        .as_u16()
}

/// The server processes of this stack's database listening for assistant changes.
async fn listeners(stack: &Stack) -> Vec<i32> {
    let db = stack.db().await;
    let rows = db
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND query = 'LISTEN confab_assistants' ORDER BY pid",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

/// Wait up to 10 s for `done`; whether it came true.
async fn eventually<F, Fut>(done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(std::time::Duration::from_secs(10), done).await
}

/// Wait up to `limit` for `done`; whether it came true.
async fn eventually_within<F, Fut>(limit: std::time::Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        if done().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assistant_changed_through_one_ingress_is_refused_by_every_ingress() {
    let mut stack = Stack::start(Options::default()).await;
    let first = stack.url("");
    let second = stack.another_ingress().await;
    let agent = stack.support_agent().await;
    let id = agent["id"].as_str().unwrap().to_owned();
    assert!(eventually(|| async { listeners(&stack).await.len() == 2 }).await);
    // Both ingresses answer, and so remember, the agent.
    assert_eq!(chat_status(&stack, &first).await, 200);
    assert_eq!(chat_status(&stack, &second).await, 200);

    let patch = |deployed: bool| {
        let path = format!("/v1/assistants/{id}");
        let stack = &stack;
        async move {
            let (status, body) = stack
                .api("PATCH", &path, Some(json!({ "deployed": deployed })))
                .await;
            assert_eq!(status, 200, "{body}");
        }
    };
    patch(false).await;
    // The ingress that made the change sees it on its next request; the other once the
    // database's notification reaches it, and from then on.
    assert_eq!(chat_status(&stack, &first).await, 404);
    assert!(eventually(|| async { chat_status(&stack, &second).await == 404 }).await);
    assert_eq!(chat_status(&stack, &second).await, 404);

    // A change made while an ingress is not listening is never missed: losing the connection
    // forgot everything, and the listener connects again.
    patch(true).await;
    assert!(eventually(|| async { chat_status(&stack, &second).await == 200 }).await);
    let before = listeners(&stack).await;
    let db = stack.db().await;
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query = 'LISTEN confab_assistants'",
        &[],
    )
    .await
    .unwrap();
    assert!(eventually(|| async { listeners(&stack).await.is_empty() }).await);
    patch(false).await;
    let reconnected = eventually(|| async {
        let now = listeners(&stack).await;
        now.len() == 2 && now.iter().all(|pid| !before.contains(pid))
    })
    .await;
    assert!(reconnected, "both ingresses listen again");
    assert_eq!(chat_status(&stack, &second).await, 404);
}

/// A listener whose server vanished without closing the connection hears no more notices: it
/// finds that out by itself and stops remembering, so a change made meanwhile is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_whose_listener_silently_lost_its_server_remembers_nothing_stale() {
    use confab::store::assistant_cache::AssistantCache;
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let db = stack.db().await;
    let tenant_id = stack.tenant_id;
    let upstream: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = crate::support::freeze_proxy::FreezeProxy::start(upstream).await;
    let through_proxy = stack
        .database_url
        .replace("127.0.0.1:5432", &proxy.addr.to_string());
    assert_ne!(
        through_proxy, stack.database_url,
        "the stack's database is on 127.0.0.1:5432"
    );
    let before = listeners(&stack).await.len();
    let cache = AssistantCache::listening(&through_proxy).unwrap();
    assert!(eventually(|| async { listeners(&stack).await.len() == before + 1 }).await);
    let pooled = stack.pooled_db().await;
    let deployed = |cache: AssistantCache| {
        let pooled = &pooled;
        async move {
            let found = cache
                .by_slug(pooled, tenant_id, "support-agent")
                .await
                .unwrap();
            found.expect("the agent").deployed
        }
    };
    // Looked up once the listener listens, so remembered.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(deployed(cache.clone()).await);
    proxy.freeze();
    db.execute(
        "UPDATE assistants SET deployed = false WHERE tenant_id = $1 AND slug = 'support-agent'",
        &[&tenant_id],
    )
    .await
    .unwrap();
    // Its notice is stuck in the silent connection, and a probe takes seconds to give up, so
    // right now the remembered assistant is what the cache says.
    assert!(
        deployed(cache.clone()).await,
        "remembered before the listener gives up"
    );
    // Given up within a probe's period and wait (8 s at most).
    let seen = eventually_within(std::time::Duration::from_secs(30), || async {
        !deployed(cache.clone()).await
    });
    assert!(
        seen.await,
        "the change is seen once the silent listener is given up"
    );
}
