//! How long a caller may wait for a rate limiter, and how long the limiters' queues are.
//!
//! A limiter reports its rate and its waiting callers ([`Backlog`]); the worker takes no more
//! messages than the slowest limiter can serve in time ([`crate::worker::backpressure`]), and
//! it runs every handler under a *wait deadline*
//! ([`with_wait_deadline`]): a limiter whose next slot comes after it gives up before the call
//! with a transient error naming the wait ([`crate::adapters::limited`]), so the handler
//! returns, releases its lease and is retried after about that wait, instead of being aborted by
//! its timeout while it waits its turn.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static WAIT_DEADLINE: Instant;
}

/// Runs `work` with every rate-limiter wait inside it bounded by `deadline`.
pub async fn with_wait_deadline<F: Future>(deadline: Instant, work: F) -> F::Output {
    WAIT_DEADLINE.scope(deadline, work).await
}

/// The wait deadline of the current task, if its caller set one (the worker does; the operator
/// tools and the lifecycle jobs do not, and wait as long as it takes).
pub fn wait_deadline() -> Option<Instant> {
    WAIT_DEADLINE.try_with(|deadline| *deadline).ok()
}

/// A limiter's pace and queue, for the worker's back-pressure.
pub trait Backlog: Send + Sync {
    /// What it limits, for logs (`email-send`, `cognito-create`, `cognito-read`).
    fn name(&self) -> &str;
    /// Calls per second it lets through now (a fleet limiter: this worker's own rate).
    fn rate(&self) -> f64;
    /// Callers waiting now.
    fn waiting(&self) -> usize;
    /// Until the last caller now waiting gets its turn: callers waiting / rate.
    fn backlog(&self) -> Duration {
        slots_to_time(self.waiting(), self.rate())
    }
}

/// `callers` slots at `rate` per second, as a duration (a rate at or below zero reads as one
/// slot per 1000 s, the slowest any limiter goes).
pub fn slots_to_time(callers: usize, rate: f64) -> Duration {
    Duration::from_secs_f64(callers as f64 / super::usable_rate(rate))
}

/// Callers waiting for a limiter right now.
#[derive(Debug, Default)]
pub struct Waiting(AtomicUsize);

impl Waiting {
    /// Counts one caller until the guard is dropped (also when its wait is cancelled).
    pub fn enter(&self) -> WaitingGuard<'_> {
        self.0.fetch_add(1, Ordering::SeqCst);
        WaitingGuard(&self.0)
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// One waiting caller; see [`Waiting::enter`].
pub struct WaitingGuard<'a>(&'a AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_deadline_is_seen_only_inside_its_scope() {
        assert_eq!(wait_deadline(), None);
        let at = Instant::now() + Duration::from_secs(4);
        let seen = with_wait_deadline(at, async { wait_deadline() }).await;
        assert_eq!(seen, Some(at));
        assert_eq!(wait_deadline(), None);
    }

    #[test]
    fn slots_become_seconds_at_the_rate() {
        assert_eq!(slots_to_time(7, 0.7), Duration::from_secs_f64(10.0));
        assert_eq!(slots_to_time(0, 14.0), Duration::ZERO);
        assert_eq!(slots_to_time(1, 0.0), Duration::from_secs(1000));
    }
}
