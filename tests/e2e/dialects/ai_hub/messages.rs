//! What each kind of message does to a conversation: metadata kept with lowercased keys, system
//! and assistant messages stored without a model call, message ids as idempotency keys, and a
//! preview assistant on a real (local) OpenAI-compatible model.

use serde_json::{Value, json};

use super::support::{SEED_ASSISTANT, ask_json, assert_answer, assert_success, seed_stack, stored};
use crate::support::openai_server::{FakeOpenAi, Script};
use crate::support::stack::{Options, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_stored_with_its_top_level_keys_lowercased() {
    let stack = seed_stack(Options::default()).await;
    let (status, body) = ask_json(
        &stack,
        &json!({
            "message": {"role": "user", "content": "hi"},
            "id": "conv_meta",
            "assistantId": SEED_ASSISTANT,
            "metadata": {"User_Tier": "premium", "LANGUAGE": "pt-BR", "Profile": {"TimeZone": "America/Sao_Paulo"}},
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let turns = stored(&stack, "conv_meta").await;
    assert_eq!(
        turns[0].2,
        json!({"user_tier": "premium", "language": "pt-BR", "profile": {"TimeZone": "America/Sao_Paulo"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_message_is_stored_without_an_answer_and_informs_the_next_one() {
    let stack = seed_stack(Options::default()).await;
    let (status, body) = ask_json(
        &stack,
        &json!({
            "message": {"id": "msg_sys", "role": "system", "content": "User is a VIP customer with priority support", "createdAt": "2024-01-20T15:29:00+01:00"},
            "id": "conv_vip",
            "assistantId": SEED_ASSISTANT,
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let echoed = assert_success(&body, "system");
    assert_eq!(
        echoed,
        json!({
            "id": "msg_sys",
            "role": "system",
            "content": "User is a VIP customer with priority support",
            "createdAt": "2024-01-20T14:29:00.000Z",
        })
    );
    assert_eq!(body["metadata"]["tokens_used"], 0);
    assert_eq!(body["metadata"]["knowledge_sources"], json!([]));
    assert_eq!(stored(&stack, "conv_vip").await.len(), 1, "no model answer");

    let (_, body) = ask_json(
        &stack,
        &json!({
            "message": {"role": "user", "content": "Which support does this customer get?"},
            "id": "conv_vip",
            "assistantId": SEED_ASSISTANT,
        }),
    )
    .await;
    assert_eq!(
        body["message"]["content"],
        "User is a VIP customer with priority support"
    );
    let roles: Vec<String> = stored(&stack, "conv_vip")
        .await
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(roles, ["system", "user", "assistant"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_id_sent_twice_is_stored_once() {
    let stack = seed_stack(Options::default()).await;
    let user = json!({
        "message": {"id": "msg_twice", "role": "user", "content": "How do I reset my password?"},
        "id": "conv_twice",
        "assistantId": SEED_ASSISTANT,
    });
    let system = json!({
        "message": {"id": "msg_sys_twice", "role": "system", "content": "Be kind."},
        "id": "conv_twice",
        "assistantId": SEED_ASSISTANT,
    });
    let (_, first) = ask_json(&stack, &user).await;
    let (_, second) = ask_json(&stack, &user).await;
    assert_eq!(
        first["message"], second["message"],
        "the stored answer is replayed"
    );
    let (_, first) = ask_json(&stack, &system).await;
    let (status, second) = ask_json(&stack, &system).await;
    assert_eq!(status, 200);
    assert_eq!(first["message"]["id"], second["message"]["id"]);
    let roles: Vec<String> = stored(&stack, "conv_twice")
        .await
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(roles, ["user", "assistant", "system"]);
}

/// A stack answering through a local OpenAI-compatible server.
async fn vendor_stack(server: &FakeOpenAi) -> Stack {
    Stack::start(Options {
        openai_base_url: server.base_url(),
        ..Options::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assistant_messages_seed_the_history_the_preview_model_sees() {
    let server = FakeOpenAi::start(Script::Tokens {
        pieces: vec!["Order ".into(), "4417 ships today.".into()],
        prompt_tokens: 30,
        completion_tokens: 4,
    })
    .await;
    let stack = vendor_stack(&server).await;
    let preview = json!({"name": "Orders", "instructions": "You track orders.", "model": "openai/test-model"});
    let turn = |role: &str, content: &str| {
        json!({
            "message": {"role": role, "content": content},
            "id": "conv_orders",
            "assistantId": "preview_assistant",
            "previewAssistantData": preview,
        })
    };
    let (status, body) = ask_json(&stack, &turn("assistant", "Your order number is 4417.")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        assert_success(&body, "assistant")["content"],
        "Your order number is 4417."
    );
    assert_eq!(body["metadata"]["tokens_used"], 0);
    assert!(
        server.requests().is_empty(),
        "an assistant message calls no model"
    );

    let (status, body) = ask_json(&stack, &turn("user", "When does my order ship?")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(assert_answer(&body)["content"], "Order 4417 ships today.");
    assert_eq!(body["metadata"]["tokens_used"], 34);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let sent: Vec<(&str, &str)> = requests[0].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m: &Value| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        sent,
        [
            ("system", "You track orders."),
            ("assistant", "Your order number is 4417."),
            ("user", "When does my order ship?"),
        ]
    );
    assert_eq!(requests[0].body["model"], "test-model");
}
