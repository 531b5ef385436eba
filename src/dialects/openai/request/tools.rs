//! The caller's functions: `tools`, `tool_choice` and `parallel_tool_calls`, and the legacy
//! `functions` and `function_call`, read as the same. They go to the model with the job
//! (`ClientTools`) as given, once checked; the ingress refuses them for the built-in model,
//! which calls no functions. Every problem is a 400 naming its `param`.

use confab_contract::ClientTools;
use confab_shared::tools::is_function_name;
use serde_json::{Map, Value, json};

use super::OpenAiError;

/// The caller's functions, and whether it named them the legacy way (`functions`), which its
/// answer then uses too (`function_call`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestedTools {
    pub tools: ClientTools,
    pub legacy: bool,
}

/// Read and remove `tools`, `tool_choice`, `parallel_tool_calls`, `functions` and
/// `function_call`.
pub fn tools(fields: &mut Map<String, Value>) -> Result<RequestedTools, OpenAiError> {
    let tools = fields.remove("tools").filter(|v| !v.is_null());
    let choice = fields.remove("tool_choice").filter(|v| !v.is_null());
    let parallel = match fields.remove("parallel_tool_calls") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(parallel)) => Some(parallel),
        Some(_) => {
            return Err(OpenAiError::invalid(
                "parallel_tool_calls",
                "parallel_tool_calls must be a boolean.",
            ));
        }
    };
    let functions = fields.remove("functions").filter(|v| !v.is_null());
    let function_call = fields.remove("function_call").filter(|v| !v.is_null());
    let legacy = functions.is_some() || function_call.is_some();
    if legacy && (tools.is_some() || choice.is_some()) {
        return Err(OpenAiError::invalid(
            "functions",
            "functions and function_call are the legacy form of tools and tool_choice; send              one form, not both.",
        ));
    }
    let (definitions, choice) = if legacy {
        let definitions = legacy_functions(functions)?;
        let choice = function_call.map(legacy_choice).transpose()?;
        (definitions, choice)
    } else {
        (tool_definitions(tools)?, choice)
    };
    if let Some(choice) = &choice {
        check_choice(choice, &definitions, legacy)?;
    }
    if definitions.is_empty() {
        // A choice of "none" over no tools asks for nothing; anything else has nothing to call.
        return Ok(RequestedTools::default());
    }
    Ok(RequestedTools {
        tools: ClientTools {
            definitions,
            choice,
            parallel,
        },
        legacy,
    })
}

/// A function object (`{name, description?, parameters?, strict?}`) checked, as it was given.
fn function_definition(function: &Value, param: &str) -> Result<(), OpenAiError> {
    let invalid = |message: &str| OpenAiError::invalid(param, message.to_owned());
    let Value::Object(fields) = function else {
        return Err(invalid("Each function must be an object with a name."));
    };
    if !fields
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(is_function_name)
    {
        return Err(invalid(
            "A function name must be 1 to 64 letters, digits, underscores or dashes.",
        ));
    }
    let parameters_ok = fields.get("parameters").is_none_or(Value::is_object);
    let description_ok = fields.get("description").is_none_or(Value::is_string);
    let strict_ok = fields
        .get("strict")
        .is_none_or(|s| s.is_boolean() || s.is_null());
    if !(parameters_ok && description_ok && strict_ok) {
        return Err(invalid(
            "A function's parameters must be a JSON Schema object, its description a string              and strict a boolean.",
        ));
    }
    Ok(())
}

fn tool_definitions(tools: Option<Value>) -> Result<Vec<Value>, OpenAiError> {
    let list = match tools {
        None => return Ok(Vec::new()),
        Some(Value::Array(list)) if list.len() <= 128 => list,
        Some(_) => {
            return Err(OpenAiError::invalid(
                "tools",
                "tools must be an array of at most 128 function tools.",
            ));
        }
    };
    for (i, tool) in list.iter().enumerate() {
        if tool["type"].as_str() != Some("function") {
            return Err(OpenAiError::invalid(
                format!("tools[{i}].type"),
                format!("tools[{i}].type: only function tools are supported by confab."),
            ));
        }
        function_definition(&tool["function"], &format!("tools[{i}].function"))?;
    }
    Ok(list)
}

