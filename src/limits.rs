//! Rate limits: a token bucket per API key and per user, checked in `dispatch` right after
//! authentication, answered `429` with `Retry-After` when empty.

use crate::error::ApiError;
use std::collections::HashMap;
use std::sync::Mutex;

/// The most buckets kept; past it, buckets that have refilled (and so hold no state worth
/// keeping) are dropped.
const MAX_BUCKETS: usize = 100_000;

/// A rate: `per_second` sustained, up to `burst` at once. Zero means no limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    pub const UNLIMITED: Rate = Rate {
        per_second: 0.0,
        burst: 0.0,
    };

    /// Parses `PER_SECOND[,BURST]` (`0` for no limit; the burst defaults to one second's worth).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let mut parts = text.split(',').map(str::trim);
        let num = |s: Option<&str>| -> Result<Option<f64>, String> {
            match s.filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => s
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .map(Some)
                    .ok_or_else(|| format!("{s:?} is not a non-negative number")),
            }
        };
        let per_second = num(parts.next())?.unwrap_or(0.0);
        let burst = num(parts.next())?
            .unwrap_or(per_second)
            .max(if per_second > 0.0 { 1.0 } else { 0.0 });
        Ok(Rate { per_second, burst })
    }
}

/// Whose bucket a request takes from: an API key's (by key id) or a user's (by user id).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Key(String),
    User(String),
}

/// The buckets for API keys and for users.
pub struct RateLimits {
    pub per_key: Rate,
    pub per_user: Rate,
    buckets: Mutex<HashMap<Subject, (f64, i64)>>,
}

impl RateLimits {
    pub fn new(per_key: Rate, per_user: Rate) -> RateLimits {
        RateLimits {
            per_key,
            per_user,
            buckets: Mutex::default(),
        }
    }

    /// Takes one token from the bucket of `subject`, or says how many whole seconds until one
    /// is there. Free (no clock, no allocation) when the subject's kind has no limit.
    pub fn admit(&self, subject: &Subject) -> Result<(), ApiError> {
        if self.rate_of(subject).per_second <= 0.0 {
            return Ok(());
        }
        self.admit_at(subject, crate::ids::now_ms())
    }

    fn rate_of(&self, subject: &Subject) -> Rate {
        match subject {
            Subject::Key(_) => self.per_key,
            Subject::User(_) => self.per_user,
        }
    }

    /// [`RateLimits::admit`] at a given time.
    pub fn admit_at(&self, subject: &Subject, now_ms: i64) -> Result<(), ApiError> {
        let rate = self.rate_of(subject);
        if rate.per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(subject) {
            buckets.retain(|k, (tokens, at)| {
                let r = self.rate_of(k);
                *tokens + (now_ms - *at) as f64 / 1000.0 * r.per_second < r.burst
            });
        }
        let (tokens, at) = buckets.entry(subject.clone()).or_insert((rate.burst, now_ms));
        *tokens = (*tokens + (now_ms - *at).max(0) as f64 / 1000.0 * rate.per_second).min(rate.burst);
        *at = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - *tokens) / rate.per_second).ceil().max(1.0) as u64;
        Err(ApiError::TooManyRequests(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let l = RateLimits::new(Rate::parse("2,3").unwrap(), Rate::UNLIMITED);
        let (a, b, u) = (
            Subject::Key("a".into()),
            Subject::Key("b".into()),
            Subject::User("u".into()),
        );
        for _ in 0..3 {
            l.admit_at(&a, 0).unwrap();
        }
        assert!(matches!(l.admit_at(&a, 0), Err(ApiError::TooManyRequests(1))));
        l.admit_at(&b, 0).expect("another key has its own bucket");
        l.admit_at(&a, 500).expect("half a second refills one token at 2/s");
        assert!(l.admit_at(&a, 500).is_err());
        for _ in 0..1000 {
            l.admit_at(&u, 0).expect("users are not limited here");
        }
    }

    #[test]
    fn rates_parse_and_bad_ones_are_refused() {
        assert_eq!(Rate::parse("0").unwrap(), Rate::UNLIMITED);
        assert_eq!(
            Rate::parse("5").unwrap(),
            Rate {
                per_second: 5.0,
                burst: 5.0
            }
        );
        assert_eq!(
            Rate::parse("0.5, 10").unwrap(),
            Rate {
                per_second: 0.5,
                burst: 10.0
            }
        );
        assert!(Rate::parse("fast").is_err());
        assert!(Rate::parse("-1").is_err());
    }
}
