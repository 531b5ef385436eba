//! Server-side tools: functions of an assistant that confab itself calls while it answers (the
//! worker's tool loop), as opposed to the caller's own functions (OpenAI's client-side tools).
//! Both processes use this module: the ingress checks and stores an assistant's `tools`, the
//! worker loads them and calls them.
//!
//! An HTTP tool, `{"type": "http", "name", "description", "parameters", "url", "timeout_ms",
//! "secret"}`, is called with a `POST` of the model's arguments as a JSON object. Each call is
//! signed with the tool's secret ([`signature`]): `X-Confab-Signature: t=<unix seconds>,v1=<hex
//! HMAC-SHA256 of "<t>.<body>">`, so the tool can tell confab's calls from anyone else's. The
//! secret is write-only: sealed at rest like channel secrets, never returned by the API.
//!
//! An MCP server, `{"type": "mcp", "url", "allowed_tools", "timeout_ms"}`, lends the assistant
//! its tools (those `allowed_tools` names, or all of them): the worker lists them over MCP's
//! streamable HTTP transport at the start of a turn and calls them with `tools/call`.
//!
//! The memory tool, `{"type": "memory"}`, lets the model record what it learned about the
//! identity it talks to ([`MEMORY_TOOL`]): the seed-000 memory grows from the conversation,
//! under the same rules as the memory API (`memory.rs`).

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

/// The header carrying a call's signature.
pub const SIGNATURE_HEADER: &str = "X-Confab-Signature";

/// An HTTP tool's longest and default wait for its answer.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// Most tools an assistant may have (OpenAI takes 128 functions in one request).
pub const MAX_TOOLS: usize = 64;

/// One server-side tool of an assistant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerTool {
    Http(HttpTool),
    Mcp(McpServer),
    Memory,
}

/// The memory tool's function name.
pub const MEMORY_TOOL: &str = "remember";

/// The memory tool's function, as a model is offered it.
pub fn memory_function() -> (String, Value) {
    let object = |what: &str| json!({"type": "object", "description": what});
    let description = "Remember what you learned about the user you are talking to, for this \
        and every later conversation. Keys of preferences, data and associations are merged \
        into what is known (a null value forgets a key); stage replaces their stage (null \
        clears it). Call it when the user tells you something worth keeping.";
    let parameters = json!({
        "type": "object",
        "properties": {
            "preferences": object("What the user likes or wants, by key"),
            "data": object("Facts about the user, by key"),
            "associations": object("Links to other records (an order, an account), by key"),
            "stage": {"type": ["string", "null"], "maxLength": crate::memory::MAX_STAGE_CHARS,
                      "description": "Where the user is (a lead, a customer...)"},
        },
        "additionalProperties": false,
    });
    (description.to_owned(), parameters)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpServer {
    /// The server's streamable HTTP endpoint.
    pub url: String,
    /// The only tools of the server the model is offered; `None`: all of them.
    #[serde(default)]
    pub allowed_tools: Option<Vec<String>>,
    /// The longest wait for the server's tool list, and for each call.
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpTool {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The JSON Schema of the arguments; a call whose arguments do not match is refused
    /// before it is sent.
    pub parameters: Value,
    pub url: String,
    pub timeout_ms: u64,
    /// Signs each call; as stored, sealed (or plain, without `CONFAB_SECRET_KEYS`).
    pub secret: String,
}

impl ServerTool {
    /// The function's name; an MCP server's functions are named by the server.
    pub fn name(&self) -> Option<&str> {
        match self {
            ServerTool::Http(tool) => Some(&tool.name),
            ServerTool::Mcp(_) => None,
            ServerTool::Memory => Some(MEMORY_TOOL),
        }
    }

    /// The tool as the management API shows it: everything but the secret.
    pub fn public_view(&self) -> Value {
        match self {
            ServerTool::Http(tool) => json!({
                "type": "http", "name": tool.name, "description": tool.description,
                "parameters": tool.parameters, "url": tool.url, "timeout_ms": tool.timeout_ms,
            }),
            ServerTool::Mcp(server) => json!({
                "type": "mcp", "url": server.url, "allowed_tools": server.allowed_tools,
                "timeout_ms": server.timeout_ms,
            }),
            ServerTool::Memory => json!({"type": "memory"}),
        }
    }

    /// The field name a secret is sealed under: bound to the tool, so a sealed secret cannot be
    /// moved to another tool.
    pub fn secret_field(name: &str) -> String {
        format!("tool:{name}:secret")
    }
}

/// A tool definition the API refuses: which field, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ToolError {
    pub field: String,
    pub message: String,
}

fn refuse(field: String, message: impl Into<String>) -> ToolError {
    ToolError {
        field,
        message: message.into(),
    }
}

/// OpenAI's rule for function names: letters, digits, underscores and dashes, up to 64.
pub fn is_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Read an assistant's `tools` as the API received them. A tool given without a secret keeps
/// the secret of the stored tool of the same name (`kept_secret`), so that an update need not
/// send secrets again; a new tool needs one.
pub fn parse_tools(
    value: &Value,
    kept_secret: impl Fn(&str) -> Option<String>,
) -> Result<Vec<ServerTool>, ToolError> {
    let Some(list) = value.as_array().filter(|l| l.len() <= MAX_TOOLS) else {
        return Err(refuse(
            "tools".into(),
            format!("tools must be an array of at most {MAX_TOOLS} tools"),
        ));
    };
    let mut tools = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let tool = match tool["type"].as_str() {
            Some("mcp") => parse_mcp(tool, i)?,
            Some("memory") => {
                only_fields(tool, i, &["type"])?;
                ServerTool::Memory
            }
            _ => parse_tool(tool, i, &kept_secret)?,
        };
        if tool.name().is_some() && tools.iter().any(|t: &ServerTool| t.name() == tool.name()) {
            return Err(refuse(
                format!("tools[{i}].name"),
                "each tool of an assistant needs a name of its own",
            ));
        }
        tools.push(tool);
    }
    Ok(tools)
}

