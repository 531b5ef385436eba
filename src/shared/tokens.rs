//! The token estimate: one token per four bytes of UTF-8, rounded up, plus one per message for
//! the role framing. Tokenizers of the GPT family average about four bytes of English per token;
//! the estimate errs high on short words and low on CJK text. It counts what is stored before
//! its model is known (messages, passages) and the context of models whose tokenizer is not
//! known; a turn for a known OpenAI family is counted by its own tokenizer
//! (`workers/src/tokenizer.rs`).

pub fn estimate_tokens(text: &str) -> u32 {
    (text.len() as u32).div_ceil(4) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_grows_with_text_and_is_never_zero() {
        assert_eq!(estimate_tokens(""), 1);
        assert_eq!(estimate_tokens("abcd"), 2);
        assert_eq!(estimate_tokens("abcde"), 3);
    }
}
