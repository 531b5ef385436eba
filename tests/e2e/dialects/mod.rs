//! Each chat dialect end to end, one folder each and laid out alike: `mod.rs` the dialect's
//! documented examples and what it answers (JSON, streams, conversations), `errors.rs` every
//! documented error provoked for real, and further files for what only that dialect has.

mod agents;
mod ai_hub;
mod event_ids;
mod identity_chat;
mod openai;
mod resumes;
