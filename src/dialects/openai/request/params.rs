//! The chat completion parameters besides `model` and `messages`: each is honoured or refused
//! with a 400 naming it, never accepted and ignored.
//!
//! - Sampling (`temperature`, `top_p`, `max_tokens` / `max_completion_tokens`, `stop`, `seed`,
//!   `presence_penalty`, `frequency_penalty`) goes to the model with the job (`Sampling`).
//! - `user` and `metadata` are stored with the user's turn.
//! - `response_format` (`json_object`, `json_schema`) goes to the model too; the ingress refuses
//!   it for the built-in model, which writes free text only.
//! - `tools`, `tool_choice`, `parallel_tool_calls` and the legacy `functions` and
//!   `function_call` are read in `tools.rs`.
//! - What confab cannot do yet, or never does, is refused, saying so: log probabilities, logit
//!   bias, audio, predicted outputs, web search, reasoning effort and paid service tiers. Their
//!   "off" values (`logprobs: false`, `modalities: ["text"]`, `service_tier: "auto"`...) are
//!   accepted, since they ask for nothing.
//! - Anything else is refused as OpenAI refuses it: "Unrecognized request argument supplied".

use confab_contract::Sampling;
use serde_json::{Map, Value};

use super::OpenAiError;

/// Read and remove the sampling parameters.
pub fn sampling(fields: &mut Map<String, Value>) -> Result<Sampling, OpenAiError> {
    let max_tokens = match (
        positive(fields.remove("max_tokens"), "max_tokens")?,
        positive(
            fields.remove("max_completion_tokens"),
            "max_completion_tokens",
        )?,
    ) {
        (Some(a), Some(b)) if a != b => {
            return Err(OpenAiError::invalid(
                "max_completion_tokens",
                "max_tokens and max_completion_tokens disagree; send one of them.",
            ));
        }
        (a, b) => a.or(b),
    };
    Ok(Sampling {
        temperature: number(fields.remove("temperature"), "temperature", 0.0, 2.0)?,
        top_p: number(fields.remove("top_p"), "top_p", 0.0, 1.0)?,
        max_tokens,
        stop: stop(fields.remove("stop"))?,
        seed: match fields.remove("seed") {
            None | Some(Value::Null) => None,
            Some(seed) => Some(
                seed.as_i64()
                    .ok_or_else(|| OpenAiError::invalid("seed", "seed must be an integer."))?,
            ),
        },
        presence_penalty: number(
            fields.remove("presence_penalty"),
            "presence_penalty",
            -2.0,
            2.0,
        )?,
        frequency_penalty: number(
            fields.remove("frequency_penalty"),
            "frequency_penalty",
            -2.0,
            2.0,
        )?,
        response_format: response_format(fields.remove("response_format"))?,
    })
}

/// `response_format`: `text` (the default, so nothing), `json_object`, or `json_schema` with a
/// `json_schema: {name, schema?, strict?, description?}`; passed to the model as given.
fn response_format(value: Option<Value>) -> Result<Option<Value>, OpenAiError> {
    let invalid = |message: &str| OpenAiError::invalid("response_format", message.to_owned());
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match value["type"].as_str() {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(value)),
        Some("json_schema") => {
            let schema = &value["json_schema"];
            let named = schema["name"]
                .as_str()
                .is_some_and(|n| (1..=64).contains(&n.len()));
            if !named || !(schema["schema"].is_null() || schema["schema"].is_object()) {
                return Err(invalid(
                    "response_format.json_schema needs a name (1 to 64 characters) and, if \
                     given, a schema object.",
                ));
            }
            Ok(Some(value))
        }
        _ => Err(invalid(
            "response_format.type must be text, json_object or json_schema.",
        )),
    }
}

/// Read and remove `user` and `metadata`, as the metadata stored with the user's turn.
pub fn caller_metadata(fields: &mut Map<String, Value>) -> Result<Map<String, Value>, OpenAiError> {
    let mut stored = Map::new();
    match fields.remove("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(metadata)) => {
            // OpenAI's own limits: 16 pairs, keys to 64 characters, string values to 512.
            let fits = metadata.len() <= 16
                && metadata.iter().all(|(key, value)| {
                    key.chars().count() <= 64
                        && value.as_str().is_some_and(|v| v.chars().count() <= 512)
                });
            if !fits {
                return Err(OpenAiError::invalid(
                    "metadata",
                    "metadata must be at most 16 string values, keys up to 64 characters and \
                     values up to 512.",
                ));
            }
            stored.extend(metadata);
        }
        Some(_) => {
            return Err(OpenAiError::invalid(
                "metadata",
                "metadata must be an object.",
            ));
        }
    }
    match fields.remove("user") {
        None | Some(Value::Null) => {}
        Some(Value::String(user)) if user.chars().count() <= 256 => {
            stored.insert("user".into(), Value::String(user));
        }
        Some(_) => {
            return Err(OpenAiError::invalid(
                "user",
                "user must be a string of at most 256 characters.",
            ));
        }
    }
    Ok(stored)
}

