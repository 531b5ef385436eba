//! Field-by-field checks of the ask body, without the database.

use serde_json::json;

use super::*;

fn issues_of(body: Value) -> Vec<(String, String)> {
    parse(&body)
        .finish(&[])
        .unwrap_err()
        .into_iter()
        .map(|issue| (issue.field, issue.message))
        .collect()
}

fn fields_of(body: Value) -> Vec<String> {
    issues_of(body)
        .into_iter()
        .map(|(field, _)| field)
        .collect()
}

fn valid(body: Value) -> AskRequest {
    parse(&body).finish(&[]).unwrap()
}

#[test]
fn the_seed_request_is_read_field_by_field() {
    let request = valid(json!({
        "message": {"id": "msg_123", "role": "user", "content": "How do I reset my password?", "createdAt": "2024-01-20T15:30:00Z"},
        "id": "conv_550e8400-e29b-41d4",
        "assistantId": "550e8400-e29b-41d4-a716-446655440001",
        "metadata": {"User_ID": "user_456", "channel": "web", "Nested": {"KeepMe": 1}},
        "foldersId": ["550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440003"],
    }));
    assert_eq!(
        request.message,
        Message::text(
            "msg_123".into(),
            Role::User,
            "How do I reset my password?".into(),
            1_705_764_600_000,
        )
    );
    assert_eq!(request.conversation_id, "conv_550e8400-e29b-41d4");
    assert_eq!(
        request.assistant,
        AssistantChoice::Stored("550e8400-e29b-41d4-a716-446655440001".into())
    );
    assert_eq!(
        Value::Object(request.metadata),
        json!({"user_id": "user_456", "channel": "web", "nested": {"KeepMe": 1}})
    );
    assert_eq!(request.folder_ids.len(), 2);
}

#[test]
fn a_message_without_id_or_date_gets_a_fresh_id_and_the_current_time() {
    let before = now_ms();
    let request = valid(json!({
        "message": {"role": "system", "content": "User is a VIP customer"},
        "id": "c", "assistantId": "a", "metadata": null, "foldersId": null,
    }));
    assert!(request.message.id.starts_with("msg_"));
    assert!(request.message.created_ms >= before);
    assert_eq!(request.message.role, Role::System);
    assert!(request.metadata.is_empty() && request.folder_ids.is_empty());
}

#[test]
fn a_missing_assistant_id_is_the_seed_issue() {
    assert_eq!(
        issues_of(json!({"message": {"role": "user", "content": "hi"}, "id": "c"})),
        [(
            "assistantId".to_owned(),
            "The assistant id is required!".to_owned()
        )]
    );
}

#[test]
fn every_invalid_field_is_reported_at_once() {
    let fields = fields_of(json!({
        "message": {"id": "", "role": "robot", "content": "  ", "createdAt": "yesterday"},
        "id": 7,
        "assistantId": 12,
        "metadata": ["a"],
        "foldersId": ["not-a-uuid", 3, "550e8400-e29b-41d4-a716-446655440000"],
        "previewAssistantData": {"model": "gpt-4"},
    }));
    assert_eq!(
        fields,
        [
            "message.id",
            "message.role",
            "message.content",
            "message.createdAt",
            "id",
            "assistantId",
            "metadata",
            "foldersId[0]",
            "foldersId[1]",
            "previewAssistantData.name",
            "previewAssistantData.model",
        ]
    );
    assert_eq!(fields_of(json!({})), ["message", "id", "assistantId"]);
    assert_eq!(
        fields_of(json!({"message": "hi", "id": "", "assistantId": " ", "foldersId": {}})),
        ["message", "id", "assistantId", "foldersId"]
    );
    assert_eq!(
        fields_of(json!({"message": {}, "id": "x".repeat(201), "assistantId": "a"})),
        ["message.role", "message.content", "id"]
    );
}

#[test]
fn a_body_that_is_not_an_object_is_an_issue_on_body() {
    assert_eq!(fields_of(json!(["message"])), ["body"]);
    assert_eq!(fields_of(json!("hi")), ["body"]);
}

#[test]
fn unknown_folders_are_issues_on_their_positions_and_duplicates_are_searched_once() {
    let folder = "550e8400-e29b-41d4-a716-446655440000";
    let body = json!({
        "message": {"role": "user", "content": "hi"}, "id": "c", "assistantId": "a",
        "foldersId": [folder, folder, "550e8400-e29b-41d4-a716-446655440003"],
    });
    let parsed = parse(&body);
    assert_eq!(
        parsed.folders.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    let issues = parse(&body).finish(&[2]).unwrap_err();
    assert_eq!(issues[0].field, "foldersId[2]");
    assert_eq!(issues[0].message, "The folder does not exist");
    assert_eq!(parse(&body).finish(&[]).unwrap().folder_ids.len(), 2);
}

#[test]
fn metadata_keys_differing_only_in_case_are_refused() {
    assert_eq!(
        fields_of(json!({
            "message": {"role": "user", "content": "hi"}, "id": "c", "assistantId": "a",
            "metadata": {"Channel": "web", "channel": "sms"},
        })),
        ["metadata.channel"]
    );
}

#[test]
fn preview_mode_uses_instructions_else_description_and_the_builtin_model() {
    let request = valid(json!({
        "message": {"role": "user", "content": "Test message"}, "id": "preview_conv_123",
        "assistantId": "preview_assistant",
        "previewAssistantData": {"name": "Test Assistant", "description": "Testing new configuration"},
    }));
    assert_eq!(
        request.assistant,
        AssistantChoice::Preview(PreviewAssistant {
            name: "Test Assistant".into(),
            instructions: "Testing new configuration".into(),
            model: "builtin".into(),
        })
    );
    assert_eq!(request.assistant_id, "preview_assistant");
    let request = valid(json!({
        "message": {"role": "user", "content": "Test"}, "id": "p", "assistantId": "preview",
        "previewAssistantData": {"name": "T", "description": "d", "instructions": "Be brief.", "model": "openai/gpt-4o-mini"},
    }));
    let AssistantChoice::Preview(preview) = request.assistant else {
        panic!("preview mode")
    };
    assert_eq!(preview.instructions, "Be brief.");
    assert_eq!(preview.model, "openai/gpt-4o-mini");
}

#[test]
fn issues_found_in_the_database_are_listed_in_field_order() {
    let body = json!({
        "message": {"role": "user", "content": "hi"}, "id": "c", "assistantId": "a",
        "foldersId": ["550e8400-e29b-41d4-a716-446655440000", "x"],
        "previewAssistantData": {"name": ""},
    });
    let fields: Vec<String> = parse(&body)
        .finish(&[0])
        .unwrap_err()
        .into_iter()
        .map(|issue| issue.field)
        .collect();
    assert_eq!(
        fields,
        ["foldersId[0]", "foldersId[1]", "previewAssistantData.name"]
    );
}
