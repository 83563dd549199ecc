//! Rate limits for relays: a token bucket (frames per second with a burst) and a total
//! budget per session. Both are plain counters: a refused item is counted, never queued.

use std::time::Instant;

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_s: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            rate: rate_per_s as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: Instant::now(),
        }
    }

    /// Takes one token at `now`; false when the bucket is empty.
    pub fn take_at(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }
}

/// What a session may relay in total.
#[derive(Debug, Clone)]
pub struct Budget {
    pub max_items: u64,
    pub max_bytes: u64,
    pub items: u64,
    pub bytes: u64,
}

impl Budget {
    pub fn new(max_items: u64, max_bytes: u64) -> Budget {
        Budget {
            max_items,
            max_bytes,
            items: 0,
            bytes: 0,
        }
    }

    /// Accounts one item of `len` bytes; false (and nothing accounted) once spent.
    pub fn spend(&mut self, len: usize) -> bool {
        let bytes = self.bytes.saturating_add(len as u64);
        if self.items >= self.max_items || bytes > self.max_bytes {
            return false;
        }
        self.items += 1;
        self.bytes = bytes;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_bursts_then_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5);
        b.last = t0;
        assert_eq!((0..10).filter(|_| b.take_at(t0)).count(), 5);
        assert!(!b.take_at(t0));
        assert!(b.take_at(t0 + Duration::from_millis(110)));
        assert!(!b.take_at(t0 + Duration::from_millis(110)));
    }

    #[test]
    fn budget_stops_at_items_or_bytes() {
        let mut b = Budget::new(3, 100);
        assert!(b.spend(10) && b.spend(10) && b.spend(10));
        assert!(!b.spend(1));
        let mut b = Budget::new(100, 25);
        assert!(b.spend(20));
        assert!(!b.spend(10));
        assert!(b.spend(5));
    }
}
