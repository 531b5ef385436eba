//! Channel credentials are sealed before they reach Postgres and opened only where a platform
//! call needs them; rotating the key reseals every channel, after which the old key can go.

use serde_json::{Map, Value, json};

use super::{SECRET, WhatsAppChannel, text_webhook};
use confab_shared::secrets::SecretBox;

async fn stored_config(channel: &WhatsAppChannel) -> Map<String, Value> {
    let id = uuid::Uuid::parse_str(&channel.channel_id).unwrap();
    let row = channel
        .stack
        .db()
        .await
        .query_one("SELECT config FROM channels WHERE id = $1", &[&id])
        .await
        .unwrap();
    row.get::<_, Value>(0).as_object().cloned().unwrap()
}

#[tokio::test]
async fn channel_credentials_are_sealed_in_the_database_and_the_channel_still_answers() {
    let channel = WhatsAppChannel::start().await;
    let stored = stored_config(&channel).await;
    for (field, plain) in [
        ("app_secret", SECRET),
        ("access_token", "EAAG-token"),
        ("verify_token", "verify-me"),
    ] {
        let value = stored[field].as_str().unwrap();
        assert!(value.starts_with("enc:v1:test:"), "{field}: {value}");
        assert!(!value.contains(plain), "{field}: {value}");
    }
    assert_eq!(
        stored["phone_number_id"],
        super::NUMBER_ID,
        "settings stay readable"
    );

    // The webhook's signature is checked with the opened app secret, and the answer is sent
    // with the opened access token.
    let (status, receipt) = channel
        .post(&text_webhook(
            "wamid.sealed",
            "16315551181",
            "When do you open?",
        ))
        .await;
    assert_eq!(status, 200, "{receipt}");
    let sent = channel.platform.wait_for(1).await;
    assert_eq!(sent[0].authorization.as_deref(), Some("Bearer EAAG-token"));
}

#[tokio::test]
async fn rotating_keys_reseals_every_channel_and_the_old_key_can_then_go() {
    let mut channel = WhatsAppChannel::start().await;
    // A secret stored before encryption was turned on: still plain in the row.
    let id = uuid::Uuid::parse_str(&channel.channel_id).unwrap();
    channel
        .stack
        .db()
        .await
        .execute(
            "UPDATE channels SET config = config || '{\"verify_token\": \"legacy-plain\"}' \
             WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();

    // An assistant tool's secret, sealed with the old key.
    let tool_secret = "tool-secret-0123456789";
    let assistant = channel
        .stack
        .create_assistant(json!({"name": "Tools", "model": "openai/m", "tools": [
            {"type": "http", "name": "lookup", "url": "http://127.0.0.1:9/t",
             "secret": tool_secret}]}))
        .await;
    let assistant_id = uuid::Uuid::parse_str(assistant["id"].as_str().unwrap()).unwrap();

    let old_keys = channel.stack.options.secret_keys.clone();
    let new_key = SecretBox::generate_key("new");
    let output = channel
        .stack
        .process_command("admin")
        .arg("reseal-secrets")
        .env("CONFAB_SECRET_KEYS", format!("{new_key},{old_keys}"))
        .stdout(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        printed,
        json!({"channels_resealed": 1, "assistants_resealed": 1})
    );
    let stored = stored_config(&channel).await;
    for field in ["app_secret", "access_token", "verify_token"] {
        let value = stored[field].as_str().unwrap();
        assert!(value.starts_with("enc:v1:new:"), "{field}: {value}");
    }
    let tools: Value = channel
        .stack
        .db()
        .await
        .query_one(
            "SELECT tools FROM assistants WHERE id = $1",
            &[&assistant_id],
        )
        .await
        .unwrap()
        .get(0);
    let sealed = tools[0]["secret"].as_str().unwrap();
    assert!(sealed.starts_with("enc:v1:new:"), "{sealed}");
    let opened = SecretBox::parse(&new_key)
        .unwrap()
        .open_value(assistant_id, "tool:lookup:secret", sealed)
        .unwrap();
    assert_eq!(opened, tool_secret);

    // An ingress that knows only the new key verifies the handshake and the signature.
    channel.stack.options.secret_keys = new_key;
    let (child, url) = channel.stack.ingress_process().await;
    channel.stack.adopt_child(child);
    let webhook = format!("{url}/webhooks/whatsapp/{}", channel.channel_id);
    let handshake = channel
        .stack
        .http
        .get(format!(
            "{webhook}?hub.mode=subscribe&hub.verify_token=legacy-plain&hub.challenge=1158201444"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(handshake.status(), 200);
    assert_eq!(handshake.text().await.unwrap(), "1158201444");
    let body = text_webhook("wamid.rotated", "16315551181", "Still there?").to_string();
    let signed = channel
        .stack
        .http
        .post(&webhook)
        .header("content-type", "application/json")
        .header(
            "x-hub-signature-256",
            super::signature(body.as_bytes(), SECRET),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
}
