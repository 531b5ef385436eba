//! Seed 002, the AI-hub conversation API: `POST /api/ai-hub/assistant/ask` with
//! `{message: {id?, role, content, createdAt?}, id, assistantId, metadata?, foldersId?,
//! previewAssistantData?}`.
//!
//! - `id` is the conversation, chosen by the client: the same id continues a conversation (with
//!   whichever assistant the request names), different ids are isolated. `message.id` is the
//!   turn's idempotency key (minted when absent): the same id twice is stored once, and a user
//!   turn sent again gets its stored answer back.
//! - `assistantId` is the UUID of a deployed assistant of the caller's tenant. With
//!   `previewAssistantData: {name, description?, instructions?, model?}` an unsaved assistant
//!   answers instead (instructions, else description; model `builtin` unless given) and
//!   `assistantId` may be any string.
//! - `metadata` is stored with the turn, its top-level keys lowercased; nested objects are kept as
//!   sent. `foldersId` must name folders of the caller's tenant; they are passed on for retrieval.
//!
//! A `user` message is answered by the model: `{success: true, message: {id, role: "assistant",
//! content, createdAt}, metadata: {processing_time, tokens_used, knowledge_sources}}`, where
//! `processing_time` is ms from request to answer, `tokens_used` prompt plus completion tokens,
//! `knowledge_sources` the titles of the documents the answer drew on. A `system` or `assistant`
//! message is added to the conversation without a model call and echoed back as stored (same
//! shape, its own id, role and content; `tokens_used: 0`, `knowledge_sources: []`).
//! Times are RFC 3339 UTC with milliseconds.
//!
//! With `Accept: text/event-stream` the answer streams as SSE `data:` lines: one
//! `{"type": "token", "content": ..}` per piece of text, then exactly one of
//! `{"type": "done", ...the JSON success body...}` or `{"type": "error", ...the error body...}`;
//! the stream ends after it. Errors found before the turn starts (auth, validation, 404, 503)
//! are plain JSON responses with their status, as without the header.
//!
//! Errors are `{success: false, error, ...}`; see [`error`]. Validation reports every invalid
//! field at once: 400 `{success: false, error: "Message parse problem from ask assistant",
//! issues: [{field, message}]}` (a body that is not a JSON object is an issue on `body`).

mod error;
mod request;
mod schemas;
mod time;

use std::collections::HashSet;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use confab_contract::{AssistantRef, Done, Role};
use serde_json::{Value, json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

pub use error::AiHubError;
use request::{AskRequest, AssistantChoice, Parsed};

use crate::http::openapi::schema::reference;
use crate::http::{
    ApiRouter, AppState, Operation, Reply, RequestId, TurnCaller, json_body, resumed_sse_response,
    sse_response, turn_route,
};
use crate::pipeline::{Turn, TurnEvent, TurnRequest};
use crate::store::assistants;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .tag("ai-hub", "Seed 002: the AI-hub conversation API")
        .components(schemas::components())
        .post(
            "/api/ai-hub/assistant/ask",
            turn_route::<AiHubError, _, _>(ask),
            Operation::new(
                "aiHubAsk",
                "Add a message to a conversation and get the answer",
            )
            .tag("ai-hub")
            .describe(
                "Send `Accept: text/event-stream` for the answer as SSE. Errors found \
                     before the turn starts are JSON with their status either way.",
            )
            .body(reference("AiHubAskRequest"))
            .response(
                200,
                Reply::new(
                    "The answer (a `user` message) or the stored message (`system`, \
                         `assistant`); as SSE: `token` events, then one `done` or `error`",
                )
                .json(reference("AiHubReply"))
                .sse(reference("AiHubStreamEvent"), None),
            )
            .errors(
                "AiHubError",
                &[400, 401, 404, 409, 413, 429, 500, 502, 503, 504],
            ),
        )
}

/// What the reply needs to know about the request.
struct Asked {
    started: Instant,
    role: Role,
    content: String,
    assistant_id: String,
}

