//! Calling an assistant's server-side tools (`confab_shared::tools`). At the start of a turn
//! the assistant's tools become a [`Toolbox`]: its HTTP tools as they are, and the tools its
//! MCP servers list (an MCP server that cannot be reached lends none, and the turn goes on).
//! Each call's arguments are checked against the function's JSON Schema, then the call goes
//! to its HTTP tool (`http.rs`) or MCP server (`mcp.rs`) within its timeout. Whatever goes
//! wrong (bad arguments, an HTTP error, a timeout, an answer too large) becomes the call's
//! result, an error the model reads and can act on: a tool never fails a turn.

mod http;
mod mcp;
mod memory;

use std::sync::Arc;
use std::time::Duration;

use confab_contract::ToolCall;
use confab_shared::secrets::SecretBox;
use confab_shared::tools::{HttpTool, MEMORY_TOOL, ServerTool, memory_function};
use futures_util::future::join_all;
use serde_json::{Value, json};
use tracing::warn;
use uuid::Uuid;

/// Who a call is made for, sent with it so that the tool can act for the right party.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub tenant_id: Uuid,
    pub assistant_id: Uuid,
    pub conversation_id: String,
    pub identity_id: Option<Uuid>,
    pub request_id: Uuid,
}

/// One function the model may call.
pub struct Function {
    pub name: String,
    description: String,
    parameters: Value,
    target: Target,
}

enum Target {
    Http(HttpTool),
    Mcp {
        session: Arc<mcp::Session>,
        timeout: Duration,
    },
    Memory,
}

