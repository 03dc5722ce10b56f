//! Rate limits for calls to rate-limited APIs, shared by the adapters, the operator tools and the
//! lifecycle jobs: a per-process [`TokenBucket`], and one worker's share of the fleet-wide budget
//! ([`FleetLimiter`]) with its adaptive per-worker rate.

pub mod fleet_budget;
pub mod token_bucket;

pub use fleet_budget::FleetLimiter;
pub use token_bucket::TokenBucket;
