//! The official `openai` Python package as the client (`tests/python/openai_client.py`): if its
//! parser accepts confab's replies, so will applications built on it. The interpreter is
//! `CONFAB_TEST_PYTHON` (default `python3`); a missing package fails the test, never skips it.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::stack::{Options, Stack};

const INSTALL: &str = "python3 -m pip install openai";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_reads_models_json_streams_conversations_and_errors() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let python = std::env::var("CONFAB_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let base_url = format!("http://{}/v1", stack.addr);
    let child = tokio::process::Command::new(&python)
        .arg("tests/python/openai_client.py")
        .args([base_url.as_str(), stack.api_key.as_str(), "support-agent"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // Keep a proxy from the environment out of a loopback test.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}); install Python 3 and {INSTALL}"));
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the Python client finished within 2 minutes")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(
        output.status.code(),
        Some(3),
        "the openai package is not installed for {python}; run `{INSTALL}`\n{stderr}"
    );
    assert!(
        output.status.success(),
        "the Python client failed:\n{stderr}"
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    });

    assert_eq!(result["models"], serde_json::json!(["support-agent"]));
    let json = &result["json"];
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(json["role"], "assistant");
    assert_eq!(
        json["content"],
        "Our business hours are 9:00 to 17:00, Monday to Friday."
    );
    assert_eq!(json["finish_reason"], "stop");
    assert!(json["total_tokens"].as_u64().unwrap() > 0, "{result}");

    let stream = &result["stream"];
    assert_eq!(
        stream["content"],
        "Refunds are processed within five business days."
    );
    assert_eq!(stream["finish_reasons"], serde_json::json!(["stop"]));
    assert!(stream["total_tokens"].as_u64().unwrap() > 0, "{result}");

    let conversation = &result["conversation"];
    assert_eq!(conversation["header"], "py-sdk-conversation");
    assert_eq!(
        conversation["answer"],
        "You told me earlier: \"My favourite colour is teal.\""
    );

    assert_eq!(result["not_found"]["status"], 404, "{result}");
    assert_eq!(result["not_found"]["code"], "model_not_found");
    assert_eq!(result["unauthorized"]["status"], 401, "{result}");
    assert_eq!(result["unauthorized"]["code"], "invalid_api_key");
}
