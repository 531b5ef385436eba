//! The OpenAPI 3.1 document of the ingress, generated from the code that serves the routes.
//!
//! Every route is added through [`ApiRouter`], whose only way to add one (`get`, `post`, `patch`,
//! `delete`) takes the route's [`Operation`] in the same call and stamps the method and path on it
//! itself: a route cannot be served without being documented, and the document cannot name a
//! method or path the router does not serve; only `crate::http` can reach the plain router again.
//! Modules register the schemas their operations `$ref` with [`ApiRouter::components`]. `app()` merges every family and serves the result at
//! `GET /openapi.json`; `tests/e2e/openapi.rs` calls every operation and validates the live
//! responses against it.
//!
//! SSE responses are `text/event-stream` strings; the schema of each `data:` payload is in the
//! media type's `x-sse-data-schema` and the final non-JSON payload, if any, in `x-sse-terminator`.

mod operation;
pub mod schema;

use axum::Router;
use axum::body::Bytes;
use axum::handler::Handler;
use axum::routing::on;
use serde_json::{Map, Value, json};

pub use operation::{Auth, Method, Operation, Reply};

use super::AppState;

/// An axum router that documents each route it serves.
pub struct ApiRouter<S = AppState> {
    router: Router<S>,
    doc: ApiDoc,
}

/// The operations, component schemas and tags gathered by an [`ApiRouter`].
#[derive(Debug, Clone, Default)]
pub struct ApiDoc {
    operations: Vec<Operation>,
    components: Vec<(&'static str, Value)>,
    tags: Vec<(&'static str, &'static str)>,
}

impl<S: Clone + Send + Sync + 'static> Default for ApiRouter<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> ApiRouter<S> {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            doc: ApiDoc::default(),
        }
    }

    /// Serve `handler` for `method` on `path` (axum's `{param}` syntax is OpenAPI's) and document
    /// it as `operation`.
    pub fn route<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        handler: H,
        mut operation: Operation,
    ) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.router = self.router.route(path, on(method.filter(), handler));
        operation.method = method;
        operation.path = path;
        self.doc.operations.push(operation);
        self
    }

    pub fn get<H: Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
        operation: Operation,
    ) -> Self {
        self.route(Method::Get, path, handler, operation)
    }

    pub fn post<H: Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
        operation: Operation,
    ) -> Self {
        self.route(Method::Post, path, handler, operation)
    }

    pub fn put<H: Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
        operation: Operation,
    ) -> Self {
        self.route(Method::Put, path, handler, operation)
    }

    pub fn patch<H: Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
        operation: Operation,
    ) -> Self {
        self.route(Method::Patch, path, handler, operation)
    }

    pub fn delete<H: Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        handler: H,
        operation: Operation,
    ) -> Self {
        self.route(Method::Delete, path, handler, operation)
    }

    /// A schema under `#/components/schemas/<name>`.
    pub fn component(mut self, name: &'static str, schema: Value) -> Self {
        self.doc.components.push((name, schema));
        self
    }

    /// Several component schemas.
    pub fn components(mut self, schemas: impl IntoIterator<Item = (&'static str, Value)>) -> Self {
        self.doc.components.extend(schemas);
        self
    }

    /// A tag the family's operations use, with what it groups.
    pub fn tag(mut self, name: &'static str, description: &'static str) -> Self {
        self.doc.tags.push((name, description));
        self
    }

    pub fn merge(mut self, other: ApiRouter<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.doc.operations.extend(other.doc.operations);
        self.doc.components.extend(other.doc.components);
        self.doc.tags.extend(other.doc.tags);
        self
    }

    /// Wrap the routes added so far (e.g. in a metrics layer). Only `crate::app` calls it; it
    /// takes a router to a router, so no route can be added through it undocumented.
    pub(crate) fn map_router(mut self, wrap: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        self.router = wrap(self.router);
        self
    }

    /// Document on every operation added so far the refusals of the edge's guard.
    pub(crate) fn with_edge_errors(mut self, json_bodies: bool) -> Self {
        for operation in &mut self.doc.operations {
            operation.add_edge_errors(json_bodies);
        }
        self
    }

    /// The router and its document. Only `crate::app` splits them, to serve the one and render
    /// the other.
    pub(crate) fn into_parts(self) -> (Router<S>, ApiDoc) {
        (self.router, self.doc)
    }
}

impl ApiDoc {
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    pub fn components(&self) -> &[(&'static str, Value)] {
        &self.components
    }

    pub fn tags(&self) -> &[(&'static str, &'static str)] {
        &self.tags
    }

    /// The OpenAPI 3.1 document.
    pub fn to_json(&self) -> Value {
        let mut paths = Map::new();
        for operation in &self.operations {
            let item = paths
                .entry(operation.path)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(item) = item {
                item.insert(operation.method.as_str().into(), operation.to_json());
            }
        }
        let schemas: Map<String, Value> = self
            .components
            .iter()
            .map(|(name, schema)| ((*name).to_owned(), schema.clone()))
            .collect();
        let tags: Vec<Value> = self
            .tags
            .iter()
            .map(|(name, description)| json!({"name": name, "description": description}))
            .collect();
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "confab",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Conversations with AI assistants over HTTP: four chat dialects \
                    (seed 000 channels, seed 001 agents, seed 002 AI hub, OpenAI-compatible), \
                    the management API, and operations endpoints.",
            },
            "tags": tags,
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "apiKey": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "A confab API key: `Authorization: Bearer <key>`",
                    },
                    "streamToken": {
                        "type": "apiKey",
                        "in": "query",
                        "name": "token",
                        "description": "A one-minute, single-use stream token from `POST /v1/stream-tokens` \
                            for one identity and channel (never the API key itself), for browsers' EventSource",
                    },
                },
                "headers": {
                    "X-Request-Id": {
                        "description": "The request's id, in every log line of it on both sides",
                        "required": true,
                        "schema": schema::uuid(),
                    },
                },
            },
        })
    }
}

/// The rendered document, a request extension of every route so `GET /openapi.json` can serve
/// it; rendered once when the router is built.
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub Bytes);

impl OpenApiJson {
    pub fn new(doc: &ApiDoc) -> Self {
        Self(Bytes::from(doc.to_json().to_string()))
    }
}
