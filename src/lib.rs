//! confab's ingress: the HTTP dialects, authentication, and the relay of reply events, plus the
//! command-line tools that bootstrap a deployment. The ingress never calls a model and never
//! assembles context: it validates, resolves names to ids, publishes one job per request and
//! relays that request's reply events (see ARCHITECTURE.md).
//!
//! Layers, each a folder: `cli/` the commands; `app.rs` the router of every API family and the
//! server's lifecycle; the HTTP edge (`http/` what every family shares, `api/` management and
//! operations, `dialects/` the chat APIs, `webhooks/` channel platforms calling in); the reply
//! path (`pipeline.rs`, `broker.rs`, `relay/`); `store/` the database, one file per table family.

mod api;
pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod dialects;
pub mod http;
pub mod pipeline;
pub mod relay;
pub mod store;
mod webhooks;

pub use app::Application;
pub use config::{IngressConfig, ReplyMode};
