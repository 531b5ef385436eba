//! A corpus of malformed requests sent to every route the OpenAPI document lists: broken JSON,
//! wrong types, invalid UTF-8, numbers past every limit, NUL in fields, oversized bodies and
//! query strings, missing and forged credentials (`edge.rs` adds paths, queries, headers and
//! media types). Each gets a 4xx with a JSON body, never a 5xx, and the service keeps serving.

use serde_json::{Value, json};

use crate::support::stack::{Options, Stack};

mod edge;

const MISSING: &str = "0190f0f0-0000-7000-8000-000000000000";

/// Fill a path template's parameters: slugs with a real one, ids with one that names nothing
/// (so that validation, which comes first, is what answers).
fn fill(template: &str) -> String {
    template
        .replace("{slug}", "support-agent")
        .replace("{section}", "preferences")
        .replace("{key}", "tone")
        .split('/')
        .map(|part| if part.starts_with('{') { MISSING } else { part })
        .collect::<Vec<_>>()
        .join("/")
}

struct Probe {
    method: reqwest::Method,
    path: String,
    key: Option<String>,
    body: Option<Vec<u8>>,
    what: &'static str,
}

async fn send(stack: &Stack, probe: &Probe) -> (u16, String) {
    let mut request = stack
        .http
        .request(probe.method.clone(), stack.url(&probe.path));
    if let Some(key) = &probe.key {
        request = request.header("authorization", key.as_str());
    }
    if let Some(body) = &probe.body {
        request = request
            .header("content-type", "application/json")
            .body(body.clone());
    }
    match request.send().await {
        Ok(response) => (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        ),
        Err(e) => panic!(
            "{} {} ({}): no answer: {e}",
            probe.method, probe.path, probe.what
        ),
    }
}

fn probes(doc: &Value, key: &str) -> Vec<Probe> {
    let bearer = format!("Bearer {key}");
    let bodies: Vec<(&'static str, Vec<u8>)> = vec![
        ("broken JSON", b"{\"message\": ".to_vec()),
        ("a JSON array", b"[1, 2, 3]".to_vec()),
        ("a JSON string", b"\"hello\"".to_vec()),
        ("JSON null", b"null".to_vec()),
        ("wrong field types", br#"{"message": 5, "text": [], "name": {}, "title": 1, "model": false, "messages": "x", "assistantId": 3}"#.to_vec()),
        ("invalid UTF-8", b"{\"message\": \"\xff\xfe\"}".to_vec()),
        ("numbers past every limit", br#"{"message": 1e400, "text": -1.7976931348623155e+308, "limit": 99999999999999999999999, "rate_limit_per_min": -9223372036854775809, "data": {"k": -1.7976931348623155e+308}, "preferences": {"k": 1e-400}}"#.to_vec()),
        ("NUL in every field", br#"{"message": "a\u0000b", "text": "\u0000", "name": "n\u0000", "title": "\u0000", "content": "\u0000", "model": "\u0000", "assistantId": "\u0000", "slug": "a\u0000"}"#.to_vec()),
        ("an oversized body", json!({"message": "a".repeat(70_000)}).to_string().into_bytes()),
        ("an empty body", Vec::new()),
    ];
    let mut all = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let path = fill(template);
            let secured = operation
                .get("security")
                .is_none_or(|s| s.as_array().is_none_or(|s| !s.is_empty()));
            if secured
                && !template.starts_with("/openapi")
                && !["/healthz", "/readyz", "/metrics"].contains(&template.as_str())
            {
                for (what, key) in [
                    ("no credentials", None),
                    ("a forged key", Some("Bearer cfk_forged".to_owned())),
                    ("a malformed header", Some("Bearer".to_owned())),
                ] {
                    all.push(Probe {
                        method: method.clone(),
                        path: path.clone(),
                        key,
                        body: None,
                        what,
                    });
                }
            }
            let long_query = format!("{path}?{}", "a=b&".repeat(3_000));
            all.push(Probe {
                method: method.clone(),
                path: long_query,
                key: Some(bearer.clone()),
                body: None,
                what: "an oversized query string",
            });
            if [
                reqwest::Method::POST,
                reqwest::Method::PUT,
                reqwest::Method::PATCH,
            ]
            .contains(&method)
            {
                for (what, body) in &bodies {
                    all.push(Probe {
                        method: method.clone(),
                        path: path.clone(),
                        key: Some(bearer.clone()),
                        body: Some(body.clone()),
                        what,
                    });
                }
            }
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_to_every_route_get_4xx_json_and_the_service_keeps_serving() {
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
    let probes = probes(&doc, &stack.api_key);
    assert!(probes.len() > 200, "{} probes", probes.len());
    let mut failures = Vec::new();
    for probe in &probes {
        let (status, body) = send(&stack, probe).await;
        let json = serde_json::from_str::<Value>(&body).is_ok();
        // A wrongly typed or oversized request may still be a valid one for a lenient route
        // (a list ignores unknown query parameters); what may never happen is a 5xx, or an
        // error that is not JSON.
        if status >= 500 || (status >= 400 && !json) {
            failures.push(format!(
                "{} {} with {}: {status} {}",
                probe.method,
                probe.path.chars().take(80).collect::<String>(),
                probe.what,
                body.chars().take(120).collect::<String>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} probes failed:\n{}",
        failures.len(),
        probes.len(),
        failures.join("\n")
    );

    // Unknown routes and methods are answered in JSON as well.
    for (method, path) in [
        ("GET", "/nope"),
        ("DELETE", "/v1/api/chat/support-agent"),
        ("POST", "/healthz"),
    ] {
        let (status, body) = stack.api(method, path, None).await;
        assert!((400..500).contains(&status), "{method} {path}: {status}");
        assert!(body.is_object(), "{method} {path}: {body}");
    }
    // Still serving.
    let response = stack
        .chat(
            "support-agent",
            json!({"message": "What are your business hours?"}),
        )
        .await;
    assert_eq!(response.status(), 200);
}
