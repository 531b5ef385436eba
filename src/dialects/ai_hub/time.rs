//! RFC 3339 timestamps to and from milliseconds since the Unix epoch (the contract's clock),
//! on the `time` crate's strict RFC 3339 parser: it takes what clients send (`Z` or a numeric
//! offset, any fraction of a second, as JavaScript's `toISOString()` produces) and refuses the
//! looser ISO 8601 forms. Formatting always writes UTC with milliseconds, as the management API
//! shows times.

use ::time::format_description::well_known::Rfc3339;
use ::time::{OffsetDateTime, PrimitiveDateTime};

const NANOS_PER_MS: i128 = 1_000_000;

/// Milliseconds since the epoch of an RFC 3339 date-time such as `2024-01-20T15:30:00Z` or
/// `2024-01-20T15:30:00.123+01:00`; `None` if it is not one. Digits past the millisecond are
/// dropped; a leap second (`23:59:60` UTC) is the last millisecond of its minute.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos().div_euclid(NANOS_PER_MS)).ok()
}

/// RFC 3339 in UTC with milliseconds, e.g. `2024-01-20T15:30:05.000Z`. An instant beyond the
/// years 0000 to 9999, which no turn has, is written as the nearest one within them.
pub fn format_rfc3339(ms_since_epoch: i64) -> String {
    let nanos = i128::from(ms_since_epoch) * NANOS_PER_MS;
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or_else(|_| {
        let edge = if ms_since_epoch < 0 {
            PrimitiveDateTime::MIN
        } else {
            PrimitiveDateTime::MAX
        };
        edge.assume_utc()
    });
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_timestamps_parse_to_their_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-01-20T15:30:00Z"),
            Some(1_705_764_600_000)
        );
        assert_eq!(
            parse_rfc3339("2024-01-20T15:30:00.123Z"),
            Some(1_705_764_600_123)
        );
        assert_eq!(
            parse_rfc3339("2024-01-20T16:30:00.1234567+01:00"),
            Some(1_705_764_600_123)
        );
        assert_eq!(
            parse_rfc3339("2024-01-20t10:00:00.5-05:30"),
            Some(1_705_764_600_500)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.999Z"), Some(-1));
    }

    #[test]
    fn anything_but_an_rfc_3339_date_time_is_refused() {
        for text in [
            "",
            "2024-01-20",
            "2024-01-20T15:30:00",
            "2024-01-20T15:30Z",
            "2024-01-20T15:30:00,5Z",
            "2024-01-20T15:30:00-05",
            "2024-01-20T15:30:60Z",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-20T24:00:00Z",
            "2024-01-20T15:30:00.Z",
            "2024-01-20T15:30:00+0100",
            "2024-01-20T15:30:00+24:00",
            "+024-01-20T15:30:00Z",
            "2024-01-20T15:30:00Zjunk",
            "2024-01-20T15:30:00ÿZ",
            "yesterday at noon, roughly",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text}");
        }
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        // RFC 3339 lets applications put a space between date and time (§5.6, NOTE).
        assert_eq!(
            parse_rfc3339("2024-01-20 15:30:00Z"),
            Some(1_705_764_600_000)
        );
    }

    #[test]
    fn a_leap_second_is_the_last_millisecond_of_its_minute() {
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z"),
            Some(1_483_228_799_999)
        );
    }

    #[test]
    fn formatting_writes_utc_with_milliseconds_and_round_trips() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(1_705_764_605_000),
            "2024-01-20T15:30:05.000Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        for ms in [0, 951_782_400_123, 1_709_164_800_000, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms));
        }
        assert_eq!(format_rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(i64::MIN), "-9999-01-01T00:00:00.000Z");
    }
}
