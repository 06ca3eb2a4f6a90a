//! Merges and throttles keyframe requests (PLI/FIR) toward a publisher.
//!
//! Many subscribers losing packets at once must not become a storm of PLIs
//! at the publisher: requests within `min_interval` of the last one sent are
//! merged into it.

use std::time::{Duration, Instant};

/// Outcome of asking for a keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeDecision {
    /// Send a request to the publisher now.
    Send,
    /// Merged into a recent request.
    Merged,
}

#[derive(Debug, Clone)]
pub struct KeyframeRequestThrottle {
    min_interval: Duration,
    last_sent: Option<Instant>,
    merged: u64,
    sent: u64,
}

impl KeyframeRequestThrottle {
    pub fn new(min_interval: Duration) -> Self {
        KeyframeRequestThrottle {
            min_interval,
            last_sent: None,
            merged: 0,
            sent: 0,
        }
    }

    pub fn request(&mut self, now: Instant) -> KeyframeDecision {
        match self.last_sent {
            Some(last) if now.saturating_duration_since(last) < self.min_interval => {
                self.merged += 1;
                KeyframeDecision::Merged
            }
            _ => {
                self.last_sent = Some(now);
                self.sent += 1;
                KeyframeDecision::Send
            }
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn merged(&self) -> u64 {
        self.merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_inside_the_interval_are_merged() {
        let start = Instant::now();
        let mut throttle = KeyframeRequestThrottle::new(Duration::from_millis(500));
        assert_eq!(throttle.request(start), KeyframeDecision::Send);
        for ms in [1, 100, 499] {
            assert_eq!(
                throttle.request(start + Duration::from_millis(ms)),
                KeyframeDecision::Merged
            );
        }
        assert_eq!(
            throttle.request(start + Duration::from_millis(500)),
            KeyframeDecision::Send
        );
        assert_eq!(throttle.sent(), 2);
        assert_eq!(throttle.merged(), 3);
    }
}