async fn ask(
    State(state): State<AppState>,
    caller: TurnCaller<AiHubError>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AiHubError> {
    let started = Instant::now();
    let tenant_id = caller.tenant_id;
    let body = json_body(body)?;
    let parsed = request::parse(&body);
    let db = state.db.get().await?;
    let request = validate(&**db, tenant_id, parsed).await?;
    let assistant = match request.assistant {
        AssistantChoice::Preview(preview) => AssistantRef::Preview(preview),
        AssistantChoice::Stored(ref id) => AssistantRef::Stored {
            id: deployed_assistant(&**db, tenant_id, id).await?,
        },
    };
    drop(db);
    let stream = wants_event_stream(&headers);
    let asked = Asked {
        started,
        role: request.message.role,
        content: request.message.content.clone(),
        assistant_id: request.assistant_id,
    };
    let turn = state
        .pipeline
        .submit(TurnRequest {
            request_id,
            tenant_id,
            assistant,
            conversation_id: request.conversation_id,
            identity_id: None,
            channel_id: None,
            message: request.message,
            history: Vec::new(),
            metadata: request.metadata,
            folder_ids: request.folder_ids,
            stream,
            ephemeral: false,
            sampling: Default::default(),
            tools: Default::default(),
            stream_format: Some(stream_format(&asked)),
            charge: caller.charge(),
        })
        .await?;
    if stream {
        Ok(stream_reply(turn, asked))
    } else {
        json_reply(turn, asked).await
    }
}

/// The request, once its folders are known to be the caller's; else every issue found.
async fn validate(
    db: &impl GenericClient,
    tenant_id: Uuid,
    parsed: Parsed,
) -> Result<AskRequest, AiHubError> {
    let unknown = unknown_folders(db, tenant_id, &parsed.folders).await?;
    parsed.finish(&unknown).map_err(AiHubError::invalid)
}

/// Positions of the folders that are not the tenant's (a foreign folder looks like a missing one).
async fn unknown_folders(
    db: &impl GenericClient,
    tenant_id: Uuid,
    folders: &[(usize, Uuid)],
) -> Result<Vec<usize>, tokio_postgres::Error> {
    if folders.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = folders.iter().map(|(_, id)| *id).collect();
    let rows = db
        .query(
            "SELECT id FROM folders WHERE tenant_id = $1 AND id = ANY($2)",
            &[&tenant_id, &ids],
        )
        .await?;
    let known: HashSet<Uuid> = rows.iter().map(|row| row.get(0)).collect();
    Ok(folders
        .iter()
        .filter(|(_, id)| !known.contains(id))
        .map(|(index, _)| *index)
        .collect())
}

/// The id of the deployed assistant `assistant_id` names; anything else is the seed's 404.
async fn deployed_assistant(
    db: &impl GenericClient,
    tenant_id: Uuid,
    assistant_id: &str,
) -> Result<Uuid, AiHubError> {
    let not_found = || AiHubError::assistant_not_found(assistant_id);
    let id = Uuid::parse_str(assistant_id).map_err(|_| not_found())?;
    assistants::by_id(db, tenant_id, id)
        .await?
        .filter(|assistant| assistant.deployed)
        .map(|assistant| assistant.id)
        .ok_or_else(not_found)
}

fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("text/event-stream"))
    })
}

/// The success body for a finished turn.
fn success_body(done: &Done, asked: &Asked) -> Value {
    let processing_time = asked.started.elapsed().as_millis() as u64;
    let created_at = time::format_rfc3339(done.created_ms);
    if asked.role != Role::User {
        // Stored without a model call: echo the message itself.
        return json!({
            "success": true,
            "message": {
                "id": done.message_id,
                "role": asked.role.as_str(),
                "content": asked.content,
                "createdAt": created_at,
            },
            "metadata": {"processing_time": processing_time, "tokens_used": 0, "knowledge_sources": []},
        });
    }
    let mut titles: Vec<&str> = Vec::new();
    for source in &done.sources {
        if !titles.contains(&source.title.as_str()) {
            titles.push(&source.title);
        }
    }
    json!({
        "success": true,
        "message": {
            "id": done.message_id,
            "role": "assistant",
            "content": done.text,
            "createdAt": created_at,
        },
        "metadata": {
            "processing_time": processing_time,
            "tokens_used": done.usage.total(),
            "knowledge_sources": titles,
        },
    })
}

async fn json_reply(turn: Turn, asked: Asked) -> Result<Response, AiHubError> {
    let done = turn
        .collect()
        .await
        .map_err(|failure| AiHubError::from_failure(failure, &asked.assistant_id))?;
    Ok(Json(success_body(&done, &asked)).into_response())
}

/// `body` with `"type": kind` added (both bodies are JSON objects).
fn typed(kind: &str, mut body: Value) -> String {
    if let Value::Object(fields) = &mut body {
        fields.insert("type".into(), Value::from(kind));
    }
    body.to_string()
}

