//! Counters the worker keeps while it runs, readable at any time from another task (for the
//! metrics endpoint and for tests).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Service;

/// The `downstream` label of a retry no downstream service caused.
pub const NO_DOWNSTREAM: &str = "none";

/// Upper bounds (inclusive, in milliseconds) of the handling-time histogram's buckets; a last,
/// unbounded bucket catches everything slower.
pub const LATENCY_BUCKETS_MS: [u64; 13] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
];

/// Live counters of one [`Worker`](super::Worker). All monotonic except `in_flight`, a gauge.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Messages received.
    pub received: AtomicU64,
    /// Receives that returned no message.
    pub empty_receives: AtomicU64,
    /// Receives that failed (the worker backs off and keeps going).
    pub receive_errors: AtomicU64,
    /// Messages being handled right now.
    pub in_flight: AtomicU64,
    /// Handlers that answered `Ack` (the delete is counted separately, see `delete_failures`).
    pub acked: AtomicU64,
    /// Messages left on the queue with a backoff delay.
    pub retried: AtomicU64,
    /// Messages sent to the dead-letter queue.
    pub dead_lettered: AtomicU64,
    /// Dead-letter sends that failed; the message stays on the queue and comes back.
    pub dead_letter_failures: AtomicU64,
    /// Messages handed back unhandled (visibility 0): FIFO followers of a failure, and work
    /// abandoned at shutdown.
    pub released: AtomicU64,
    /// Successful heartbeats (visibility extensions).
    pub visibility_extensions: AtomicU64,
    /// Acked messages whose delete finally failed (they will be delivered again).
    pub delete_failures: AtomicU64,
    /// Handler tasks that panicked (each one retried).
    pub handler_panics: AtomicU64,
    /// Handlers that ran past the handler timeout (each one retried).
    pub handler_timeouts: AtomicU64,
    /// Times receiving paused because the rate limiters could not start another message within
    /// a quarter of the handler timeout (back-pressure; one per pause, however long).
    pub backpressure_pauses: AtomicU64,
    /// Handling time, from the handler's start to its answer.
    pub latency: LatencyHistogram,
    ack_outcomes: Mutex<BTreeMap<&'static str, u64>>,
    retry_causes: Mutex<BTreeMap<&'static str, u64>>,
    dead_letter_reasons: Mutex<BTreeMap<String, u64>>,
    /// When the poll loop last made progress (see [`WorkerStats::record_progress`]).
    last_progress: Mutex<Option<Instant>>,
    /// How the last receive ended: 0 none yet, 1 answered, 2 failed.
    last_receive: AtomicU8,
}

impl WorkerStats {
    /// Counts an `Ack` with its outcome code.
    pub fn record_ack(&self, outcome: &'static str) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        let mut outcomes = self.ack_outcomes.lock().unwrap_or_else(|p| p.into_inner());
        *outcomes.entry(outcome).or_default() += 1;
    }

    /// Acks per outcome code.
    pub fn ack_outcomes(&self) -> BTreeMap<&'static str, u64> {
        self.ack_outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counts a message left on the queue with a backoff delay, by the downstream service whose
    /// failure caused it (`None`: a busy invite, a lost write race, a handler timeout or panic).
    pub fn record_retry(&self, downstream: Option<Service>) {
        self.retried.fetch_add(1, Ordering::Relaxed);
        let cause = downstream.map_or(NO_DOWNSTREAM, Service::as_str);
        let mut causes = self.retry_causes.lock().unwrap_or_else(|p| p.into_inner());
        *causes.entry(cause).or_default() += 1;
    }

