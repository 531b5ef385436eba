//! Signed payloads no real platform sends but a broken or hostile one may: each still gets a
//! definite 200 and the message is taken over, since any other answer makes the platform retry
//! the same payload forever.

use serde_json::json;

use super::{NUMBER_ID, WhatsAppChannel, change, contact, now_secs, text, webhook};

#[tokio::test]
async fn nul_bytes_in_every_field_are_stripped_and_the_message_is_stored_and_answered() {
    let channel = WhatsAppChannel::start().await;
    let from = "1631\u{0}5551181";
    let body = webhook(json!([change(
        NUMBER_ID,
        json!([contact(from, "Ker\u{0}ry")]),
        json!([text(
            "wamid.\u{0}NUL",
            from,
            "When do\u{0} you open?",
            now_secs()
        )]),
    )]));
    let (status, receipt) = channel.post(&body).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["queued"], 1, "{receipt}");

    let sent = channel.platform.wait_for(1).await;
    assert_eq!(sent[0].body["to"], "16315551181");
    let history = channel
        .wait_for_history(|h| h.len() == 2 && h[1]["role"] == "assistant")
        .await;
    assert_eq!(history[0]["id"], "wamid.NUL");
    assert_eq!(history[0]["content"], "When do you open?");
    let (_, identities) = channel.stack.api("GET", "/v1/identities", None).await;
    assert_eq!(identities["data"][0]["name"], "Kerry");
}

#[tokio::test]
async fn timestamps_at_the_integer_limits_are_taken_over_without_overflow() {
    let channel = WhatsAppChannel::start().await;
    for (id, timestamp) in [("wamid.max", i64::MAX), ("wamid.min", i64::MIN)] {
        let body = webhook(json!([change(
            NUMBER_ID,
            json!([contact("16315551181", "Kerry")]),
            json!([text(id, "16315551181", "Hello?", timestamp)]),
        )]));
        let (status, receipt) = channel.post(&body).await;
        assert_eq!(status, 200, "{id}: {receipt}");
    }
    // A timestamp from the future counts as now and is answered; one before the epoch counts as
    // the epoch, far too old to answer, but still stored.
    channel.platform.wait_for(1).await;
    let history = channel
        .wait_for_history(|h| h.len() == 3 && h.iter().any(|m| m["role"] == "assistant"))
        .await;
    let ids: Vec<_> = history
        .iter()
        .map(|m| m["id"].as_str().unwrap_or(""))
        .collect();
    assert!(
        ids.contains(&"wamid.max") && ids.contains(&"wamid.min"),
        "{ids:?}"
    );
}
