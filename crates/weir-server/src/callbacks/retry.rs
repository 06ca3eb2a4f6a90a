//! When to retry a callback the receiver did not accept.
//!
//! Exponential backoff from `initial_delay`, doubling up to `max_delay`,
//! until `give_up_after` has passed since the first attempt; then the event
//! is recorded as failed. The defaults retry for at least one hour.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            give_up_after: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again this long after the failed attempt.
    RetryIn(Duration),
    /// Stop: record the event as failed.
    GiveUp,
}

impl RetryPolicy {
    /// After `failed_attempts` failures (1 for the first), with
    /// `since_first_attempt` elapsed since the first attempt.
    pub fn after_failure(
        &self,
        failed_attempts: u32,
        since_first_attempt: Duration,
    ) -> RetryDecision {
        let exponent = failed_attempts.saturating_sub(1).min(31);
        let delay = self
            .initial_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        // Keep retrying until the next attempt would start after the window.
        if since_first_attempt.saturating_add(delay) > self.give_up_after {
            if since_first_attempt >= self.give_up_after {
                return RetryDecision::GiveUp;
            }
            // One last attempt exactly at the end of the window.
            return RetryDecision::RetryIn(self.give_up_after - since_first_attempt);
        }
        RetryDecision::RetryIn(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_exponentially_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let delays: Vec<Duration> = (1..=12)
            .map(|n| match policy.after_failure(n, Duration::ZERO) {
                RetryDecision::RetryIn(d) => d,
                RetryDecision::GiveUp => panic!("gave up early"),
            })
            .collect();
        assert_eq!(delays[0], Duration::from_secs(1));
        assert_eq!(delays[1], Duration::from_secs(2));
        assert_eq!(delays[5], Duration::from_secs(32));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(300)));
        assert_eq!(delays[11], Duration::from_secs(300));
    }

    #[test]
    fn keeps_trying_for_at_least_an_hour_then_gives_up() {
        let policy = RetryPolicy::default();
        let mut elapsed = Duration::ZERO;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match policy.after_failure(attempts, elapsed) {
                RetryDecision::RetryIn(d) => elapsed += d,
                RetryDecision::GiveUp => break,
            }
            assert!(attempts < 1000, "never gave up");
        }
        assert!(
            elapsed >= Duration::from_secs(3600),
            "gave up after {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(3600 + 300));
    }
}
