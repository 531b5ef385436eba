//! Seed 001, agents by slug: `POST /v1/api/chat/{slug}` with `{message, stream?, conversationId?}`.
//! JSON replies are `{data: {response, conversationId, metadata: {model, tokens, sources}}, error:
//! null}` (`sources`: the knowledge documents the answer drew on);
//! streamed replies are `data: {"chunk": ..}` lines ending with `data: [DONE]`, the conversation id
//! in the `X-Conversation-Id` header. Errors are `{data: null, error: {name, message, details}}`.

mod error;
mod schemas;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use confab_contract::{AssistantRef, Message, Role, now_ms};
use serde_json::{Value, json};

pub use error::AgentsError;

use crate::http::openapi::schema::reference;
use crate::http::{
    ApiRouter, AppState, Operation, Reply, RequestId, TurnCaller, json_body, resumed_sse_response,
    sse_response, turn_route,
};
use crate::pipeline::{Turn, TurnEvent, TurnRequest};
use crate::store::conversations;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .tag(
            "agents",
            "Seed 001: chat with a deployed assistant by its slug",
        )
        .components(schemas::components())
        .post(
            "/v1/api/chat/{slug}",
            turn_route::<AgentsError, _, _>(chat),
            Operation::new("agentsChat", "Send a message to an agent")
                .tag("agents")
                .path_param("slug", "The assistant's slug")
                .body(reference("AgentsChatRequest"))
                .response(
                    200,
                    Reply::new(
                        "The answer: one JSON document, or with `stream: true` SSE `data:` \
                         lines of `{chunk}` (or the error that ended the turn), then `[DONE]`",
                    )
                    .json(reference("AgentsReply"))
                    .sse(reference("AgentsStreamEvent"), Some("[DONE]"))
                    .conversation_header(false, "The conversation id (streamed replies)"),
                )
                .errors(
                    "AgentsError",
                    &[400, 401, 404, 409, 413, 429, 500, 502, 503, 504],
                ),
        )
}

/// A validated chat request.
#[derive(Debug, PartialEq)]
struct ChatRequest {
    message: String,
    stream: bool,
    conversation_id: Option<String>,
}

impl ChatRequest {
    fn parse(body: Value) -> Result<ChatRequest, AgentsError> {
        let Value::Object(mut fields) = body else {
            return Err(AgentsError::validation(
                "body",
                "Request body must be a JSON object",
            ));
        };
        let message = match fields.remove("message") {
            None | Some(Value::Null) => {
                return Err(AgentsError::validation(
                    "message",
                    "Message field is required",
                ));
            }
            Some(Value::String(text)) if text.trim().is_empty() => {
                return Err(AgentsError::validation(
                    "message",
                    "Message field must not be empty",
                ));
            }
            Some(Value::String(text)) => text,
            Some(_) => {
                return Err(AgentsError::validation(
                    "message",
                    "Message field must be a string",
                ));
            }
        };
        let stream = match fields.remove("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(stream)) => stream,
            Some(_) => {
                return Err(AgentsError::validation(
                    "stream",
                    "stream must be a boolean",
                ));
            }
        };
        let conversation_id = match fields.remove("conversationId") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if !id.trim().is_empty() && id.len() <= 200 => Some(id),
            Some(_) => {
                return Err(AgentsError::validation(
                    "conversationId",
                    "conversationId must be a non-empty string of at most 200 characters, or null",
                ));
            }
        };
        Ok(ChatRequest {
            message,
            stream,
            conversation_id,
        })
    }
}

