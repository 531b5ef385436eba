//! End-to-end tests: the real ingress, real workers, real RabbitMQ and Postgres, and a real local
//! HTTP server in place of a model vendor. Each test builds its own stack (fresh database, fresh
//! queue prefix) so tests run in parallel and leave nothing behind.

// A test that cannot go on should stop with a panic; helpers are part of the tests.
#![allow(clippy::unwrap_used)]

mod support;

mod assistant_tools;
mod bad_input;
mod bounded_work;
mod channels;
mod command_line;
mod dashboard;
mod dialects;
mod hardening;
mod isolation;
mod knowledge;
mod management;
mod openapi;
mod operations;
mod provider_openai;
mod rate_limits;
mod reliability;
mod remembered_keys;
mod reply_events;
mod slow_clients;
mod traces;
