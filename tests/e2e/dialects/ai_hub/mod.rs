//! Seed 002, `POST /api/ai-hub/assistant/ask`: every example of the seed document sent as written
//! (the seed's assistant and folder ids are created in the test's tenant, so even the ids are the
//! seed's), conversation continuity and SSE. What each kind of message does is in `messages`, every
//! documented error in `errors`.

mod errors;
mod messages;
pub mod support;

use serde_json::{Value, json};

use crate::support::stack::{Options, Stack};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_request_example_gets_the_seed_response_shape() {
    let stack = seed_stack(Options::default()).await;
    let (status, body) = ask_json(
        &stack,
        &json!({
          "message": {
            "id": "msg_123",
            "role": "user",
            "content": "How do I reset my password?",
            "createdAt": "2024-01-20T15:30:00Z"
          },
          "id": "conv_550e8400-e29b-41d4",
          "assistantId": "550e8400-e29b-41d4-a716-446655440001",
          "metadata": {
            "user_id": "user_456",
            "session_id": "session_789",
            "channel": "web"
          },
          "foldersId": [
            "550e8400-e29b-41d4-a716-446655440000",
            "550e8400-e29b-41d4-a716-446655440003"
          ]
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let message = assert_answer(&body);
    assert_eq!(message["content"], RESET_ANSWER);
    assert_ne!(message["id"], "msg_123");
    assert_eq!(body["metadata"]["knowledge_sources"], json!([]));

    // The user turn is stored with its createdAt and metadata, the answer after it.
    let db = stack.db().await;
    let created_ms: i64 = db
        .query_one(
            "SELECT (extract(epoch FROM created_at) * 1000)::int8 FROM messages WHERE id = 'msg_123'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(created_ms, 1_705_764_600_000);
    let turns = stored(&stack, "conv_550e8400-e29b-41d4").await;
    assert_eq!(turns.len(), 2);
    assert_eq!(
        turns[0].2,
        json!({"user_id": "user_456", "session_id": "session_789", "channel": "web"})
    );
    assert_eq!(
        (turns[1].0.as_str(), turns[1].1.as_str()),
        ("assistant", RESET_ANSWER)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_application_example_with_a_javascript_timestamp_is_answered() {
    let stack = seed_stack(Options::default()).await;
    let (status, body) = ask_json(
        &stack,
        &json!({
            "message": {
                "id": "msg_web_1705764600123",
                "role": "user",
                "content": "What are your business hours?",
                "createdAt": "2024-01-20T15:30:00.123Z"
            },
            "id": "session_abc",
            "assistantId": SEED_ASSISTANT,
            "metadata": {"user_id": "user_456", "channel": "web"}
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(assert_answer(&body)["content"], HOURS_ANSWER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whatsapp_example_without_created_at_is_answered() {
    let stack = seed_stack(Options::default()).await;
    let (status, body) = ask_json(
        &stack,
        &json!({
            "message": {
                "id": "whatsapp_1705764600000",
                "role": "user",
                "content": "How do I reset my password?"
            },
            "id": "whatsapp_+5511999990000",
            "assistantId": SEED_ASSISTANT,
            "metadata": {"phone_number": "+5511999990000", "channel": "whatsapp"}
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(assert_answer(&body)["content"], RESET_ANSWER);
    let turns = stored(&stack, "whatsapp_+5511999990000").await;
    assert_eq!(turns[0].2["channel"], "whatsapp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_example_is_answered_by_the_unsaved_assistant() {
    let stack = Stack::start(Options::default()).await;
    let (status, body) = ask_json(
        &stack,
        &json!({
          "message": {"id": "msg_123", "role": "user", "content": "Test message"},
          "id": "preview_conv_123",
          "assistantId": "preview_assistant",
          "previewAssistantData": {
            "name": "Test Assistant",
            "description": "Testing new configuration"
          }
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        assert_answer(&body)["content"],
        "I have no information on that yet. You asked: \"Test message\""
    );

    // The preview assistant's description is its instructions: it answers from them.
    let (status, body) = ask_json(
        &stack,
        &json!({
          "message": {"role": "user", "content": "Where is the office?"},
          "id": "preview_conv_123",
          "assistantId": "preview_assistant",
          "previewAssistantData": {
            "name": "Test Assistant",
            "description": "Testing new configuration. Our office is in Lisbon."
          }
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(assert_answer(&body)["content"], "Our office is in Lisbon.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_best_practice_fragments_list_what_they_lack_and_work_once_completed() {
    let stack = seed_stack(Options::default()).await;
    let issues = |body: Value| -> Vec<String> {
        body["issues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|issue| issue["field"].as_str().unwrap().to_owned())
            .collect()
    };
    let conversation = json!({"id": "user_456_session_20240120", "assistantId": SEED_ASSISTANT});
    let metadata = json!({"metadata": {"user_tier": "premium", "language": "pt-BR", "timezone": "America/Sao_Paulo"}});
    let folders = json!({"foldersId": ["product_docs_folder_id", "user_specific_folder_id"]});
    let text = json!({"message": {"role": "user", "content": "What are your business hours?"}});
    let system = json!({"message": {"role": "system", "content": "User is a VIP customer with priority support"}});
    let expected: [(&Value, &[&str]); 5] = [
        (&conversation, &["message"]),
        (&metadata, &["message", "id", "assistantId"]),
        (
            &folders,
            &[
                "message",
                "id",
                "assistantId",
                "foldersId[0]",
                "foldersId[1]",
            ],
        ),
        (&text, &["id", "assistantId"]),
        (&system, &["id", "assistantId"]),
    ];
    for (fragment, lacking) in expected {
        let (status, body) = ask_json(&stack, fragment).await;
        assert_eq!(status, 400, "{fragment}");
        assert_eq!(body["error"], "Message parse problem from ask assistant");
        assert_eq!(issues(body), lacking, "{fragment}");
    }

    // Completed: a system message, then a user question using the metadata and real folders.
    let merge = |parts: &[&Value]| -> Value {
        let mut body = serde_json::Map::new();
        for part in parts {
            body.extend(part.as_object().unwrap().clone());
        }
        Value::Object(body)
    };
    let (status, body) = ask_json(&stack, &merge(&[&conversation, &system])).await;
    assert_eq!(status, 200, "{body}");
    let echoed = assert_success(&body, "system");
    assert_eq!(
        echoed["content"],
        "User is a VIP customer with priority support"
    );
    let real_folders = json!({"foldersId": SEED_FOLDERS});
    let (status, body) = ask_json(
        &stack,
        &merge(&[&conversation, &text, &metadata, &real_folders]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(assert_answer(&body)["content"], HOURS_ANSWER);
    let turns = stored(&stack, "user_456_session_20240120").await;
    let roles: Vec<&str> = turns.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant"]);
    assert_eq!(turns[1].2, metadata["metadata"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_continue_by_id_and_different_ids_are_isolated() {
    let stack = seed_stack(Options::default()).await;
    let turn = |conversation: &str, content: &str| {
        json!({
            "message": {"role": "user", "content": content},
            "id": conversation,
            "assistantId": SEED_ASSISTANT,
        })
    };
    let (status, _) = ask_json(&stack, &turn("thread-a", "My favourite colour is teal.")).await;
    assert_eq!(status, 200);
    let (_, same) = ask_json(&stack, &turn("thread-a", "Which colour is my favourite?")).await;
    assert_eq!(
        same["message"]["content"],
        "You told me earlier: \"My favourite colour is teal.\""
    );
    let (_, other) = ask_json(&stack, &turn("thread-b", "Which colour is my favourite?")).await;
    assert!(
        !other["message"]["content"]
            .as_str()
            .unwrap()
            .contains("teal"),
        "{other}"
    );
    assert_eq!(stored(&stack, "thread-a").await.len(), 4);
    assert_eq!(stored(&stack, "thread-b").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_again_under_its_id_is_one_turn_with_the_same_response() {
    let stack = seed_stack(Options::default()).await;
    let ask = json!({
        "message": {"id": "client-msg-1", "role": "user", "content": "How do I reset my password?"},
        "id": "thread-retry",
        "assistantId": SEED_ASSISTANT,
    });
    let (status, first) = ask_json(&stack, &ask).await;
    assert_eq!(status, 200, "{first}");
    // A client that lost the answer sends the same message again, here asking for a stream.
    let (_, events) = ask_streamed(&stack, &ask).await;
    let mut replayed = events.last().expect("a done event").clone();
    assert_eq!(replayed["type"], "done");
    replayed.as_object_mut().unwrap().remove("type");
    assert_eq!(replayed["message"]["id"], first["message"]["id"]);
    assert_eq!(replayed["message"]["content"], first["message"]["content"]);
    assert_eq!(stored(&stack, "thread-retry").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_accept_header_streams_tokens_then_the_success_body() {
    let stack = seed_stack(Options::default()).await;
    let (content_type, events) = ask_streamed(
        &stack,
        &json!({
            "message": {"id": "msg_sse", "role": "user", "content": "How do I reset my password?"},
            "id": "conv_sse",
            "assistantId": SEED_ASSISTANT,
        }),
    )
    .await;
    assert_eq!(content_type, "text/event-stream");
    let (last, tokens) = events.split_last().unwrap();
    assert!(
        tokens.len() >= 2,
        "the first token comes on its own: {events:?}"
    );
    let text: String = tokens
        .iter()
        .map(|event| {
            assert_eq!(keys(event), ["content", "type"]);
            assert_eq!(event["type"], "token");
            event["content"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, RESET_ANSWER);
    assert_eq!(last["type"], "done");
    let mut done = last.clone();
    done.as_object_mut().unwrap().remove("type");
    assert_eq!(assert_answer(&done)["content"], RESET_ANSWER);

    // A system message streams nothing but its echo.
    let (_, events) = ask_streamed(
        &stack,
        &json!({
            "message": {"role": "system", "content": "User is a VIP customer"},
            "id": "conv_sse",
            "assistantId": SEED_ASSISTANT,
        }),
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "done");
    assert_eq!(events[0]["message"]["role"], "system");
}
