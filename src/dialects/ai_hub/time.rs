//! RFC 3339 timestamps to and from milliseconds since the Unix epoch, by hand: the dialect needs
//! only this one format, not a date library. Parsing accepts what clients send (`Z` or a numeric
//! offset, any fraction of a second, as JavaScript's `toISOString()` produces); formatting always
//! writes UTC with milliseconds, as the management API shows times.

const MS_PER_DAY: i64 = 86_400_000;

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` after 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The number written by `digits` (ASCII digits only; no sign, no spaces).
fn number(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
}

/// Milliseconds of a fraction of a second written after the `.` (extra digits are truncated).
fn fraction_ms(digits: &[u8]) -> Option<i64> {
    number(digits)?;
    let mut ms = 0;
    for place in 0..3 {
        ms = ms * 10 + digits.get(place).map_or(0, |d| i64::from(d - b'0'));
    }
    Some(ms)
}

/// The offset east of UTC, in minutes, of an RFC 3339 zone (`Z`, `+02:00`, `-05:30`).
fn offset_minutes(zone: &[u8]) -> Option<i64> {
    match zone {
        b"Z" | b"z" => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = number(&[*h1, *h2])?;
            let minutes = number(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 60 + minutes;
            Some(if *sign == b'-' { -offset } else { offset })
        }
        _ => None,
    }
}

/// Milliseconds since the epoch of an RFC 3339 date-time such as `2024-01-20T15:30:00Z` or
/// `2024-01-20T15:30:00.123+01:00`; `None` if it is not one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let year = number(&bytes[0..4])?;
    let month = number(&bytes[5..7])?;
    let day = number(&bytes[8..10])?;
    let hour = number(&bytes[11..13])?;
    let minute = number(&bytes[14..16])?;
    // RFC 3339 allows a leap second (:60); it is counted as the last millisecond of its minute.
    let (second, leap) = match number(&bytes[17..19])? {
        60 => (59, 999),
        second => (second, 0),
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut rest = &bytes[19..];
    let mut ms = leap;
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let end = after_dot
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(after_dot.len());
        ms = ms.max(fraction_ms(&after_dot[..end])?);
        rest = &after_dot[end..];
    }
    let offset = offset_minutes(rest)?;
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset * 60;
    Some(seconds * 1000 + ms)
}

/// RFC 3339 in UTC with milliseconds, e.g. `2024-01-20T15:30:05.000Z`.
pub fn format_rfc3339(ms_since_epoch: i64) -> String {
    let (year, month, day) = civil_from_days(ms_since_epoch.div_euclid(MS_PER_DAY));
    let in_day = ms_since_epoch.rem_euclid(MS_PER_DAY);
    let (seconds, ms) = (in_day / 1000, in_day % 1000);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
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
            "2024-01-20 15:30:00Z",
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
    }
}
