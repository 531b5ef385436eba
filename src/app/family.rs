//! The API families the ingress serves. Each answers every failure in its own error shape, so a
//! failure met before any handler runs (a malformed path, a body that is not JSON, a panic) is
//! rendered through the family's error type like a handler's own.

use axum::response::{IntoResponse, Response};

use crate::api::ApiError;
use crate::dialects::agents::AgentsError;
use crate::dialects::ai_hub::AiHubError;
use crate::dialects::identity_chat::ChannelChatError;
use crate::dialects::openai::OpenAiError;
use crate::http::EdgeFailure;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Agents,
    IdentityChat,
    AiHub,
    OpenAi,
    Management,
    Webhooks,
    Ops,
}

impl Family {
    /// The family's label in the request metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Family::Agents => "agents",
            Family::IdentityChat => "identity_chat",
            Family::AiHub => "ai_hub",
            Family::OpenAi => "openai",
            Family::Management => "management",
            Family::Webhooks => "webhooks",
            Family::Ops => "ops",
        }
    }

    /// Whether every body the family accepts is JSON. Webhooks are not held to it: platforms
    /// sign the bytes they send, whatever they call them.
    pub const fn takes_json_bodies(self) -> bool {
        !matches!(self, Family::Webhooks)
    }

    /// The failure as the family's error response.
    pub fn render(self, failure: EdgeFailure) -> Response {
        match self {
            Family::Agents => AgentsError::from(failure).into_response(),
            Family::IdentityChat => ChannelChatError::from(failure).into_response(),
            Family::AiHub => AiHubError::from(failure).into_response(),
            Family::OpenAi => OpenAiError::from(failure).into_response(),
            Family::Management | Family::Webhooks | Family::Ops => {
                ApiError::from(failure).into_response()
            }
        }
    }
}
