//! The commands of the `confab` binary that are not the ingress itself: bootstrap
//! (`admin create-tenant`), the local stack (`dev`) and the knowledge-base loader (`kb import`).
//! `src/main.rs` parses the command line and calls into these.

pub mod admin;
pub mod dev;
pub mod kb;
