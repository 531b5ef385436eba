//! List endpoints page with `?limit=N&cursor=C` (newest first) and answer
//! `{"data": [...], "next_cursor": C | null}`. Cursors are opaque to clients.

use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

fn unknown_cursor() -> ApiError {
    ApiError::invalid(
        "cursor",
        "unknown cursor; pass back a next_cursor from a previous page",
    )
}

#[derive(Debug, Clone)]
pub struct Page {
    pub limit: i64,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = match &self.limit {
            None => DEFAULT_LIMIT,
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid("limit", format!("limit must be between 1 and {MAX_LIMIT}"))
                })?,
        };
        Ok(Page {
            limit,
            cursor: self.cursor.clone().filter(|c| !c.is_empty()),
        })
    }
}

impl Page {
    /// The cursor of a list ordered by UUIDv7 ids.
    pub fn uuid_cursor(&self) -> Result<Option<uuid::Uuid>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| uuid::Uuid::parse_str(c).map_err(|_| unknown_cursor()))
            .transpose()
    }

    /// The cursor of a list ordered by an internal number.
    pub fn numeric_cursor(&self) -> Result<Option<i64>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| c.parse().map_err(|_| unknown_cursor()))
            .transpose()
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// The page body from up to `fetch()` items and a function giving an item's cursor.
    pub fn body<T: serde::Serialize>(
        &self,
        mut items: Vec<T>,
        cursor_of: impl Fn(&T) -> String,
    ) -> Value {
        let more = items.len() as i64 > self.limit;
        items.truncate(self.limit as usize);
        let next = if more {
            items.last().map(cursor_of)
        } else {
            None
        };
        json!({"data": items, "next_cursor": next})
    }
}