/// Legacy `functions`, as the function tools they stand for.
fn legacy_functions(functions: Option<Value>) -> Result<Vec<Value>, OpenAiError> {
    let list = match functions {
        None => return Ok(Vec::new()),
        Some(Value::Array(list)) if list.len() <= 128 => list,
        Some(_) => {
            return Err(OpenAiError::invalid(
                "functions",
                "functions must be an array of at most 128 functions.",
            ));
        }
    };
    list.into_iter()
        .enumerate()
        .map(|(i, function)| {
            function_definition(&function, &format!("functions[{i}]"))?;
            Ok(json!({"type": "function", "function": function}))
        })
        .collect()
}

/// Legacy `function_call` (`"none"`, `"auto"` or `{name}`), as the `tool_choice` it stands for.
fn legacy_choice(function_call: Value) -> Result<Value, OpenAiError> {
    match &function_call {
        Value::String(mode) if mode == "none" || mode == "auto" => Ok(function_call),
        Value::Object(named) if named.get("name").is_some_and(Value::is_string) => {
            Ok(json!({"type": "function", "function": {"name": named["name"]}}))
        }
        _ => Err(OpenAiError::invalid(
            "function_call",
            "function_call must be 'none', 'auto' or {\"name\": <a function's name>}.",
        )),
    }
}

/// `tool_choice` is `none`, `auto`, `required`, or one of the given functions by name.
fn check_choice(choice: &Value, definitions: &[Value], legacy: bool) -> Result<(), OpenAiError> {
    let param = if legacy {
        "function_call"
    } else {
        "tool_choice"
    };
    match choice {
        Value::String(mode) if mode == "none" => return Ok(()),
        Value::String(mode) if mode == "auto" || mode == "required" => {}
        Value::Object(named) if named.get("type").and_then(Value::as_str) == Some("function") => {
            let name = &choice["function"]["name"];
            let given = definitions.iter().any(|d| &d["function"]["name"] == name);
            if !given {
                return Err(OpenAiError::invalid(
                    param,
                    format!("{param} names a function that is not among the request's tools."),
                ));
            }
        }
        _ => {
            return Err(OpenAiError::invalid(
                param,
                "tool_choice must be 'none', 'auto', 'required' or {\"type\": \"function\",                  \"function\": {\"name\": ...}}.",
            ));
        }
    }
    if definitions.is_empty() {
        return Err(OpenAiError::invalid(
            param,
            format!("{param} is only allowed when tools are specified."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(body: Value) -> Map<String, Value> {
        body.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn tools_are_checked_and_legacy_functions_read_as_tools() {
        let weather = json!({"name": "weather", "parameters": {"type": "object"}});
        let mut body = fields(json!({
            "tools": [{"type": "function", "function": weather}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}},
            "parallel_tool_calls": false,
        }));
        let read = tools(&mut body).unwrap();
        assert!(body.is_empty());
        assert_eq!(read.tools.definitions[0]["function"]["name"], "weather");
        assert_eq!(read.tools.parallel, Some(false));
        assert!(!read.legacy);

        let legacy = tools(&mut fields(json!({
            "functions": [weather], "function_call": {"name": "weather"},
        })))
        .unwrap();
        assert!(legacy.legacy);
        assert_eq!(legacy.tools.definitions, read.tools.definitions);
        assert_eq!(legacy.tools.choice, read.tools.choice);

        let nothing = json!({"tools": [], "tool_choice": "none", "parallel_tool_calls": false});
        assert!(tools(&mut fields(nothing)).unwrap().tools.is_empty());
        for (body, param) in [
            (json!({"tools": [{"type": "web_search"}]}), "tools[0].type"),
            (
                json!({"tools": [{"type": "function", "function": {"name": "a b"}}]}),
                "tools[0].function",
            ),
            (json!({"tool_choice": "required"}), "tool_choice"),
            (
                json!({"tools": [{"type": "function", "function": weather}],
                       "tool_choice": {"type": "function", "function": {"name": "other"}}}),
                "tool_choice",
            ),
            (
                json!({"tools": [{"type": "function", "function": weather}],
                       "functions": [weather]}),
                "functions",
            ),
            (json!({"function_call": "sometimes"}), "function_call"),
            (json!({"parallel_tool_calls": "yes"}), "parallel_tool_calls"),
        ] {
            let error = tools(&mut fields(body.clone())).unwrap_err();
            assert_eq!(error.param.as_deref(), Some(param), "{body}");
        }
    }
}