    /// Retries per cause: a service name or [`NO_DOWNSTREAM`].
    pub fn retry_causes(&self) -> BTreeMap<&'static str, u64> {
        self.retry_causes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counts a message sent to the dead-letter queue with its reason code.
    pub fn record_dead_letter(&self, reason_code: &str) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        let mut reasons = self
            .dead_letter_reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match reasons.get_mut(reason_code) {
            Some(n) => *n += 1,
            None => {
                reasons.insert(reason_code.to_string(), 1);
            }
        }
    }

    /// Dead letters per reason code.
    pub fn dead_letter_reasons(&self) -> BTreeMap<String, u64> {
        self.dead_letter_reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Notes that the poll loop is alive and moving: a receive answered (with messages or
    /// without), a message was settled, or the loop paused on purpose (circuit breaker).
    pub fn record_progress(&self) {
        *self.last_progress.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// When the poll loop last made progress; `None` before the first time.
    pub fn last_progress(&self) -> Option<Instant> {
        *self.last_progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records how a receive ended; an answered receive (even an empty one) is also progress.
    pub fn record_receive(&self, answered: bool) {
        self.last_receive
            .store(if answered { 1 } else { 2 }, Ordering::Relaxed);
        if answered {
            self.record_progress();
        }
    }

    /// `Some(true)` if the last receive was answered, `Some(false)` if it failed, `None` before
    /// the first receive.
    pub fn last_receive_ok(&self) -> Option<bool> {
        match self.last_receive.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    /// A consistent-enough copy of the counters (each read on its own).
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            received: get(&self.received),
            empty_receives: get(&self.empty_receives),
            receive_errors: get(&self.receive_errors),
            in_flight: get(&self.in_flight),
            acked: get(&self.acked),
            retried: get(&self.retried),
            dead_lettered: get(&self.dead_lettered),
            dead_letter_failures: get(&self.dead_letter_failures),
            released: get(&self.released),
            visibility_extensions: get(&self.visibility_extensions),
            delete_failures: get(&self.delete_failures),
            handler_panics: get(&self.handler_panics),
            handler_timeouts: get(&self.handler_timeouts),
            backpressure_pauses: get(&self.backpressure_pauses),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Plain values of [`WorkerStats`]' counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub received: u64,
    pub empty_receives: u64,
    pub receive_errors: u64,
    pub in_flight: u64,
    pub acked: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub dead_letter_failures: u64,
    pub released: u64,
    pub visibility_extensions: u64,
    pub delete_failures: u64,
    pub handler_panics: u64,
    pub handler_timeouts: u64,
    pub backpressure_pauses: u64,
}

/// A fixed-bucket histogram of durations in milliseconds (buckets: [`LATENCY_BUCKETS_MS`]).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    counts: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    sum_ms: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// `(upper bound in ms, count)` per bucket, not cumulative; the last bound is `None` (+Inf).
    pub fn buckets(&self) -> Vec<(Option<u64>, u64)> {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    LATENCY_BUCKETS_MS.get(i).copied(),
                    c.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Sum of all observations, in milliseconds.
    pub fn sum_ms(&self) -> u64 {
        self.sum_ms.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_puts_values_in_the_right_buckets() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(6));
        h.observe(Duration::from_secs(3600));
        let buckets = h.buckets();
        assert_eq!(buckets[0], (Some(5), 2));
        assert_eq!(buckets[1], (Some(10), 1));
        assert_eq!(buckets.last(), Some(&(None, 1)));
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum_ms(), 3 + 5 + 6 + 3_600_000);
    }

    #[test]
    fn ack_outcomes_are_counted_per_code() {
        let stats = WorkerStats::default();
        stats.record_ack("sent");
        stats.record_ack("sent");
        stats.record_ack("duplicate");
        assert_eq!(stats.snapshot().acked, 3);
        let outcomes = stats.ack_outcomes();
        assert_eq!(outcomes.get("sent"), Some(&2));
        assert_eq!(outcomes.get("duplicate"), Some(&1));
    }

    #[test]
    fn retries_are_counted_per_downstream() {
        let stats = WorkerStats::default();
        stats.record_retry(Some(Service::Cognito));
        stats.record_retry(Some(Service::Cognito));
        stats.record_retry(None);
        assert_eq!(stats.snapshot().retried, 3);
        let causes = stats.retry_causes();
        assert_eq!(causes.get("cognito"), Some(&2));
        assert_eq!(causes.get(NO_DOWNSTREAM), Some(&1));
    }

    #[test]
    fn dead_letters_are_counted_per_reason() {
        let stats = WorkerStats::default();
        stats.record_dead_letter("invalid_event");
        stats.record_dead_letter("invalid_event");
        stats.record_dead_letter("retries_exhausted");
        assert_eq!(stats.snapshot().dead_lettered, 3);
        let reasons = stats.dead_letter_reasons();
        assert_eq!(reasons.get("invalid_event"), Some(&2));
        assert_eq!(reasons.get("retries_exhausted"), Some(&1));
    }

    #[tokio::test(start_paused = true)]
    async fn receives_and_progress_are_remembered() {
        let stats = WorkerStats::default();
        assert_eq!(stats.last_receive_ok(), None);
        assert_eq!(stats.last_progress(), None);
        stats.record_receive(false);
        assert_eq!(stats.last_receive_ok(), Some(false));
        assert_eq!(
            stats.last_progress(),
            None,
            "a failed receive is no progress"
        );
        stats.record_receive(true);
        assert_eq!(stats.last_receive_ok(), Some(true));
        let first = stats.last_progress().expect("progress");
        tokio::time::advance(Duration::from_secs(3)).await;
        stats.record_progress();
        assert_eq!(stats.last_progress(), Some(first + Duration::from_secs(3)));
    }
}
