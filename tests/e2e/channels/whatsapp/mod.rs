//! WhatsApp Cloud API channels end to end: webhooks signed like Meta signs them, into the real
//! ingress, answered by real workers, sent by the delivery role to a local fake Graph API.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

mod hostile_payloads;
mod secrets_at_rest;

use crate::support::fake_platform::{FakePlatform, graph_error};
use crate::support::openai_server::{FakeOpenAi, Script};
use crate::support::stack::{Options, Stack};

const SECRET: &str = "app-secret-1";
const NUMBER_ID: &str = "109876543210";

struct WhatsAppChannel {
    stack: Stack,
    platform: FakePlatform,
    channel_id: String,
}

impl WhatsAppChannel {
    async fn start() -> WhatsAppChannel {
        Self::start_with(Options::default(), json!({})).await
    }

    async fn start_with(mut options: Options, assistant: Value) -> WhatsAppChannel {
        let platform = FakePlatform::start().await;
        options.channel_endpoints = platform.endpoints();
        let stack = Stack::start(options).await;
        let mut assistant_body = json!({
            "name": "Shop",
            "instructions": "You are the shop's assistant. The shop opens at 9:00 and closes at 17:00.",
        });
        if let (Some(body), Some(extra)) = (assistant_body.as_object_mut(), assistant.as_object()) {
            body.extend(extra.clone());
        }
        let assistant = stack.create_assistant(assistant_body).await;
        let (status, channel) = stack
            .api(
                "POST",
                "/v1/channels",
                Some(json!({
                    "name": "WhatsApp shop",
                    "kind": "whatsapp",
                    "assistant_id": assistant["id"],
                    "config": {"verify_token": "verify-me", "app_secret": SECRET,
                               "access_token": "EAAG-token", "phone_number_id": NUMBER_ID},
                })),
            )
            .await;
        assert_eq!(status, 201, "{channel}");
        WhatsAppChannel {
            channel_id: channel["id"].as_str().unwrap().to_owned(),
            stack,
            platform,
        }
    }

    fn url(&self) -> String {
        self.stack
            .url(&format!("/webhooks/whatsapp/{}", self.channel_id))
    }

    /// POST a webhook body, signed with `secret` over exactly these bytes.
    async fn post_signed(&self, body: &str, secret: &str) -> (u16, Value) {
        let response = self
            .stack
            .http
            .post(self.url())
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature(body.as_bytes(), secret))
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, body: &Value) -> (u16, Value) {
        self.post_signed(&body.to_string(), SECRET).await
    }

    /// The messages of the one conversation on this channel, through the API.
    async fn history(&self) -> Vec<Value> {
        let (status, page) = self.stack.api("GET", "/v1/conversations", None).await;
        assert_eq!(status, 200, "{page}");
        let conversations = page["data"].as_array().unwrap();
        assert_eq!(conversations.len(), 1, "one conversation: {page}");
        let id = conversations[0]["id"].as_str().unwrap();
        let (status, messages) = self
            .stack
            .api("GET", &format!("/v1/conversations/{id}/messages"), None)
            .await;
        assert_eq!(status, 200, "{messages}");
        messages["data"].as_array().unwrap().clone()
    }

    /// Wait until the conversation's last message satisfies `done`.
    async fn wait_for_history(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..200 {
            let (_, page) = self.stack.api("GET", "/v1/conversations", None).await;
            if page["data"].as_array().is_some_and(|c| c.len() == 1) {
                let history = self.history().await;
                if done(&history) {
                    return history;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the conversation never got there");
    }
}

fn signature(body: &[u8], secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

fn now_secs() -> i64 {
    confab_contract::now_ms() / 1000
}

/// One `messages` change as the Cloud API sends it.
fn change(number_id: &str, contacts: Value, messages: Value) -> Value {
    json!({"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": number_id},
        "contacts": contacts, "messages": messages}})
}

fn webhook(changes: Value) -> Value {
    json!({"object": "whatsapp_business_account",
           "entry": [{"id": "102290129340398", "changes": changes}]})
}

fn contact(wa_id: &str, name: &str) -> Value {
    json!({"profile": {"name": name}, "wa_id": wa_id})
}

fn text(id: &str, from: &str, body: &str, timestamp: i64) -> Value {
    json!({"from": from, "id": id, "timestamp": timestamp.to_string(), "type": "text",
           "text": {"body": body}})
}

fn text_webhook(id: &str, from: &str, body: &str) -> Value {
    webhook(json!([change(
        NUMBER_ID,
        json!([contact(from, "Kerry Fisher")]),
        json!([text(id, from, body, now_secs())]),
    )]))
}

fn status_webhook(wamid: &str, status: &str, errors: Option<Value>) -> Value {
    let mut status = json!({"id": wamid, "status": status, "timestamp": now_secs().to_string(),
                            "recipient_id": "16315551181"});
    if let Some(errors) = errors {
        status["errors"] = errors;
    }
    webhook(json!([{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": NUMBER_ID},
        "statuses": [status]}}]))
}

