//! Server-side tools: an assistant's HTTP tools and an MCP server's (`support/mcp_server.rs`,
//! on the official SDK), called by the worker while it answers. The
//! model (the local OpenAI-compatible server, scripted to call them) gets each result and
//! answers from it; every call is signed and carries its context; arguments are checked
//! before any call; a tool's failure or timeout is a result the model reads, never a failed
//! turn; calls run in parallel; each round and result is stored with the turn; and a worker
//! killed after a tool returned never calls it again.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::mcp_server::McpServer;
use crate::support::openai_server::{FakeOpenAi, Recorded, Script};
use crate::support::stack::{Options, Stack, request_id_of};
use crate::support::tool_server::{Behaviour, ToolServer};

const SECRET: &str = "tool-secret-0123456789";

fn http_tool(server: &ToolServer, name: &str, timeout_ms: u64) -> Value {
    json!({"type": "http", "name": name, "description": format!("The {name} tool"),
           "url": server.url(name), "timeout_ms": timeout_ms, "secret": SECRET,
           "parameters": {"type": "object", "properties": {"order": {"type": "string"}},
                          "required": ["order"]}})
}

fn calls(list: &[(&str, &str, &str)]) -> Script {
    Script::Calls(
        list.iter()
            .map(|(id, name, args)| ((*id).into(), (*name).into(), (*args).into()))
            .collect(),
    )
}

fn answer(text: &str) -> Script {
    Script::Tokens {
        pieces: text.split_inclusive(' ').map(str::to_owned).collect(),
        prompt_tokens: 50,
        completion_tokens: 8,
    }
}

/// A stack whose assistant "shop" has `tools`, answering through the scripted vendor.
async fn shop(script: Script, tools: Value, options: Options) -> (FakeOpenAi, Stack, Value) {
    let vendor = FakeOpenAi::start(script).await;
    let stack = Stack::start(Options {
        openai_base_url: vendor.base_url(),
        ..options
    })
    .await;
    let assistant = stack
        .create_assistant(json!({"name": "Shop", "model": "openai/test-model", "tools": tools}))
        .await;
    (vendor, stack, assistant)
}