/// The keys of a tool object that are not among `known`, as an error naming the first.
fn only_fields(tool: &Value, i: usize, known: &[&str]) -> Result<(), ToolError> {
    let unknown = tool
        .as_object()
        .and_then(|fields| fields.keys().find(|k| !known.contains(&k.as_str())));
    match unknown {
        Some(unknown) => Err(refuse(format!("tools[{i}].{unknown}"), "unknown field")),
        None => Ok(()),
    }
}

fn timeout_ms(value: &Value, field: String) -> Result<u64, ToolError> {
    match value {
        Value::Null => Ok(DEFAULT_TIMEOUT_MS),
        t => t
            .as_u64()
            .filter(|t| (1..=MAX_TIMEOUT_MS).contains(t))
            .ok_or_else(|| refuse(field, format!("timeout_ms must be 1 to {MAX_TIMEOUT_MS}"))),
    }
}

fn http_url(value: &Value, field: String) -> Result<String, ToolError> {
    value
        .as_str()
        .filter(|u| reqwest::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https")))
        .map(str::to_owned)
        .ok_or_else(|| refuse(field, "url must be an http:// or https:// URL"))
}

fn parse_mcp(tool: &Value, i: usize) -> Result<ServerTool, ToolError> {
    let field = |name: &str| format!("tools[{i}].{name}");
    only_fields(tool, i, &["type", "url", "allowed_tools", "timeout_ms"])?;
    let allowed_tools = match &tool["allowed_tools"] {
        Value::Null => None,
        Value::Array(names) if names.len() <= MAX_TOOLS => Some(
            names
                .iter()
                .map(|n| {
                    n.as_str()
                        .filter(|n| is_function_name(n))
                        .map(str::to_owned)
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    refuse(field("allowed_tools"), "allowed_tools must be tool names")
                })?,
        ),
        _ => {
            return Err(refuse(
                field("allowed_tools"),
                format!("allowed_tools must be a list of at most {MAX_TOOLS} tool names"),
            ));
        }
    };
    Ok(ServerTool::Mcp(McpServer {
        url: http_url(&tool["url"], field("url"))?,
        allowed_tools,
        timeout_ms: timeout_ms(&tool["timeout_ms"], field("timeout_ms"))?,
    }))
}

fn parse_tool(
    tool: &Value,
    i: usize,
    kept_secret: &impl Fn(&str) -> Option<String>,
) -> Result<ServerTool, ToolError> {
    let field = |name: &str| format!("tools[{i}].{name}");
    let Some(fields) = tool.as_object() else {
        return Err(refuse(format!("tools[{i}]"), "each tool must be an object"));
    };
    if fields.get("type").and_then(Value::as_str) != Some("http") {
        return Err(refuse(
            field("type"),
            "type must be \"http\", \"mcp\" or \"memory\"",
        ));
    }
    only_fields(
        tool,
        i,
        &[
            "type",
            "name",
            "description",
            "parameters",
            "url",
            "timeout_ms",
            "secret",
        ],
    )?;
    let name = tool["name"]
        .as_str()
        .filter(|n| is_function_name(n))
        .ok_or_else(|| {
            refuse(
                field("name"),
                "name must be 1 to 64 letters, digits, underscores or dashes",
            )
        })?;
    let description = match &tool["description"] {
        Value::Null => String::new(),
        Value::String(d) if d.chars().count() <= 1024 => d.clone(),
        _ => {
            return Err(refuse(
                field("description"),
                "description must be a string of at most 1024 characters",
            ));
        }
    };
    let parameters = match &tool["parameters"] {
        Value::Null => json!({"type": "object", "properties": {}}),
        schema @ Value::Object(_) => {
            jsonschema::validator_for(schema).map_err(|e| {
                refuse(
                    field("parameters"),
                    format!("parameters is not a valid JSON Schema: {e}"),
                )
            })?;
            schema.clone()
        }
        _ => {
            return Err(refuse(
                field("parameters"),
                "parameters must be a JSON Schema object",
            ));
        }
    };
    let url = http_url(&tool["url"], field("url"))?;
    let timeout_ms = timeout_ms(&tool["timeout_ms"], field("timeout_ms"))?;
    let secret = match &tool["secret"] {
        Value::String(s) if (16..=256).contains(&s.len()) => s.clone(),
        Value::Null => kept_secret(name).ok_or_else(|| {
            refuse(
                field("secret"),
                "a new tool needs a secret (16 to 256 characters) to sign its calls with",
            )
        })?,
        _ => {
            return Err(refuse(
                field("secret"),
                "secret must be a string of 16 to 256 characters",
            ));
        }
    };
    Ok(ServerTool::Http(HttpTool {
        name: name.to_owned(),
        description,
        parameters,
        url,
        timeout_ms,
        secret,
    }))
}

/// The `X-Confab-Signature` value of a call made at `unix_secs` with `body`.
pub fn signature(secret: &str, unix_secs: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_secs},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup() -> Value {
        json!({"type": "http", "name": "lookup_order", "url": "https://shop.example/tools/order",
               "parameters": {"type": "object", "properties": {"order": {"type": "string"}},
                              "required": ["order"]},
               "secret": "0123456789abcdef"})
    }

    #[test]
    fn a_tool_is_read_with_its_defaults_and_shown_without_its_secret() {
        let mcp = json!({"type": "mcp", "url": "http://127.0.0.1:9/mcp", "allowed_tools": ["a"]});
        let tools = parse_tools(&json!([lookup(), mcp]), |_| None).unwrap();
        let ServerTool::Http(tool) = &tools[0] else {
            panic!("an HTTP tool");
        };
        assert_eq!(tool.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(tool.secret, "0123456789abcdef");
        let shown = tools[0].public_view();
        assert!(shown.get("secret").is_none(), "{shown}");
        assert_eq!(tools[1].public_view()["allowed_tools"], json!(["a"]));
    }

    #[test]
    fn every_bad_field_is_named() {
        let with = |field: &str, value: Value| {
            let mut tool = lookup();
            tool[field] = value;
            json!([tool])
        };
        let mut no_secret = lookup();
        no_secret.as_object_mut().unwrap().remove("secret");
        for (tools, field) in [
            (json!({}), "tools"),
            (with("type", json!("ftp")), "tools[0].type"),
            (
                json!([{"type": "mcp", "url": "http://x/mcp", "allowed_tools": ["a b"]}]),
                "tools[0].allowed_tools",
            ),
            (with("name", json!("two words")), "tools[0].name"),
            (with("url", json!("ftp://x")), "tools[0].url"),
            (with("timeout_ms", json!(0)), "tools[0].timeout_ms"),
            (
                with("parameters", json!({"type": "no-such-type"})),
                "tools[0].parameters",
            ),
            (with("secret", json!("short")), "tools[0].secret"),
            (with("colour", json!("red")), "tools[0].colour"),
            (json!([no_secret]), "tools[0].secret"),
            (json!([lookup(), lookup()]), "tools[1].name"),
        ] {
            let error = parse_tools(&tools, |_| None).unwrap_err();
            assert_eq!(error.field, field, "{tools}: {error}");
        }
    }

    #[test]
    fn an_update_without_a_secret_keeps_the_stored_one() {
        let mut tool = lookup();
        tool.as_object_mut().unwrap().remove("secret");
        let kept = |name: &str| (name == "lookup_order").then(|| "stored-secret-1234".to_owned());
        let tools = parse_tools(&json!([tool]), kept).unwrap();
        assert!(matches!(&tools[0], ServerTool::Http(t) if t.secret == "stored-secret-1234"));
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_time_and_body() {
        let signed = signature("key", 1_700_000_000, b"{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"1700000000.{}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(signed, format!("t=1700000000,v1={expected}"));
    }
}
