//! What the tests share and nothing tests by itself: the stack each test builds, the local
//! servers and processes that stand in for what confab talks to (an OTLP collector among
//! them), and the tools the tests install for themselves (`tool_cache`): the virtualenv the
//! Python client runs in and the browser.

pub mod browser;
pub mod cut_proxy;
pub mod fake_platform;
pub mod freeze_proxy;
pub mod host_page;
pub mod mcp_server;
pub mod node;
pub mod openai_server;
pub mod otlp_collector;
pub mod private_postgres;
pub mod private_rabbitmq;
pub mod python;
pub mod stack;
pub mod tool_cache;
pub mod tool_server;