#[tokio::test]
async fn verification_handshake_echoes_the_challenge_and_refuses_a_wrong_token() {
    let channel = WhatsAppChannel::start().await;
    let get = |query: &str| {
        let url = format!("{}?{query}", channel.url());
        let http = channel.stack.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let ok = get("hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444").await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let wrong = get("hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1").await;
    assert_eq!(wrong.status(), 403);
    let unknown = channel
        .stack
        .http
        .get(channel.stack.url(&format!(
            "/webhooks/whatsapp/{}?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1",
            uuid::Uuid::now_v7()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn a_text_message_is_answered_through_the_graph_api_and_statuses_only_move_forward() {
    let channel = WhatsAppChannel::start().await;
    let (status, receipt) = channel
        .post(&text_webhook(
            "wamid.HBgL1",
            "16315551181",
            "When do you open?",
        ))
        .await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["queued"], 1, "{receipt}");

    let sent = channel.platform.wait_for(1).await;
    assert_eq!(sent[0].path, format!("/v21.0/{NUMBER_ID}/messages"));
    assert_eq!(sent[0].authorization.as_deref(), Some("Bearer EAAG-token"));
    let body = &sent[0].body;
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(body["recipient_type"], "individual");
    assert_eq!(body["to"], "16315551181");
    assert_eq!(body["type"], "text");
    let answer = body["text"]["body"].as_str().unwrap();
    assert!(answer.contains("9:00"), "{answer}");

    let history = channel
        .wait_for_history(|h| h.len() == 2 && h[1]["delivery_status"] == "accepted")
        .await;
    assert_eq!(history[0]["id"], "wamid.HBgL1");
    assert_eq!(history[0]["content"], "When do you open?");
    assert_eq!(history[1]["content"], answer);

    // The sender became an identity of the tenant, by wa_id, with the profile name.
    let (_, identities) = channel.stack.api("GET", "/v1/identities", None).await;
    assert_eq!(identities["data"][0]["external_id"], "16315551181");
    assert_eq!(identities["data"][0]["name"], "Kerry Fisher");

    // Statuses move the answer forward, never back, and repeating one changes nothing.
    for (status, expected) in [
        ("sent", "sent"),
        ("read", "read"),
        ("delivered", "read"),
        ("read", "read"),
    ] {
        let (code, _) = channel
            .post(&status_webhook("wamid.out.1", status, None))
            .await;
        assert_eq!(code, 200);
        let history = channel.history().await;
        assert_eq!(history[1]["delivery_status"], expected, "after {status}");
    }
}

#[tokio::test]
async fn a_status_arriving_before_the_send_is_recorded_is_not_lost() {
    let channel = WhatsAppChannel::start().await;
    // The Graph API's id for the first send is known in advance: wamid.out.1.
    let (code, _) = channel
        .post(&status_webhook("wamid.out.1", "delivered", None))
        .await;
    assert_eq!(code, 200);
    channel
        .post(&text_webhook("wamid.early", "16315551181", "Hello"))
        .await;
    channel.platform.wait_for(1).await;
    channel
        .wait_for_history(|h| h.len() == 2 && h[1]["delivery_status"] == "delivered")
        .await;
}

#[tokio::test]
async fn bad_signatures_are_refused_and_nothing_is_answered() {
    let channel = WhatsAppChannel::start().await;
    let body = text_webhook("wamid.forged", "16315551181", "Hi").to_string();
    let (status, error) = channel.post_signed(&body, "not-the-secret").await;
    assert_eq!(status, 401, "{error}");
    assert_eq!(error["error"]["code"], "unauthorized");

    // The signature covers the raw bytes: the same JSON, re-serialised, does not verify.
    let reserialised =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(&body).unwrap()).unwrap();
    let response = channel
        .stack
        .http
        .post(channel.url())
        .header("x-hub-signature-256", signature(body.as_bytes(), SECRET))
        .body(reserialised)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let unsigned = channel
        .stack
        .http
        .post(channel.url())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);

    // A channel without an app secret takes no webhooks at all.
    let (status, _) = channel
        .stack
        .api(
            "PATCH",
            &format!("/v1/channels/{}", channel.channel_id),
            Some(json!({"config": {"app_secret": null}})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, error) = channel.post_signed(&body, SECRET).await;
    assert_eq!(status, 403, "{error}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(channel.platform.sent().is_empty());
    let (_, conversations) = channel.stack.api("GET", "/v1/conversations", None).await;
    assert_eq!(conversations["data"], json!([]));
}

#[tokio::test]
async fn a_message_delivered_many_times_at_once_and_later_is_answered_once() {
    let channel = WhatsAppChannel::start().await;
    let body = text_webhook("wamid.dup", "16315551181", "When do you open?");
    let posts = (0..5).map(|_| channel.post(&body));
    let receipts = futures_util::future::join_all(posts).await;
    assert!(
        receipts.iter().all(|(status, _)| *status == 200),
        "{receipts:?}"
    );
    let queued: i64 = receipts
        .iter()
        .map(|(_, r)| r["queued"].as_i64().unwrap())
        .sum();
    assert_eq!(queued, 1, "{receipts:?}");
    channel.platform.wait_for(1).await;

    // A replay after the answer went out (a platform retry, an ingress restart) is not answered.
    let (_, receipt) = channel.post(&body).await;
    assert_eq!(receipt["duplicates"], 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(channel.platform.sent().len(), 1);
    assert_eq!(channel.history().await.len(), 2);
}

#[tokio::test]
async fn batched_entries_and_changes_are_all_processed_and_other_numbers_ignored() {
    let channel = WhatsAppChannel::start().await;
    let body = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "1", "changes": [change(NUMBER_ID,
            json!([contact("111", "Ana"), contact("222", "Bo")]),
            json!([text("wamid.a", "111", "When do you open?", now_secs()),
                   text("wamid.b", "222", "When do you close?", now_secs())]))]},
        {"id": "2", "changes": [
            change(NUMBER_ID, json!([contact("333", "Cy")]),
                   json!([text("wamid.c", "333", "Are you open now?", now_secs())])),
            change("SOME_OTHER_NUMBER", json!([contact("444", "Di")]),
                   json!([text("wamid.d", "444", "Hello?", now_secs())]))]}
    ]});
    let (status, receipt) = channel.post(&body).await;
    assert_eq!(status, 200);
    assert_eq!(receipt["queued"], 3, "{receipt}");
    let sent = channel.platform.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut to: Vec<String> = channel
        .platform
        .sent()
        .iter()
        .map(|s| s.body["to"].as_str().unwrap().to_owned())
        .collect();
    to.sort();
    assert_eq!(to, ["111", "222", "333"], "{sent:?}");
    let (_, identities) = channel.stack.api("GET", "/v1/identities", None).await;
    assert_eq!(identities["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn messages_older_than_the_age_limit_are_stored_but_not_answered() {
    let channel = WhatsAppChannel::start_with(
        Options {
            webhook_max_age: Duration::from_secs(600),
            ..Options::default()
        },
        json!({}),
    )
    .await;
    let hour_ago = now_secs() - 3600;
    let body = webhook(json!([change(
        NUMBER_ID,
        json!([contact("16315551181", "Kerry")]),
        json!([text("wamid.old", "16315551181", "Are you open?", hour_ago)]),
    )]));
    let (status, receipt) = channel.post(&body).await;
    assert_eq!(status, 200);
    assert_eq!(receipt["stale"], 1, "{receipt}");
    let history = channel.history().await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["content"], "Are you open?");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(channel.platform.sent().is_empty());
}

#[tokio::test]
async fn a_non_text_message_is_answered_with_a_polite_text() {
    let channel = WhatsAppChannel::start().await;
    let body = webhook(json!([change(
        NUMBER_ID,
        json!([contact("16315551181", "Kerry")]),
        json!([{"from": "16315551181", "id": "wamid.img", "timestamp": now_secs().to_string(),
                "type": "image", "image": {"id": "media-1", "mime_type": "image/jpeg"}}]),
    )]));
    let (_, receipt) = channel.post(&body).await;
    assert_eq!(receipt["unsupported"], 1, "{receipt}");
    let sent = channel.platform.wait_for(1).await;
    let answer = sent[0].body["text"]["body"].as_str().unwrap();
    assert!(answer.contains("text messages"), "{answer}");
    let history = channel
        .wait_for_history(|h| h.len() == 2 && h[1]["delivery_status"] == "accepted")
        .await;
    assert_eq!(history[0]["content"], "[image]");
}

#[tokio::test]
async fn throttled_sends_are_retried_and_the_24_hour_window_error_is_recorded_without_retry() {
    let channel = WhatsAppChannel::start().await;
    channel.platform.fail_next([
        graph_error(130429, "Rate limit hit"),
        graph_error(131056, "Pair rate limit hit"),
    ]);
    channel
        .post(&text_webhook(
            "wamid.t1",
            "16315551181",
            "When do you open?",
        ))
        .await;
    let sent = channel.platform.wait_for(3).await;
    assert!(sent.iter().all(|s| s.body["to"] == "16315551181"));
    channel
        .wait_for_history(|h| h.len() == 2 && h[1]["delivery_status"] == "accepted")
        .await;

    channel.platform.fail_next([graph_error(
        131047,
        "Re-engagement message: more than 24 hours have passed",
    )]);
    channel
        .post(&text_webhook("wamid.t2", "16315551181", "And on Sundays?"))
        .await;
    let history = channel
        .wait_for_history(|h| h.len() == 4 && h[3]["delivery_status"] == "failed")
        .await;
    assert_eq!(
        history[3]["delivery_error"]["code"], "131047",
        "{:?}",
        history[3]
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(channel.platform.sent().len(), 4, "131047 is not retried");
}

#[tokio::test]
async fn a_failed_send_is_retried_after_the_platforms_retry_after_not_the_longer_backoff() {
    let channel = WhatsAppChannel::start_with(
        Options {
            // Without the header the retry would come a minute later, past the wait below.
            delivery_retry_base: Duration::from_secs(60),
            ..Options::default()
        },
        json!({}),
    )
    .await;
    let unavailable = json!({"error": {"message": "Service temporarily unavailable", "code": 2}});
    channel
        .platform
        .fail_next_asking_to_wait(503, unavailable, 1);
    let started = std::time::Instant::now();
    channel
        .post(&text_webhook("wamid.ra1", "16315551181", "Open today?"))
        .await;
    channel
        .wait_for_history(|h| h.len() == 2 && h[1]["delivery_status"] == "accepted")
        .await;
    assert_eq!(channel.platform.sent().len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the pause asked for was kept"
    );
}

#[tokio::test]
async fn a_long_answer_is_split_at_4096_characters_without_breaking_characters() {
    let piece = "Ünïcödé wörds ✓ ".to_owned();
    let model = FakeOpenAi::start(Script::Tokens {
        pieces: vec![piece; 400],
        prompt_tokens: 10,
        completion_tokens: 400,
    })
    .await;
    let channel = WhatsAppChannel::start_with(
        Options {
            openai_base_url: model.base_url(),
            ..Options::default()
        },
        json!({"model": "openai/gpt-test"}),
    )
    .await;
    channel
        .post(&text_webhook(
            "wamid.long",
            "16315551181",
            "Tell me everything",
        ))
        .await;
    let sent = channel.platform.wait_for(2).await;
    let parts: Vec<&str> = sent
        .iter()
        .map(|s| s.body["text"]["body"].as_str().unwrap())
        .collect();
    assert!(
        parts.iter().all(|p| p.chars().count() <= 4096),
        "part sizes"
    );
    let history = channel.wait_for_history(|h| h.len() == 2).await;
    assert_eq!(parts.concat(), history[1]["content"].as_str().unwrap());
}

#[tokio::test]
async fn a_second_message_continues_the_senders_conversation() {
    let channel = WhatsAppChannel::start().await;
    channel
        .post(&text_webhook(
            "wamid.m1",
            "16315551181",
            "When do you open?",
        ))
        .await;
    channel.platform.wait_for(1).await;
    channel
        .post(&text_webhook(
            "wamid.m2",
            "16315551181",
            "And when do you close?",
        ))
        .await;
    channel.platform.wait_for(2).await;
    let history = channel.wait_for_history(|h| h.len() == 4).await;
    assert_eq!(history[2]["id"], "wamid.m2");
}

#[tokio::test]
async fn a_sender_is_recognised_by_the_business_scoped_id_when_the_phone_number_is_hidden() {
    let channel = WhatsAppChannel::start().await;
    let with_phone = webhook(json!([change(
        NUMBER_ID,
        json!([{"profile": {"name": "Kerry"}, "wa_id": "16315551181", "user_id": "US.1349120865"}]),
        json!([text(
            "wamid.p1",
            "16315551181",
            "When do you open?",
            now_secs()
        )]),
    )]));
    channel.post(&with_phone).await;
    channel.platform.wait_for(1).await;
    // Later the user hides their number: only the business-scoped id comes.
    let without_phone = webhook(json!([change(
        NUMBER_ID,
        json!([{"profile": {"name": "Kerry"}, "user_id": "US.1349120865"}]),
        json!([{"from_user_id": "US.1349120865", "id": "wamid.p2", "type": "text",
                "timestamp": now_secs().to_string(), "text": {"body": "And when do you close?"}}]),
    )]));
    let (_, receipt) = channel.post(&without_phone).await;
    assert_eq!(receipt["queued"], 1, "{receipt}");
    let sent = channel.platform.wait_for(2).await;
    assert_eq!(sent[1].body["to"], "US.1349120865");
    let (_, identities) = channel.stack.api("GET", "/v1/identities", None).await;
    assert_eq!(
        identities["data"].as_array().unwrap().len(),
        1,
        "{identities}"
    );
    // One conversation, continued: `history` asserts there is exactly one.
    channel.wait_for_history(|h| h.len() == 4).await;
}

#[tokio::test]
async fn a_turn_whose_model_fails_is_answered_with_an_apology() {
    // The stack's OpenAI-compatible URL refuses connections: every turn is a model error.
    let channel =
        WhatsAppChannel::start_with(Options::default(), json!({"model": "openai/gpt-test"})).await;
    channel
        .post(&text_webhook("wamid.fail", "16315551181", "Hello?"))
        .await;
    let sent = channel.platform.wait_for(1).await;
    let text = sent[0].body["text"]["body"].as_str().unwrap();
    assert!(text.starts_with("Sorry"), "{text}");
    let history = channel
        .wait_for_history(|h| h.len() == 2 && h[1]["delivery_status"] == "accepted")
        .await;
    assert_eq!(history[1]["answers"], "wamid.fail");
    assert_eq!(history[1]["metadata"]["failed"], "model_error");
}
