//! `deploy/grafana/confab.json` queries only what confab exports: every series a panel's
//! expression names, with every label it groups or filters by, is on a live stack's `/metrics`
//! after the traffic each panel is about (chat turns streamed and not, a failing model, channel
//! answers sent and refused).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_platform::FakePlatform;
use crate::support::stack::{Options, Stack};

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/confab.json");
    let text = std::fs::read_to_string(path).expect("the dashboard file");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel's query expressions.
fn expressions(dashboard: &Value) -> Vec<String> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("a panel with targets");
        assert!(!targets.is_empty(), "{}: no query", panel["title"]);
        for target in targets {
            all.push(target["expr"].as_str().expect("an expr").to_owned());
        }
    }
    all
}

/// The series an expression reads (`_bucket` stands for its histogram) and the labels it
/// groups by or matches on.
fn series_and_labels(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut series = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("confab_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        series.insert(name.trim_end_matches("_bucket").to_owned());
    }
    let mut labels = BTreeSet::new();
    for (open, close) in [("by (", ')'), ("{", '}')] {
        let mut rest = expr;
        while let Some(at) = rest.find(open) {
            let inner = &rest[at + open.len()..];
            let end = inner.find(close).unwrap_or(inner.len());
            for part in inner[..end].split(',') {
                let label: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !label.is_empty() && label != "le" {
                    labels.insert(label);
                }
            }
            rest = &inner[end..];
        }
    }
    (series, labels)
}

/// Each series on `/metrics` (histograms under their own name) with the labels it carries.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("confab_")) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        let labels = found.entry(name.to_owned()).or_default();
        if let Some(inner) = line[name_end..]
            .strip_prefix('{')
            .and_then(|l| l.split('}').next())
        {
            for pair in inner.split(',') {
                if let Some((label, _)) = pair.split_once('=') {
                    labels.insert(label.to_owned());
                }
            }
        }
    }
    found
}

async fn metrics_text(stack: &Stack) -> String {
    let response = stack.http.get(stack.url("/metrics")).send().await.unwrap();
    response.text().await.unwrap()
}

/// Chat turns in JSON and streamed, one whose model fails, and a Telegram channel's answers
/// sent and refused for good.
async fn traffic(stack: &Stack, platform: &FakePlatform) {
    let agent = stack.support_agent().await;
    assert_eq!(
        stack
            .chat("support-agent", json!({"message": "Hours?"}))
            .await
            .status(),
        200
    );
    let streamed = stack
        .chat(
            "support-agent",
            json!({"message": "Hours?", "stream": true}),
        )
        .await;
    streamed.text().await.unwrap();
    // The stack's OpenAI-compatible endpoint is a closed port.
    stack
        .create_assistant(json!({"name": "Broken", "model": "openai/none"}))
        .await;
    let failed = stack.chat("broken", json!({"message": "Hello?"})).await;
    assert_eq!(failed.status(), 502);

    let (status, channel) = stack
        .api(
            "POST",
            "/v1/channels",
            Some(
                json!({"name": "Bot", "kind": "telegram", "assistant_id": agent["id"],
                        "config": {"bot_token": "1:A", "secret_token": "s"}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    let url = stack.url(&format!(
        "/webhooks/telegram/{}",
        channel["id"].as_str().unwrap()
    ));
    let update = |id: i64| {
        json!({"update_id": id, "message": {
            "message_id": id, "date": confab_contract::now_ms() / 1000,
            "from": {"id": 7, "is_bot": false, "first_name": "Ana"},
            "chat": {"id": 7, "type": "private"}, "text": "Hours?"}})
    };
    let post = |body: Value| {
        stack
            .http
            .post(&url)
            .header("x-telegram-bot-api-secret-token", "s")
            .json(&body)
            .send()
    };
    assert_eq!(post(update(1)).await.unwrap().status(), 200);
    platform.wait_for(1).await;
    let blocked = json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"});
    platform.fail_next([(403, blocked)]);
    assert_eq!(post(update(2)).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_queries_only_series_and_labels_confab_exports() {
    let dashboard = dashboard();
    let expressions = expressions(&dashboard);
    assert!(expressions.len() >= 10, "{expressions:?}");

    let platform = FakePlatform::start().await;
    let stack = Stack::start(Options {
        channel_endpoints: platform.endpoints(),
        ..Options::default()
    })
    .await;
    traffic(&stack, &platform).await;

    // Some series appear only once their event happened (the refused answer, the queue's
    // first sample): read until every one is there, or report what never came.
    let mut missing = Vec::new();
    for _ in 0..100 {
        let found = exported(&metrics_text(&stack).await);
        missing.clear();
        for expr in &expressions {
            let (series, labels) = series_and_labels(expr);
            assert!(!series.is_empty(), "{expr}: queries no confab series");
            for name in &series {
                match found.get(name) {
                    None => missing.push(format!("{name} (in {expr})")),
                    Some(carried) => {
                        for label in labels.iter().filter(|l| !carried.contains(*l)) {
                            missing.push(format!("{name} has no label {label} (in {expr})"));
                        }
                    }
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the dashboard queries what /metrics does not export:\n{}",
        missing.join("\n")
    );
}
