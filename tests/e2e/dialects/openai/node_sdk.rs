//! The official `openai` package for Node.js as the client (`tests/node/client_tools.mjs`),
//! pinned in `tests/node/package-lock.json` and installed by the tests themselves
//! (`support::node`): its `runTools` helper runs a client-side tool loop through confab, and its
//! stream helper puts a streamed call together.

use serde_json::json;

use super::vendor_stack;
use crate::support::node;
use crate::support::openai_server::Script;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_sdk_runs_tools_and_streams_a_call_through_confab() {
    let call = Script::Calls(vec![(
        "call_3".into(),
        "lookup_order".into(),
        r#"{"order":"A-1001"}"#.into(),
    )]);
    let answer = Script::Tokens {
        pieces: vec!["Order A-1001 ".into(), "has shipped.".into()],
        prompt_tokens: 40,
        completion_tokens: 5,
    };
    let (vendor, stack) = vendor_stack(Script::Sequence(vec![call.clone(), answer, call])).await;
    let base_url = format!("http://{}/v1", stack.addr);
    let result = node::run_script("client_tools.mjs", &[&base_url, &stack.api_key, "shop"]).await;
    assert_eq!(result["answer"], "Order A-1001 has shipped.", "{result}");
    assert_eq!(result["calledWith"], json!(["A-1001"]));
    assert_eq!(
        result["roles"],
        json!(["user", "assistant", "tool", "assistant"])
    );
    assert_eq!(
        result["streamedCalls"],
        json!([{"id": "call_3", "name": "lookup_order", "arguments": r#"{"order":"A-1001"}"#}])
    );
    assert_eq!(result["streamedFinish"], "tool_calls");
    let requests = vendor.requests();
    let sent = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(sent.last().unwrap()["tool_call_id"], "call_3");
}
