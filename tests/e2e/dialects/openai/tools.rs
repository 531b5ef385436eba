//! Client-side tools: the caller's functions pass through the job to an OpenAI-compatible
//! model, the model's calls come back in OpenAI's shape (whole, and streamed as
//! `delta.tool_calls`), and the function's result continues the exchange, every message stored
//! in order. The built-in model refuses what it cannot do.

use serde_json::{Value, json};

use super::{completions, user, vendor_stack};
use crate::support::openai_server::{Recorded, Script};
use crate::support::stack::sse_data;

const ARGUMENTS: &str = r#"{"order":"A-1001"}"#;

fn lookup_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "lookup_order", "description": "Find an order by its number",
        "parameters": {"type": "object", "properties": {"order": {"type": "string"}},
                       "required": ["order"]}}}])
}

fn one_call() -> Script {
    Script::Calls(vec![(
        "call_1".into(),
        "lookup_order".into(),
        ARGUMENTS.into(),
    )])
}

fn answer(text: &str) -> Script {
    Script::Tokens {
        pieces: text.split_inclusive(' ').map(str::to_owned).collect(),
        prompt_tokens: 30,
        completion_tokens: 6,
    }
}

/// The messages the vendor was sent, as (role, content, tool_call_id).
fn sent_messages(request: &Recorded) -> Vec<(String, Value, Value)> {
    request.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].clone(),
                m["tool_call_id"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_models_calls_come_back_in_openais_shape_whole_and_streamed() {
    let (vendor, stack) = vendor_stack(one_call()).await;
    let ask = |stream: bool| {
        completions(
            &stack,
            json!({"model": "shop", "stream": stream, "messages": [user("Where is A-1001?")],
                   "tools": lookup_tool(), "tool_choice": "required",
                   "parallel_tool_calls": false}),
        )
    };

    let body: Value = ask(false).await.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{"id": "call_1", "type": "function",
                "function": {"name": "lookup_order", "arguments": ARGUMENTS}}])
    );
    let sent = &vendor.requests()[0].body;
    assert_eq!(sent["tools"], lookup_tool());
    assert_eq!(sent["tool_choice"], "required");
    assert_eq!(sent["parallel_tool_calls"], false);

    let streamed = ask(true).await.text().await.unwrap();
    let chunks: Vec<Value> = sse_data(&streamed)
        .iter()
        .filter_map(|data| serde_json::from_str(data).ok())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(
        calls,
        [&json!([{"index": 0, "id": "call_1", "type": "function",
                  "function": {"name": "lookup_order", "arguments": ARGUMENTS}}])],
        "{streamed}"
    );
    let finish = chunks
        .iter()
        .rev()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));
    assert_eq!(
        sse_data(&streamed).last().map(String::as_str),
        Some("[DONE]")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_functions_result_continues_a_named_conversation_and_every_message_is_stored_in_order() {
    let (vendor, stack) = vendor_stack(Script::Sequence(vec![
        one_call(),
        answer("Order A-1001 has shipped."),
    ]))
    .await;
    let first = completions(
        &stack,
        json!({"model": "shop", "conversation_id": "order-chat", "tools": lookup_tool(),
               "messages": [user("Where is A-1001?")]}),
    )
    .await;
    let first: Value = first.json().await.unwrap();
    let call = first["choices"][0]["message"].clone();
    assert_eq!(call["tool_calls"][0]["id"], "call_1", "{first}");

    // The client runs the function and sends its result, with the exchange so far.
    let result = json!({"role": "tool", "tool_call_id": "call_1",
                        "content": "{\"status\": \"shipped\"}"});
    let second = completions(
        &stack,
        json!({"model": "shop", "conversation_id": "order-chat", "tools": lookup_tool(),
               "messages": [user("Where is A-1001?"), call, result]}),
    )
    .await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.unwrap();
    assert_eq!(
        second["choices"][0]["message"]["content"],
        "Order A-1001 has shipped."
    );
    assert_eq!(second["choices"][0]["finish_reason"], "stop");

    // The model read the call from the stored conversation, then its result.
    let requests = vendor.requests();
    let sent = sent_messages(&requests[1]);
    let tail = &sent[sent.len() - 3..];
    assert_eq!(tail[0].0, "user");
    assert_eq!(
        (tail[1].0.as_str(), &tail[1].1),
        ("assistant", &Value::Null)
    );
    assert_eq!(
        requests[1].body["messages"][sent.len() - 2]["tool_calls"][0]["function"]["arguments"],
        ARGUMENTS
    );
    assert_eq!((tail[2].0.as_str(), &tail[2].2), ("tool", &json!("call_1")));

    let history: Value = stack
        .http
        .get(stack.url("/v1/conversations/order-chat/messages"))
        .bearer_auth(&stack.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored: Vec<(&str, &Value, &Value)> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap(),
                &m["tool_calls"],
                &m["tool_call_id"],
            )
        })
        .collect();
    let calls = json!([{"id": "call_1", "name": "lookup_order", "arguments": ARGUMENTS}]);
    assert_eq!(
        stored,
        [
            ("user", &Value::Null, &Value::Null),
            ("assistant", &calls, &Value::Null),
            ("tool", &Value::Null, &json!("call_1")),
            ("assistant", &Value::Null, &Value::Null),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_functions_are_answered_with_a_function_call() {
    let (vendor, stack) = vendor_stack(one_call()).await;
    let function = lookup_tool()[0]["function"].clone();
    let body: Value = completions(
        &stack,
        json!({"model": "shop", "messages": [user("Where is A-1001?")],
               "functions": [function], "function_call": {"name": "lookup_order"}}),
    )
    .await
    .json()
    .await
    .unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "function_call", "{body}");
    assert_eq!(
        choice["message"]["function_call"],
        json!({"name": "lookup_order", "arguments": ARGUMENTS})
    );
    let sent = &vendor.requests()[0].body;
    assert_eq!(sent["tools"], lookup_tool());
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "function", "function": {"name": "lookup_order"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_answered_is_refused_before_the_model_is_called() {
    let (vendor, stack) = vendor_stack(one_call()).await;
    stack.support_agent().await;
    let call = json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "lookup_order", "arguments": ARGUMENTS}}]});
    let result = json!({"role": "tool", "tool_call_id": "call_1", "content": "shipped"});
    let stray = json!({"role": "tool", "tool_call_id": "call_9", "content": "shipped"});
    for (body, param, says) in [
        (
            json!({"model": "support-agent", "messages": [user("Hi")], "tools": lookup_tool()}),
            "tools",
            "built-in model, which cannot call functions",
        ),
        (
            json!({"model": "support-agent",
                   "messages": [user("Hi"), call.clone(), result.clone()]}),
            "messages[2].role",
            "no function results to read",
        ),
        (
            json!({"model": "shop", "messages": [user("Hi"), call, stray]}),
            "messages[2].tool_call_id",
            "no call has the id 'call_9'",
        ),
        (
            json!({"model": "shop", "messages": [user("Hi")],
                   "tools": [{"type": "code_interpreter"}]}),
            "tools[0].type",
            "only function tools",
        ),
    ] {
        let response = completions(&stack, body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    assert!(vendor.requests().is_empty(), "no model was called");
}
