//! SQL fragments shared by the ingress's data modules.

/// A `timestamptz` column rendered as RFC 3339 UTC with milliseconds, as the API shows times.
pub fn rfc3339(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
}
