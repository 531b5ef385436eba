//! An [`Operation`] and its [`Reply`]s: what the document says about one route. Route modules
//! build them; [`super::ApiRouter`] stamps the method and path on when it adds the route.

use axum::routing::MethodFilter;
use serde_json::{Map, Value, json};

use super::schema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// The key of the operation in its OpenAPI path item.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Patch => "patch",
            Method::Delete => "delete",
        }
    }

    pub(super) fn filter(self) -> MethodFilter {
        match self {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
            Method::Put => MethodFilter::PUT,
            Method::Patch => MethodFilter::PATCH,
            Method::Delete => MethodFilter::DELETE,
        }
    }
}

/// How an operation authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    /// `Authorization: Bearer <API key>`.
    Bearer,
    /// The API key, or a stream token in the `token` query parameter (browsers' `EventSource`).
    BearerOrStreamToken,
}

/// One documented response: a description, its media types and its headers.
#[derive(Debug, Clone)]
pub struct Reply {
    description: String,
    content: Map<String, Value>,
    headers: Map<String, Value>,
}

impl Reply {
    pub fn new(description: impl Into<String>) -> Self {
        Self {
            description: description.into(),
            content: Map::new(),
            headers: Map::new(),
        }
    }

    /// Any media type with a schema for the whole body.
    pub fn content(mut self, media_type: &str, schema: Value) -> Self {
        self.content
            .insert(media_type.into(), json!({ "schema": schema }));
        self
    }

    pub fn json(self, schema: Value) -> Self {
        self.content("application/json", schema)
    }

    /// A Server-Sent-Events stream whose every `data:` payload is JSON matching `data` (but for a
    /// final `terminator`, such as `[DONE]`).
    pub fn sse(mut self, data: Value, terminator: Option<&str>) -> Self {
        let mut media = json!({
            "schema": {"type": "string", "description": "`data:` lines; see x-sse-data-schema"},
            "x-sse-data-schema": data,
        });
        if let (Some(end), Value::Object(fields)) = (terminator, &mut media) {
            fields.insert("x-sse-terminator".into(), Value::from(end));
        }
        self.content.insert("text/event-stream".into(), media);
        self
    }

    /// The `X-Conversation-Id` header; `required` where every such response carries it.
    pub fn conversation_header(mut self, required: bool, description: &str) -> Self {
        self.headers.insert(
            "X-Conversation-Id".into(),
            json!({"description": description, "required": required, "schema": {"type": "string"}}),
        );
        self
    }

    /// `Retry-After`; `required` where every such response carries it.
    fn retry_after(mut self, required: bool) -> Self {
        self.headers.insert(
            "Retry-After".into(),
            json!({
                "description": "Seconds to wait before retrying",
                "required": required,
                "schema": schema::integer(),
            }),
        );
        self
    }

    fn to_json(&self) -> Value {
        let mut headers = self.headers.clone();
        // Every response carries it: the request-id middleware wraps every route.
        headers.insert("X-Request-Id".into(), header_ref("X-Request-Id"));
        let mut reply = Map::new();
        reply.insert("description".into(), Value::from(self.description.as_str()));
        reply.insert("headers".into(), Value::Object(headers));
        if !self.content.is_empty() {
            reply.insert("content".into(), Value::Object(self.content.clone()));
        }
        Value::Object(reply)
    }
}

fn header_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/headers/{name}") })
}

/// What a status means when an operation lists it among its errors.
fn error_description(status: u16) -> &'static str {
    match status {
        400 => "The request is invalid; the body names the problem",
        401 => "Missing, unknown or revoked credentials",
        404 => "Not found (another tenant's resources are not found either)",
        409 => "Conflicts with an existing resource",
        413 => "The request body is larger than the configured limit",
        414 => "The path and query are longer than the limit",
        415 => "The body is not sent as `Content-Type: application/json`, or is compressed",
        422 => "Refused by a documented limit, which the body names",
        429 => "The key's rate limit is used up; retry after `Retry-After` seconds",
        431 => "The request's headers are too large or too many",
        500 => "Internal error; the cause is logged, not shown",
        502 => "The model provider failed",
        503 => {
            "The broker or the database is unreachable or busy, or the work queue is full; retry \
             after `Retry-After` seconds"
        }
        504 => "No answer before the request's deadline",
        _ => "Error",
    }
}

/// One documented operation. The method and the path are set by [`super::ApiRouter`] when the route is
/// added, never by hand.
#[derive(Debug, Clone)]
pub struct Operation {
    pub(super) method: Method,
    pub(super) path: &'static str,
    id: &'static str,
    summary: &'static str,
    description: Option<&'static str>,
    tag: &'static str,
    pub(crate) auth: Auth,
    parameters: Vec<Value>,
    request_body: Option<Value>,
    responses: Vec<(u16, Reply)>,
    /// The schema of the operation's error bodies, once [`Operation::errors`] named it.
    error_schema: Option<String>,
}