/// A tool server whose `lookup_order` behaves as `behaviour`, and a shop assistant whose model
/// calls it once (`call_1`, order A-1001) and then answers `text`.
async fn one_lookup(
    behaviour: Behaviour,
    timeout_ms: u64,
    text: &str,
) -> (ToolServer, FakeOpenAi, Stack, Value) {
    let tools = ToolServer::start([("lookup_order", behaviour)]).await;
    let script = Script::Sequence(vec![
        calls(&[("call_1", "lookup_order", r#"{"order":"A-1001"}"#)]),
        answer(text),
    ]);
    let tool = json!([http_tool(&tools, "lookup_order", timeout_ms)]);
    let (vendor, stack, assistant) = shop(script, tool, Options::default()).await;
    (tools, vendor, stack, assistant)
}

async fn ask(stack: &Stack, message: &str) -> Value {
    let response = stack
        .http
        .post(stack.url("/v1/api/chat/shop"))
        .bearer_auth(&stack.api_key)
        .json(&json!({"message": message}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The tool results the vendor was sent in its `request`th request, by call id.
fn results_sent(requests: &[Recorded], request: usize) -> Vec<(String, String)> {
    requests[request].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn stored(stack: &Stack) -> Vec<(String, Option<Value>, Option<String>)> {
    let db = stack.db().await;
    db.query(
        "SELECT role, tool_calls, tool_call_id FROM messages ORDER BY pk",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_001_answer_uses_a_signed_tool_call_and_every_step_is_stored() {
    let shipped = Behaviour::Answer(json!({"order": "A-1001", "status": "shipped"}));
    let (tools, vendor, stack, assistant) =
        one_lookup(shipped, 2000, "Your order A-1001 has shipped.").await;
    assert!(assistant["tools"][0].get("secret").is_none(), "{assistant}");

    let body = ask(&stack, "Where is my order A-1001?").await;
    assert_eq!(body["data"]["response"], "Your order A-1001 has shipped.");
    // Both model calls' tokens: the call (20 + 10) and the answer (50 + 8).
    let usage: (i32, i32) = {
        let db = stack.db().await;
        let row = db
            .query_one(
                "SELECT prompt_tokens, completion_tokens FROM messages \
                 WHERE role = 'assistant' AND answers IS NOT NULL",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(usage, (70, 18));

    // The vendor was offered the tool, then read its result.
    let requests = vendor.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body["tools"][0]["function"]["name"],
        "lookup_order"
    );
    let results = results_sent(&requests, 1);
    assert_eq!(results[0].0, "call_1");
    assert!(results[0].1.contains("shipped"), "{results:?}");

    // One signed call with its context.
    let made = tools.calls();
    assert_eq!(made.len(), 1);
    let call = &made[0];
    assert_eq!(
        serde_json::from_slice::<Value>(&call.body).unwrap(),
        json!({"order": "A-1001"})
    );
    let header = |name: &str| call.headers[name].to_str().unwrap().to_owned();
    let signed = header("x-confab-signature");
    let t: u64 = signed
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        signed,
        confab_shared::tools::signature(SECRET, t, &call.body)
    );
    assert_eq!(
        header("x-confab-assistant-id"),
        assistant["id"].as_str().unwrap()
    );
    let tenant_id: uuid::Uuid = stack
        .db()
        .await
        .query_one("SELECT tenant_id FROM assistants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(header("x-confab-tenant-id"), tenant_id.to_string());
    assert_eq!(
        header("x-confab-conversation-id"),
        body["data"]["conversationId"].as_str().unwrap()
    );
    assert!(header("idempotency-key").ends_with(".call_1"));

    // The round and its result are in the conversation, before the answer.
    let steps: Vec<(String, bool, Option<String>)> = stored(&stack)
        .await
        .into_iter()
        .map(|(role, calls, answers)| (role, calls.is_some(), answers))
        .collect();
    assert_eq!(
        steps,
        [
            ("user".into(), false, None),
            ("assistant".into(), true, None),
            ("tool".into(), false, Some("call_1".into())),
            ("assistant".into(), false, None),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_calls_in_one_round_run_at_once() {
    // Each answers only once both have arrived: calls made one after the other never meet.
    let tools = ToolServer::start([
        (
            "lookup_order",
            Behaviour::Meet(2, json!({"status": "shipped"})),
        ),
        (
            "track_parcel",
            Behaviour::Meet(2, json!({"eta": "tomorrow"})),
        ),
    ])
    .await;
    let script = Script::Sequence(vec![
        calls(&[
            ("call_a", "lookup_order", r#"{"order":"A-1"}"#),
            ("call_b", "track_parcel", r#"{"order":"A-1"}"#),
        ]),
        answer("Shipped, arriving tomorrow."),
    ]);
    let both = json!([
        http_tool(&tools, "lookup_order", 8000),
        http_tool(&tools, "track_parcel", 8000)
    ]);
    let (vendor, stack, _) = shop(script, both, Options::default()).await;
    let body = ask(&stack, "Where is A-1?").await;
    assert_eq!(body["data"]["response"], "Shipped, arriving tomorrow.");
    let mut called: Vec<String> = tools.calls().into_iter().map(|c| c.tool).collect();
    called.sort();
    assert_eq!(called, ["lookup_order", "track_parcel"]);
    let results = results_sent(&vendor.requests(), 1);
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .any(|(id, r)| id == "call_a" && r.contains("shipped")),
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|(id, r)| id == "call_b" && r.contains("tomorrow")),
        "{results:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tool_and_bad_arguments_are_results_the_model_reads_not_failed_turns() {
    let tools = ToolServer::start([(
        "lookup_order",
        Behaviour::Slow(Duration::from_secs(3), json!({"status": "late"})),
    )])
    .await;
    let script = Script::Sequence(vec![
        calls(&[
            ("call_slow", "lookup_order", r#"{"order":"A-1"}"#),
            ("call_bad", "lookup_order", r#"{"order": 42}"#),
        ]),
        answer("Sorry, I could not look that up."),
    ]);
    let (vendor, stack, _) = shop(
        script,
        json!([http_tool(&tools, "lookup_order", 300)]),
        Options::default(),
    )
    .await;
    let body = ask(&stack, "Where is A-1?").await;
    assert_eq!(body["data"]["response"], "Sorry, I could not look that up.");
    let results = results_sent(&vendor.requests(), 1);
    let result = |id: &str| {
        let (_, content) = results.iter().find(|(call, _)| call == id).unwrap();
        serde_json::from_str::<Value>(content).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(result("call_slow").contains("did not answer within 300 ms"));
    assert!(result("call_bad").contains("invalid arguments"));
    // The bad call never reached the tool.
    assert_eq!(tools.calls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_a_tool_returned_never_calls_it_again() {
    let tools = ToolServer::start([(
        "lookup_order",
        Behaviour::Answer(json!({"status": "shipped"})),
    )])
    .await;
    // The model stalls after the tool returned; the worker is killed there.
    let script = Script::Sequence(vec![
        calls(&[("call_1", "lookup_order", r#"{"order":"A-1001"}"#)]),
        Script::Stall,
        answer("It has shipped."),
    ]);
    let options = Options {
        workers: 0,
        ..Options::default()
    };
    let (vendor, mut stack, _) = shop(
        script,
        json!([http_tool(&tools, "lookup_order", 2000)]),
        options,
    )
    .await;
    let doomed = stack.start_worker_process();
    let asked = {
        let http = stack.http.clone();
        let url = stack.url("/v1/api/chat/shop");
        let key = stack.api_key.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .json(&json!({"message": "Where is A-1001?"}))
                .send()
                .await
                .unwrap()
        })
    };
    for _ in 0..200 {
        if vendor.requests().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        vendor.requests().len(),
        2,
        "the model was called after the tool"
    );
    stack.kill_worker_process(doomed).await;
    stack.start_worker_process();

    let response = asked.await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["response"], "It has shipped.");
    assert_eq!(tools.calls().len(), 1, "the tool was called once");
    let requests = vendor.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        results_sent(&requests, 2)[0].0,
        "call_1",
        "the stored result was read"
    );
    let roles: Vec<String> = stored(&stack)
        .await
        .into_iter()
        .map(|(r, _, _)| r)
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_checked_by_field_and_their_secrets_never_shown() {
    let stack = Stack::start(Options::default()).await;
    let tool = json!({"type": "http", "name": "lookup_order", "url": "http://127.0.0.1:9/t",
                      "secret": SECRET});
    let create = |body: Value| {
        stack
            .http
            .post(stack.url("/v1/assistants"))
            .bearer_auth(&stack.api_key)
            .json(&body)
            .send()
    };
    for (body, field) in [
        (json!({"name": "A", "tools": [tool]}), "tools"),
        (
            json!({"name": "B", "model": "openai/m", "tools": [{"type": "http", "name": "x",
                   "url": "file:///etc/passwd", "secret": SECRET}]}),
            "tools[0].url",
        ),
        (
            json!({"name": "C", "model": "openai/m", "tools": [{"type": "http", "name": "x",
                   "url": "http://127.0.0.1:9/t"}]}),
            "tools[0].secret",
        ),
    ] {
        let response = create(body.clone()).await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["details"]["field"], field, "{error}");
    }
    let created: Value = create(json!({"name": "D", "model": "openai/m", "tools": [tool]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["tools"][0]["timeout_ms"], 10000);
    // An update that leaves the secret out keeps it; nothing shows it.
    let id = created["id"].as_str().unwrap();
    let mut renamed = tool.clone();
    renamed.as_object_mut().unwrap().remove("secret");
    renamed["description"] = json!("Find an order");
    let updated = stack
        .http
        .patch(stack.url(&format!("/v1/assistants/{id}")))
        .bearer_auth(&stack.api_key)
        .json(&json!({"tools": [renamed]}))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 200);
    let text = updated.text().await.unwrap();
    assert!(
        !text.contains(SECRET) && text.contains("Find an order"),
        "{text}"
    );
    let db = stack.db().await;
    let kept: Value = db
        .query_one("SELECT tools FROM assistants WHERE name = 'D'", &[])
        .await
        .unwrap()
        .get(0);
    let sealed = kept[0]["secret"].as_str().unwrap();
    assert!(
        sealed.starts_with("enc:v1:") && !sealed.contains(SECRET),
        "{sealed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_servers_allowed_tools_are_offered_called_and_their_errors_read() {
    let mcp = McpServer::start().await;
    let script = Script::Sequence(vec![
        calls(&[
            ("call_1", "lookup_order", r#"{"order":"A-1001"}"#),
            ("call_2", "lookup_order", r#"{"order":"Z-9"}"#),
        ]),
        answer("A-1001 has shipped; Z-9 is not an order I know."),
    ]);
    let server = json!([{"type": "mcp", "url": mcp.url(), "allowed_tools": ["lookup_order"]}]);
    let (vendor, stack, assistant) = shop(script, server, Options::default()).await;
    assert_eq!(assistant["tools"][0]["type"], "mcp", "{assistant}");
    let body = ask(&stack, "Where are A-1001 and Z-9?").await;
    assert_eq!(
        body["data"]["response"],
        "A-1001 has shipped; Z-9 is not an order I know."
    );
    let requests = vendor.requests();
    let offered: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["lookup_order"], "cancel_order is not allowed");
    assert_eq!(
        requests[0].body["tools"][0]["function"]["parameters"]["required"],
        json!(["order"])
    );
    let mut made = mcp.calls();
    made.sort_by_key(|call| call.1.to_string());
    assert_eq!(
        made,
        [
            ("lookup_order".to_owned(), json!({"order": "A-1001"})),
            ("lookup_order".to_owned(), json!({"order": "Z-9"})),
        ]
    );
    let results = results_sent(&requests, 1);
    let result = |id: &str| {
        results
            .iter()
            .find(|(call, _)| call == id)
            .unwrap()
            .1
            .clone()
    };
    assert!(result("call_1").contains("shipped"), "{results:?}");
    let failed: Value = serde_json::from_str(&result("call_2")).unwrap();
    assert_eq!(failed["error"], "no such order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_tool_grows_the_identitys_memory_from_the_conversation() {
    let script = Script::Sequence(vec![
        calls(&[
            (
                "call_ok",
                "remember",
                r#"{"preferences": {"colour": "teal"}, "stage": "customer"}"#,
            ),
            ("call_bad", "remember", r#"{"mood": "happy"}"#),
        ]),
        answer("Noted: teal."),
        answer("Teal, as you told me."),
    ]);
    let (vendor, stack, assistant) =
        shop(script, json!([{"type": "memory"}]), Options::default()).await;
    let (_, identity) = stack
        .api("POST", "/v1/identities", Some(json!({"name": "Ada"})))
        .await;
    let (_, channel) = stack
        .api(
            "POST",
            "/v1/channels",
            Some(json!({"name": "W", "kind": "whatsapp", "assistant_id": assistant["id"]})),
        )
        .await;
    let chat = format!(
        "/conversation/{}/chat/{}",
        identity["id"].as_str().unwrap(),
        channel["id"].as_str().unwrap()
    );
    let (status, first) = stack
        .api(
            "POST",
            &chat,
            Some(json!({"text": "I love teal. I bought one."})),
        )
        .await;
    assert_eq!(status, 200, "{first}");

    let memory = format!("/v1/identities/{}/memory", identity["id"].as_str().unwrap());
    let (_, remembered) = stack.api("GET", &memory, None).await;
    assert_eq!(remembered["preferences"], json!({"colour": "teal"}));
    assert_eq!(remembered["stage"], "customer");
    let requests = vendor.requests();
    let offered = &requests[0].body["tools"][0]["function"];
    assert_eq!(offered["name"], "remember");
    let results = results_sent(&requests, 1);
    let bad = &results.iter().find(|(id, _)| id == "call_bad").unwrap().1;
    assert!(bad.contains("invalid arguments"), "{bad}");

    // The next turn's context holds what was remembered.
    stack
        .api(
            "POST",
            &chat,
            Some(json!({"text": "Which colour do I like?"})),
        )
        .await;
    let requests = vendor.requests();
    let system = requests[2].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "system")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        system.contains("\"colour\":\"teal\"") && system.contains("Stage: customer"),
        "{system}"
    );
}

/// The OpenAI dialect streams the answer the tools led to, and never shows the assistant's own
/// calls as calls of the caller's functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_stream_shows_only_the_answer_of_a_server_side_tool_loop() {
    let shipped = Behaviour::Answer(json!({"status": "shipped"}));
    let (tools, _vendor, stack, _) = one_lookup(shipped, 2000, "It has shipped.").await;
    let streamed = stack
        .http
        .post(stack.url("/v1/chat/completions"))
        .bearer_auth(&stack.api_key)
        .json(&json!({"model": "shop", "stream": true,
                      "messages": [{"role": "user", "content": "Where is A-1001?"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks: Vec<Value> = crate::support::stack::sse_data(&streamed)
        .iter()
        .filter_map(|data| serde_json::from_str(data).ok())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "It has shipped.");
    assert!(!streamed.contains("tool_calls"), "{streamed}");
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("stop"));
    assert_eq!(tools.calls().len(), 1);
}

/// A cancel stops the calls under way: the request ends at once, not when the tool answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_the_tool_calls_under_way() {
    let late = Behaviour::Slow(Duration::from_secs(20), json!({"status": "late"}));
    let (tools, vendor, stack, _) = one_lookup(late, 30000, "Too late.").await;
    let response = stack
        .http
        .post(stack.url("/v1/api/chat/shop"))
        .bearer_auth(&stack.api_key)
        .json(&json!({"message": "Where is A-1001?", "stream": true}))
        .send()
        .await
        .unwrap();
    let request_id = request_id_of(&response);
    for _ in 0..200 {
        if !tools.calls().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(tools.calls().len(), 1, "the call is under way");
    let cancelled_at = std::time::Instant::now();
    let (status, _) = stack
        .api("POST", &format!("/v1/requests/{request_id}/cancel"), None)
        .await;
    assert_eq!(status, 202);
    let rest = response.text().await.unwrap();
    assert!(rest.contains("CancelledError"), "{rest}");
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(10),
        "ended {:?} after the cancel",
        cancelled_at.elapsed()
    );
    assert_eq!(vendor.requests().len(), 1, "the model was not called again");
}
