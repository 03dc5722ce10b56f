//! An async token bucket: `burst` calls at once, then `rate_per_second` on average.
//!
//! Waiters queue on a fair (FIFO) async mutex, so under contention tokens go out in arrival
//! order. Time comes from `tokio::time`, so tests can run it with `tokio::time::pause()`.

use std::fmt;

use tokio::sync::Mutex;
use tokio::time::{Duration, Instant};

use super::wait_limit::{Backlog, Waiting};

/// Slack for floating-point refills, so a token that is due is not missed by a rounding error.
const EPSILON: f64 = 1e-9;

struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

/// A token bucket shared by every task that calls one rate-limited API.
pub struct TokenBucket {
    name: String,
    rate: f64,
    burst: f64,
    waiting: Waiting,
    state: Mutex<Bucket>,
}

impl fmt::Debug for TokenBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBucket")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .finish()
    }
}

impl TokenBucket {
    /// A full bucket holding `burst` tokens (at least 1), refilled at `rate_per_second` (a
    /// non-positive or non-finite rate is treated as the minimum, one token per 1000 s).
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        let rate = super::usable_rate(rate_per_second);
        let burst = f64::from(burst.max(1));
        Self {
            name: "token-bucket".into(),
            rate,
            burst,
            waiting: Waiting::default(),
            state: Mutex::new(Bucket {
                tokens: burst,
                refilled_at: Instant::now(),
            }),
        }
    }

    /// The same bucket, named for logs (`cognito-read`).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Tokens per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Waits until a token is available and takes it. Cancel-safe: a dropped call takes nothing.
    pub async fn acquire(&self) {
        let _waiting = self.waiting.enter();
        // Holding the lock while sleeping is the point: later callers queue behind this one.
        let mut bucket = self.state.lock().await;
        loop {
            self.refill(&mut bucket);
            if bucket.tokens >= 1.0 - EPSILON {
                bucket.tokens = (bucket.tokens - 1.0).max(0.0);
                return;
            }
            let missing = 1.0 - bucket.tokens;
            let wait = Duration::from_secs_f64(missing / self.rate);
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes a token if one is available right now and nobody is waiting for one.
    pub fn try_acquire(&self) -> bool {
        let Ok(mut bucket) = self.state.try_lock() else {
            return false;
        };
        self.refill(&mut bucket);
        if bucket.tokens >= 1.0 - EPSILON {
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
            true
        } else {
            false
        }
    }

    fn refill(&self, bucket: &mut Bucket) {
        let now = Instant::now();
        let elapsed = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled_at = now;
    }
}

impl Backlog for TokenBucket {
    fn name(&self) -> &str {
        &self.name
    }

    fn rate(&self) -> f64 {
        self.rate
    }

    fn waiting(&self) -> usize {
        self.waiting.count()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate() {
        let bucket = TokenBucket::new(2.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        for _ in 0..4 {
            bucket.acquire().await;
        }
        // Four more tokens at two per second.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1990) && elapsed <= Duration::from_millis(2010),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn try_acquire_does_not_wait() {
        let bucket = TokenBucket::new(1.0, 2);
        assert!(bucket.try_acquire());
        assert!(bucket.try_acquire());
        assert!(!bucket.try_acquire());
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert!(bucket.try_acquire());
        assert!(!bucket.try_acquire());
    }

    #[tokio::test(start_paused = true)]
    async fn refills_up_to_burst_only() {
        let bucket = TokenBucket::new(10.0, 2);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(bucket.try_acquire());
        assert!(bucket.try_acquire());
        assert!(!bucket.try_acquire());
    }

    #[tokio::test(start_paused = true)]
    async fn contended_waiters_share_the_rate_in_order() {
        let bucket = Arc::new(TokenBucket::new(4.0, 1));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..9 {
            let (bucket, order) = (bucket.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                bucket.acquire().await;
                order.lock().unwrap().push(i);
            }));
            // Make arrival order deterministic.
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        // One from the burst, eight more at four per second.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1990) && elapsed <= Duration::from_millis(2010),
            "{elapsed:?}"
        );
        assert_eq!(*order.lock().unwrap(), (0..9).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn nonsense_rates_are_clamped_not_panicking() {
        let bucket = TokenBucket::new(f64::NAN, 0);
        assert!(bucket.try_acquire());
        assert!(!bucket.try_acquire());
        let bucket = TokenBucket::new(-5.0, 1);
        assert!(bucket.rate() > 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_takes_nothing() {
        let bucket = TokenBucket::new(1.0, 1);
        bucket.acquire().await;
        let timed_out = tokio::time::timeout(Duration::from_millis(100), bucket.acquire()).await;
        assert!(timed_out.is_err());
        tokio::time::advance(Duration::from_millis(900)).await;
        assert!(bucket.try_acquire());
    }
}
