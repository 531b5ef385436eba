//! An HTTP tool's call: the arguments `POST`ed as JSON to the tool's URL, signed with its
//! secret, with the call's context in headers, its answer read up to the result limit.

use confab_contract::ToolCall;
use confab_shared::secrets::SecretBox;
use confab_shared::tools::{HttpTool, SIGNATURE_HEADER, ServerTool, signature};
use serde_json::Value;

use super::{CallContext, idempotency_key};

/// The tool's answer, or what went wrong, in words for the model.
pub(super) async fn post(
    http: &reqwest::Client,
    secrets: &SecretBox,
    result_limit: usize,
    (context, tool, call): (&CallContext, &HttpTool, &ToolCall),
    arguments: &Value,
) -> Result<String, String> {
    let secret = secrets
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
    let mut request = http
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
        if answer.len() > result_limit {
            return Err(super::too_large(result_limit));
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
