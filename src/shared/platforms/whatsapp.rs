//! WhatsApp Cloud API: webhooks from Meta, answers through the Graph API.
//!
//! Channel config: `verify_token` (the `GET` handshake), `app_secret` (signs every webhook),
//! `access_token` (Graph API bearer token) and `phone_number_id` (the business number the
//! channel answers for; webhooks for other numbers are ignored).

use futures_util::future::BoxFuture;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::Sha256;

use super::{
    Adapter, Answer, AuthError, Config, Content, DeliveryStatus, Endpoints, Event, Handshake,
    Inbound, SendError, Sender, StatusUpdate, missing_settings, payload, plausible_sent_at,
    post_json, retryable_status, setting,
};

pub struct WhatsApp;

/// Graph API error codes meaning "too many messages, slow down".
const THROTTLE_CODES: &[i64] = &[130429, 131056];

impl Adapter for WhatsApp {
    fn kind(&self) -> &'static str {
        "whatsapp"
    }

    fn handshake(&self, config: &Config, query: &[(String, String)]) -> Handshake {
        let param = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let Some(expected) = setting(config, "verify_token") else {
            return Handshake::Refuse;
        };
        let token_matches = param("hub.verify_token").is_some_and(|given| {
            subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.as_bytes()).into()
        });
        match (param("hub.mode"), param("hub.challenge")) {
            (Some("subscribe"), Some(challenge)) if token_matches => {
                Handshake::Accept(challenge.to_owned())
            }
            _ => Handshake::Refuse,
        }
    }

    fn authenticate(
        &self,
        config: &Config,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), AuthError> {
        let secret = setting(config, "app_secret").ok_or(AuthError::NoSecret("app_secret"))?;
        let signature = headers
            .get("x-hub-signature-256")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("sha256="))
            .ok_or(AuthError::Missing("X-Hub-Signature-256 header"))?;
        let signature = hex::decode(signature)
            .ok()
            .ok_or(AuthError::Mismatch("X-Hub-Signature-256"))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|_| AuthError::NoSecret("app_secret"))?;
        mac.update(body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&signature)
            .map_err(|_| AuthError::Mismatch("X-Hub-Signature-256"))
    }

    fn parse(&self, config: &Config, body: &[u8]) -> Vec<Event> {
        let Some(payload) = payload(body) else {
            return Vec::new();
        };
        let ours = setting(config, "phone_number_id");
        let changes = payload["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|entry| entry["changes"].as_array().into_iter().flatten())
            .filter(|change| change["field"] == "messages")
            .map(|change| &change["value"])
            .filter(|value| {
                ours.is_some() && value["metadata"]["phone_number_id"].as_str() == ours
            });
        let mut events = Vec::new();
        for value in changes {
            let contacts = value["contacts"].as_array().map_or(&[][..], Vec::as_slice);
            for message in value["messages"].as_array().into_iter().flatten() {
                if let Some(inbound) = inbound(message, contacts) {
                    events.push(Event::Message(inbound));
                }
            }
            for status in value["statuses"].as_array().into_iter().flatten() {
                if let Some(update) = status_update(status) {
                    events.push(Event::Status(update));
                }
            }
        }
        events
    }

    fn max_text_chars(&self) -> usize {
        4096
    }

    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        endpoints: &'a Endpoints,
        config: &'a Config,
        to: &'a str,
        text: &'a str,
    ) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            let (Some(token), Some(number)) = (
                setting(config, "access_token"),
                setting(config, "phone_number_id"),
            ) else {
                return Err(missing_settings("access_token or phone_number_id"));
            };
            let url = format!(
                "{}/{}/{number}/messages",
                endpoints.whatsapp_graph_url.trim_end_matches('/'),
                endpoints.whatsapp_graph_version
            );
            let body = json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                "type": "text",
                "text": {"preview_url": false, "body": text},
            });
            let answer = post_json(http.post(url).bearer_auth(token), &body).await?;
            if answer.status.is_success()
                && let Some(id) = answer.body["messages"][0]["id"].as_str()
            {
                return Ok(id.to_owned());
            }
            Err(classify(&answer))
        })
    }
}

/// Sort a Graph API failure into retry or give up.
fn classify(answer: &Answer) -> SendError {
    let error = &answer.body["error"];
    let code = error["code"].as_i64();
    let message = error["message"]
        .as_str()
        .map_or_else(|| format!("HTTP {}", answer.status), str::to_owned);
    match code {
        Some(code) if THROTTLE_CODES.contains(&code) => SendError::Throttled {
            code: code.to_string(),
            message,
            retry_after: answer.retry_after,
        },
        _ => retryable_status(answer, &message).unwrap_or_else(|| SendError::Rejected {
            code: code.map_or_else(|| answer.status.as_u16().to_string(), |c| c.to_string()),
            message,
            details: error.clone(),
        }),
    }
}

