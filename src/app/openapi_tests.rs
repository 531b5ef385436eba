//! The document of the real router is well formed: each operation once, every `$ref` resolvable,
//! path templates and path parameters in agreement. Whether it tells the truth about responses
//! is `tests/e2e/openapi.rs`'s job.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::http::openapi::{ApiDoc, Auth};

fn doc() -> ApiDoc {
    super::routes().into_parts().1
}

#[test]
fn each_method_and_path_and_each_operation_id_is_listed_once() {
    let doc = doc();
    let mut routes = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for operation in doc.operations() {
        let route = (operation.method(), operation.path());
        assert!(routes.insert(route), "{route:?} is documented twice");
        assert!(
            ids.insert(operation.id()),
            "operationId {} is used twice",
            operation.id()
        );
    }
    let json = doc.to_json();
    let listed: usize = json["paths"]
        .as_object()
        .map(|paths| {
            paths
                .values()
                .filter_map(Value::as_object)
                .map(|item| item.len())
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(listed, doc.operations().len(), "the JSON lost an operation");
    for (tag, _) in doc.tags() {
        assert!(
            doc.operations().iter().any(|o| o.tag_name() == *tag),
            "tag {tag} has no operation: is a family missing from `routes()`?"
        );
    }
}

/// Every `$ref` in `value`, with where it was found.
fn refs<'a>(value: &'a Value, at: String, found: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(fields) => {
            for (key, child) in fields {
                if key == "$ref" {
                    if let Some(target) = child.as_str() {
                        found.push((at.clone(), target));
                    }
                } else {
                    refs(child, format!("{at}/{key}"), found);
                }
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                refs(child, format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_reference_resolves_and_every_component_is_used_and_named_once() {
    let doc = doc();
    let json = doc.to_json();
    let mut found = Vec::new();
    refs(&json, String::new(), &mut found);
    assert!(!found.is_empty());
    for (at, target) in &found {
        let pointer = target.strip_prefix('#');
        assert!(
            pointer.and_then(|p| json.pointer(p)).is_some(),
            "{at}: $ref {target} does not resolve"
        );
    }
    let mut names = BTreeMap::new();
    for (name, _) in doc.components() {
        *names.entry(*name).or_insert(0) += 1;
    }
    for (name, count) in &names {
        assert_eq!(*count, 1, "component {name} is registered {count} times");
        let target = format!("#/components/schemas/{name}");
        assert!(
            found.iter().any(|(_, t)| *t == target),
            "component {name} is never referenced"
        );
    }
}

#[test]
fn path_templates_and_path_parameters_agree() {
    for operation in doc().operations() {
        let in_path: BTreeSet<&str> = operation
            .path()
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared: Vec<&str> = operation
            .parameters()
            .iter()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        let declared_set: BTreeSet<&str> = declared.iter().copied().collect();
        assert_eq!(declared.len(), declared_set.len(), "{}", operation.path());
        assert_eq!(
            in_path,
            declared_set,
            "{} {}",
            operation.method().as_str(),
            operation.path()
        );
    }
}

#[test]
fn every_operation_has_a_success_a_declared_tag_and_401_when_it_needs_a_key() {
    let doc = doc();
    let tags: BTreeSet<&str> = doc.tags().iter().map(|(name, _)| *name).collect();
    let json = doc.to_json();
    for operation in doc.operations() {
        let at = format!("{} {}", operation.method().as_str(), operation.path());
        assert!(tags.contains(operation.tag_name()), "{at}: undeclared tag");
        let responses = &json["paths"][operation.path()][operation.method().as_str()]["responses"];
        let statuses: Vec<&String> = responses
            .as_object()
            .map(|r| r.keys().collect())
            .unwrap_or_default();
        assert!(
            statuses.iter().any(|s| s.starts_with('2')),
            "{at}: no success"
        );
        if operation.auth != Auth::None {
            assert!(statuses.iter().any(|s| *s == "401"), "{at}: no 401");
        }
        for (status, reply) in responses.as_object().into_iter().flatten() {
            assert!(
                reply["headers"].get("X-Request-Id").is_some(),
                "{at} {status}: no X-Request-Id"
            );
        }
    }
}

#[test]
fn the_document_names_confab_its_version_and_openapi_3_1() {
    let json = super::openapi_document();
    assert_eq!(json["openapi"], "3.1.0");
    assert_eq!(json["info"]["title"], "confab");
    assert_eq!(json["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(json.get("servers").is_none());
    assert!(json["paths"]["/openapi.json"]["get"]["security"] == serde_json::json!([]));
}
