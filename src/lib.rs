//! confab's ingress: the HTTP dialects, authentication, and the relay of reply events, plus the
//! command-line tools that bootstrap a deployment. The ingress never calls a model and never
//! assembles context: it validates, resolves names to ids, publishes one job per request and
//! relays that request's reply events (see ARCHITECTURE.md).

pub mod admin;
mod api;
pub mod assistants;
pub mod auth;
pub mod broker;
pub mod channels;
pub mod config;
pub mod conversations;
pub mod db;
pub mod dev;
pub mod dialects;
pub mod folders;
pub mod http;
pub mod identities;
pub mod kb;
pub mod knowledge;
pub mod migrate;
pub mod ops;
pub mod pipeline;
pub mod relay;
pub mod tenants;
mod webhooks;

pub use config::{IngressConfig, ReplyMode};
pub use http::Application;