fn inbound(message: &Value, contacts: &[Value]) -> Option<Inbound> {
    let external_id = message["id"].as_str()?.to_owned();
    let from = message["from"].as_str();
    let from_user_id = message["from_user_id"].as_str();
    let contact = contacts.iter().find(|contact| {
        from.is_some() && contact["wa_id"].as_str() == from
            || from_user_id.is_some() && contact["user_id"].as_str() == from_user_id
    });
    let contact = contact.or(if contacts.len() == 1 {
        contacts.first()
    } else {
        None
    });
    let wa_id = from.or_else(|| contact.and_then(|c| c["wa_id"].as_str()));
    let user_id = from_user_id.or_else(|| contact.and_then(|c| c["user_id"].as_str()));
    // The phone number when the platform shares it; the business-scoped id otherwise.
    let key = wa_id.or(user_id)?.to_owned();
    let content = match message["type"].as_str().unwrap_or("unknown") {
        "text" => Content::Text(message["text"]["body"].as_str()?.to_owned()),
        // Taps on quick-reply buttons and list rows read like the text on them.
        "button" => Content::Text(message["button"]["text"].as_str()?.to_owned()),
        "interactive" => {
            let reply = &message["interactive"];
            let title = reply["button_reply"]["title"]
                .as_str()
                .or_else(|| reply["list_reply"]["title"].as_str())?;
            Content::Text(title.to_owned())
        }
        // A reaction is not a message to answer.
        "reaction" => return None,
        other => Content::Unsupported(other.to_owned()),
    };
    Some(Inbound {
        external_id,
        sender: Sender {
            external_id: key.clone(),
            alternate_id: user_id.filter(|id| *id != key).map(str::to_owned),
            name: contact
                .and_then(|c| c["profile"]["name"].as_str())
                .map(str::to_owned),
        },
        reply_address: key,
        sent_at: plausible_sent_at(message["timestamp"].as_str().and_then(|t| t.parse().ok())),
        content,
    })
}

