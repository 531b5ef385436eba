//! The official `openai` Python package as the client (`tests/python/openai_client.py`, and its
//! tool loop in `client_tools.py`), and LangChain's ChatOpenAI (`langchain_tools.py`): if their
//! parsers accept confab's replies, so will applications built on them. The packages, pinned in
//! `tests/python/requirements.txt`, comes from the tests' own virtualenv (`support::python`),
//! which the first run installs; nothing needs installing by hand, and nothing skips.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::vendor_stack;
use crate::support::openai_server::{FakeOpenAi, Script};
use crate::support::python;
use crate::support::stack::{Options, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_reads_models_json_streams_conversations_and_errors() {
    // Blocks while it installs, before the stack has anything running.
    let python = python::venv_python();
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
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
        .unwrap_or_else(|e| panic!("cannot run {} ({e})", python.display()));
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the Python client finished within 2 minutes")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(
        output.status.code(),
        Some(3),
        "the openai package is missing from {}'s venv, which should hold {}\n{stderr}",
        python.display(),
        python::REQUIREMENTS
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

/// `chat.completions.parse` with a pydantic model: the SDK sends a strict JSON schema as
/// `response_format`, confab passes it to the OpenAI-compatible model, and the SDK parses the
/// answer into the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_parses_structured_output_from_a_vendor_model() {
    let server = FakeOpenAi::start(Script::Tokens {
        pieces: vec![
            r#"{"name": "Par"#.into(),
            r#"is", "country": "France"}"#.into(),
        ],
        prompt_tokens: 12,
        completion_tokens: 9,
    })
    .await;
    let stack = Stack::start(Options {
        openai_base_url: server.base_url(),
        ..Options::default()
    })
    .await;
    stack
        .create_assistant(serde_json::json!({"name": "Geo", "model": "openai/test-model"}))
        .await;
    let result = run_script("tests/python/structured_output.py", &stack, "geo").await;
    assert_eq!(
        result["parsed"],
        serde_json::json!({"name": "Paris", "country": "France"})
    );
    assert_eq!(result["finish_reason"], "stop");
    let sent = &server.requests()[0].body["response_format"];
    assert_eq!(sent["type"], "json_schema", "{sent}");
    assert_eq!(sent["json_schema"]["name"], "City");
    assert_eq!(sent["json_schema"]["strict"], true);
    assert!(
        sent["json_schema"]["schema"]["properties"]["country"].is_object(),
        "{sent}"
    );
}

/// Run one of `tests/python/`'s scripts against the stack's OpenAI dialect, asking `model`; what
/// it printed, as JSON.
async fn run_script(script: &str, stack: &Stack, model: &str) -> Value {
    let python = python::venv_python();
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .args([
            format!("http://{}/v1", stack.addr).as_str(),
            &stack.api_key,
            model,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed:\n{stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn lookup_call() -> Script {
    Script::Calls(vec![(
        "call_7".into(),
        "lookup_order".into(),
        r#"{"order": "A-1001"}"#.into(),
    )])
}

/// The SDK's tool loop, unchanged: a call, the function's result sent back with the SDK's own
/// message object, the answer; and the call streamed as `delta.tool_calls`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_runs_a_client_side_tool_loop_through_confab() {
    let answer = Script::Tokens {
        pieces: vec!["Order A-1001 ".into(), "has shipped.".into()],
        prompt_tokens: 40,
        completion_tokens: 5,
    };
    let (vendor, stack) =
        vendor_stack(Script::Sequence(vec![lookup_call(), answer, lookup_call()])).await;
    let result = run_script("tests/python/client_tools.py", &stack, "shop").await;
    let call = serde_json::json!({"id": "call_7", "name": "lookup_order",
                                  "arguments": r#"{"order": "A-1001"}"#});
    assert_eq!(result["first_finish"], "tool_calls", "{result}");
    assert_eq!(result["call"], call);
    assert_eq!(result["answer"], "Order A-1001 has shipped.");
    assert_eq!(result["second_finish"], "stop");
    assert_eq!(result["streamed_calls"], serde_json::json!([call]));
    assert_eq!(result["streamed_finish"], "tool_calls");
    let second = &vendor.requests()[1].body["messages"];
    let last = second.as_array().unwrap().last().unwrap();
    assert_eq!(
        (&last["role"], &last["tool_call_id"]),
        (&"tool".into(), &"call_7".into())
    );
    assert!(
        last["content"].as_str().unwrap().contains("shipped"),
        "{last}"
    );
}

/// LangChain's `bind_tools` reads the call, and `with_structured_output` parses the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn langchain_binds_tools_and_parses_structured_output_through_confab() {
    let city = Script::Tokens {
        pieces: vec![
            r#"{"name": "Paris", "#.into(),
            r#""country": "France"}"#.into(),
        ],
        prompt_tokens: 12,
        completion_tokens: 9,
    };
    let (vendor, stack) = vendor_stack(Script::Sequence(vec![lookup_call(), city])).await;
    let result = run_script("tests/python/langchain_tools.py", &stack, "shop").await;
    assert_eq!(
        result["tool_calls"],
        serde_json::json!([{"name": "lookup_order", "args": {"order": "A-1001"}, "id": "call_7"}]),
        "{result}"
    );
    assert_eq!(
        result["city"],
        serde_json::json!({"name": "Paris", "country": "France"})
    );
    let requests = vendor.requests();
    assert_eq!(
        requests[0].body["tools"][0]["function"]["name"],
        "lookup_order"
    );
    assert!(
        requests[1].body["response_format"].is_object() || requests[1].body["tools"].is_array()
    );
}
