//! An MCP server's tools, through the official MCP SDK's client (rmcp) over the streamable HTTP
//! transport: one session per turn that uses the server, opened to list its tools and kept for
//! the turn's calls. A call's result is its text content; `isError` makes it an error result.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, Tool};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Map, Value};

/// An open session with one MCP server.
pub(super) struct Session {
    service: RunningService<RoleClient, ()>,
}

impl Session {
    /// Open a session with the server at `url` and list its tools, within `timeout`.
    pub async fn open(url: &str, timeout: Duration) -> Result<(Arc<Session>, Vec<Tool>), String> {
        let opening = async {
            let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
            let service = ().serve(transport).await.map_err(|e| e.to_string())?;
            let tools = service.list_all_tools().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((Arc::new(Session { service }), tools))
        };
        tokio::time::timeout(timeout, opening)
            .await
            .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
    }

    /// Call tool `name` with `arguments`: its text, or what went wrong.
    pub async fn call(&self, name: &str, arguments: Map<String, Value>) -> Result<String, String> {
        let mut params = CallToolRequestParams::new(name.to_owned());
        params.arguments = Some(arguments);
        let result = self
            .service
            .call_tool(params)
            .await
            .map_err(|e| format!("the MCP server failed the call: {e}"))?;
        let text: Vec<String> = result
            .content
            .iter()
            .map(|block| match block.as_text() {
                Some(text) => text.text.clone(),
                None => serde_json::to_string(block).unwrap_or_default(),
            })
            .collect();
        let text = match (&result.structured_content, text.is_empty()) {
            (Some(structured), true) => structured.to_string(),
            _ => text.join("\n"),
        };
        if result.is_error == Some(true) {
            Err(text)
        } else {
            Ok(text)
        }
    }
}