impl Operation {
    /// An operation authenticated with the bearer API key, until told otherwise.
    pub fn new(id: &'static str, summary: &'static str) -> Self {
        Self {
            method: Method::Get,
            path: "",
            id,
            summary,
            description: None,
            tag: "",
            auth: Auth::Bearer,
            parameters: Vec::new(),
            request_body: None,
            responses: Vec::new(),
            error_schema: None,
        }
    }

    pub fn tag(mut self, tag: &'static str) -> Self {
        self.tag = tag;
        self
    }

    pub fn describe(mut self, description: &'static str) -> Self {
        self.description = Some(description);
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    fn parameter(
        mut self,
        name: &str,
        place: &str,
        required: bool,
        description: &str,
        schema: Value,
    ) -> Self {
        self.parameters.push(json!({
            "name": name, "in": place, "required": required,
            "description": description, "schema": schema,
        }));
        self
    }

    /// A `{name}` segment of the path (always a string on the wire).
    pub fn path_param(self, name: &str, description: &str) -> Self {
        self.parameter(name, "path", true, description, schema::string())
    }

    pub fn query(self, name: &str, required: bool, description: &str, schema: Value) -> Self {
        self.parameter(name, "query", required, description, schema)
    }

    pub fn header(self, name: &str, description: &str, schema: Value) -> Self {
        self.parameter(name, "header", false, description, schema)
    }

    /// The `limit` and `cursor` query parameters of a management list.
    pub fn paged(self) -> Self {
        self.query(
            "limit",
            false,
            "Items per page, 1 to 200 (default 50)",
            schema::integer(),
        )
        .query(
            "cursor",
            false,
            "A `next_cursor` from the previous page",
            schema::string(),
        )
    }

    /// A required JSON request body.
    pub fn body(mut self, schema: Value) -> Self {
        self.request_body = Some(schema);
        self
    }

    pub fn response(mut self, status: u16, reply: Reply) -> Self {
        self.responses.push((status, reply));
        self
    }

    /// Error statuses whose bodies are all `schema` (the family's error envelope). A 429 always
    /// carries `Retry-After`; a 503 does when the broker or the queue refused the job.
    pub fn errors(mut self, schema: &str, statuses: &[u16]) -> Self {
        self.push_errors(schema, statuses);
        self
    }

    fn push_errors(&mut self, schema: &str, statuses: &[u16]) {
        for &status in statuses {
            let mut reply = Reply::new(error_description(status)).json(schema::reference(schema));
            match status {
                429 => reply = reply.retry_after(true),
                503 => reply = reply.retry_after(false),
                _ => {}
            }
            self.responses.push((status, reply));
        }
        self.error_schema = Some(schema.to_owned());
    }

    /// Document the refusals of the edge's guard (`crate::app`), which every route of a family
    /// meets before its handler: 400 (a path or query with NUL or invalid UTF-8), 414 and 431,
    /// and 415 where the family takes only JSON bodies.
    pub(crate) fn add_edge_errors(&mut self, json_bodies: bool) {
        let Some(schema) = self.error_schema.clone() else {
            return;
        };
        let mut statuses = vec![400, 414, 431];
        if json_bodies && self.request_body.is_some() {
            statuses.push(415);
        }
        statuses.retain(|status| !self.responses.iter().any(|(s, _)| s == status));
        self.push_errors(&schema, &statuses);
    }

    pub fn method(&self) -> Method {
        self.method
    }

    pub fn path(&self) -> &'static str {
        self.path
    }

    pub fn id(&self) -> &'static str {
        self.id
    }

    pub fn tag_name(&self) -> &'static str {
        self.tag
    }

    pub fn parameters(&self) -> &[Value] {
        &self.parameters
    }

    pub(super) fn to_json(&self) -> Value {
        let mut op = Map::new();
        op.insert("operationId".into(), Value::from(self.id));
        op.insert("summary".into(), Value::from(self.summary));
        if let Some(description) = self.description {
            op.insert("description".into(), Value::from(description));
        }
        op.insert("tags".into(), json!([self.tag]));
        let security = match self.auth {
            Auth::None => json!([]),
            Auth::Bearer => json!([{"apiKey": []}]),
            Auth::BearerOrStreamToken => json!([{"apiKey": []}, {"streamToken": []}]),
        };
        op.insert("security".into(), security);
        if !self.parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(self.parameters.clone()));
        }
        if let Some(body) = &self.request_body {
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": body}}}),
            );
        }
        let responses: Map<String, Value> = self
            .responses
            .iter()
            .map(|(status, reply)| (status.to_string(), reply.to_json()))
            .collect();
        op.insert("responses".into(), Value::Object(responses));
        Value::Object(op)
    }
}
