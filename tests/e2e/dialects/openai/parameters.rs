//! No parameter is accepted and ignored: sampling reaches the model (the built-in one honours
//! `max_tokens` and `stop`, an OpenAI-compatible vendor gets them all), `user` and `metadata`
//! are stored with the turn, and what confab cannot do is a 400 naming the parameter.

use serde_json::{Value, json};

use super::{HOURS, completions, user};
use crate::support::openai_server::{FakeOpenAi, Script};
use crate::support::stack::{Options, Stack, sse_data};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_cuts_the_answer_with_finish_reason_length_and_stop_ends_it_early() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let ask = |extra: Value| {
        let mut body = json!({"model": "support-agent",
                              "messages": [user("What are your business hours?")]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        completions(&stack, body)
    };

    let body: Value = ask(json!({"max_tokens": 3})).await.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Our business hours"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 3);

    let whole: Value = ask(json!({"max_completion_tokens": 500}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(whole["choices"][0]["message"]["content"], HOURS);
    assert_eq!(whole["choices"][0]["finish_reason"], "stop");

    let stopped: Value = ask(json!({"stop": [" to ", "Friday"]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        stopped["choices"][0]["message"]["content"],
        "Our business hours are 9:00"
    );

    let streamed = ask(json!({"max_tokens": 2, "stream": true}))
        .await
        .text()
        .await
        .unwrap();
    let chunks: Vec<Value> = sse_data(&streamed)
        .iter()
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("length")], "{streamed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_parameters_reach_the_vendor_and_user_and_metadata_are_stored() {
    let server = FakeOpenAi::start(Script::Tokens {
        pieces: vec!["Fine".into()],
        prompt_tokens: 5,
        completion_tokens: 1,
    })
    .await;
    let stack = Stack::start(Options {
        openai_base_url: server.base_url(),
        ..Options::default()
    })
    .await;
    stack
        .create_assistant(json!({"name": "Vendor Bot", "model": "openai/test-model"}))
        .await;
    let response = completions(
        &stack,
        json!({"model": "vendor-bot", "messages": [user("Hi")], "temperature": 0.4,
               "top_p": 0.9, "max_tokens": 64, "stop": "END", "seed": 11,
               "presence_penalty": 0.5, "frequency_penalty": -0.5,
               "user": "u-7", "metadata": {"order": "A-1"}, "conversation_id": "conv-params"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let sent = &server.requests()[0].body;
    for (name, value) in [
        ("temperature", json!(0.4)),
        ("top_p", json!(0.9)),
        ("max_tokens", json!(64)),
        ("stop", json!(["END"])),
        ("seed", json!(11)),
        ("presence_penalty", json!(0.5)),
        ("frequency_penalty", json!(-0.5)),
    ] {
        assert_eq!(sent[name], value, "{name} in {sent}");
    }
    let metadata: Value = stack
        .db()
        .await
        .query_one("SELECT metadata FROM messages WHERE role = 'user'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(metadata, json!({"order": "A-1", "user": "u-7"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_confab_cannot_do_is_refused_naming_the_parameter() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let tool = json!([{"type": "function", "function": {"name": "lookup", "parameters": {}}}]);
    for (param, value, says) in [
        ("tools", tool, "built-in model, which cannot call functions"),
        (
            "response_format",
            json!({"type": "json_object"}),
            "built-in model, which writes free text only",
        ),
        ("logprobs", json!(true), "log probabilities"),
        (
            "colour",
            json!("red"),
            "Unrecognized request argument supplied: colour",
        ),
    ] {
        let mut body = json!({"model": "support-agent", "messages": [user("Hi")]});
        body[param] = value;
        let response = completions(&stack, body).await;
        assert_eq!(response.status(), 400, "{param}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param);
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(says),
            "{error}"
        );
    }
    // What asks for nothing is fine.
    let quiet = json!({"model": "support-agent", "messages": [user("Hi")], "tools": [],
                       "tool_choice": "none", "logprobs": false,
                       "response_format": {"type": "text"}});
    assert_eq!(completions(&stack, quiet).await.status(), 200);
    let count: i64 = stack
        .db()
        .await
        .query_one("SELECT count(*) FROM messages WHERE role = 'user'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        count, 1,
        "the refused requests stored nothing; the accepted one its turn"
    );
}
