//! Tool calling as it crosses the queue: the functions a caller's own code runs (OpenAI's
//! `tools`), and the calls a model makes to them.
//!
//! Added to version 1 without a bump, like the other optional fields: a job without tools is
//! read by every v1 worker as before. A worker that predates them would answer a job that
//! carries tools with text, so deployments upgrade workers before ingresses (the usual order:
//! consumers first).

use serde::{Deserialize, Serialize};

/// The functions the model may call instead of answering, as the caller declared them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientTools {
    /// OpenAI tool objects (`{"type": "function", "function": {name, description, parameters,
    /// strict}}`), validated by the ingress and passed to the model as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub definitions: Vec<serde_json::Value>,
    /// OpenAI's `tool_choice` (`"auto"`, `"required"`, `"none"` or a named function); absent,
    /// the model decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<serde_json::Value>,
    /// OpenAI's `parallel_tool_calls`; absent, the model's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<bool>,
}

impl ClientTools {
    pub fn is_empty(&self) -> bool {
        self.definitions.is_empty()
    }
}

/// One call of a function by the model: what the caller runs and answers with a `tool`
/// message carrying `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them: JSON text, not checked (OpenAI's SDKs parse it).
    pub arguments: String,
}

impl ToolCall {
    /// The calls a stored message's `tool_calls` column holds (this type's JSON; NULL for a
    /// message of text). Only confab writes the column, so a value that does not read is none
    /// rather than a failed conversation.
    pub fn list_from_column(column: Option<serde_json::Value>) -> Vec<ToolCall> {
        column
            .and_then(|calls| serde_json::from_value(calls).ok())
            .unwrap_or_default()
    }
}
