//! What the tests share and nothing tests by itself: the stack each test builds, the local
//! servers and processes that stand in for what confab talks to, and the virtualenv that the
//! Python client runs in.

pub mod fake_platform;
pub mod openai_server;
pub mod private_rabbitmq;
pub mod python;
pub mod stack;
