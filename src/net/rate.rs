//! Per-connection inbound byte rate: a token bucket that tells the connection task how
//! long to stop reading. Not reading lets TCP flow control push back on the peer; no
//! stanza is ever dropped for going too fast.

use crate::time::Millis;

pub struct TokenBucket {
    /// Bytes per second, and the most that may be taken at once above the rate.
    rate: u64,
    burst: i64,
    /// Bytes available now; negative after a burst, until refilled.
    tokens: i64,
    last: Millis,
}

impl TokenBucket {
    pub fn new(rate: usize, burst: usize, now: Millis) -> TokenBucket {
        let burst = i64::try_from(burst).unwrap_or(i64::MAX);
        TokenBucket {
            rate: (rate as u64).max(1),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Millis) {
        let elapsed = now.saturating_sub(self.last);
        self.last = now;
        let added = i64::try_from(elapsed.saturating_mul(self.rate) / 1000).unwrap_or(i64::MAX);
        self.tokens = self.tokens.saturating_add(added).min(self.burst);
    }

    /// Records `n` bytes read at `now`; returns how many milliseconds to wait before the
    /// next read (0: read on).
    pub fn take(&mut self, n: usize, now: Millis) -> u64 {
        self.refill(now);
        self.tokens = self
            .tokens
            .saturating_sub(i64::try_from(n).unwrap_or(i64::MAX));
        if self.tokens >= 0 {
            return 0;
        }
        let owed = self.tokens.unsigned_abs();
        (owed * 1000).div_ceil(self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_pass_then_the_rate_is_enforced() {
        let mut b = TokenBucket::new(1000, 4000, Millis(0));
        assert_eq!(b.take(4000, Millis(0)), 0, "the burst passes at once");
        assert_eq!(
            b.take(500, Millis(0)),
            500,
            "then 500 bytes owe half a second"
        );
        assert_eq!(b.take(0, Millis(500)), 0, "repaid");
        assert_eq!(
            b.take(1000, Millis(1500)),
            0,
            "one second refills 1000 bytes"
        );
    }

    #[test]
    fn sustained_rate_converges() {
        let mut b = TokenBucket::new(32 * 1024, 128 * 1024, Millis(0));
        let mut now = 0u64;
        let mut total = 0u64;
        for _ in 0..10_000 {
            let wait = b.take(4096, Millis(now));
            total += 4096;
            now += wait;
        }
        let rate = total * 1000 / now.max(1);
        assert!((32 * 1024..34 * 1024).contains(&rate), "{rate} bytes/s");
    }
}
