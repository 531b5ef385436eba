//! The messaging channels end to end: webhooks into the real ingress, answered by real workers,
//! sent by the delivery role to a local fake platform API (`support::fake_platform`); and the
//! web channel, in a real browser.

mod telegram;
mod web;
mod whatsapp;