fn stream_reply(turn: Turn, asked: Asked) -> Response {
    let (stall, request_id) = (turn.stream_stall, turn.request_id);
    sse_response(hub_events(turn, asked), request_id, &[], stall)
}

/// The family's name in a logged stream format (`TurnRequest::stream_format`).
pub const FORMAT: &str = "ai_hub";

/// What a reconnect needs to render the stream again: the message's role and content (echoed
/// for system messages) and the `assistantId` as the client sent it (named by errors).
fn stream_format(asked: &Asked) -> Value {
    json!({
        "family": FORMAT,
        "role": asked.role,
        "content": asked.content,
        "assistant_id": asked.assistant_id,
    })
}

/// A reconnect's stream, rendered from its logged format; `processing_time` then counts from
/// the reconnect.
pub async fn resumed_stream(format: &Value, turn: Turn, after: u64) -> Option<Response> {
    let asked = Asked {
        started: Instant::now(),
        role: serde_json::from_value(format["role"].clone()).ok()?,
        content: format["content"].as_str()?.to_owned(),
        assistant_id: format["assistant_id"].as_str()?.to_owned(),
    };
    let (stall, request_id) = (turn.stream_stall, turn.request_id);
    resumed_sse_response(hub_events(turn, asked), request_id, after, &[], stall).await
}

fn hub_events(
    mut turn: Turn,
    asked: Asked,
) -> impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>> {
    async_stream::stream! {
        while let Some(event) = turn.next().await {
            let data = match event {
                TurnEvent::Delta(text) => json!({"type": "token", "content": text}).to_string(),
                TurnEvent::Done(done) => typed("done", success_body(&done, &asked)),
                TurnEvent::Failed(failure) => {
                    let error = AiHubError::from_failure(failure, &asked.assistant_id);
                    typed("error", error.body())
                }
            };
            yield Ok(Event::default().data(data));
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use confab_contract::{Source, Timing, Usage};

    use super::*;

    fn asked(role: Role) -> Asked {
        Asked {
            started: Instant::now(),
            role,
            content: "Be kind.".into(),
            assistant_id: "a".into(),
        }
    }

    fn done(sources: &[&str]) -> Done {
        Done {
            message_id: "msg_1".into(),
            conversation_id: "c".into(),
            text: "Hello".into(),
            created_ms: 1_705_764_605_000,
            usage: Usage {
                prompt_tokens: 80,
                completion_tokens: 5,
            },
            model: "builtin".into(),
            last_delta: None,
            sources: sources
                .iter()
                .map(|title| Source {
                    document_id: format!("doc {title}"),
                    title: (*title).into(),
                    folder_id: "f".into(),
                    score: 1.0,
                })
                .collect(),
            timing: Timing::default(),
            finish_reason: Default::default(),
            tool_calls: Vec::new(),
        }
    }

    #[test]
    fn an_answer_lists_each_source_title_once_and_counts_all_tokens() {
        let body = success_body(
            &done(&["FAQ_Doc_001", "Password_Policy_v2", "FAQ_Doc_001"]),
            &asked(Role::User),
        );
        assert_eq!(
            body["message"],
            json!({"id": "msg_1", "role": "assistant", "content": "Hello", "createdAt": "2024-01-20T15:30:05.000Z"})
        );
        assert_eq!(body["metadata"]["tokens_used"], 85);
        assert_eq!(
            body["metadata"]["knowledge_sources"],
            json!(["FAQ_Doc_001", "Password_Policy_v2"])
        );
    }

    #[test]
    fn a_system_message_is_echoed_with_no_tokens_or_sources() {
        let body = success_body(&done(&[]), &asked(Role::System));
        assert_eq!(body["message"]["role"], "system");
        assert_eq!(body["message"]["content"], "Be kind.");
        assert_eq!(body["metadata"]["tokens_used"], 0);
        assert_eq!(body["metadata"]["knowledge_sources"], json!([]));
    }

    #[test]
    fn only_an_accept_header_naming_event_streams_asks_for_one() {
        let mut headers = HeaderMap::new();
        assert!(!wants_event_stream(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_event_stream(&headers));
        headers.append(
            header::ACCEPT,
            HeaderValue::from_static("Text/Event-Stream; q=0.9"),
        );
        assert!(wants_event_stream(&headers));
    }
}
