//! The SQS worker: polling, concurrency, heartbeats, acks, retries, dead letters, shutdown.

pub mod backoff;
pub mod ratelimit;
pub mod runner;
