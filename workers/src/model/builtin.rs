//! The built-in offline provider: no network, deterministic. It answers the newest user message
//! with the sentence of its context (instructions, knowledge, what the user said earlier) that
//! shares the most words with the question, and says so plainly when nothing matches. Its own
//! earlier answers are not sources: they were derived from the same context. It streams
//! its answer word by word, optionally paced to simulate a model.

use std::collections::HashSet;
use std::time::Duration;

use confab_contract::{Role, Usage};

use super::{ChatMessage, ModelEvent, ModelRequest, ModelStream, Provider};
use crate::tokens::estimate_tokens;

pub struct Builtin {
    token_delay: Duration,
}

impl Builtin {
    pub fn new(token_delay: Duration) -> Self {
        Self { token_delay }
    }
}

impl Provider for Builtin {
    fn stream(&self, request: ModelRequest) -> ModelStream {
        let answer = answer(&request.messages);
        let prompt_tokens = request
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content))
            .sum();
        let pieces = split_words(&answer, request.max_tokens as usize);
        let delay = self.token_delay;
        Box::pin(async_stream::stream! {
            let completion_tokens = pieces.len() as u32;
            for piece in pieces {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                yield Ok(ModelEvent::Delta(piece));
            }
            yield Ok(ModelEvent::Usage(Usage { prompt_tokens, completion_tokens }));
        })
    }
}

const STOPWORDS: &[&str] = &[
    "the", "and", "for", "are", "you", "your", "what", "how", "can", "does", "did", "with", "that",
    "this", "have", "has", "was", "were", "will", "would", "could", "should", "about", "tell",
    "please", "from", "they", "them", "there", "which", "who", "why", "when", "where", "into",
    "our", "its", "not", "any", "all", "but", "just", "more", "some", "than", "then",
];

fn terms(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

fn sentences(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(['.', '!', '?', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Pick the best-matching sentence of the context; earlier ties lose to later ones, so the most
/// recent statement of a fact wins.
fn answer(messages: &[ChatMessage]) -> String {
    let Some((question_at, question)) = messages
        .iter()
        .enumerate()
        .rev()
        .find(|(_, m)| m.role == Role::User)
    else {
        return "Hello! Ask me anything.".to_owned();
    };
    let wanted = terms(&question.content);
    let mut best: Option<(usize, &str, Role)> = None;
    let sources = messages[..question_at]
        .iter()
        .filter(|m| m.role != Role::Assistant);
    for message in sources {
        for sentence in sentences(&message.content) {
            let score = terms(sentence).intersection(&wanted).count();
            if score > 0 && best.is_none_or(|(s, _, _)| score >= s) {
                best = Some((score, sentence, message.role));
            }
        }
    }
    match best {
        Some((_, sentence, Role::User)) => format!("You told me earlier: \"{sentence}\""),
        Some((_, sentence, _)) => sentence.to_owned(),
        None => format!(
            "I have no information on that yet. You asked: \"{}\"",
            question.content.trim()
        ),
    }
}

/// Split into word-sized pieces, each carrying its leading whitespace, at most `limit` of them.
fn split_words(text: &str, limit: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_whitespace() && !current.trim().is_empty() {
            pieces.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces.truncate(limit.max(1));
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, content: &str) -> ChatMessage {
        ChatMessage {
            role,
            content: content.into(),
        }
    }

    #[test]
    fn answers_from_the_instructions_sentence_that_matches_the_question() {
        let messages = [
            msg(
                Role::System,
                "You are a shop assistant. Our business hours are 9 to 17, Monday to Friday.",
            ),
            msg(Role::User, "What are your business hours?"),
        ];
        assert_eq!(
            answer(&messages),
            "Our business hours are 9 to 17, Monday to Friday."
        );
    }

    #[test]
    fn recalls_what_the_user_said_in_an_earlier_turn() {
        let messages = [
            msg(Role::User, "My name is Ada."),
            msg(Role::Assistant, "Nice to meet you."),
            msg(Role::User, "What is my name?"),
        ];
        assert_eq!(
            answer(&messages),
            "You told me earlier: \"My name is Ada.\""
        );
    }

    #[test]
    fn its_own_earlier_answers_are_not_sources() {
        let messages = [
            msg(Role::User, "My favourite colour is teal."),
            msg(Role::Assistant, "You said your favourite colour is teal."),
            msg(Role::User, "Which colour is my favourite?"),
        ];
        assert_eq!(
            answer(&messages),
            "You told me earlier: \"My favourite colour is teal.\""
        );
    }

    #[test]
    fn says_it_has_no_information_when_nothing_matches() {
        let messages = [msg(Role::User, "Quantum chromodynamics?")];
        assert!(answer(&messages).starts_with("I have no information on that yet."));
    }

    #[test]
    fn split_words_keeps_every_character_in_order() {
        let text = "Hello  there,\nfriend! ";
        assert_eq!(split_words(text, 100).concat(), text);
        assert_eq!(split_words(text, 2), vec!["Hello", "  there,"]);
    }
}
