//! The SQS worker: polling, concurrency, heartbeats, acks, retries, dead letters, shutdown.
//!
//! The worker knows nothing about what a message means: a [`MessageHandler`] turns each one into
//! a [`Disposition`], and the [`Worker`] carries it out on the queue.

use async_trait::async_trait;

use crate::error::Disposition;
use crate::ports::QueueMessage;

pub mod backoff;
pub mod backpressure;
mod deleter;
pub mod runner;
pub mod stats;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod throttled_tests;

pub use runner::{PauseHook, RunSummary, Worker, WorkerOptions};
pub use stats::{StatsSnapshot, WorkerStats};

/// The application's side of the contract: what to do with one message.
#[async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    /// Handles one message; never panics on bad input. Returns what to do with it.
    async fn handle(&self, message: &QueueMessage) -> Disposition;
}
