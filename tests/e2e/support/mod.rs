//! What the tests share and nothing tests by itself: the stack each test builds, and the local
//! servers and processes that stand in for what confab talks to.

pub mod fake_platform;
pub mod openai_server;
pub mod private_rabbitmq;
pub mod stack;
