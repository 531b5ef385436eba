//! The commands of the `confab` binary that are not the ingress itself: bootstrap
//! (`admin create-tenant`), the local stack (`dev`) and the knowledge-base loader (`kb import`).
//! `src/main.rs` declares the command line (clap) and calls into these; a command with flags of
//! its own declares them here beside it (`kb::ImportArgs`).

pub mod admin;
pub mod dev;
pub mod kb;
