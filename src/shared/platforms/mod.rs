//! Channel platforms behind one interface. An [`Adapter`] knows everything about one platform:
//! its webhook handshake, how a webhook proves where it came from (checked on the raw bytes),
//! how a webhook body turns into [`Event`]s with their dedupe and conversation keys, how an
//! answer is sent, how the platform's errors are classified, and its message size limit.
//! The ingress uses the inbound half (`src/webhooks/`); the delivery role
//! (`workers/src/delivery/`) the outbound half. Adding a platform is one more file here.

pub mod telegram;
pub mod whatsapp;

use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// A channel's stored `config` (credentials and settings).
pub type Config = serde_json::Map<String, Value>;

/// The answer to a platform's `GET` on the webhook.
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Verified: answer 200 with this body, verbatim.
    Accept(String),
    /// Not verified (wrong or missing token): 403.
    Refuse,
    /// The platform has no such handshake.
    Unsupported,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// Without its secret a channel cannot tell real webhooks from forged ones, so it takes none.
    #[error("the channel has no {0} configured, so it refuses webhooks")]
    NoSecret(&'static str),
    #[error("the request carries no {0}")]
    Missing(&'static str),
    #[error("the {0} does not match")]
    Mismatch(&'static str),
}

/// Something a webhook told us.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Message(Inbound),
    Status(StatusUpdate),
}

/// A user's message.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The platform's id of the message (or update): the dedupe key.
    pub external_id: String,
    /// Who sent it: the key of their identity, and so of their conversation on the channel.
    pub sender: Sender,
    /// Where the answer goes (a phone number, a chat id).
    pub reply_address: String,
    /// When the user sent it, seconds since the epoch, as the platform says.
    pub sent_at: i64,
    pub content: Content,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sender {
    /// The identity's `external_id` (a WhatsApp `wa_id`, `telegram:<user id>`).
    pub external_id: String,
    /// Another id the platform knows the user by (WhatsApp's business-scoped user id).
    pub alternate_id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Text(String),
    /// A kind of message the assistant cannot read (image, voice note, sticker...).
    Unsupported(String),
}

/// A platform's news about a message we sent.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub external_id: String,
    pub status: DeliveryStatus,
    pub error: Option<Value>,
}

/// Where a sent message stands. The order is the order statuses may move in; `failed` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeliveryStatus {
    Accepted,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Accepted => "accepted",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        Some(match s {
            "accepted" => DeliveryStatus::Accepted,
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "failed" => DeliveryStatus::Failed,
            _ => return None,
        })
    }
}

/// Where the platforms' APIs are: configurable so tests run a local server in their place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `CONFAB_WHATSAPP_GRAPH_URL`, default `https://graph.facebook.com`.
    pub whatsapp_graph_url: String,
    /// `CONFAB_WHATSAPP_GRAPH_VERSION`, default `v21.0`.
    pub whatsapp_graph_version: String,
    /// `CONFAB_TELEGRAM_API_URL`, default `https://api.telegram.org`.
    pub telegram_api_url: String,
}

/// Why a send failed, as far as retrying goes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// The platform asks us to slow down: retry after a pause.
    #[error("throttled by the platform ({code}): {message}")]
    Throttled {
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The network or the platform failed; the same request may well work later.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The platform refused the message for good; retrying cannot help.
    #[error("refused by the platform ({code}): {message}")]
    Rejected {
        code: String,
        message: String,
        details: Value,
    },
}

impl SendError {
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SendError::Rejected { .. })
    }
}

impl crate::retry::RetryAfter for SendError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

pub trait Adapter: Send + Sync {
    /// The channel kind this adapter serves (`channels.kind`).
    fn kind(&self) -> &'static str;

    /// Answer the platform's `GET` on the webhook URL.
    fn handshake(&self, config: &Config, query: &[(String, String)]) -> Handshake;

    /// Check that a webhook comes from the platform, on the raw request, in constant time.
    fn authenticate(
        &self,
        config: &Config,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), AuthError>;

    /// Every event in an authenticated webhook body. What the adapter does not handle (another
    /// account's phone number, a kind of update without a message) is left out, not an error:
    /// the platform gets its 200 either way, so it does not retry.
    fn parse(&self, config: &Config, body: &[u8]) -> Vec<Event>;

    /// The longest text one platform message may carry, in characters.
    fn max_text_chars(&self) -> usize;

    /// Send one text message (at most [`Adapter::max_text_chars`]); the platform's id of it.
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        endpoints: &'a Endpoints,
        config: &'a Config,
        to: &'a str,
        text: &'a str,
    ) -> BoxFuture<'a, Result<String, SendError>>;
}

/// The adapter of a channel kind, if confab has one.
pub fn adapter(kind: &str) -> Option<&'static dyn Adapter> {
    match kind {
        "whatsapp" => Some(&whatsapp::WhatsApp),
        "telegram" => Some(&telegram::Telegram),
        _ => None,
    }
}

/// A string setting of a channel's config, if set and not empty.
pub fn setting<'a>(config: &'a Config, key: &str) -> Option<&'a str> {
    config
        .get(key)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
}

