//! Calling an assistant's server-side tools (`confab_shared::tools`): check the model's
//! arguments against the tool's JSON Schema, `POST` them signed to the tool's URL with the
//! call's context in headers, and read its answer within the tool's timeout and the result
//! limit. Whatever goes wrong (bad arguments, an HTTP error, a timeout, an answer too large)
//! becomes the call's result, an error the model reads and can act on: a tool never fails a
//! turn.

use std::time::Duration;

use confab_contract::ToolCall;
use confab_shared::secrets::SecretBox;
use confab_shared::tools::{HttpTool, SIGNATURE_HEADER, ServerTool, signature};
use serde_json::{Value, json};
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

/// What calls an assistant's tools: one HTTP client for the worker, and the keys that open the
/// tools' secrets.
#[derive(Clone)]
pub struct ToolRunner {
    http: reqwest::Client,
    secrets: SecretBox,
    /// Largest answer of a tool passed to the model (`CONFAB_TOOL_RESULT_MAX_BYTES`).
    result_limit: usize,
}

impl ToolRunner {
    pub fn new(secrets: SecretBox, result_limit: usize) -> Result<ToolRunner, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(ToolRunner {
            http,
            secrets,
            result_limit,
        })
    }

    /// The result of `call` of `tool`, as the model is to read it; waits at most `within`.
    pub async fn run(
        &self,
        context: &CallContext,
        tool: &ServerTool,
        call: &ToolCall,
        within: Duration,
    ) -> String {
        let ServerTool::Http(tool) = tool;
        let arguments = match checked_arguments(&tool.parameters, &call.arguments) {
            Ok(arguments) => arguments,
            Err(problem) => return error_result(format!("invalid arguments: {problem}")),
        };
        let timeout = Duration::from_millis(tool.timeout_ms).min(within);
        match tokio::time::timeout(timeout, self.post(context, tool, call, &arguments)).await {
            Ok(Ok(result)) => result,
            Ok(Err(problem)) => error_result(problem),
            Err(_) => error_result(format!(
                "the tool did not answer within {} ms",
                timeout.as_millis()
            )),
        }
    }

    async fn post(
        &self,
        context: &CallContext,
        tool: &HttpTool,
        call: &ToolCall,
        arguments: &Value,
    ) -> Result<String, String> {
        let secret = self
            .secrets
            .open_value(
                context.assistant_id,
                &ServerTool::secret_field(&tool.name),
                &tool.secret,
            )
            .map_err(|e| format!("the tool's secret cannot be read: {e}"))?;
        let body = serde_json::to_vec(arguments).map_err(|e| e.to_string())?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut request = self
            .http
            .post(&tool.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature(&secret, now, &body))
            .header(
                "Idempotency-Key",
                idempotency_key(context.request_id, &call.id),
            )
            .header("X-Confab-Tool-Call-Id", &call.id)
            .header("X-Confab-Tenant-Id", context.tenant_id.to_string())
            .header("X-Confab-Assistant-Id", context.assistant_id.to_string())
            .header("X-Confab-Conversation-Id", &context.conversation_id)
            .header("X-Confab-Request-Id", context.request_id.to_string());
        if let Some(identity) = context.identity_id {
            request = request.header("X-Confab-Identity-Id", identity.to_string());
        }
        let mut response = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("the tool could not be reached: {e}"))?;
        let status = response.status();
        let mut answer = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("the tool's answer broke off: {e}"))?
        {
            answer.extend_from_slice(&chunk);
            if answer.len() > self.result_limit {
                return Err(format!(
                    "the tool's answer is larger than {} bytes",
                    self.result_limit
                ));
            }
        }
        let text = String::from_utf8_lossy(&answer).into_owned();
        if status.is_success() {
            Ok(text)
        } else {
            let excerpt: String = text.chars().take(500).collect();
            Err(format!(
                "the tool answered HTTP {}: {excerpt}",
                status.as_u16()
            ))
        }
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
