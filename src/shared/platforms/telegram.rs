//! Telegram Bot API: updates pushed to a webhook set with `setWebhook`, answers with
//! `sendMessage`.
//!
//! Channel config: `bot_token` (the bot's API token) and `secret_token` (given to `setWebhook`;
//! Telegram sends it back in `X-Telegram-Bot-Api-Secret-Token` on every update).

use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::{
    Adapter, Answer, AuthError, Config, Content, Endpoints, Event, Handshake, Inbound, SendError,
    Sender, missing_settings, payload, plausible_sent_at, post_json, retryable_status, setting,
};

pub struct Telegram;

impl Adapter for Telegram {
    fn kind(&self) -> &'static str {
        "telegram"
    }

    fn handshake(&self, _config: &Config, _query: &[(String, String)]) -> Handshake {
        Handshake::Unsupported
    }

    fn authenticate(
        &self,
        config: &Config,
        headers: &HeaderMap,
        _body: &[u8],
    ) -> Result<(), AuthError> {
        let secret = setting(config, "secret_token").ok_or(AuthError::NoSecret("secret_token"))?;
        let given = headers
            .get("x-telegram-bot-api-secret-token")
            .ok_or(AuthError::Missing("X-Telegram-Bot-Api-Secret-Token header"))?;
        if subtle::ConstantTimeEq::ct_eq(given.as_bytes(), secret.as_bytes()).into() {
            Ok(())
        } else {
            Err(AuthError::Mismatch("X-Telegram-Bot-Api-Secret-Token"))
        }
    }

    fn parse(&self, _config: &Config, body: &[u8]) -> Vec<Event> {
        let Some(update) = payload(body) else {
            return Vec::new();
        };
        inbound(&update).map(Event::Message).into_iter().collect()
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
            let Some(token) = setting(config, "bot_token") else {
                return Err(missing_settings("bot_token"));
            };
            let url = format!(
                "{}/bot{token}/sendMessage",
                endpoints.telegram_api_url.trim_end_matches('/')
            );
            let chat_id: Value = to.parse::<i64>().map_or_else(|_| json!(to), |id| json!(id));
            let body = json!({"chat_id": chat_id, "text": text});
            let answer = post_json(http.post(url), &body).await?;
            if answer.body["ok"] == true
                && let Some(id) = answer.body["result"]["message_id"].as_i64()
            {
                return Ok(format!("{to}:{id}"));
            }
            Err(classify(&answer))
        })
    }
}

/// A Bot API failure: its 429s say how long to wait in the body (`parameters.retry_after`).
fn classify(answer: &Answer) -> SendError {
    let reply = &answer.body;
    let message = reply["description"]
        .as_str()
        .map_or_else(|| format!("HTTP {}", answer.status), str::to_owned);
    if answer.status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return SendError::Throttled {
            code: "429".into(),
            message,
            retry_after: reply["parameters"]["retry_after"]
                .as_u64()
                .map(Duration::from_secs)
                .or(answer.retry_after),
        };
    }
    retryable_status(answer, &message).unwrap_or_else(|| SendError::Rejected {
        code: answer.status.as_u16().to_string(),
        message,
        details: reply.clone(),
    })
}