/// Refuse what is left: a parameter confab does not support (unless it asks for nothing), or
/// one it does not know.
pub fn refuse_the_rest(fields: &Map<String, Value>) -> Result<(), OpenAiError> {
    for (name, value) in fields {
        if asks_for_nothing(name, value) {
            continue;
        }
        let why = match name.as_str() {
            "logprobs" | "top_logprobs" => "log probabilities are not returned by confab",
            "logit_bias" => "logit_bias is not supported by confab",
            "modalities" | "audio" => "confab answers with text only",
            "prediction" => "predicted outputs are not supported by confab",
            "web_search_options" => "web search is not supported by confab",
            "reasoning_effort" | "verbosity" => {
                "the assistant's model setting decides how it reasons; it cannot be set per request"
            }
            "service_tier" => "confab has one service tier (auto)",
            _ => {
                return Err(OpenAiError::invalid(
                    name,
                    format!("Unrecognized request argument supplied: {name}"),
                ));
            }
        };
        return Err(OpenAiError::invalid(name, format!("{name}: {why}.")));
    }
    Ok(())
}

/// Values of unsupported parameters that ask for what confab does anyway.
fn asks_for_nothing(name: &str, value: &Value) -> bool {
    match (name, value) {
        (_, Value::Null) => true,
        ("logprobs", Value::Bool(false)) => true,
        ("logit_bias", Value::Object(bias)) => bias.is_empty(),
        ("modalities", Value::Array(list)) => list.iter().all(|m| m == "text"),
        ("service_tier", Value::String(tier)) => tier == "auto" || tier == "default",
        _ => false,
    }
}

fn number(
    value: Option<Value>,
    param: &str,
    min: f64,
    max: f64,
) -> Result<Option<f64>, OpenAiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_f64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(OpenAiError::invalid(
                param,
                format!("{param} must be a number from {min} to {max}."),
            )),
        },
    }
}

fn positive(value: Option<Value>, param: &str) -> Result<Option<u32>, OpenAiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(n @ 1..=1_000_000) => Ok(Some(n as u32)),
            _ => Err(OpenAiError::invalid(
                param,
                format!("{param} must be a positive integer."),
            )),
        },
    }
}

/// `stop`: a string, or up to 4 of them.
fn stop(value: Option<Value>) -> Result<Vec<String>, OpenAiError> {
    let invalid = || {
        OpenAiError::invalid(
            "stop",
            "stop must be a string or a list of up to 4 strings.",
        )
    };
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(one)) if !one.is_empty() => Ok(vec![one]),
        Some(Value::Array(list)) if list.len() <= 4 => list
            .into_iter()
            .map(|s| match s {
                Value::String(s) if !s.is_empty() => Ok(s),
                _ => Err(invalid()),
            })
            .collect(),
        Some(_) => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(body: Value) -> Map<String, Value> {
        body.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn sampling_parameters_are_read_and_checked() {
        let mut body = fields(
            json!({"temperature": 0.2, "top_p": 1, "max_completion_tokens": 50,
                                     "stop": "END", "seed": 7, "presence_penalty": -1}),
        );
        let read = sampling(&mut body).unwrap();
        assert!(body.is_empty());
        assert_eq!(read.temperature, Some(0.2));
        assert_eq!(read.max_tokens, Some(50));
        assert_eq!(read.stop, ["END"]);
        assert_eq!(read.seed, Some(7));
        for (body, param) in [
            (json!({"temperature": 3}), "temperature"),
            (json!({"top_p": "x"}), "top_p"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (
                json!({"max_tokens": 5, "max_completion_tokens": 6}),
                "max_completion_tokens",
            ),
            (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
            (json!({"seed": 1.5}), "seed"),
            (
                json!({"response_format": {"type": "xml"}}),
                "response_format",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {}}}),
                "response_format",
            ),
        ] {
            let error = sampling(&mut fields(body.clone())).unwrap_err();
            assert_eq!(error.param.as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn what_confab_cannot_do_is_refused_by_name_unless_it_asks_for_nothing() {
        let quiet =
            fields(json!({"logprobs": false, "modalities": ["text"], "service_tier": "auto"}));
        assert!(refuse_the_rest(&quiet).is_ok());
        for (body, says) in [
            (json!({"logprobs": true}), "log probabilities"),
            (
                json!({"colour": "red"}),
                "Unrecognized request argument supplied: colour",
            ),
        ] {
            let error = refuse_the_rest(&fields(body.clone())).unwrap_err();
            let name = body.as_object().unwrap().keys().next().unwrap().clone();
            assert_eq!(error.param.as_deref(), Some(name.as_str()));
            assert!(error.message.contains(says), "{}", error.message);
        }
    }

    #[test]
    fn user_and_metadata_are_kept_with_the_turn() {
        let mut body = fields(json!({"user": "u-1", "metadata": {"order": "42"}}));
        let stored = caller_metadata(&mut body).unwrap();
        assert_eq!(Value::Object(stored), json!({"order": "42", "user": "u-1"}));
        let error = caller_metadata(&mut fields(json!({"metadata": {"n": 1}}))).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("metadata"));
    }
}
