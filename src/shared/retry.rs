//! The one retry policy of confab's processes: pauses that double from a first pause up to a
//! ceiling, on backon's exponential backoff, for every loop that tries again (the ingress's and
//! the worker's broker sessions, a turn's database steps while the database is down, a channel
//! platform's sends, `confab kb import`'s calls), and a pause the other side asked for
//! (`Retry-After`) in place of the computed one.
//!
//! No jitter: the pauses are short and few processes retry at once, and a fixed sequence keeps
//! the reconnection times the reliability tests rely on.

use std::time::{Duration, SystemTime};

pub use backon::Retryable;
use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// How a loop pauses between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    first: Duration,
    ceiling: Duration,
    /// Tries in all, the first included; `None`: until the caller stops.
    tries: Option<u32>,
}

impl Policy {
    /// A broker session that ended: connect again soon, then less and less often.
    pub const BROKER_SESSION: Policy =
        Policy::doubling(Duration::from_millis(200), Duration::from_secs(5));
    /// A database that is unavailable: a turn waits for it within its deadline.
    pub const DATABASE: Policy =
        Policy::doubling(Duration::from_millis(100), Duration::from_secs(2));

    /// Pauses of `first`, doubled after each try up to `ceiling`, without end.
    pub const fn doubling(first: Duration, ceiling: Duration) -> Self {
        Self {
            first,
            ceiling,
            tries: None,
        }
    }

    /// At most `tries` tries in all (at least one).
    pub const fn tries(self, tries: u32) -> Self {
        Self {
            tries: Some(if tries == 0 { 1 } else { tries }),
            ..self
        }
    }

    /// The policy as backon's builder, for `Retryable::retry`.
    pub fn backoff(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::new()
            .with_factor(2.0)
            .with_min_delay(self.first)
            .with_max_delay(self.ceiling);
        match self.tries {
            Some(tries) => builder.with_max_times(tries as usize - 1),
            None => builder.without_max_times(),
        }
    }

    /// The pauses one after another, for a loop that is not one call retried (a session
    /// supervisor starts again from the first pause once a session has lasted).
    pub fn pauses(&self) -> Pauses {
        Pauses {
            inner: self.backoff().build(),
            ceiling: self.ceiling,
        }
    }
}

/// The pauses of a [`Policy`] without end: the ceiling once a limited policy is spent.
pub struct Pauses {
    inner: <ExponentialBuilder as BackoffBuilder>::Backoff,
    ceiling: Duration,
}

impl Pauses {
    pub fn next_pause(&mut self) -> Duration {
        self.inner.next().unwrap_or(self.ceiling)
    }
}

/// A failure that may say when to try again.
pub trait RetryAfter {
    fn retry_after(&self) -> Option<Duration>;
}

/// The pause before the next try, for backon's `adjust`: the one the failure asked for in place
/// of the policy's, and none once the policy is spent.
pub fn honour_retry_after<E: RetryAfter>(error: &E, pause: Option<Duration>) -> Option<Duration> {
    pause.map(|pause| error.retry_after().unwrap_or(pause))
}

/// An HTTP response's `Retry-After` (RFC 9110 §10.2.3): seconds, or a date (a past one is no
/// pause).
pub fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn pauses_double_up_to_the_ceiling_and_stay_there() {
        let mut pauses = Policy::BROKER_SESSION.pauses();
        // backon multiplies in f32 seconds: a few nanoseconds off, which no sleep notices.
        let seen: Vec<_> = (0..7).map(|_| pauses.next_pause().as_millis()).collect();
        assert_eq!(seen, [200, 400, 800, 1600, 3200, 5000, 5000]);
    }

    #[test]
    fn a_limited_policy_pauses_one_time_fewer_than_it_tries() {
        let policy = Policy::doubling(MS * 10, MS * 25).tries(4);
        let seen: Vec<_> = policy.backoff().build().map(|p| p.as_millis()).collect();
        assert_eq!(seen, [10, 20, 25]);
        assert_eq!(
            Policy::doubling(MS, MS).tries(0).backoff().build().count(),
            0
        );
    }

    struct Asked(Option<Duration>);
    impl RetryAfter for Asked {
        fn retry_after(&self) -> Option<Duration> {
            self.0
        }
    }

    #[test]
    fn a_pause_asked_for_replaces_the_policys_but_not_its_end() {
        let asked = Asked(Some(MS * 7));
        assert_eq!(honour_retry_after(&asked, Some(MS * 100)), Some(MS * 7));
        assert_eq!(honour_retry_after(&asked, None), None);
        assert_eq!(
            honour_retry_after(&Asked(None), Some(MS * 100)),
            Some(MS * 100)
        );
    }

    #[tokio::test]
    async fn retry_tries_again_after_the_pause_asked_for() {
        let mut tries = 0;
        let started = tokio::time::Instant::now();
        let result: Result<u32, Asked> = (|| {
            tries += 1;
            let answer = if tries < 3 {
                Err(Asked(Some(MS * 20)))
            } else {
                Ok(tries)
            };
            async move { answer }
        })
        .retry(
            Policy::doubling(Duration::from_secs(60), Duration::from_secs(60))
                .tries(5)
                .backoff(),
        )
        .adjust(honour_retry_after)
        .await;
        assert_eq!(result.ok(), Some(3));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn retry_after_headers_are_seconds_or_a_date() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_header(&headers), None);
        headers.insert(RETRY_AFTER, " 3 ".parse().expect("value"));
        assert_eq!(retry_after_header(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().expect("value"),
        );
        assert_eq!(retry_after_header(&headers), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        headers.insert(RETRY_AFTER, later.parse().expect("value"));
        let pause = retry_after_header(&headers).expect("a date");
        assert!(pause > Duration::from_secs(100) && pause <= Duration::from_secs(120));
        headers.insert(RETRY_AFTER, "soon".parse().expect("value"));
        assert_eq!(retry_after_header(&headers), None);
    }
}