fn inbound(update: &Value) -> Option<Inbound> {
    let update_id = update["update_id"].as_i64()?;
    // Edits, channel posts, callbacks and the like are not new messages to answer.
    let message = update.get("message")?;
    let from = &message["from"];
    let name = [from["first_name"].as_str(), from["last_name"].as_str()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let content = match message["text"].as_str() {
        Some(text) => Content::Text(text.to_owned()),
        None => Content::Unsupported(
            [
                "photo",
                "voice",
                "audio",
                "video",
                "video_note",
                "document",
                "sticker",
                "location",
                "contact",
            ]
            .into_iter()
            .find(|kind| message.get(kind).is_some())
            .unwrap_or("message")
            .to_owned(),
        ),
    };
    Some(Inbound {
        external_id: update_id.to_string(),
        sender: Sender {
            external_id: format!("telegram:{}", from["id"].as_i64()?),
            // A username is changed at will and then free for anyone to claim: profile data,
            // never a key to an identity (and its history and memory).
            alternate_id: None,
            name: Some(name).filter(|n| !n.is_empty()),
        },
        reply_address: message["chat"]["id"].as_i64()?.to_string(),
        sent_at: plausible_sent_at(message["date"].as_i64()),
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        json!({"bot_token": "123:abc", "secret_token": "s3cret"})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn secret_token_header_authenticates() {
        let mut headers = HeaderMap::new();
        headers.insert("x-telegram-bot-api-secret-token", "s3cret".parse().unwrap());
        assert_eq!(Telegram.authenticate(&config(), &headers, b"{}"), Ok(()));
        headers.insert("x-telegram-bot-api-secret-token", "guess".parse().unwrap());
        assert!(Telegram.authenticate(&config(), &headers, b"{}").is_err());
        assert!(
            Telegram
                .authenticate(&config(), &HeaderMap::new(), b"{}")
                .is_err()
        );
        assert_eq!(
            Telegram.authenticate(&Config::new(), &headers, b"{}"),
            Err(AuthError::NoSecret("secret_token"))
        );
    }

    #[test]
    fn a_message_update_becomes_one_inbound_keyed_by_update_id() {
        let update = json!({"update_id": 10, "message": {"message_id": 5, "date": 1700000000,
            "from": {"id": 42, "first_name": "Ana", "last_name": "Lima", "username": "ana"},
            "chat": {"id": 42, "type": "private"}, "text": "hello"}});
        let events = Telegram.parse(&config(), update.to_string().as_bytes());
        let [Event::Message(m)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(m.external_id, "10");
        assert_eq!(m.sender.external_id, "telegram:42");
        assert_eq!(m.sender.name.as_deref(), Some("Ana Lima"));
        assert_eq!(m.reply_address, "42");
        assert_eq!(m.content, Content::Text("hello".into()));
        let edit = json!({"update_id": 11, "edited_message": {"text": "x"}});
        assert!(
            Telegram
                .parse(&config(), edit.to_string().as_bytes())
                .is_empty()
        );
    }

    #[test]
    fn a_sender_is_known_by_their_user_id_only_never_by_a_claimable_username() {
        let update = |user: i64| {
            json!({"update_id": user, "message": {"message_id": 1, "date": 1700000000,
                "from": {"id": user, "first_name": "Eve", "username": "ana_old"},
                "chat": {"id": user, "type": "private"}, "text": "my PIN?"}})
        };
        let senders: Vec<Sender> = [5001, 6002]
            .into_iter()
            .flat_map(|user| Telegram.parse(&config(), update(user).to_string().as_bytes()))
            .map(|event| match event {
                Event::Message(m) => m.sender,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(senders[0].external_id, "telegram:5001");
        assert_eq!(senders[1].external_id, "telegram:6002");
        assert!(
            senders.iter().all(|s| s.alternate_id.is_none()),
            "{senders:?}"
        );
    }

    #[test]
    fn nul_characters_and_absurd_dates_still_parse_to_a_storable_message() {
        for date in [i64::MAX, i64::MIN] {
            let update = json!({"update_id": 12, "message": {"message_id": 5, "date": date,
                "from": {"id": 42, "first_name": "A\u{0}na"},
                "chat": {"id": 42, "type": "private"}, "text": "he\u{0}llo"}});
            let events = Telegram.parse(&config(), update.to_string().as_bytes());
            let [Event::Message(m)] = events.as_slice() else {
                panic!("{events:?}")
            };
            assert_eq!(m.sender.name.as_deref(), Some("Ana"));
            assert_eq!(m.content, Content::Text("hello".into()));
            let now = confab_contract::now_ms() / 1000;
            assert!((0..=now).contains(&m.sent_at), "{}", m.sent_at);
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
    fn too_many_requests_is_retried_after_the_given_pause() {
        let reply = json!({"ok": false, "error_code": 429, "description": "Too Many Requests",
            "parameters": {"retry_after": 3}});
        let too_many = reqwest::StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(
            classify(&answer(too_many, reply.clone(), Some(9))),
            SendError::Throttled {
                code: "429".into(),
                message: "Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
        // Without the body's pause, the header's.
        let bare = json!({"ok": false, "error_code": 429, "description": "Too Many Requests"});
        let SendError::Throttled { retry_after, .. } = classify(&answer(too_many, bare, Some(9)))
        else {
            panic!("a 429 is throttling");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(9)));
        let forbidden = json!({"ok": false, "error_code": 403, "description": "bot was blocked"});
        assert!(!classify(&answer(reqwest::StatusCode::FORBIDDEN, forbidden, None)).is_retryable());
    }
}
