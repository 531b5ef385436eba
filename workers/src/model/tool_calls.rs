//! Putting a model's streamed function calls together. OpenAI-compatible servers send each call
//! in fragments: the first names the call's `index`, `id` and function name, the later ones
//! carry more of its `arguments` text under the same `index`.

use confab_contract::ToolCall;
use serde::Deserialize;

/// One `delta.tool_calls[]` entry.
#[derive(Debug, Deserialize)]
pub struct CallFragment {
    /// Which call this is part of; servers that send each call whole may leave it out.
    #[serde(default)]
    index: Option<usize>,
    id: Option<String>,
    #[serde(default)]
    function: FunctionFragment,
}

#[derive(Debug, Default, Deserialize)]
struct FunctionFragment {
    name: Option<String>,
    arguments: Option<String>,
}

/// The calls so far, by index.
#[derive(Debug, Default)]
pub struct ToolCalls {
    calls: Vec<Partial>,
}

#[derive(Debug, Default)]
struct Partial {
    id: String,
    name: String,
    arguments: String,
}

impl ToolCalls {
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub fn add(&mut self, fragment: CallFragment) {
        let index = fragment.index.unwrap_or(self.calls.len());
        if index >= self.calls.len() {
            self.calls.resize_with(index + 1, Partial::default);
        }
        let call = &mut self.calls[index];
        if let Some(id) = fragment.id.filter(|id| !id.is_empty()) {
            call.id = id;
        }
        if let Some(name) = fragment.function.name {
            call.name.push_str(&name);
        }
        if let Some(arguments) = fragment.function.arguments {
            call.arguments.push_str(&arguments);
        }
    }

    /// The whole calls; every call needs an id and a name, or the client could not answer it.
    pub fn finish(self) -> Result<Vec<ToolCall>, String> {
        self.calls
            .into_iter()
            .enumerate()
            .map(|(index, call)| {
                if call.id.is_empty() || call.name.is_empty() {
                    return Err(format!("tool call {index} came without an id or a name"));
                }
                Ok(ToolCall {
                    id: call.id,
                    name: call.name,
                    arguments: call.arguments,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fragment(value: serde_json::Value) -> CallFragment {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn fragments_join_by_index_into_whole_calls_in_order() {
        let mut calls = ToolCalls::default();
        for value in [
            json!({"index": 0, "id": "call_a", "type": "function",
                   "function": {"name": "weather", "arguments": ""}}),
            json!({"index": 1, "id": "call_b", "type": "function",
                   "function": {"name": "time", "arguments": "{\"tz\":"}}),
            json!({"index": 0, "function": {"arguments": "{\"city\":"}}),
            json!({"index": 0, "function": {"arguments": "\"Paris\"}"}}),
            json!({"index": 1, "function": {"arguments": "\"CET\"}"}}),
        ] {
            calls.add(fragment(value));
        }
        let calls = calls.finish().unwrap();
        assert_eq!(
            calls,
            [
                ToolCall {
                    id: "call_a".into(),
                    name: "weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into()
                },
                ToolCall {
                    id: "call_b".into(),
                    name: "time".into(),
                    arguments: r#"{"tz":"CET"}"#.into()
                },
            ]
        );
    }

    #[test]
    fn a_call_without_an_id_is_a_protocol_error() {
        let mut calls = ToolCalls::default();
        calls.add(fragment(json!({"index": 0, "function": {"name": "f"}})));
        assert!(calls.finish().is_err());
    }
}
