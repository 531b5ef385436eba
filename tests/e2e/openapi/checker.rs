//! Calls the live ingress and checks each answer against the OpenAPI document it serves: the
//! route and status are documented, required headers are present, the body (each `data:` event
//! of a stream) matches the schema declared for its status and content type, and an accepted
//! request body matches the declared request schema. Every (method, path template, status) seen
//! is recorded, so the test can tell which operations were never exercised.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use super::validate::validate;
use crate::support::stack::{Stack, sse_data};

/// One request to send.
pub struct Req {
    method: Method,
    path: String,
    key: Option<String>,
    json: Option<Value>,
    raw: Option<String>,
    headers: Vec<(&'static str, String)>,
}

impl Req {
    fn new(method: Method, path: &str, json: Option<Value>) -> Self {
        Self {
            method,
            path: path.to_owned(),
            key: None,
            json,
            raw: None,
            headers: Vec::new(),
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new(Method::GET, path, None)
    }

    pub fn post(path: &str, body: Value) -> Self {
        Self::new(Method::POST, path, Some(body))
    }

    /// A POST with no body at all.
    pub fn post_empty(path: &str) -> Self {
        Self::new(Method::POST, path, None)
    }

    pub fn patch(path: &str, body: Value) -> Self {
        Self::new(Method::PATCH, path, Some(body))
    }

    pub fn put(path: &str, body: Value) -> Self {
        Self::new(Method::PUT, path, Some(body))
    }

    pub fn delete(path: &str) -> Self {
        Self::new(Method::DELETE, path, None)
    }

    /// Authenticate with this key instead of the stack's (`""`: send no Authorization at all).
    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_owned());
        self
    }

    /// Send this text as a JSON body instead (malformed or oversized bodies).
    pub fn raw(mut self, body: String) -> Self {
        self.json = None;
        self.raw = Some(body);
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// A checked answer: the JSON body (`null` if none), or the JSON events of a stream.
pub struct Answer {
    pub body: Value,
    pub events: Vec<Value>,
    pub headers: reqwest::header::HeaderMap,
}

pub struct Checker<'a> {
    stack: &'a Stack,
    pub doc: Value,
    /// (method, path template, status) of every checked answer.
    pub seen: BTreeSet<(String, String, u16)>,
}

impl<'a> Checker<'a> {
    pub fn new(stack: &'a Stack, doc: Value) -> Self {
        Self {
            stack,
            doc,
            seen: BTreeSet::new(),
        }
    }

    pub fn stack(&self) -> &'a Stack {
        self.stack
    }