/// Split `text` into parts of at most `max_chars` characters, never inside a character;
/// preferably after a line break or a space in the last fifth of a part.
pub fn split_text(text: &str, max_chars: usize) -> Vec<&str> {
    let max_chars = max_chars.max(1);
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.chars().count() > max_chars {
        let hard_end = rest
            .char_indices()
            .nth(max_chars)
            .map_or(rest.len(), |(i, _)| i);
        let window = &rest[..hard_end];
        let soft_floor = window
            .char_indices()
            .nth(max_chars - max_chars / 5)
            .map_or(0, |(i, _)| i);
        let end = window
            .rfind('\n')
            .or_else(|| window.rfind(' '))
            .filter(|&i| i >= soft_floor && i > 0)
            .map_or(hard_end, |i| i + 1);
        parts.push(&rest[..end]);
        rest = &rest[end..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest);
    }
    parts
}

/// A webhook body as JSON, made storable: without NULs (see [`crate::text`]). `None` if it is
/// not JSON at all.
pub(crate) fn payload(body: &[u8]) -> Option<Value> {
    let mut payload = serde_json::from_slice(body).ok()?;
    crate::text::strip_nul_from_json(&mut payload);
    Some(payload)
}

/// When a message was sent, as far as we can believe the platform: never before the epoch and
/// never after it reached us, so that a forged or broken timestamp (even a signed one) cannot
/// overflow the age arithmetic downstream.
pub(crate) fn plausible_sent_at(claimed: Option<i64>) -> i64 {
    let now = confab_contract::now_ms() / 1000;
    claimed.map_or(now, |at| at.clamp(0, now))
}

/// What a platform answered a send with.
pub(crate) struct Answer {
    pub status: reqwest::StatusCode,
    /// Its JSON body, `null` if it sent none.
    pub body: Value,
    /// Its `Retry-After` header.
    pub retry_after: Option<Duration>,
}

/// Send a platform request with a JSON body; what the platform answered. Not reaching the
/// platform at all is worth another try.
pub(crate) async fn post_json(
    request: reqwest::RequestBuilder,
    body: &Value,
) -> Result<Answer, SendError> {
    let response = request
        .json(body)
        .send()
        .await
        // Without the URL: a platform's URL may hold a credential (Telegram's bot token), and
        // this message ends up in logs and in the message's `delivery_error`.
        .map_err(|e| SendError::Transient(e.without_url().to_string()))?;
    let status = response.status();
    let retry_after = crate::retry::retry_after_header(response.headers());
    Ok(Answer {
        status,
        body: response.json().await.unwrap_or(Value::Null),
        retry_after,
    })
}

/// A failed send whose HTTP status says that trying again may work (429, 5xx): throttling
/// when the platform said how long to wait, transient otherwise. `None` for any other status.
pub(crate) fn retryable_status(answer: &Answer, message: &str) -> Option<SendError> {
    let status = answer.status;
    if !(status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS) {
        return None;
    }
    Some(match answer.retry_after {
        Some(pause) => SendError::Throttled {
            code: status.as_u16().to_string(),
            message: message.to_owned(),
            retry_after: Some(pause),
        },
        None => SendError::Transient(message.to_owned()),
    })
}

/// A send refused before it starts: the channel lacks what the platform needs.
pub(crate) fn missing_settings(names: &str) -> SendError {
    SendError::Rejected {
        code: "channel_config".into(),
        message: format!("the channel has no {names}"),
        details: Value::Null,
    }
}

/// The platform's HTTP client: bounded, so a hung platform cannot hold a delivery forever.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_send_never_repeats_the_credential_in_its_url() {
        let http = http_client(Duration::from_secs(2)).expect("client");
        // Port 1 on loopback refuses the connection at once.
        let request = http.post("http://127.0.0.1:1/bot123456:SECRET-token/sendMessage");
        let Err(SendError::Transient(message)) = post_json(request, &Value::Null).await.map(|_| ())
        else {
            panic!("a refused connection is a transient failure");
        };
        assert!(!message.contains("SECRET"), "{message}");
        assert!(!message.is_empty());
    }

    #[test]
    fn split_text_keeps_short_text_whole() {
        assert_eq!(split_text("hello", 4096), vec!["hello"]);
        assert_eq!(split_text("", 4096), vec![""]);
    }

    #[test]
    fn split_text_never_exceeds_the_limit_nor_breaks_characters() {
        let text = "é😀a".repeat(3000);
        let parts = split_text(&text, 4096);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.chars().count() <= 4096));
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn split_text_prefers_a_line_break_near_the_end() {
        let text = format!("{}\n{}", "a".repeat(90), "b".repeat(30));
        let parts = split_text(&text, 100);
        assert_eq!(parts, vec![format!("{}\n", "a".repeat(90)), "b".repeat(30)]);
    }

    #[test]
    fn delivery_statuses_only_move_forward_in_this_order() {
        use DeliveryStatus::*;
        assert!(Accepted < Sent && Sent < Delivered && Delivered < Read && Read < Failed);
        for s in [Accepted, Sent, Delivered, Read, Failed] {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
    }
}
