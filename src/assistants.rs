//! Assistants: stored configurations that answer chat turns, addressed by id or by a slug unique
//! within their tenant.

use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct Assistant {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub instructions: String,
    pub model: String,
    pub deployed: bool,
}

/// A validated new assistant.
#[derive(Debug, Clone)]
pub struct NewAssistant {
    pub name: String,
    pub slug: String,
    pub instructions: String,
    pub model: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AssistantError {
    #[error("an assistant with slug '{0}' already exists")]
    SlugTaken(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

const COLUMNS: &str = "id, name, slug, instructions, model, deployed";

fn from_row(row: &tokio_postgres::Row) -> Assistant {
    Assistant {
        id: row.get(0),
        name: row.get(1),
        slug: row.get(2),
        instructions: row.get(3),
        model: row.get(4),
        deployed: row.get(5),
    }
}

/// The slug a name gets when none is given: lowercase, words joined by hyphens
/// ("Customer Support" -> "customer-support").
pub fn slug_from_name(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-')
        .chars()
        .take(64)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

/// Whether `slug` is lowercase letters and digits in hyphen-separated words, at most 64 long.
pub fn is_valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 64
        && slug.split('-').all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

pub async fn create(
    client: &impl GenericClient,
    tenant_id: Uuid,
    new: &NewAssistant,
) -> Result<Assistant, AssistantError> {
    let row = client
        .query_opt(
            &format!(
                "INSERT INTO assistants (id, tenant_id, name, slug, instructions, model) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, slug) DO NOTHING \
                 RETURNING {COLUMNS}"
            ),
            &[
                &Uuid::now_v7(),
                &tenant_id,
                &new.name,
                &new.slug,
                &new.instructions,
                &new.model,
            ],
        )
        .await?;
    row.map(|row| from_row(&row))
        .ok_or_else(|| AssistantError::SlugTaken(new.slug.clone()))
}

pub async fn by_slug(
    client: &impl GenericClient,
    tenant_id: Uuid,
    slug: &str,
) -> Result<Option<Assistant>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM assistants WHERE tenant_id = $1 AND slug = $2"),
            &[&tenant_id, &slug],
        )
        .await?;
    Ok(row.map(|row| from_row(&row)))
}

pub async fn by_id(
    client: &impl GenericClient,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Option<Assistant>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM assistants WHERE tenant_id = $1 AND id = $2"),
            &[&tenant_id, &id],
        )
        .await?;
    Ok(row.map(|row| from_row(&row)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_seed_examples() {
        assert_eq!(slug_from_name("Customer Support"), "customer-support");
        assert_eq!(slug_from_name("Sales Bot"), "sales-bot");
        assert_eq!(slug_from_name("  ¡Hola, Señor!  "), "hola-se-or");
        assert_eq!(slug_from_name("!!!"), "");
    }

    #[test]
    fn slug_validation_rejects_empty_words_and_uppercase() {
        assert!(is_valid_slug("support-agent"));
        assert!(is_valid_slug("a1"));
        assert!(!is_valid_slug("Support"));
        assert!(!is_valid_slug("a--b"));
        assert!(!is_valid_slug("-a"));
        assert!(!is_valid_slug(""));
    }
}