async fn chat(
    State(state): State<AppState>,
    caller: TurnCaller<AgentsError>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(slug): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AgentsError> {
    let tenant_id = caller.tenant_id;
    let request = ChatRequest::parse(json_body(body)?)?;
    let db = state.db.get().await?;
    let assistant = state
        .assistants
        .by_slug(&db, tenant_id, &slug)
        .await?
        .filter(|a| a.deployed)
        .ok_or_else(|| AgentsError::not_found(format!("Agent with slug '{slug}' not found")))?;
    let conversation_id = match request.conversation_id {
        Some(id) => {
            let known =
                conversations::exists_for_assistant(&**db, tenant_id, &id, assistant.id).await?;
            if !known {
                return Err(AgentsError::not_found(format!(
                    "Conversation with id '{id}' not found"
                )));
            }
            id
        }
        None => conversations::new_id(),
    };
    drop(db);
    let turn = state
        .pipeline
        .submit(TurnRequest {
            request_id,
            tenant_id,
            assistant: AssistantRef::Stored { id: assistant.id },
            conversation_id,
            identity_id: None,
            channel_id: None,
            message: Message::text(
                conversations::new_message_id(),
                Role::User,
                request.message,
                now_ms(),
            ),
            history: Vec::new(),
            metadata: Default::default(),
            folder_ids: Vec::new(),
            stream: request.stream,
            ephemeral: false,
            sampling: Default::default(),
            tools: Default::default(),
            stream_format: Some(json!({"family": FORMAT})),
            charge: caller.charge(),
        })
        .await?;
    if request.stream {
        Ok(stream_reply(turn))
    } else {
        json_reply(turn).await
    }
}

async fn json_reply(turn: Turn) -> Result<Response, AgentsError> {
    let conversation_id = turn.conversation_id.clone();
    let done = turn.collect().await?;
    Ok(Json(json!({
        "data": {
            "response": done.text,
            "conversationId": conversation_id,
            "metadata": {
                "model": done.model,
                "tokens": done.usage.total(),
                "sources": done.sources,
            },
        },
        "error": null,
    }))
    .into_response())
}

/// The family's name in a logged stream format (`TurnRequest::stream_format`).
pub const FORMAT: &str = "agents";

fn stream_reply(turn: Turn) -> Response {
    let headers = [crate::http::conversation_header(&turn.conversation_id)];
    let (stall, request_id) = (turn.stream_stall, turn.request_id);
    sse_response(chunk_events(turn), request_id, &headers, stall)
}

/// A reconnect's stream (see `crate::http::resumed_sse_response`).
pub async fn resumed_stream(turn: Turn, after: u64) -> Option<Response> {
    let headers = [crate::http::conversation_header(&turn.conversation_id)];
    let (stall, request_id) = (turn.stream_stall, turn.request_id);
    resumed_sse_response(chunk_events(turn), request_id, after, &headers, stall).await
}

/// The seed's `{"chunk": ..}` events, then `[DONE]` (after an error event, if it failed).
fn chunk_events(
    mut turn: Turn,
) -> impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>> {
    async_stream::stream! {
        while let Some(event) = turn.next().await {
            match event {
                TurnEvent::Delta(chunk) => {
                    yield Ok(Event::default().data(json!({"chunk": chunk}).to_string()));
                }
                TurnEvent::Done(_) => yield Ok(Event::default().data("[DONE]")),
                TurnEvent::Failed(failure) => {
                    let error = AgentsError::from(failure).body();
                    yield Ok(Event::default().data(error.to_string()));
                    yield Ok(Event::default().data("[DONE]"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_message(body: Value) -> String {
        ChatRequest::parse(body).unwrap_err().0.message
    }

    #[test]
    fn a_request_with_only_a_message_is_a_new_json_turn() {
        let request = ChatRequest::parse(json!({"message": "hi"})).unwrap();
        assert_eq!(
            request,
            ChatRequest {
                message: "hi".into(),
                stream: false,
                conversation_id: None
            }
        );
    }

    #[test]
    fn every_invalid_field_gets_its_own_validation_message() {
        assert_eq!(error_message(json!({})), "Message field is required");
        assert_eq!(
            error_message(json!({"message": null})),
            "Message field is required"
        );
        assert_eq!(
            error_message(json!({"message": "  "})),
            "Message field must not be empty"
        );
        assert_eq!(
            error_message(json!({"message": 5})),
            "Message field must be a string"
        );
        assert_eq!(
            error_message(json!({"message": "hi", "stream": "yes"})),
            "stream must be a boolean"
        );
        assert!(
            error_message(json!({"message": "hi", "conversationId": 7}))
                .starts_with("conversationId")
        );
        assert_eq!(
            error_message(json!(["message"])),
            "Request body must be a JSON object"
        );
    }
}
