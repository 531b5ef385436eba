//! How a turn's context is counted against its model's window: exactly, by the model family's
//! own tokenizer, where it is known (OpenAI's o200k_base for GPT-4o, 4.1, 5 and the o-series,
//! cl100k_base for GPT-4 and 3.5, as tiktoken maps model names), and by
//! `confab_shared::tokens::estimate_tokens` for every other model (the built-in one, and any
//! model served over the OpenAI protocol whose tokenizer tiktoken does not know).
//!
//! The tokenizers are the BPE tables tiktoken-rs compiles into the binary: nothing is fetched.
//! Each is loaded on its first use in a process: ~130 ms and ~45 MB for o200k_base, ~50 ms and
//! ~25 MB for cl100k_base (release build), so a worker that serves no OpenAI model pays nothing.
//! Counts stored with a message (`messages.tokens`, passages) stay estimates: they are written
//! before the model that will read them is known and only preselect turns in SQL; the context
//! is counted again here, exactly, before it goes to the model.

use std::sync::LazyLock;

use confab_shared::ModelSpec;
use confab_shared::tokens::estimate_tokens;
use tiktoken_rs::CoreBPE;
use tiktoken_rs::tokenizer::{Tokenizer as Family, get_tokenizer};
use tracing::warn;

/// Tokens OpenAI's chat format spends on each message besides its content (role and
/// delimiters), as OpenAI's own counting guide reckons for these families.
const FRAMING: u32 = 3;

/// The tables, parsed once per process, when first needed. The data is the crate's own, so a
/// failure to parse it is a broken build, not a bad input: counted by the estimate then.
static O200K: LazyLock<Option<CoreBPE>> = LazyLock::new(|| loaded(tiktoken_rs::o200k_base()));
static CL100K: LazyLock<Option<CoreBPE>> = LazyLock::new(|| loaded(tiktoken_rs::cl100k_base()));

fn loaded(table: Result<CoreBPE, impl std::fmt::Display>) -> Option<CoreBPE> {
    table
        .inspect_err(|e| warn!(error = %e, "tokenizer did not load; estimating instead"))
        .ok()
}

/// A model's token counter.
#[derive(Clone, Copy)]
pub struct Tokenizer(Option<&'static CoreBPE>);

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_exact() {
            "Tokenizer::Bpe"
        } else {
            "Tokenizer::Estimate"
        })
    }
}

impl Tokenizer {
    /// One token per four bytes, plus one for the framing.
    pub const ESTIMATE: Tokenizer = Tokenizer(None);

    /// The counter for the model a turn goes to.
    pub fn for_model(spec: &ModelSpec) -> Tokenizer {
        let ModelSpec::OpenAi(name) = spec else {
            return Self::ESTIMATE;
        };
        let table = match get_tokenizer(name) {
            // Harmony is o200k_base with more special tokens; plain text counts the same.
            Some(Family::O200kBase | Family::O200kHarmony) => O200K.as_ref(),
            Some(Family::Cl100kBase) => CL100K.as_ref(),
            // The completion-era families (p50k, r50k) are not chat models; their tables are
            // left out of the binary.
            _ => None,
        };
        Tokenizer(table)
    }

    pub fn is_exact(self) -> bool {
        self.0.is_some()
    }

    /// What `text` costs as one message.
    pub fn count(self, text: &str) -> u32 {
        match self.0 {
            Some(bpe) => (bpe.encode_ordinary(text).len() as u32).saturating_add(FRAMING),
            None => estimate_tokens(text),
        }
    }

    /// The longest start of `text`, cut on a character boundary, that costs at most `budget`
    /// as one message; `None` when not even an empty message fits.
    pub fn prefix(self, text: &str, budget: u32) -> Option<&str> {
        if self.count(text) <= budget {
            return Some(text);
        }
        let Some(bpe) = self.0 else {
            // One token of four bytes goes to the framing.
            let max_bytes = (budget.checked_sub(1)? as usize) * 4;
            return Some(&text[..floor_char_boundary(text, max_bytes)]);
        };
        let mut keep = budget.checked_sub(FRAMING)? as usize;
        let tokens = bpe.encode_ordinary(text);
        loop {
            // The first `keep` tokens are the first bytes of the text; a token may end inside
            // a character, so the cut goes back to the boundary before it.
            let bytes: usize = tokens[..keep.min(tokens.len())]
                .iter()
                .map(|&token| bpe.decode_bytes(&[token]).map_or(0, |b| b.len()))
                .sum();
            let cut = &text[..floor_char_boundary(text, bytes)];
            // Encoded alone, a cut can merge differently at its end: step back until it fits.
            if self.count(cut) <= budget || keep == 0 {
                return Some(cut);
            }
            keep -= 1;
        }
    }
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut end = at.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai(name: &str) -> Tokenizer {
        Tokenizer::for_model(&ModelSpec::OpenAi(name.into()))
    }

    #[test]
    fn known_openai_families_are_counted_exactly_and_the_rest_estimated() {
        assert!(openai("gpt-4o-mini").is_exact());
        assert!(openai("gpt-4").is_exact());
        assert!(!openai("llama3.1:8b").is_exact());
        assert!(!Tokenizer::for_model(&ModelSpec::Builtin).is_exact());
        // "hello world" is two tokens in both families, plus the framing.
        assert_eq!(openai("gpt-4o").count("hello world"), 2 + FRAMING);
        assert_eq!(openai("gpt-3.5-turbo").count("hello world"), 2 + FRAMING);
        assert_eq!(
            Tokenizer::ESTIMATE.count("hello world"),
            estimate_tokens("hello world")
        );
    }

    #[test]
    fn text_the_estimate_undercounts_is_counted_as_the_model_sees_it() {
        let chinese = "店铺早上九点开门，下午五点关门。".repeat(20);
        let exact = openai("gpt-4o").count(&chinese);
        assert!(exact > Tokenizer::ESTIMATE.count(&chinese), "{exact}");
    }

    #[test]
    fn a_prefix_fits_its_budget_exactly_and_never_splits_a_character() {
        let text = "Ünïcödé wörds ✓ and plain English words, 店铺早上九点开门。 ".repeat(40);
        for tokenizer in [openai("gpt-4o"), openai("gpt-4"), Tokenizer::ESTIMATE] {
            assert_eq!(tokenizer.prefix(&text, 1_000_000), Some(text.as_str()));
            for budget in [4, 5, 17, 100, 333] {
                let cut = tokenizer.prefix(&text, budget).expect("fits");
                assert!(tokenizer.count(cut) <= budget, "{tokenizer:?} {budget}");
                assert!(text.starts_with(cut));
                // Not much shorter than it could be: one more token's worth would not fit.
                assert!(tokenizer.count(cut) + 8 > budget, "{tokenizer:?} {budget}");
            }
        }
        assert_eq!(openai("gpt-4o").prefix(&text, 2), None);
        assert_eq!(Tokenizer::ESTIMATE.prefix(&text, 0), None);
    }
}