impl Function {
    /// As the model is offered it: an OpenAI function tool.
    pub fn definition(&self) -> Value {
        json!({"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.parameters}})
    }
}

/// The functions of one turn's assistant.
#[derive(Default)]
pub struct Toolbox {
    functions: Vec<Function>,
}

impl Toolbox {
    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    pub fn get(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// Add `function` unless one of its name is there already (the first wins).
    fn add(&mut self, function: Function) {
        if self.get(&function.name).is_some() {
            warn!(name = %function.name, "two tools of the assistant share a name; the first is used");
            return;
        }
        self.functions.push(function);
    }
}

/// What calls an assistant's tools: one HTTP client for the worker, and the keys that open the
/// tools' secrets.
#[derive(Clone)]
pub struct ToolRunner {
    http: reqwest::Client,
    secrets: SecretBox,
    /// Where the memory tool writes.
    pool: deadpool_postgres::Pool,
    /// Largest answer of a tool passed to the model (`CONFAB_TOOL_RESULT_MAX_BYTES`).
    result_limit: usize,
}

impl ToolRunner {
    pub fn new(
        secrets: SecretBox,
        pool: deadpool_postgres::Pool,
        result_limit: usize,
    ) -> Result<ToolRunner, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(ToolRunner {
            http,
            secrets,
            pool,
            result_limit,
        })
    }

    /// The functions `tools` give a turn; MCP servers are asked for theirs at once.
    pub async fn toolbox(&self, tools: &[ServerTool]) -> Toolbox {
        let mut toolbox = Toolbox::default();
        let mut servers = Vec::new();
        for tool in tools {
            match tool {
                ServerTool::Http(tool) => toolbox.add(Function {
                    name: tool.name.clone(),
                    description: tool.description.clone(),
                    parameters: tool.parameters.clone(),
                    target: Target::Http(tool.clone()),
                }),
                ServerTool::Mcp(server) => servers.push(server),
                ServerTool::Memory => {
                    let (description, parameters) = memory_function();
                    toolbox.add(Function {
                        name: MEMORY_TOOL.to_owned(),
                        description,
                        parameters,
                        target: Target::Memory,
                    });
                }
            }
        }
        let opened = join_all(servers.iter().map(|server| {
            let timeout = Duration::from_millis(server.timeout_ms);
            async move {
                (
                    server,
                    timeout,
                    mcp::Session::open(&server.url, timeout).await,
                )
            }
        }))
        .await;
        for (server, timeout, opened) in opened {
            let (session, listed) = match opened {
                Ok(opened) => opened,
                Err(problem) => {
                    warn!(url = %server.url, %problem, "MCP server unavailable; its tools are left out");
                    continue;
                }
            };
            let allowed = |name: &str| {
                server
                    .allowed_tools
                    .as_ref()
                    .is_none_or(|names| names.iter().any(|n| n == name))
            };
            for tool in listed.into_iter().filter(|t| allowed(&t.name)) {
                toolbox.add(Function {
                    name: tool.name.to_string(),
                    description: tool.description.map(|d| d.to_string()).unwrap_or_default(),
                    parameters: Value::Object((*tool.input_schema).clone()),
                    target: Target::Mcp {
                        session: session.clone(),
                        timeout,
                    },
                });
            }
        }
        toolbox
    }

    /// The result of `call` of `function`, as the model is to read it; waits at most `within`.
    pub async fn run(
        &self,
        context: &CallContext,
        function: &Function,
        call: &ToolCall,
        within: Duration,
    ) -> String {
        let arguments = match checked_arguments(&function.parameters, &call.arguments) {
            Ok(arguments) => arguments,
            Err(problem) => return error_result(format!("invalid arguments: {problem}")),
        };
        let (timeout, outcome) = match &function.target {
            Target::Http(tool) => {
                let timeout = Duration::from_millis(tool.timeout_ms).min(within);
                let posting = http::post(
                    &self.http,
                    &self.secrets,
                    self.result_limit,
                    (context, tool, call),
                    &arguments,
                );
                (timeout, tokio::time::timeout(timeout, posting).await)
            }
            Target::Mcp { session, timeout } => {
                let timeout = (*timeout).min(within);
                let Value::Object(arguments) = arguments else {
                    return error_result("the arguments must be a JSON object");
                };
                let calling = session.call(&function.name, arguments);
                (timeout, tokio::time::timeout(timeout, calling).await)
            }
            Target::Memory => {
                let remembering = memory::remember(&self.pool, context, &arguments);
                (within, tokio::time::timeout(within, remembering).await)
            }
        };
        let result = match outcome {
            Ok(Ok(result)) if result.len() > self.result_limit => Err(too_large(self.result_limit)),
            Ok(result) => result,
            Err(_) => Err(format!(
                "the tool did not answer within {} ms",
                timeout.as_millis()
            )),
        };
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("confab_tool_calls_total", "outcome" => outcome).increment(1);
        result.unwrap_or_else(error_result)
    }
}

/// The key a tool sees on every attempt of one call, redeliveries included: a side effect it
/// keys on happens once.
pub fn idempotency_key(request_id: Uuid, call_id: &str) -> String {
    format!("{}.{call_id}", request_id.simple())
}

/// The arguments as an object that the schema accepts, or what is wrong with them.
fn checked_arguments(schema: &Value, arguments: &str) -> Result<Value, String> {
    let text = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the arguments are not JSON: {e}"))?;
    if !value.is_object() {
        return Err("the arguments must be a JSON object".into());
    }
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("the tool's parameters schema is invalid: {e}"))?;
    let problems: Vec<String> = validator
        .iter_errors(&value)
        .take(5)
        .map(|e| match e.instance_path().to_string() {
            path if path.is_empty() => e.to_string(),
            path => format!("{path}: {e}"),
        })
        .collect();
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(problems.join("; "))
    }
}

/// Why an answer over the result limit is not passed on.
fn too_large(limit: usize) -> String {
    format!("the tool's answer is larger than {limit} bytes")
}

/// A result that tells the model the call failed, and why.
pub fn error_result(problem: impl Into<String>) -> String {
    json!({"error": problem.into()}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"order": {"type": "string"}},
               "required": ["order"], "additionalProperties": false})
    }

    #[test]
    fn arguments_are_checked_against_the_schema_before_any_call() {
        assert_eq!(
            checked_arguments(&schema(), r#"{"order": "A-1"}"#).unwrap(),
            json!({"order": "A-1"})
        );
        for (arguments, says) in [
            ("{\"order\": 7}", "/order"),
            ("{}", "order"),
            ("[1]", "JSON object"),
            ("{nope", "not JSON"),
            (r#"{"order": "A", "x": 1}"#, "x"),
        ] {
            let problem = checked_arguments(&schema(), arguments).unwrap_err();
            assert!(problem.contains(says), "{arguments}: {problem}");
        }
    }

    #[test]
    fn a_failure_is_a_result_the_model_can_read() {
        let result: Value = serde_json::from_str(&error_result("timed out")).unwrap();
        assert_eq!(result, json!({"error": "timed out"}));
    }
}