    /// The documented template that serves `path` (a literal segment beats a parameter, as in
    /// the router).
    fn template(&self, path: &str) -> String {
        let segments: Vec<&str> = path.split('/').collect();
        let mut best: Option<(usize, &String)> = None;
        for template in self.doc["paths"].as_object().unwrap().keys() {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                continue;
            }
            let matches = parts
                .iter()
                .zip(&segments)
                .all(|(part, segment)| part.starts_with('{') || part == segment);
            let literal = parts.iter().filter(|p| !p.starts_with('{')).count();
            if matches && best.is_none_or(|(score, _)| literal > score) {
                best = Some((literal, template));
            }
        }
        best.map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("{path} matches no documented path"))
    }

    fn resolve<'d>(&'d self, value: &'d Value) -> &'d Value {
        match value["$ref"].as_str() {
            Some(target) => self.doc.pointer(&target[1..]).unwrap(),
            None => value,
        }
    }

    /// Send `req`, expect `status`, and check the answer against the document.
    pub async fn expect(&mut self, req: Req, status: u16) -> Answer {
        let path = req.path.split('?').next().unwrap_or_default();
        let template = self.template(path);
        let method = req.method.as_str().to_ascii_lowercase();
        let call = format!("{} {}", req.method, req.path);
        let operation = self.doc["paths"][&template][&method].clone();
        assert!(
            operation.is_object(),
            "{call}: {method} {template} is not documented"
        );

        let mut request = self
            .stack
            .http
            .request(req.method.clone(), self.stack.url(&req.path));
        match req.key.as_deref() {
            Some("") => {}
            Some(key) => request = request.bearer_auth(key),
            None => request = request.bearer_auth(&self.stack.api_key),
        }
        for (name, value) in &req.headers {
            request = request.header(*name, value);
        }
        if let Some(json) = &req.json {
            request = request.json(json);
        }
        if let Some(raw) = &req.raw {
            request = request
                .header("content-type", "application/json")
                .body(raw.clone());
        }
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        assert_eq!(got, status, "{call}: {text}");
        self.seen.insert((method.clone(), template.clone(), status));

        let documented = &operation["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{call}: status {status} is not documented"
        );
        for (name, header) in documented["headers"].as_object().unwrap() {
            let header = self.resolve(header);
            if header["required"] == true {
                assert!(
                    headers.contains_key(name.as_str()),
                    "{call}: no {name} header"
                );
            }
        }
        if let Some(retry) = headers.get("retry-after") {
            assert!(retry.to_str().unwrap().parse::<u64>().is_ok(), "{call}");
        }

        let mut answer = Answer {
            body: Value::Null,
            events: Vec::new(),
            headers,
        };
        let Some(content) = documented.get("content") else {
            assert!(text.is_empty(), "{call}: undocumented body {text}");
            return answer;
        };
        let content_type = answer.headers["content-type"].to_str().unwrap();
        let essence = content_type.split(';').next().unwrap().trim();
        let media = content
            .as_object()
            .unwrap()
            .iter()
            .find(|(declared, _)| declared.split(';').next().unwrap().trim() == essence)
            .map(|(_, media)| media)
            .unwrap_or_else(|| panic!("{call}: {content_type} is not documented for {status}"));
        match essence {
            "application/json" => {
                answer.body = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{call}: not JSON ({e}): {text}"));
                let checked = validate(&self.doc, &media["schema"], &answer.body);
                assert_eq!(checked, Ok(()), "{call} answered {}", answer.body);
            }
            "text/event-stream" => {
                let data = sse_data(&text);
                let events = match media["x-sse-terminator"].as_str() {
                    Some(end) => {
                        let (last, events) = data.split_last().expect("a stream with events");
                        assert_eq!(last, end, "{call}: the stream must end with {end}");
                        events
                    }
                    None => data.as_slice(),
                };
                assert!(!events.is_empty(), "{call}: no events");
                for event in events {
                    let event: Value = serde_json::from_str(event)
                        .unwrap_or_else(|e| panic!("{call}: event {event:?} is not JSON ({e})"));
                    let checked = validate(&self.doc, &media["x-sse-data-schema"], &event);
                    assert_eq!(checked, Ok(()), "{call} sent the event {event}");
                    answer.events.push(event);
                }
            }
            _ => {
                let checked = validate(&self.doc, &media["schema"], &Value::String(text));
                assert_eq!(checked, Ok(()), "{call}");
            }
        }

        // A request the server accepted must be one the document allows.
        if (200..300).contains(&status)
            && let Some(sent) = &req.json
        {
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            assert!(
                !schema.is_null(),
                "{call}: the accepted body is not documented"
            );
            let checked = validate(&self.doc, schema, sent);
            assert_eq!(checked, Ok(()), "{call}: the accepted request {sent}");
        }
        answer
    }

    /// Every documented (method, path) that was never called.
    pub fn unexercised(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if !self.seen.iter().any(|(m, p, _)| m == method && p == path) {
                    missing.push(format!("{method} {path}"));
                }
            }
        }
        missing
    }

    /// The statuses seen on operations tagged `tag`.
    pub fn statuses_of(&self, tag: &str) -> BTreeSet<u16> {
        self.seen
            .iter()
            .filter(|(method, path, _)| self.doc["paths"][path][method]["tags"][0] == tag)
            .map(|(_, _, status)| *status)
            .collect()
    }
}
