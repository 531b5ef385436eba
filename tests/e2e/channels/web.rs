//! The web channel end to end: a shop's page on another origin embeds the widget and a visitor
//! chats through it in a real browser (Debian's Chromium, `support::browser`); CORS, visitor
//! tokens and signed users checked both in the browser and over plain HTTP.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::browser;
use crate::support::cut_proxy::CutProxy;
use crate::support::host_page::{HostPage, shop_with_widget};
use crate::support::stack::{Options, Stack, sse_data};

const INSTRUCTIONS: &str = "Our shop opens at **9:00** <img src=x onerror=\"pwned=true\"> \
    and closes at 17:00 every day.";
const QUESTION: &str = "When does the shop open?";
const SECRET: &str = "the-shop-signs-its-users-with-this";

fn options() -> Options {
    Options {
        builtin_token_delay: Duration::from_millis(30),
        ..Options::default()
    }
}

/// A public web channel allowing `origins`, answered by an assistant that knows the hours.
async fn public_channel(stack: &Stack, origins: &[&str]) -> String {
    public_channel_knowing(stack, INSTRUCTIONS, origins).await
}

/// A public web channel allowing `origins`, answered by an assistant with `instructions`.
async fn public_channel_knowing(stack: &Stack, instructions: &str, origins: &[&str]) -> String {
    let assistant = stack
        .create_assistant(json!({"name": "Shop", "instructions": instructions}))
        .await;
    let config = json!({"public": true, "allowed_origins": origins, "identity_secret": SECRET});
    let (status, channel) = stack
        .api(
            "POST",
            "/v1/channels",
            Some(json!({"name": "Shop site", "kind": "web",
                        "assistant_id": assistant["id"], "config": config})),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    channel["id"].as_str().unwrap().to_owned()
}

async fn count(stack: &Stack, sql: &str) -> i64 {
    stack.db().await.query_one(sql, &[]).await.unwrap().get(0)
}

/// A stack with `options`, and a shop on another origin embedding the widget of its public
/// channel, which allows the shop.
async fn shop_with_its_widget(options: Options) -> (Stack, HostPage) {
    let stack = Stack::start(options).await;
    let shop = HostPage::start().await;
    let channel = public_channel(&stack, &[&shop.origin]).await;
    shop.show(shop_with_widget(&stack.url(""), &channel, ""));
    (stack, shop)
}

fn sign(user_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(user_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Where the browser test leaves its screenshot of the widget (the README shows a copy).
fn screenshot_path() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("widget.png").display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_on_another_origin_chats_through_the_widget_and_finds_it_again_after_a_reload() {
    let (stack, shop) = shop_with_its_widget(options()).await;
    let args = json!({"host": shop.origin, "question": QUESTION, "screenshot": screenshot_path()});
    let outcome = browser::scenario("widget_chat", args).await;
    let seen = &outcome.result;
    let console = &outcome.console;

    let answer = seen["answer"].as_str().unwrap();
    assert!(
        answer.contains("9:00") && answer.contains("17:00"),
        "{seen}"
    );
    assert_eq!(seen["status"], "", "no error shown: {seen} {console:?}");
    // Markdown rendered, HTML in the answer shown as text and never run.
    assert_eq!(seen["boldInAnswer"], 1, "{seen}");
    assert!(answer.contains("<img src=x"), "{seen}");
    assert_eq!(seen["imagesInAnswer"], 0, "{seen}");
    assert_eq!(seen["pwned"], false, "{seen}");
    assert!(
        seen["lengths"].as_array().unwrap().len() > 3,
        "the answer grew token by token on screen: {seen}"
    );
    assert_eq!(seen["newGlobals"], json!(["confab"]), "{seen}");
    assert_ne!(
        seen["answerColour"], "rgb(255, 0, 0)",
        "the page's CSS leaked in"
    );
    assert_eq!(
        seen["afterReload"],
        json!([{"role": "user", "text": QUESTION}, {"role": "assistant", "text": answer}]),
        "the conversation is back after a reload"
    );
    assert_eq!(seen["phonePanel"], json!({"width": 375, "height": 667}));
    assert_eq!(seen["focusedLabel"], "Message");

    assert_eq!(
        count(&stack, "SELECT count(*) FROM messages WHERE role = 'user'").await,
        1
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM identities WHERE external_id LIKE 'web-visitor:%'"
        )
        .await,
        1,
        "the reload came back as the same visitor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_an_origin_the_channel_does_not_allow_is_refused_by_the_browser_and_stores_nothing()
 {
    let stack = Stack::start(options()).await;
    let elsewhere = HostPage::start().await;
    let channel = public_channel(&stack, &["https://shop.example"]).await;
    elsewhere.show(shop_with_widget(&stack.url(""), &channel, ""));
    let args = json!({"host": elsewhere.origin, "question": QUESTION});
    let outcome = browser::scenario("widget_refused", args).await;
    let seen = &outcome.result;
    assert!(
        seen["status"].as_str().unwrap().contains("Cannot reach"),
        "the visitor is told: {seen}"
    );
    assert_eq!(seen["answers"], 0, "{seen}");
    assert!(
        outcome
            .console
            .iter()
            .any(|line| line.contains("blocked by CORS policy")),
        "the browser refused it: {:?}",
        outcome.console
    );
    assert_eq!(count(&stack, "SELECT count(*) FROM messages").await, 0);
    assert_eq!(count(&stack, "SELECT count(*) FROM identities").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_user_id_becomes_that_identity_and_a_forged_one_is_refused() {
    let stack = Stack::start(options()).await;
    let shop = HostPage::start().await;
    let channel = public_channel(&stack, &[&shop.origin]).await;
    let (status, identity) = stack
        .api(
            "POST",
            "/v1/identities",
            Some(json!({"name": "Ada", "external_id": "user-42"})),
        )
        .await;
    assert_eq!(status, 201, "{identity}");

    let forged = format!(
        r#"data-user-id="user-42" data-user-signature="{}""#,
        sign("user-43")
    );
    shop.show(shop_with_widget(&stack.url(""), &channel, &forged));
    let args = json!({"host": shop.origin, "question": QUESTION});
    let refused = browser::scenario("widget_refused", args.clone())
        .await
        .result;
    assert_eq!(
        refused["status"], "This site may not use this chat.",
        "{refused}"
    );
    assert_eq!(count(&stack, "SELECT count(*) FROM messages").await, 0);

    let signed = format!(
        r#"data-user-id="user-42" data-user-signature="{}""#,
        sign("user-42")
    );
    shop.show(shop_with_widget(&stack.url(""), &channel, &signed));
    let seen = browser::scenario("widget_chat", args).await.result;
    assert!(seen["answer"].as_str().unwrap().contains("9:00"), "{seen}");
    let db = stack.db().await;
    let spoke: uuid::Uuid = db
        .query_one(
            "SELECT c.identity_id FROM conversations c JOIN messages m ON m.conversation_pk = c.pk \
             WHERE m.role = 'user'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(spoke.to_string(), identity["id"].as_str().unwrap());
    assert_eq!(count(&stack, "SELECT count(*) FROM identities").await, 1);
}

/// A visitor session over plain HTTP, as the widget starts one from `origin`.
async fn session(stack: &Stack, channel: &str, origin: &str, body: Value) -> (u16, Value) {
    let response = stack
        .http
        .post(stack.url(&format!("/v1/web/channels/{channel}/sessions")))
        .header("origin", origin)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn visitor_stream(
    stack: &Stack,
    visitor: &Value,
    identity: &Value,
    last: Option<&str>,
) -> (u16, String) {
    let url = format!(
        "/conversation/{}/streaming?channel_id={}&message=When%20does%20the%20shop%20open%3F&token={}",
        identity.as_str().unwrap(),
        visitor["channel_id"].as_str().unwrap(),
        visitor["token"].as_str().unwrap()
    );
    let mut request = stack.http.get(stack.url(&url));
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_token_reaches_its_own_conversation_and_nothing_else() {
    let stack = Stack::start(Options::default()).await;
    let shop = "https://shop.example";
    let channel = public_channel(&stack, &[shop]).await;
    let (_, ann) = session(&stack, &channel, shop, json!({})).await;
    let (_, bob) = session(&stack, &channel, shop, json!({})).await;
    assert_ne!(ann["identity_id"], bob["identity_id"]);

    let (status, body) = visitor_stream(&stack, &ann, &ann["identity_id"], None).await;
    assert_eq!(status, 200, "{body}");
    let last = body
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(sse_data(&body).last().unwrap().contains("complete"));
    // The same token streams again (unlike a one-stream token), and a reconnect is a 204.
    assert_eq!(
        visitor_stream(&stack, &ann, &ann["identity_id"], Some(&last))
            .await
            .0,
        204
    );

    // Bob cannot speak as Ann, resume her stream, or read her conversation.
    let (status, _) = visitor_stream(&stack, &bob, &ann["identity_id"], None).await;
    assert_eq!(status, 403);
    let (status, _) = visitor_stream(&stack, &bob, &bob["identity_id"], Some(&last)).await;
    assert_eq!(status, 404);
    let read = |visitor: &Value| {
        let url = stack.url(&format!("/v1/web/channels/{channel}/conversation"));
        let token = visitor["token"].as_str().unwrap().to_owned();
        let http = stack.http.clone();
        async move {
            let response = http.get(url).bearer_auth(token).send().await.unwrap();
            let body: Value = response.json().await.unwrap();
            body["messages"].as_array().unwrap().len()
        }
    };
    assert_eq!(read(&ann).await, 2);
    assert_eq!(read(&bob).await, 0);
    // A visitor token is no API key.
    let (status, _) = stack
        .api_as(bob["token"].as_str().unwrap(), "GET", "/v1/channels", None)
        .await;
    assert_eq!(status, 401);

    // Returning with the kept key is the same visitor; a new session is a new one.
    let (status, again) = session(
        &stack,
        &channel,
        shop,
        json!({"visitor_key": ann["visitor_key"]}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(again["identity_id"], ann["identity_id"]);
    assert_eq!(read(&again).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_the_channel_s_origins_on_visitor_routes_only() {
    let stack = Stack::start(Options::default()).await;
    let shop = "https://shop.example";
    let channel = public_channel(&stack, &[shop]).await;
    let preflight = |path: String, origin: &'static str| {
        let request = stack
            .http
            .request(reqwest::Method::OPTIONS, stack.url(&path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type");
        async move {
            let response = request.send().await.unwrap();
            response
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_owned())
        }
    };
    let sessions = format!("/v1/web/channels/{channel}/sessions");
    assert_eq!(
        preflight(sessions.clone(), shop).await.as_deref(),
        Some(shop)
    );
    assert_eq!(preflight(sessions, "https://evil.example").await, None);
    assert_eq!(preflight("/v1/channels".into(), shop).await, None);
    assert_eq!(preflight("/v1/chat/completions".into(), shop).await, None);
    // A refused session still answers the allowed origin, so the page can show why.
    let (status, _) = session(&stack, &channel, "https://evil.example", json!({})).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_have_their_own_limits_which_leave_the_tenant_s_keys_alone() {
    let stack = Stack::start(Options {
        visitors: confab::config::VisitorLimits {
            per_visitor_per_min: 2,
            ..confab::config::VisitorLimits::default()
        },
        rate_limit_per_min: 3,
        ..Options::default()
    })
    .await;
    let shop = "https://shop.example";
    let channel = public_channel(&stack, &[shop]).await;
    let (status, ann) = session(&stack, &channel, shop, json!({})).await;
    assert_eq!(status, 201);
    let key = json!({"visitor_key": ann["visitor_key"]});
    assert_eq!(session(&stack, &channel, shop, key.clone()).await.0, 201);
    let response = stack
        .http
        .post(stack.url(&format!("/v1/web/channels/{channel}/sessions")))
        .header("origin", shop)
        .json(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    // The tenant's key still has its whole limit (the channel was made with it, once).
    let (status, _) = stack.api("GET", "/v1/channels", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosted_chat_page_is_the_same_widget_filling_the_page() {
    let stack = Stack::start(options()).await;
    // No site at all: the hosted page is confab's own origin.
    let channel = public_channel(&stack, &[]).await;
    let args = json!({"host": stack.url(&format!("/chat/{channel}")), "question": QUESTION,
                      "hosted": true});
    let seen = browser::scenario("widget_chat", args).await.result;
    assert!(seen["answer"].as_str().unwrap().contains("9:00"), "{seen}");
    assert_eq!(seen["afterReload"].as_array().unwrap().len(), 2, "{seen}");
    assert_eq!(seen["phonePanel"], json!({"width": 375, "height": 667}));
    let response = stack
        .http
        .get(stack.url(&format!("/chat/{}", uuid::Uuid::now_v7())))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_s_stream_survives_a_dropped_connection_and_shows_the_answer_once() {
    let long = "Our shop opens at nine and the hours run long because the shop serves customers \
        in many time zones, so the doors stay open from nine in the morning until eleven at \
        night on weekdays, from ten until nine on Saturdays, and from ten until six on Sundays.";
    let stack = Stack::start(Options {
        builtin_token_delay: Duration::from_millis(80),
        resume_grace: Duration::from_secs(10),
        ..Options::default()
    })
    .await;
    let shop = HostPage::start().await;
    let channel = public_channel_knowing(&stack, long, &[&shop.origin]).await;
    // The widget is loaded through a proxy that cuts the answer's first stream midway.
    let proxy = CutProxy::start(stack.addr, 800).await;
    shop.show(shop_with_widget(&proxy.url, &channel, ""));

    let args = json!({"host": shop.origin, "question": "What are the opening hours?"});
    let outcome = browser::scenario("widget_cut", args).await;
    let seen = &outcome.result;
    assert!(proxy.has_cut(), "the stream was cut: {seen}");
    let streams = seen["streams"].as_array().unwrap();
    assert!(
        streams.len() >= 2 && streams[0].is_null() && streams[1].is_string(),
        "the widget reconnected with the last event id it had: {seen} {:?}",
        outcome.console
    );
    assert_eq!(seen["status"], "", "{seen}");
    assert_eq!(seen["answer"], long, "the whole answer: {seen}");
    assert_eq!(
        seen["notAStart"],
        json!([]),
        "no word shown twice on the way: {seen}"
    );
    assert!(seen["shownOnTheWay"].as_u64().unwrap() > 10, "{seen}");
    let stored: String = stack
        .db()
        .await
        .query_one("SELECT content FROM messages WHERE role = 'assistant'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, long);
    assert_eq!(
        count(&stack, "SELECT count(*) FROM messages WHERE role = 'user'").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_visitor_is_told_to_wait() {
    let (stack, shop) = shop_with_its_widget(Options {
        visitors: confab::config::VisitorLimits {
            per_channel_per_min: 1,
            ..confab::config::VisitorLimits::default()
        },
        ..options()
    })
    .await;
    let args = json!({"host": shop.origin, "question": QUESTION});
    let seen = browser::scenario("widget_refused", args).await.result;
    let status = seen["status"].as_str().unwrap();
    assert!(
        status.starts_with("Too many messages right now; try again in "),
        "{seen}"
    );
    assert_eq!(count(&stack, "SELECT count(*) FROM messages").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_renews_its_visitor_token_without_the_visitor_noticing() {
    let (stack, shop) = shop_with_its_widget(Options {
        visitors: confab::config::VisitorLimits {
            token_ttl_secs: 2,
            ..confab::config::VisitorLimits::default()
        },
        ..options()
    })
    .await;
    // The visitor opens the chat and asks only after the first token has expired.
    let args = json!({"host": shop.origin, "question": QUESTION, "waitBeforeAskingMs": 4500});
    let seen = browser::scenario("widget_chat", args).await.result;
    assert_eq!(seen["status"], "", "{seen}");
    assert!(seen["answer"].as_str().unwrap().contains("9:00"), "{seen}");
    let sessions = count(&stack, "SELECT count(*) FROM visitor_tokens").await;
    assert!(
        sessions >= 3,
        "the token was renewed before it expired ({sessions} tokens)"
    );
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM identities WHERE external_id LIKE 'web-visitor:%'"
        )
        .await,
        1,
        "renewing keeps the visitor"
    );
}
