//! What confab's two processes share beyond the wire contract (`confab-contract`): the channel
//! platforms' adapters, the database pool and its error classes, the Prometheus recorder, how an
//! assistant's model setting is read, token estimates, OpenTelemetry traces and their
//! propagation across the queue, and process plumbing. The ingress and the
//! workers both depend on this crate and never on each other.

pub mod db;
pub mod memory;
pub mod metrics;
pub mod model_spec;
pub mod platforms;
pub mod process;
pub mod reply_log;
pub mod retry;
pub mod secrets;
pub mod telemetry;
pub mod text;
pub mod tokens;
pub mod tools;

pub use model_spec::ModelSpec;
