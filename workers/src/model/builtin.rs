//! The built-in offline provider: no network, deterministic. It answers the newest user message
//! from its context: with the best knowledge passage that shares words with the question (its
//! best sentences, citing the document), else with the sentence of the instructions, the
//! identity's memory or what the user said earlier that shares the most words with it, and says
//! plainly that it has no information when nothing matches. Its own earlier answers are not
//! sources: they were derived from the same context. It streams
//! its answer word by word (only the rest of it when it continues an answer streamed in part:
//! the same context gives the same answer), optionally paced to simulate a model: a fixed latency before the
//! first word (a model's time to first token) and a delay before each word (its token rate).

use std::collections::HashSet;
use std::time::Duration;

use confab_contract::{FinishReason, Role, Usage};

use super::provider::{ChatMessage, ModelEvent, ModelRequest, ModelStream, Provider};
use crate::knowledge::Passage;
use confab_shared::tokens::estimate_tokens;

pub struct Builtin {
    latency: Duration,
    token_delay: Duration,
}

impl Builtin {
    /// `latency` passes before the first word, `token_delay` before each word.
    pub fn new(latency: Duration, token_delay: Duration) -> Self {
        Self {
            latency,
            token_delay,
        }
    }
}

impl Provider for Builtin {
    fn stream(&self, request: ModelRequest) -> ModelStream {
        let whole = from_knowledge(&request.messages, &request.passages)
            .unwrap_or_else(|| answer(&request.messages));
        let answer = match &request.continues {
            None => whole,
            // The same context gives the same answer, whose start was streamed already.
            Some(so_far) => match whole.strip_prefix(so_far.as_str()) {
                Some(rest) => rest.to_owned(),
                None => format!("\n\n{whole}"),
            },
        };
        let prompt_tokens = request
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content))
            .sum();
        let answer = before_stop(&answer, &request.sampling.stop);
        let mut pieces = split_words(answer, usize::MAX);
        let cut_short = pieces.len() > request.max_tokens as usize;
        pieces.truncate((request.max_tokens as usize).max(1));
        let (latency, delay) = (self.latency, self.token_delay);
        Box::pin(async_stream::stream! {
            let completion_tokens = pieces.len() as u32;
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            for piece in pieces {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                yield Ok(ModelEvent::Delta(piece));
            }
            yield Ok(ModelEvent::Usage(Usage { prompt_tokens, completion_tokens }));
            if cut_short {
                yield Ok(ModelEvent::Finish(FinishReason::Length));
            }
        })
    }
}

const STOPWORDS: &[&str] = &[
    "the", "and", "for", "are", "you", "your", "what", "how", "can", "does", "did", "with", "that",
    "this", "have", "has", "was", "were", "will", "would", "could", "should", "about", "tell",
    "please", "from", "they", "them", "there", "which", "who", "why", "when", "where", "into",
    "our", "its", "not", "any", "all", "but", "just", "more", "some", "than", "then",
];

/// The content words of a text, crudely stemmed so that "charging" meets "charge" and "takes"
/// meets "take": a plural `s` dropped, then the first five letters.
fn terms(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .map(|w| {
            let w = if w.len() > 3 {
                w.strip_suffix('s').unwrap_or(&w)
            } else {
                &w
            };
            w.chars().take(5).collect()
        })
        .collect()
}

fn sentences(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(['.', '!', '?', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The question: the newest user message.
fn question(messages: &[ChatMessage]) -> Option<&str> {
    messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
}

/// Answer with the best passage that shares a word with the question: its (at most two) sentences
/// that share most words with it, in their order, and the document it came from. Passages arrive best-ranked first.
fn from_knowledge(messages: &[ChatMessage], passages: &[Passage]) -> Option<String> {
    let wanted = terms(question(messages)?);
    let passage = passages
        .iter()
        .find(|p| !terms(&format!("{} {}", p.heading, p.content)).is_disjoint(&wanted))?;
    let sentences: Vec<&str> = sentences(&passage.content).collect();
    let mut scored: Vec<(usize, usize)> = sentences
        .iter()
        .enumerate()
        .map(|(i, s)| (terms(s).intersection(&wanted).count(), i))
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut best: Vec<usize> = scored
        .iter()
        .filter(|&&(score, _)| score > 0)
        .take(2)
        .map(|&(_, i)| i)
        .collect();
    best.sort_unstable();
    // The heading may be what matched; then the passage's opening says it best.
    if best.is_empty() {
        best.push(0);
    }
    let text: Vec<&str> = best
        .iter()
        .filter_map(|&i| sentences.get(i).copied())
        .collect();
    Some(format!("{} (Source: {})", text.join(" "), passage.title))
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
/// The answer up to the first of the caller's stop sequences.
fn before_stop<'a>(answer: &'a str, stop: &[String]) -> &'a str {
    let end = stop
        .iter()
        .filter_map(|s| answer.find(s.as_str()))
        .min()
        .unwrap_or(answer.len());
    &answer[..end]
}

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
        ChatMessage::text(role, content)
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

    fn passage(title: &str, content: &str) -> Passage {
        Passage {
            document_id: uuid::Uuid::nil(),
            folder_id: uuid::Uuid::nil(),
            title: title.into(),
            heading: String::new(),
            content: content.into(),
            tokens: 10,
            score: 0.5,
        }
    }

    #[test]
    fn answers_from_the_first_matching_passage_and_cites_it() {
        let messages = [msg(Role::User, "How long do refunds take?")];
        let passages = [
            passage("Shipping", "Parcels ship daily."),
            passage(
                "Refund policy",
                "We are a friendly shop. Refunds take five business days. Returns are free.",
            ),
        ];
        assert_eq!(
            from_knowledge(&messages, &passages).as_deref(),
            Some("Refunds take five business days. (Source: Refund policy)")
        );
        assert_eq!(from_knowledge(&messages, &passages[..1]), None);
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
