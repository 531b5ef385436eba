//! Running summaries of long conversations. When older turns no longer fit a turn's context,
//! they are folded into the conversation's summary, which later contexts include instead. This
//! runs after the turn is answered and acked, so it never delays a reply; if it fails or the
//! worker dies, the next long turn tries again.

use deadpool_postgres::Pool;
use futures_util::StreamExt;
use tracing::{info, warn};

use crate::model::{ChatMessage, ModelEvent, ModelRequest, Models};
use confab_contract::Role;
use confab_shared::ModelSpec;
use confab_shared::tokens::estimate_tokens;

/// A summary is kept to about this many tokens.
pub const SUMMARY_TOKENS: u32 = 400;

/// Fold the turns after the current summary and before `before_pk` into the summary.
pub async fn refresh(
    pool: Pool,
    models: Models,
    spec: ModelSpec,
    conversation_pk: i64,
    before_pk: i64,
) {
    if let Err(e) = try_refresh(&pool, &models, &spec, conversation_pk, before_pk).await {
        warn!(error = %e, conversation_pk, "summary refresh failed; the next turn retries");
    }
}

async fn try_refresh(
    pool: &Pool,
    models: &Models,
    spec: &ModelSpec,
    conversation_pk: i64,
    before_pk: i64,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let client = pool.get().await?;
    let (summary, upto): (String, i64) = client
        .query_one(
            "SELECT summary, summary_upto_pk FROM conversations WHERE pk = $1",
            &[&conversation_pk],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))?;
    let rows = client
        .query(
            "SELECT pk, role, content FROM messages WHERE conversation_pk = $1 \
               AND pk > $2 AND pk < $3 AND status = 'complete' ORDER BY pk",
            &[&conversation_pk, &upto, &before_pk],
        )
        .await?;
    let Some(last_pk) = rows.last().map(|row| row.get::<_, i64>(0)) else {
        return Ok(());
    };
    let turns: Vec<(String, String)> = rows.iter().map(|row| (row.get(1), row.get(2))).collect();
    drop(client);
    let new_summary = match spec {
        ModelSpec::Builtin => extractive(&summary, &turns),
        ModelSpec::OpenAi(_) => by_model(models, spec, &summary, &turns).await?,
    };
    let client = pool.get().await?;
    // Only forward: a slower concurrent refresh must not replace a newer summary.
    client
        .execute(
            "UPDATE conversations SET summary = $2, summary_upto_pk = $3 \
             WHERE pk = $1 AND summary_upto_pk < $3",
            &[&conversation_pk, &new_summary, &last_pk],
        )
        .await?;
    info!(
        conversation_pk,
        upto_pk = last_pk,
        "conversation summary refreshed"
    );
    Ok(())
}

fn first_sentence(text: &str) -> &str {
    let text = text.trim();
    match text.find(['.', '!', '?', '\n']) {
        Some(end) => &text[..=end],
        None => text,
    }
}

/// The built-in summary: the previous summary, then each turn's first sentence, keeping the
/// newest part when it grows past [`SUMMARY_TOKENS`].
pub fn extractive(previous: &str, turns: &[(String, String)]) -> String {
    let mut summary = previous.trim().to_owned();
    for (role, content) in turns {
        let who = if role == "user" { "User" } else { "Assistant" };
        if !summary.is_empty() {
            summary.push(' ');
        }
        summary.push_str(&format!("{who}: {}", first_sentence(content).trim()));
    }
    while estimate_tokens(&summary) > SUMMARY_TOKENS {
        // Drop the oldest clause (up to the next "User:"/"Assistant:" marker, or a quarter).
        let cut = summary[1..]
            .find(" User: ")
            .or_else(|| summary[1..].find(" Assistant: "))
            .map(|i| i + 2)
            .unwrap_or(summary.len() / 4);
        let mut cut = cut.min(summary.len());
        while !summary.is_char_boundary(cut) {
            cut += 1;
        }
        summary = summary[cut..].trim_start().to_owned();
    }
    summary
}

#[tracing::instrument(
    name = "model call",
    skip_all,
    fields(model = %spec.model_name(), purpose = "summary")
)]
async fn by_model(
    models: &Models,
    spec: &ModelSpec,
    previous: &str,
    turns: &[(String, String)],
) -> Result<String, crate::model::ModelError> {
    let mut transcript = String::new();
    if !previous.is_empty() {
        transcript.push_str(&format!("Summary so far: {previous}\n\n"));
    }
    for (role, content) in turns {
        transcript.push_str(&format!("{role}: {content}\n"));
    }
    let request = ModelRequest {
        model: spec.model_name().to_owned(),
        messages: vec![
            ChatMessage::text(
                Role::System,
                format!(
                    "Summarise this conversation for the assistant's memory in at most \
                     {SUMMARY_TOKENS} tokens: keep facts about the user, decisions and open \
                     questions. Answer with the summary only."
                ),
            ),
            ChatMessage::text(Role::User, transcript),
        ],
        passages: Vec::new(),
        max_tokens: SUMMARY_TOKENS,
        sampling: Default::default(),
        continues: None,
        tools: Default::default(),
    };
    let mut stream = models.provider(spec).stream(request);
    let mut summary = String::new();
    while let Some(event) = stream.next().await {
        if let ModelEvent::Delta(text) = event? {
            summary.push_str(&text);
        }
    }
    Ok(summary.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extractive_summary_keeps_first_sentences_and_stays_short() {
        let turns = vec![
            (
                "user".to_owned(),
                "My name is Ada. I live in Lisbon.".to_owned(),
            ),
            (
                "assistant".to_owned(),
                "Nice to meet you! How can I help?".to_owned(),
            ),
        ];
        assert_eq!(
            extractive("", &turns),
            "User: My name is Ada. Assistant: Nice to meet you!"
        );
        let long: Vec<(String, String)> = (0..500)
            .map(|i| ("user".to_owned(), format!("Fact number {i} is here.")))
            .collect();
        let summary = extractive("", &long);
        assert!(estimate_tokens(&summary) <= SUMMARY_TOKENS);
        assert!(
            summary.ends_with("Fact number 499 is here."),
            "the newest facts stay"
        );
    }
}