fn status_update(status: &Value) -> Option<StatusUpdate> {
    let errors = &status["errors"];
    Some(StatusUpdate {
        external_id: status["id"].as_str()?.to_owned(),
        status: DeliveryStatus::parse(status["status"].as_str()?)?,
        error: errors
            .as_array()
            .filter(|e| !e.is_empty())
            .map(|_| json!({ "errors": errors })),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config() -> Config {
        json!({"verify_token": "vt", "app_secret": "secret", "phone_number_id": "PN1"})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn signed(body: &[u8], secret: &str) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        let hex = hex::encode(mac.finalize().into_bytes());
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-hub-signature-256",
            format!("sha256={hex}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn handshake_echoes_the_challenge_only_for_the_right_token() {
        let ok = query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", "vt"),
            ("hub.challenge", "12345"),
        ]);
        assert_eq!(
            WhatsApp.handshake(&config(), &ok),
            Handshake::Accept("12345".into())
        );
        let wrong = query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", "nope"),
            ("hub.challenge", "1"),
        ]);
        assert_eq!(WhatsApp.handshake(&config(), &wrong), Handshake::Refuse);
        assert_eq!(WhatsApp.handshake(&Config::new(), &ok), Handshake::Refuse);
    }

    #[test]
    fn signature_is_checked_on_the_raw_bytes() {
        let body = br#"{"object":"whatsapp_business_account", "entry":[]}"#;
        assert_eq!(
            WhatsApp.authenticate(&config(), &signed(body, "secret"), body),
            Ok(())
        );
        // The same JSON re-serialised is other bytes, so it does not verify.
        let reserialised = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        assert!(
            WhatsApp
                .authenticate(&config(), &signed(body, "secret"), reserialised)
                .is_err()
        );
        assert!(
            WhatsApp
                .authenticate(&config(), &signed(body, "other"), body)
                .is_err()
        );
        assert!(
            WhatsApp
                .authenticate(&config(), &HeaderMap::new(), body)
                .is_err()
        );
        let mut no_secret = config();
        no_secret.remove("app_secret");
        assert_eq!(
            WhatsApp.authenticate(&no_secret, &signed(body, "secret"), body),
            Err(AuthError::NoSecret("app_secret"))
        );
    }

    #[test]
    fn parse_reads_every_entry_and_change_of_our_number_only() {
        let body = json!({"object": "whatsapp_business_account", "entry": [
            {"id": "W", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "1555", "phone_number_id": "PN1"},
                "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5511", "user_id": "BR.1"}],
                "messages": [
                    {"from": "5511", "id": "wamid.1", "timestamp": "1700000000", "type": "text", "text": {"body": "hi"}},
                    {"from": "5511", "id": "wamid.2", "timestamp": "1700000001", "type": "image", "image": {"id": "m"}}
                ]}}]},
            {"id": "W", "changes": [{"field": "messages", "value": {
                "metadata": {"phone_number_id": "PN1"},
                "statuses": [{"id": "wamid.out", "status": "read", "timestamp": "1700000002", "recipient_id": "5511"}]}},
                {"field": "messages", "value": {
                "metadata": {"phone_number_id": "SOMEONE_ELSE"},
                "messages": [{"from": "1", "id": "wamid.x", "timestamp": "1", "type": "text", "text": {"body": "x"}}]}}]}
        ]});
        let events = WhatsApp.parse(&config(), body.to_string().as_bytes());
        assert_eq!(events.len(), 3, "{events:?}");
        let Event::Message(first) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(first.external_id, "wamid.1");
        assert_eq!(first.sender.external_id, "5511");
        assert_eq!(first.sender.alternate_id.as_deref(), Some("BR.1"));
        assert_eq!(first.sender.name.as_deref(), Some("Ana"));
        assert_eq!(first.content, Content::Text("hi".into()));
        let Event::Message(second) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(second.content, Content::Unsupported("image".into()));
        assert_eq!(
            events[2],
            Event::Status(StatusUpdate {
                external_id: "wamid.out".into(),
                status: DeliveryStatus::Read,
                error: None
            })
        );
    }

    #[test]
    fn nul_characters_and_absurd_timestamps_still_parse_to_a_storable_message() {
        for timestamp in [i64::MAX.to_string(), i64::MIN.to_string()] {
            let body = json!({"entry": [{"changes": [{"field": "messages", "value": {
                "metadata": {"phone_number_id": "PN1"},
                "contacts": [{"profile": {"name": "A\u{0}na"}, "wa_id": "55\u{0}11"}],
                "messages": [{"from": "55\u{0}11", "id": "wamid.\u{0}1", "timestamp": timestamp,
                    "type": "text", "text": {"body": "hi\u{0} there"}}]}}]}]});
            let events = WhatsApp.parse(&config(), body.to_string().as_bytes());
            let [Event::Message(m)] = events.as_slice() else {
                panic!("{events:?}")
            };
            assert_eq!(m.external_id, "wamid.1");
            assert_eq!(m.sender.external_id, "5511");
            assert_eq!(m.sender.name.as_deref(), Some("Ana"));
            assert_eq!(m.content, Content::Text("hi there".into()));
            let now = confab_contract::now_ms() / 1000;
            assert!((0..=now).contains(&m.sent_at), "{}", m.sent_at);
            // The age and milliseconds downstream cannot overflow.
            assert!(m.sent_at.checked_mul(1000).is_some() && now.checked_sub(m.sent_at).is_some());
        }
    }

    fn answer(status: reqwest::StatusCode, body: Value, retry_after: Option<u64>) -> Answer {
        Answer {
            status,
            body,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn graph_errors_are_sorted_into_retry_and_give_up() {
        let err = |code: i64| json!({"error": {"message": "m", "code": code}});
        let bad = reqwest::StatusCode::BAD_REQUEST;
        let classify = |status, body| classify(&answer(status, body, None));
        assert!(matches!(
            classify(bad, err(130429)),
            SendError::Throttled { .. }
        ));
        assert!(matches!(
            classify(bad, err(131056)),
            SendError::Throttled { .. }
        ));
        assert!(matches!(
            classify(bad, err(131047)),
            SendError::Rejected { .. }
        ));
        assert!(!classify(bad, err(131047)).is_retryable());
        assert!(classify(reqwest::StatusCode::BAD_GATEWAY, Value::Null).is_retryable());
    }

    #[test]
    fn a_retry_after_header_is_the_pause_of_a_throttled_or_failing_send() {
        use crate::retry::RetryAfter;
        let throttled = json!({"error": {"message": "m", "code": 130429}});
        let bad = reqwest::StatusCode::BAD_REQUEST;
        let pause = |status, body, header| classify(&answer(status, body, header)).retry_after();
        assert_eq!(
            pause(bad, throttled.clone(), Some(7)),
            Some(Duration::from_secs(7))
        );
        assert_eq!(pause(bad, throttled, None), None);
        let unavailable = reqwest::StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(
            pause(unavailable, Value::Null, Some(2)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            classify(&answer(unavailable, Value::Null, None)),
            SendError::Transient("HTTP 503 Service Unavailable".into())
        );
        // A refusal stays one whatever the header says.
        let refused = json!({"error": {"message": "m", "code": 131047}});
        assert!(!classify(&answer(bad, refused, Some(1))).is_retryable());
    }
}
