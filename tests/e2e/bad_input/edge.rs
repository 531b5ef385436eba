//! The edge's corpus: every operation of the OpenAPI document is sent what its handler must
//! never see (NUL and invalid UTF-8 in each path parameter and in the query, a request line and
//! headers over the limits, a body not declared as JSON or declared compressed), and must answer
//! with the status the document declares for it and a body that matches the schema declared for
//! that status: the route's own error shape, never a 500, a plain-text or an empty answer.

use reqwest::Method;
use serde_json::Value;

use super::fill;
use crate::openapi::validate::validate;
use crate::support::stack::{Options, Stack};

/// One hostile request and the status the document must declare for it.
struct Hostile {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<&'static str>,
    what: String,
    status: u16,
}

impl Hostile {
    fn new(method: &Method, path: String, what: impl Into<String>, status: u16) -> Self {
        Self {
            method: method.clone(),
            path,
            headers: Vec::new(),
            body: None,
            what: what.into(),
            status,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn body(mut self, body: &'static str) -> Self {
        self.body = Some(body);
        self
    }
}

/// The path with one parameter replaced by `value`, the others filled as the other corpus does.
fn with_param(template: &str, param: &str, value: &str) -> String {
    fill(&template.replace(&format!("{{{param}}}"), value))
}

fn params(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

fn hostile_requests(template: &str, method: &Method, operation: &Value) -> Vec<Hostile> {
    let path = fill(template);
    let mut all = Vec::new();
    for param in params(template) {
        for (value, what) in [("se%00cret", "NUL"), ("%FF%FE", "invalid UTF-8")] {
            let hostile = with_param(template, param, value);
            all.push(Hostile::new(
                method,
                hostile,
                format!("{what} in {{{param}}}"),
                400,
            ));
        }
    }
    all.push(Hostile::new(
        method,
        format!("{path}?external_id=a%00b"),
        "NUL in the query",
        400,
    ));
    all.push(Hostile::new(
        method,
        format!("{path}?q=%C3%28"),
        "invalid UTF-8 in the query",
        400,
    ));
    let long = format!("{path}?pad={}", "a".repeat(9 * 1024));
    all.push(Hostile::new(method, long, "a 9 KiB query", 414));
    let mut crowded = Hostile::new(method, path.clone(), "80 header fields", 431);
    for n in 0..80 {
        crowded = crowded.header(&format!("x-pad-{n}"), "v");
    }
    all.push(crowded);
    let big = "h".repeat(17 * 1024);
    all.push(Hostile::new(method, path.clone(), "a 17 KiB header", 431).header("x-big", &big));
    let takes_json = !operation["requestBody"]["content"]["application/json"].is_null()
        && operation["tags"][0] != "webhooks";
    if takes_json {
        all.push(
            Hostile::new(method, path.clone(), "a text/plain body", 415)
                .header("content-type", "text/plain")
                .body("{}"),
        );
        all.push(Hostile::new(method, path.clone(), "no Content-Type", 415).body("{}"));
        all.push(
            Hostile::new(method, path, "a false Content-Encoding: gzip", 415)
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body("{}"),
        );
    }
    all
}

/// What is wrong with the answer to `hostile`, if anything.
async fn check(stack: &Stack, doc: &Value, operation: &Value, hostile: &Hostile) -> Option<String> {
    let mut request = stack
        .http
        .request(hostile.method.clone(), stack.url(&hostile.path))
        .bearer_auth(&stack.api_key);
    for (name, value) in &hostile.headers {
        request = request.header(name, value);
    }
    if let Some(body) = hostile.body {
        request = request.body(body);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return Some(format!("no answer: {e}")),
    };
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if status != hostile.status {
        return Some(format!("{status} instead of {}: {text}", hostile.status));
    }
    let schema =
        &operation["responses"][status.to_string()]["content"]["application/json"]["schema"];
    if schema.is_null() {
        return Some(format!("{status} is not documented with a JSON body"));
    }
    let body: Value = match serde_json::from_str(&text) {
        Ok(body) => body,
        Err(e) => return Some(format!("not JSON ({e}): {text}")),
    };
    validate(doc, schema, &body)
        .err()
        .map(|problem| format!("{problem}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_queries_headers_and_bodies_get_each_routes_documented_refusal() {
    let stack = Stack::start(Options::default()).await;
    stack.support_agent().await;
    let doc: Value = stack
        .http
        .get(stack.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut failures = Vec::new();
    let mut sent = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            // Probes and scrapers: no credentials, no bodies, no error shape of their own.
            if operation["tags"][0] == "operations" {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            for hostile in hostile_requests(template, &method, operation) {
                sent += 1;
                if let Some(problem) = check(&stack, &doc, operation, &hostile).await {
                    failures.push(format!(
                        "{method} {template} with {}: {problem}",
                        hostile.what
                    ));
                }
            }
        }
    }
    assert!(sent > 300, "only {sent} hostile requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} hostile requests were answered wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
