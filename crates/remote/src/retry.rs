//! When and how long to wait before trying an upstream request again.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Bounded retries with capped exponential backoff and jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first one.
    pub max_retries: u32,
    /// Wait before the first retry; doubles with each further retry.
    pub backoff_base: Duration,
    /// Longest backoff wait.
    pub backoff_cap: Duration,
    /// Longest wait a `Retry-After` header can ask for (a misbehaving server must not park us).
    pub retry_after_cap: Duration,
}

impl RetryPolicy {
    /// The production defaults: 250 ms · 2^n, at most 8 s; `Retry-After` honoured up to 30 s.
    pub fn new(max_retries: u32) -> Self {
        Self {
            max_retries,
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(8),
            retry_after_cap: Duration::from_secs(30),
        }
    }

    /// How long to wait before retry number `retry` (0 = the first retry). A server's
    /// `Retry-After` wins over the backoff, since it knows its own load.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.retry_after_cap);
        }
        let exp = self
            .backoff_base
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.backoff_cap);
        // Jitter in [50%, 100%] keeps many clients that failed together from retrying in step.
        exp.mul_f64(0.5 + 0.5 * unit_random())
    }
}

/// A `Retry-After` value in seconds (integer or decimal). HTTP dates are rare from APIs and are
/// ignored, which falls back to the backoff.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// A number in [0, 1) good enough for jitter: std's randomly keyed hasher, no RNG dependency.
fn unit_random() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy::new(10);
        for retry in 0..10 {
            let full = Duration::from_millis(250)
                .saturating_mul(1 << retry)
                .min(Duration::from_secs(8));
            let wait = policy.delay(retry, None);
            assert!(wait >= full / 2 && wait <= full, "retry {retry}: {wait:?}");
        }
        assert!(policy.delay(40, None) <= Duration::from_secs(8));
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        let policy = RetryPolicy::new(3);
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn jitter_is_in_range() {
        for _ in 0..100 {
            let r = unit_random();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
