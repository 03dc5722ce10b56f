//! Rate limits for calls to rate-limited APIs, shared by the adapters, the operator tools and the
//! lifecycle jobs: a per-process [`TokenBucket`], and one worker's share of the fleet-wide budget
//! ([`FleetLimiter`]) with its adaptive per-worker rate; [`wait_limit`]: how long callers may
//! wait for them (a handler's wait deadline) and how long their queues are (their backlog).

pub mod fleet_budget;
pub mod token_bucket;
pub mod wait_limit;

/// Slowest rate any limiter goes, calls per second (one per 1000 s).
pub const MIN_RATE: f64 = 0.001;

/// `rate` as a limiter uses it: a rate below [`MIN_RATE`], zero, negative or not finite is
/// raised to [`MIN_RATE`] rather than rejected.
pub fn usable_rate(rate: f64) -> f64 {
    if rate.is_finite() && rate > MIN_RATE {
        rate
    } else {
        MIN_RATE
    }
}

pub use fleet_budget::FleetLimiter;
pub use token_bucket::TokenBucket;
pub use wait_limit::Backlog;
