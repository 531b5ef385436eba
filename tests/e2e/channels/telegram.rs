//! Telegram Bot API channels end to end, through the same adapter seam as WhatsApp: updates
//! authenticated by the secret-token header, deduplicated by `update_id`, answered with
//! `sendMessage` on a local fake Bot API.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_platform::FakePlatform;
use crate::support::stack::{Options, Stack};

async fn telegram_channel() -> (Stack, FakePlatform, String) {
    let platform = FakePlatform::start().await;
    let stack = Stack::start(Options {
        channel_endpoints: platform.endpoints(),
        ..Options::default()
    })
    .await;
    let assistant = stack.support_agent().await;
    let (status, channel) = stack
        .api(
            "POST",
            "/v1/channels",
            Some(
                json!({"name": "Bot", "kind": "telegram", "assistant_id": assistant["id"],
                        "config": {"bot_token": "123456:ABC-DEF", "secret_token": "tg-secret"}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    let url = stack.url(&format!(
        "/webhooks/telegram/{}",
        channel["id"].as_str().unwrap()
    ));
    (stack, platform, url)
}

fn update(update_id: i64, text: &str) -> Value {
    json!({"update_id": update_id, "message": {
        "message_id": 7, "date": confab_contract::now_ms() / 1000,
        "from": {"id": 424242, "is_bot": false, "first_name": "Ana", "username": "ana"},
        "chat": {"id": 424242, "type": "private", "first_name": "Ana"},
        "text": text}})
}

async fn post(stack: &Stack, url: &str, secret: Option<&str>, body: &Value) -> u16 {
    let mut request = stack.http.post(url).json(body);
    if let Some(secret) = secret {
        request = request.header("x-telegram-bot-api-secret-token", secret);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn an_update_is_answered_with_send_message_once_per_update_id() {
    let (stack, platform, url) = telegram_channel().await;
    let body = update(9001, "What are your business hours?");
    assert_eq!(post(&stack, &url, Some("tg-secret"), &body).await, 200);
    let sent = platform.wait_for(1).await;
    assert_eq!(sent[0].path, "/bot123456:ABC-DEF/sendMessage");
    assert_eq!(sent[0].body["chat_id"], 424242);
    let answer = sent[0].body["text"].as_str().unwrap();
    assert!(answer.contains("9:00"), "{answer}");

    // The same update again (Telegram retries until it gets a 200) is not answered again.
    assert_eq!(post(&stack, &url, Some("tg-secret"), &body).await, 200);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(platform.sent().len(), 1);

    let (_, identities) = stack.api("GET", "/v1/identities", None).await;
    assert_eq!(identities["data"][0]["external_id"], "telegram:424242");
}

#[tokio::test]
async fn updates_without_the_secret_token_are_refused_and_there_is_no_handshake() {
    let (stack, platform, url) = telegram_channel().await;
    assert_eq!(post(&stack, &url, None, &update(1, "hi")).await, 401);
    assert_eq!(
        post(&stack, &url, Some("guess"), &update(2, "hi")).await,
        401
    );
    let get = stack.http.get(&url).send().await.unwrap();
    assert_eq!(get.status(), 405);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(platform.sent().is_empty());
}
