//! The OpenAI-compatible dialect, so OpenAI SDKs and chat UIs talk to confab unchanged:
//! `POST /v1/chat/completions` (JSON or SSE chunks) and `GET /v1/models`, with errors in OpenAI's
//! `{"error": {message, type, param, code}}` shape.
//!
//! - `model` is the slug of one of the tenant's deployed assistants; `GET /v1/models` lists them.
//!   The assistant's stored instructions and model decide the answer; sampling parameters are
//!   accepted and ignored.
//! - **Stateless by default**, as OpenAI's API is: the caller sends the whole history. Every
//!   message before the last goes to the worker as `Job::history` (stored under ids `h<i>`), the
//!   last, which must be the user's, is the turn (`m<n>`), in a fresh conversation
//!   `chatcmpl-<uuid>` each time.
//! - **Server-side memory when the caller names a conversation**, with the body field
//!   `conversation_id` (SDKs: `extra_body`) or the `X-Conversation-Id` header. Then only the last
//!   message is sent: confab remembers the rest, and earlier messages in the array are ignored
//!   rather than stored twice. A name the tenant has not used yet **starts a new conversation**
//!   (the worker creates it on its first turn) instead of being a 404, because OpenAI clients
//!   have no call to create one first; a name already used with another assistant is a 404.
//!
//! Both modes return the conversation id in the `X-Conversation-Id` response header, so a
//! stateless exchange can be continued server-side. A stateless request with OpenAI's
//! `store: false` keeps nothing: the worker reads its context as always, in a transaction it
//! rolls back, and stores no answer (`Job::ephemeral`); it gets no `X-Conversation-Id`.

mod error;
mod reply;
mod request;
mod schemas;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use confab_contract::{AssistantRef, Message, now_ms};
use serde_json::{Value, json};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::http::openapi::schema::{reference, string};
use crate::http::{
    ApiRouter, AppState, Authenticated, Operation, Reply, RequestId, TurnCaller, json_body,
    turn_route,
};
use crate::pipeline::TurnRequest;
use crate::store::assistants;
use crate::store::conversations;
pub use error::OpenAiError;
use reply::Completion;
pub use reply::{FORMAT, resumed_stream};
use request::{ChatRequest, named_conversation};

fn op(id: &'static str, summary: &'static str) -> Operation {
    Operation::new(id, summary).tag("openai")
}

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .tag(
            "openai",
            "OpenAI-compatible chat completions; `model` is an assistant's slug",
        )
        .components(schemas::components())
        .post(
            "/v1/chat/completions",
            turn_route::<OpenAiError, _, _>(chat_completions),
            op("createChatCompletion", "Answer the last user message")
                .header(
                    "X-Conversation-Id",
                    "Remember the conversation server-side under this name (as the body's \
                     `conversation_id`, which it must match when both are given)",
                    string(),
                )
                .header(
                    "Idempotency-Key",
                    "With a named conversation: a retry carrying the same key is answered \
                     with the first request's answer instead of becoming a second turn",
                    string(),
                )
                .body(reference("ChatCompletionRequest"))
                .response(
                    200,
                    Reply::new(
                        "A `chat.completion`, or with `stream: true` SSE `data:` lines of \
                         `chat.completion.chunk` objects (or the error that ended the stream), \
                         then `[DONE]`",
                    )
                    .json(reference("ChatCompletion"))
                    .sse(reference("ChatCompletionStreamEvent"), Some("[DONE]"))
                    .conversation_header(
                        false,
                        "The conversation id, to continue it server-side; absent with \
                         `store: false`, which keeps nothing",
                    ),
                )
                .errors(
                    "OpenAiError",
                    &[400, 401, 404, 409, 413, 429, 500, 502, 503, 504],
                ),
        )
        .get(
            "/v1/models",
            models,
            op("listModels", "The tenant's deployed assistants, as models")
                .response(200, Reply::new("The models").json(reference("ModelList")))
                .errors("OpenAiError", &[401, 429, 500, 503]),
        )
        .get(
            "/v1/models/{model}",
            model,
            op("retrieveModel", "A deployed assistant, as a model")
                .path_param("model", "The assistant's slug")
                .response(200, Reply::new("The model").json(reference("Model")))
                .errors("OpenAiError", &[401, 404, 429, 500, 503]),
        )
}

async fn chat_completions(
    State(state): State<AppState>,
    caller: TurnCaller<OpenAiError>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let tenant_id = caller.tenant_id;
    let request = ChatRequest::parse(json_body(body)?)?;
    let named = named_conversation(request.conversation_id.clone(), &headers)?;
    if named.is_some() && !request.store {
        return Err(OpenAiError::invalid(
            "store",
            "store: false keeps nothing, so it cannot continue a named conversation; leave out \
             conversation_id and X-Conversation-Id, or store.",
        ));
    }
    let db = state.db.get().await?;
    let assistant = state
        .assistants
        .by_slug(&db, tenant_id, &request.model)
        .await?
        .filter(|a| a.deployed)
        .ok_or_else(|| OpenAiError::model_not_found(&request.model))?;
    let builtin = confab_shared::ModelSpec::parse(&assistant.model)
        == Some(confab_shared::ModelSpec::Builtin);
    if builtin {
        refuse_what_the_builtin_model_cannot_do(&request)?;
    }
    refuse_functions_named_like_the_assistants_tools(&request, &assistant.tools)?;
    let created_ms = now_ms();
    // Nothing of a `store: false` exchange is kept, so nothing can answer its retry.
    let idempotent = request.store && headers.contains_key("idempotency-key");
    let (conversation_id, history, message) = match named {
        Some(id) => {
            check_named_conversation(&**db, tenant_id, &id, assistant.id, &request.model).await?;
            let (history, message) = request.named_turn(request::message_id(&headers)?, created_ms);
            (id, history, message)
        }
        None => {
            request.check_results_answer_calls()?;
            let (history, message) = request.stateless_turn(created_ms);
            let keyed = if idempotent {
                request::keyed_conversation_id(&headers)?
            } else {
                None
            };
            let id = keyed.unwrap_or_else(|| format!("chatcmpl-{}", Uuid::now_v7().simple()));
            (id, history, message)
        }
    };
    drop(db);
    let mut completion = Completion::new(request_id, request.model.clone(), request.store)
        .legacy_functions(request.tools.legacy);
    if idempotent {
        completion = completion.for_turn(&conversation_id, &message.id);
    }
    let mut turn = turn_request(
        (request_id, tenant_id, assistant.id),
        conversation_id,
        message,
        history,
        &request,
        reply::stream_format(&completion, request.include_usage),
    );
    turn.charge = caller.charge();
    let turn = state.pipeline.submit(turn).await?;
    if request.stream {
        Ok(reply::stream_reply(turn, completion, request.include_usage))
    } else {
        reply::json_reply(turn, completion).await
    }
}

