//! API dialects: each module maps one API family's requests to [`crate::pipeline::TurnRequest`]
//! and the pipeline's events back to that family's JSON and SSE shapes and error envelopes.

pub mod agents;
pub mod ai_hub;
pub mod identity_chat;
pub mod openai;
