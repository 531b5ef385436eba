//! A real MCP server for the tests, on the official SDK's server side (rmcp) over streamable
//! HTTP at `/mcp`: it lists two tools, `lookup_order` and `cancel_order`, answers
//! `lookup_order` with the order's status (or an `isError` result for an unknown order), and
//! records every call it gets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rmcp::ErrorData;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Shop {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
}

fn order_schema() -> Arc<serde_json::Map<String, Value>> {
    let schema = json!({"type": "object", "properties": {"order": {"type": "string"}},
                        "required": ["order"]});
    Arc::new(schema.as_object().cloned().unwrap_or_default())
}

impl ServerHandler for Shop {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![
            Tool::new(
                "lookup_order",
                "Find an order by its number",
                order_schema(),
            ),
            Tool::new("cancel_order", "Cancel an order", order_schema()),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        self.calls
            .lock()
            .expect("lock")
            .push((request.name.to_string(), arguments.clone()));
        let result = match arguments["order"].as_str() {
            Some("A-1001") => CallToolResult::success(vec![ContentBlock::text(
                json!({"order": "A-1001", "status": "shipped"}).to_string(),
            )]),
            _ => CallToolResult::error(vec![ContentBlock::text("no such order")]),
        };
        Ok(result.into())
    }
}

pub struct McpServer {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl McpServer {
    pub async fn start() -> McpServer {
        let shop = Shop::default();
        let calls = shop.calls.clone();
        let service = StreamableHttpService::new(
            move || Ok(shop.clone()),
            LocalSessionManager::default().into(),
            StreamableHttpServerConfig::default(),
        );
        let app = axum::Router::new().nest_service("/mcp", service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the MCP server");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        McpServer { addr, calls, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Every call so far: (tool, arguments).
    pub fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().expect("lock").clone()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