/// The turn of `request`, for (request, tenant, assistant).
fn turn_request(
    (request_id, tenant_id, assistant_id): (Uuid, Uuid, Uuid),
    conversation_id: String,
    message: Message,
    history: Vec<Message>,
    request: &ChatRequest,
    stream_format: Value,
) -> TurnRequest {
    TurnRequest {
        request_id,
        tenant_id,
        assistant: AssistantRef::Stored { id: assistant_id },
        conversation_id,
        identity_id: None,
        channel_id: None,
        message,
        history,
        metadata: request.metadata.clone(),
        folder_ids: Vec::new(),
        stream: request.stream,
        ephemeral: !request.store,
        sampling: request.sampling.clone(),
        tools: request.tools.tools.clone(),
        // Nothing of a `store: false` exchange is kept, its reply log included.
        stream_format: request.store.then_some(stream_format),
        charge: None,
    }
}

/// The built-in model writes free text only: no structured output, no function calls, and so
/// no function results to read.
fn refuse_what_the_builtin_model_cannot_do(request: &ChatRequest) -> Result<(), OpenAiError> {
    let slug = &request.model;
    let refuse = |param: String, what: &str| {
        Err(OpenAiError::invalid(
            param,
            format!(
                "The assistant '{slug}' answers with the built-in model, which {what}; give it \
                 an OpenAI-compatible model for that."
            ),
        ))
    };
    if request.sampling.response_format.is_some() {
        return refuse("response_format".into(), "writes free text only");
    }
    if !request.tools.tools.is_empty() {
        let param = if request.tools.legacy {
            "functions"
        } else {
            "tools"
        };
        return refuse(param.into(), "cannot call functions");
    }
    if let Some(at) = request.first_tool_result() {
        return refuse(
            format!("messages[{at}].role"),
            "cannot call functions, so it has no function results to read",
        );
    }
    Ok(())
}

/// A call of a name the assistant's own tools have would be run by confab, not returned to the
/// caller: such a function of the caller's is refused.
fn refuse_functions_named_like_the_assistants_tools(
    request: &ChatRequest,
    tools: &[confab_shared::tools::ServerTool],
) -> Result<(), OpenAiError> {
    let functions = &request.tools.tools.definitions;
    for (i, function) in functions.iter().enumerate() {
        let name = function["function"]["name"].as_str().unwrap_or_default();
        if tools.iter().any(|tool| tool.name() == Some(name)) {
            return Err(OpenAiError::invalid(
                format!("tools[{i}].function"),
                format!(
                    "The assistant '{}' has a tool of its own named '{name}'; name your \
                     function differently.",
                    request.model
                ),
            ));
        }
    }
    Ok(())
}

/// A named conversation must be this assistant's, or not exist yet (then the worker creates it).
async fn check_named_conversation(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: &str,
    assistant_id: Uuid,
    slug: &str,
) -> Result<(), OpenAiError> {
    if conversations::exists_for_assistant(client, tenant_id, id, assistant_id).await? {
        return Ok(());
    }
    // Not this assistant's: new, or another assistant's (or one whose assistant was deleted).
    let taken = conversations::exists(client, tenant_id, id).await?;
    if taken {
        Err(OpenAiError::conversation_not_found(id, slug))
    } else {
        Ok(())
    }
}

/// `GET /v1/models`: the tenant's deployed assistants, by slug.
async fn models(
    State(state): State<AppState>,
    caller: Authenticated<OpenAiError>,
) -> Result<Json<Value>, OpenAiError> {
    let db = state.db.get().await?;
    let deployed = assistants::list_deployed(&**db, caller.tenant_id).await?;
    let data: Vec<Value> = deployed.into_iter().map(model_object).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// One deployed assistant as a model, as OpenAI's `GET /v1/models/{model}` answers.
async fn model(
    State(state): State<AppState>,
    caller: Authenticated<OpenAiError>,
    Path(slug): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    let db = state.db.get().await?;
    assistants::list_deployed(&**db, caller.tenant_id)
        .await?
        .into_iter()
        .find(|a| a.slug == slug)
        .map(|a| Json(model_object(a)))
        .ok_or_else(|| OpenAiError::model_not_found(&slug))
}

fn model_object(assistant: assistants::DeployedAssistant) -> Value {
    json!({"id": assistant.slug, "object": "model", "created": assistant.created_secs,
           "owned_by": "confab"})
}
