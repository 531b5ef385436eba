//! `previewAssistantData`: the unsaved assistant of preview mode.

use confab_contract::PreviewAssistant;
use confab_shared::ModelSpec;
use serde_json::{Map, Value};

use super::{Issue, given, issue};

/// An optional string field of `previewAssistantData`.
fn preview_text(
    fields: &Map<String, Value>,
    name: &str,
    issues: &mut Vec<Issue>,
) -> Option<String> {
    match given(fields, name) {
        None => Some(String::new()),
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            issues.push(issue(
                format!("previewAssistantData.{name}"),
                format!("The preview assistant's {name} must be a string"),
            ));
            None
        }
    }
}

/// The unsaved assistant of preview mode. Its instructions are `instructions`, or else the
/// `description` (the seed's example gives only a name and a description).
pub fn preview(value: &Value, issues: &mut Vec<Issue>) -> Option<PreviewAssistant> {
    let Value::Object(fields) = value else {
        issues.push(issue(
            "previewAssistantData",
            "previewAssistantData must be an object",
        ));
        return None;
    };
    let name = match given(fields, "name") {
        Some(Value::String(name)) if !name.trim().is_empty() => Some(name.clone()),
        _ => {
            issues.push(issue(
                "previewAssistantData.name",
                "The preview assistant's name is required!",
            ));
            None
        }
    };
    let description = preview_text(fields, "description", issues);
    let instructions = preview_text(fields, "instructions", issues);
    let model = match given(fields, "model") {
        None => Some("builtin".to_owned()),
        Some(Value::String(model)) if ModelSpec::parse(model).is_some() => Some(model.clone()),
        Some(_) => {
            issues.push(issue(
                "previewAssistantData.model",
                "The preview assistant's model must be \"builtin\" or \"openai/<model-name>\"",
            ));
            None
        }
    };
    let (description, instructions) = (description?, instructions?);
    Some(PreviewAssistant {
        name: name?,
        instructions: if instructions.trim().is_empty() {
            description
        } else {
            instructions
        },
        model: model?,
    })
}
