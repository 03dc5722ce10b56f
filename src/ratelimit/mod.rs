//! Rate limits for calls to rate-limited APIs, shared by the adapters, the operator tools and the
//! lifecycle jobs: a per-process [`TokenBucket`], and one worker's share of the fleet-wide budget
//! ([`FleetLimiter`]) with its adaptive per-worker rate; [`wait_limit`]: how long callers may
//! wait for them (a handler's wait deadline) and how long their queues are (their backlog).

pub mod fleet_budget;
pub mod token_bucket;
pub mod wait_limit;

pub use fleet_budget::FleetLimiter;
pub use token_bucket::TokenBucket;
pub use wait_limit::Backlog;
