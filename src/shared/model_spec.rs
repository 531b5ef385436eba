//! How an assistant's `model` setting is read: the management API validates it with this, the
//! worker picks its provider and context window by it.

/// What an assistant's `model` setting names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    Builtin,
    OpenAi(String),
}

impl ModelSpec {
    pub fn parse(setting: &str) -> Option<ModelSpec> {
        match setting {
            "builtin" => Some(ModelSpec::Builtin),
            other => other
                .strip_prefix("openai/")
                .filter(|name| !name.trim().is_empty())
                .map(|name| ModelSpec::OpenAi(name.to_owned())),
        }
    }

    pub fn model_name(&self) -> &str {
        match self {
            ModelSpec::Builtin => "builtin",
            ModelSpec::OpenAi(name) => name,
        }
    }

    /// Context window in tokens. Known OpenAI families get theirs; anything else served over
    /// the OpenAI protocol (vLLM, Ollama, llama.cpp) gets `unknown`, the deployment's setting
    /// (`CONFAB_DEFAULT_CONTEXT_TOKENS`), as does the built-in model.
    pub fn context_window(&self, unknown: u32) -> u32 {
        match self {
            ModelSpec::Builtin => unknown,
            ModelSpec::OpenAi(name) => {
                let name = name.as_str();
                if ["gpt-4o", "gpt-4.1", "gpt-4-turbo"]
                    .iter()
                    .any(|family| name.starts_with(family))
                {
                    128_000
                } else if name.starts_with("gpt-3.5") {
                    16_385
                } else {
                    unknown
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_settings_parse_to_providers() {
        assert_eq!(ModelSpec::parse("builtin"), Some(ModelSpec::Builtin));
        assert_eq!(
            ModelSpec::parse("openai/gpt-4o-mini"),
            Some(ModelSpec::OpenAi("gpt-4o-mini".into()))
        );
        assert_eq!(ModelSpec::parse("openai/"), None);
        assert_eq!(ModelSpec::parse("gpt-4"), None);
    }
}
