//! [`Worker`]: receives batches within the free concurrency, hands each message to the
//! [`MessageHandler`] in its own task (FIFO groups: one task per group, in order), keeps messages
//! invisible while they are handled, and carries out the answer — delete, delay or dead-letter.

use std::collections::HashSet;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, Retryable};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::backoff;
use super::backpressure;
use super::deleter::{DeleteBatcher, Deletes};
use super::stats::{StatsSnapshot, WorkerStats};
use super::MessageHandler;
use crate::config::Settings;
use crate::error::Disposition;
use crate::ports::{queue_limits, DeadLetter, Queue, QueueMessage};
use crate::ratelimit::wait_limit::with_wait_deadline;
use crate::ratelimit::Backlog;

/// SQS's longest long poll.
const MAX_WAIT: Duration = Duration::from_secs(queue_limits::MAX_WAIT_SECONDS);
/// SQS's most messages per receive.
const MAX_MESSAGES: u8 = queue_limits::MAX_BATCH as u8;
/// The pause after an empty receive when long polling is off, so the loop does not spin.
const SHORT_POLL_PAUSE: Duration = Duration::from_millis(100);
/// With `until_idle`: the longest wait of one receive, so an empty queue is noticed within
/// about `idle_polls` seconds instead of `idle_polls` long polls (a message that arrives
/// still ends the wait at once).
pub const UNTIL_IDLE_WAIT: Duration = Duration::from_secs(1);
/// How long receiving pauses before the rate limiters are looked at again, while they have no
/// room for another message.
const BACKPRESSURE_PAUSE: Duration = Duration::from_millis(200);
/// The reason code for messages that failed transiently too many times.
pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";

/// Decides, before each receive, whether to hold off (`Some(pause)`), e.g. while a circuit
/// breaker says a downstream is failing.
pub type PauseHook = Arc<dyn Fn() -> Option<Duration> + Send + Sync>;

/// How the worker polls and handles messages. Out-of-range values are clamped by [`Worker::new`].
#[derive(Clone)]
pub struct WorkerOptions {
    /// Messages handled at once.
    pub concurrency: usize,
    /// Long-poll wait per receive (at most 20 s).
    pub wait: Duration,
    /// Messages per receive (1 to 10); fewer when fewer handling slots are free.
    pub max_messages: u8,
    /// What the heartbeat sets a message's visibility to, every half of it, while it is handled.
    pub visibility_timeout: Duration,
    /// A message that fails transiently on its `max_attempts`-th delivery is dead-lettered.
    pub max_attempts: u32,
    /// Backoff for retried messages: exponential from `retry_base`, capped at `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// On shutdown: how long in-flight messages may take before they are released.
    pub shutdown_grace: Duration,
    /// The longest one `handle` call may take; past it the message is retried.
    pub handler_timeout: Duration,
    /// Exit after this many consecutive empty receives with nothing in flight here and nothing
    /// left on the queue (visible, in flight or delayed, as far as the queue can say). Receives
    /// then wait at most [`UNTIL_IDLE_WAIT`].
    pub until_idle: Option<u32>,
    /// Circuit breakers, consulted before each receive (once a slot is free).
    pub pause_when: Option<PauseHook>,
    /// The rate limiters the handler waits for: the worker holds no more messages than the
    /// slowest can serve within a quarter of the handler timeout ([`backpressure`]).
    pub limiters: Vec<Arc<dyn Backlog>>,
}

impl fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("concurrency", &self.concurrency)
            .field("wait", &self.wait)
            .field("max_messages", &self.max_messages)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("retry_base", &self.retry_base)
            .field("retry_max", &self.retry_max)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("handler_timeout", &self.handler_timeout)
            .field("until_idle", &self.until_idle)
            .field("pause_when", &self.pause_when.as_ref().map(|_| "Fn"))
            .field(
                "limiters",
                &self
                    .limiters
                    .iter()
                    .map(|l| l.name().to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for WorkerOptions {
    /// The values of `config/default.toml`, with a modest concurrency.
    fn default() -> Self {
        Self {
            concurrency: 8,
            wait: MAX_WAIT,
            max_messages: MAX_MESSAGES,
            visibility_timeout: Duration::from_secs(60),
            max_attempts: 8,
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(900),
            shutdown_grace: Duration::from_secs(25),
            handler_timeout: Duration::from_secs(45),
            until_idle: None,
            pause_when: None,
            limiters: Vec::new(),
        }
    }
}

impl WorkerOptions {
    /// Options from `[queue]` and `[worker]`; with `until_idle`, the worker exits after
    /// `worker.idle_polls` consecutive empty receives.
    pub fn from_settings(settings: &Settings, until_idle: bool) -> Self {
        let (q, w) = (&settings.queue, &settings.worker);
        Self {
            concurrency: w.concurrency,
            wait: Duration::from_secs(q.wait_seconds),
            max_messages: q.max_messages,
            visibility_timeout: Duration::from_secs(q.visibility_timeout_seconds),
            max_attempts: q.max_attempts,
            retry_base: Duration::from_secs(q.retry_base_seconds),
            retry_max: Duration::from_secs(q.retry_max_seconds),
            shutdown_grace: Duration::from_secs(w.shutdown_grace_seconds),
            handler_timeout: Duration::from_secs(w.handler_timeout_seconds),
            until_idle: until_idle.then_some(w.idle_polls.max(1)),
            pause_when: None,
            limiters: Vec::new(),
        }
    }

    /// The same options with every value inside what SQS and the loop accept.
    pub(crate) fn clamped(mut self) -> Self {
        self.concurrency = self.concurrency.clamp(1, Semaphore::MAX_PERMITS);
        self.wait = self.wait.min(MAX_WAIT);
        self.max_messages = self.max_messages.clamp(1, MAX_MESSAGES);
        self.visibility_timeout = self
            .visibility_timeout
            .clamp(Duration::from_secs(1), backoff::MAX_VISIBILITY);
        self.max_attempts = self.max_attempts.max(1);
        self.handler_timeout = self.handler_timeout.max(Duration::from_millis(1));
        self
    }
}

/// What one [`Worker::run`] (or [`Worker::poll_once`]) did. `Display` is the readable form
/// `run` prints; `--json` prints the fields as they are named here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunSummary {
    pub received: u64,
    pub acked: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    /// Dead-letter sends that failed (the message stays on the queue).
    pub dead_letter_failures: u64,
    /// Messages handed back unhandled (visibility 0).
    pub released: u64,
    pub delete_failures: u64,
    pub empty_receives: u64,
    pub receive_errors: u64,
    pub handler_panics: u64,
    pub handler_timeouts: u64,
    /// Receive pauses for back-pressure from slow rate limiters (not trouble: nothing is lost).
    #[serde(default)]
    pub backpressure_pauses: u64,
}

impl fmt::Display for RunSummary {
    /// `6 messages received: 3 acked, 1 retried, 2 dead-lettered`, then one line per kind
    /// of trouble that happened (none when all went well).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.received == 1 { "" } else { "s" };
        write!(
            f,
            "{} message{plural} received: {} acked, {} retried, {} dead-lettered",
            self.received, self.acked, self.retried, self.dead_lettered
        )?;
        let troubles = [
            (self.released, "released unhandled (delivered again)"),
            (
                self.dead_letter_failures,
                "could not be dead-lettered (still on the queue)",
            ),
            (
                self.delete_failures,
                "acked but not deleted (delivered again, then acked again)",
            ),
            (self.receive_errors, "receive errors (retried)"),
            (self.handler_panics, "handler panics (retried)"),
            (self.handler_timeouts, "handler timeouts (retried)"),
            (
                self.backpressure_pauses,
                "receive pauses: rate limiters too slow for more messages",
            ),
        ];
        for (count, what) in troubles.into_iter().filter(|(n, _)| *n > 0) {
            write!(f, "\n  {count} {what}")?;
        }
        Ok(())
    }
}

impl RunSummary {
    fn between(before: StatsSnapshot, after: StatsSnapshot) -> Self {
        Self {
            received: after.received - before.received,
            acked: after.acked - before.acked,
            retried: after.retried - before.retried,
            dead_lettered: after.dead_lettered - before.dead_lettered,
            dead_letter_failures: after.dead_letter_failures - before.dead_letter_failures,
            released: after.released - before.released,
            delete_failures: after.delete_failures - before.delete_failures,
            empty_receives: after.empty_receives - before.empty_receives,
            receive_errors: after.receive_errors - before.receive_errors,
            handler_panics: after.handler_panics - before.handler_panics,
            handler_timeouts: after.handler_timeouts - before.handler_timeouts,
            backpressure_pauses: after.backpressure_pauses - before.backpressure_pauses,
        }
    }
}

/// Polls one queue and hands its messages to one handler.
pub struct Worker {
    queue: Arc<dyn Queue>,
    handler: Arc<dyn MessageHandler>,
    options: Arc<WorkerOptions>,
    stats: Arc<WorkerStats>,
    slots: Arc<Semaphore>,
    /// A receive error that no retry fixes (queue missing, access denied): why `run` stopped.
    setup_error: Arc<Mutex<Option<crate::error::DownstreamError>>>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("options", &self.options)
            .field("stats", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

impl Worker {
    pub fn new(
        queue: Arc<dyn Queue>,
        handler: Arc<dyn MessageHandler>,
        options: WorkerOptions,
    ) -> Self {
        let options = options.clamped();
        let slots = Arc::new(Semaphore::new(options.concurrency));
        Self {
            queue,
            handler,
            options: Arc::new(options),
            stats: Arc::new(WorkerStats::default()),
            slots,
            setup_error: Arc::default(),
        }
    }

    /// Why the last [`Worker::run`] stopped on its own: a permanent setup error on receive.
    pub fn setup_error(&self) -> Option<crate::error::DownstreamError> {
        self.setup_error.lock().ok().and_then(|e| e.clone())
    }

    /// The live counters (cumulative over every run of this worker).
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    pub fn options(&self) -> &WorkerOptions {
        &self.options
    }

    /// Receives one batch (as many messages as there are free slots, up to `max_messages`,
    /// waiting for a slot if none is free), handles all of it, flushes the deletes and returns.
    /// The pause hook and `until_idle` do not apply. Not meant to run alongside [`Worker::run`].
    pub async fn poll_once(&self) -> RunSummary {
        let before = self.stats.snapshot();
        let deleter = DeleteBatcher::spawn(self.queue.clone(), self.stats.clone());
        let batch = Batch::new(self, deleter.sender());
        if let Ok(slots) = self.free_slots().await {
            match self
                .queue
                .receive(slots.len() as u8, self.options.wait)
                .await
            {
                Ok(messages) if messages.is_empty() => {
                    self.stats.record_receive(true);
                    WorkerStats::inc(&self.stats.empty_receives);
                }
                Ok(messages) => {
                    self.stats.record_receive(true);
                    let mut tasks = JoinSet::new();
                    batch.dispatch(messages, slots, &mut tasks);
                    while let Some(done) = tasks.join_next().await {
                        log_task_end(done);
                    }
                }
                Err(e) => {
                    self.stats.record_receive(false);
                    WorkerStats::inc(&self.stats.receive_errors);
                    tracing::warn!(error = %e, "receive failed");
                }
            }
        }
        drop(batch);
        deleter.close().await;
        RunSummary::between(before, self.stats.snapshot())
    }

    /// How long one receive of [`Worker::run`] waits for a message.
    fn receive_wait(&self) -> Duration {
        match self.options.until_idle {
            Some(_) => self.options.wait.min(UNTIL_IDLE_WAIT),
            None => self.options.wait,
        }
    }

    /// Polls until `shutdown` is cancelled (or, with `until_idle`, until the queue stays empty).
    /// On shutdown it stops receiving (abandoning a long poll in progress), lets in-flight
    /// messages finish for up to `shutdown_grace`, releases the rest (visibility 0), flushes
    /// pending deletes and returns what it did. Transient receive errors never end the loop.
    pub async fn run(&self, shutdown: CancellationToken) -> RunSummary {
        let before = self.stats.snapshot();
        let deleter = DeleteBatcher::spawn(self.queue.clone(), self.stats.clone());
        let batch = Batch::new(self, deleter.sender());
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut receive_delays = backoff::receive_errors().build();
        let mut idle_polls = 0u32;
        let mut backpressure_paused = false;
        tracing::info!(
            concurrency = self.options.concurrency,
            fifo = self.queue.is_fifo(),
            "worker started"
        );

        loop {
            while let Some(done) = tasks.try_join_next() {
                log_task_end(done);
            }
            if shutdown.is_cancelled() {
                break;
            }
            let mut slots = tokio::select! {
                slots = self.free_slots() => match slots {
                    Ok(slots) => slots,
                    Err(()) => break,
                },
                () = shutdown.cancelled() => break,
            };
            // Back-pressure: no more messages than the rate limiters can start in time.
            match self.room_for(slots.len()) {
                Some(0) => {
                    drop(slots);
                    self.stats.record_progress();
                    if !backpressure_paused {
                        backpressure_paused = true;
                        WorkerStats::inc(&self.stats.backpressure_pauses);
                        if let Some((limiter, rate, backlog)) =
                            backpressure::slowest(&self.options.limiters)
                        {
                            tracing::info!(%limiter, rate, backlog_ms = backlog.as_millis() as u64, "rate limiters slow: receiving paused until messages in flight can start in time");
                        }
                    }
                    tokio::select! {
                        () = tokio::time::sleep(BACKPRESSURE_PAUSE) => continue,
                        () = shutdown.cancelled() => break,
                    }
                }
                Some(room) => slots.truncate(room),
                None => {}
            }
            backpressure_paused = false;
            // Asked once a slot is free, right before the receive: waiting for the slot can
            // take long, and what the hook says then is what counts.
            if let Some(pause) = self.options.pause_when.as_ref().and_then(|hook| hook()) {
                drop(slots);
                // A deliberate pause is the loop working as meant, not a stall.
                self.stats.record_progress();
                tracing::debug!(pause_ms = pause.as_millis() as u64, "receiving paused");
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
            let received = tokio::select! {
                received = self.queue.receive(slots.len() as u8, self.receive_wait()) => received,
                () = shutdown.cancelled() => break,
            };
            match received {
                Err(e) if e.is_setup_problem() => {
                    // The queue's setup is wrong, not AWS down: backing off would hide it.
                    self.stats.record_receive(false);
                    WorkerStats::inc(&self.stats.receive_errors);
                    tracing::error!(error = %e, "receive failed: the queue's setup is wrong; stopping");
                    if let Ok(mut slot) = self.setup_error.lock() {
                        *slot = Some(e);
                    }
                    break;
                }
                Err(e) => {
                    self.stats.record_receive(false);
                    WorkerStats::inc(&self.stats.receive_errors);
                    let delay = receive_delays.next().unwrap_or(Duration::from_secs(30));
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "receive failed; backing off");
                    drop(slots);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
                Ok(messages) if messages.is_empty() => {
                    self.stats.record_receive(true);
                    receive_delays = backoff::receive_errors().build();
                    WorkerStats::inc(&self.stats.empty_receives);
                    drop(slots);
                    while let Some(done) = tasks.try_join_next() {
                        log_task_end(done);
                    }
                    idle_polls = if tasks.is_empty() { idle_polls + 1 } else { 0 };
                    if self
                        .options
                        .until_idle
                        .is_some_and(|limit| idle_polls >= limit)
                    {
                        // Messages waiting out a retry delay (ours among them) are not visible,
                        // not gone: only an empty queue ends the run.
                        match self.queue.messages_left().await {
                            Ok(Some(left)) if left > 0 => {
                                tracing::debug!(
                                    left,
                                    "no message visible, but some are in flight or delayed"
                                );
                                idle_polls = 0;
                            }
                            left => {
                                if let Err(e) = left {
                                    tracing::warn!(error = %e, "cannot read the queue's message counts; stopping on empty receives alone");
                                }
                                tracing::info!(empty_receives = idle_polls, "queue idle; stopping");
                                break;
                            }
                        }
                    }
                    if self.options.wait.is_zero() {
                        tokio::select! {
                            () = tokio::time::sleep(SHORT_POLL_PAUSE) => {}
                            () = shutdown.cancelled() => break,
                        }
                    }
                }
                Ok(messages) => {
                    self.stats.record_receive(true);
                    receive_delays = backoff::receive_errors().build();
                    idle_polls = 0;
                    batch.dispatch(messages, slots, &mut tasks);
                }
            }
        }

        self.drain(&batch, &mut tasks).await;
        drop(batch);
        deleter.close().await;
        let summary = RunSummary::between(before, self.stats.snapshot());
        tracing::info!(?summary, "worker stopped");
        summary
    }

    /// How many messages the rate limiters leave room for, holding `taking` free slots
    /// ([`backpressure::room`]); `None` without limiters.
    fn room_for(&self, taking: usize) -> Option<usize> {
        let in_flight = self
            .options
            .concurrency
            .saturating_sub(self.slots.available_permits() + taking);
        backpressure::room(
            &self.options.limiters,
            in_flight,
            self.options.handler_timeout,
        )
    }

    /// Waits for one free slot, then takes as many more as are free, up to `max_messages`.
    async fn free_slots(&self) -> Result<Vec<OwnedSemaphorePermit>, ()> {
        let first = self.slots.clone().acquire_owned().await.map_err(|_| ())?;
        let mut slots = vec![first];
        while slots.len() < usize::from(self.options.max_messages) {
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => slots.push(slot),
                Err(_) => break,
            }
        }
        Ok(slots)
    }

    /// Shutdown: in-flight work gets `shutdown_grace` to finish; then it is aborted and every
    /// message still held is released.
    async fn drain(&self, batch: &Batch, tasks: &mut JoinSet<()>) {
        if !tasks.is_empty() {
            tracing::info!(
                in_flight = tasks.len(),
                grace_ms = self.options.shutdown_grace.as_millis() as u64,
                "waiting for in-flight messages"
            );
        }
        let deadline = Instant::now() + self.options.shutdown_grace;
        loop {
            tokio::select! {
                done = tasks.join_next() => match done {
                    Some(done) => log_task_end(done),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(abandoned = tasks.len(), "shutdown grace elapsed; releasing unfinished messages");
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        let leftovers = batch.held.take_all();
        batch.release(&leftovers).await;
    }
}

fn log_task_end(done: Result<(), JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!("a message task panicked outside its handler; its messages come back after their visibility timeout");
        }
    }
}

/// Receipt handles of messages this worker holds and has not settled: the heartbeat extends
/// them, and shutdown releases whatever is left.
#[derive(Default)]
struct Held(Mutex<HashSet<String>>);

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn insert(&self, receipt_handle: &str) {
        self.lock().insert(receipt_handle.to_string());
    }
    /// `true` if it was held.
    fn remove(&self, receipt_handle: &str) -> bool {
        self.lock().remove(receipt_handle)
    }
    fn contains(&self, receipt_handle: &str) -> bool {
        self.lock().contains(receipt_handle)
    }
    fn take_all(&self) -> Vec<String> {
        self.lock().drain().collect()
    }
}

/// Aborts the task when dropped, so abandoning a message also stops its handler.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Counts a message in the `in_flight` gauge for as long as it lives.
struct InFlight(Arc<WorkerStats>);

impl InFlight {
    fn enter(stats: &Arc<WorkerStats>) -> Self {
        WorkerStats::inc(&stats.in_flight);
        Self(stats.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What every message task of one run shares. Cheap to clone.
#[derive(Clone)]
struct Batch {
    queue: Arc<dyn Queue>,
    handler: Arc<dyn MessageHandler>,
    options: Arc<WorkerOptions>,
    stats: Arc<WorkerStats>,
    deletes: Deletes,
    held: Arc<Held>,
}

impl Batch {
    fn new(worker: &Worker, deletes: Deletes) -> Self {
        Self {
            queue: worker.queue.clone(),
            handler: worker.handler.clone(),
            options: worker.options.clone(),
            stats: worker.stats.clone(),
            deletes,
            held: Arc::new(Held::default()),
        }
    }

    /// Spawns the tasks for one received batch: one per message, or on a FIFO queue one per
    /// message group (in order). Each task holds one slot per message it has yet to finish.
    fn dispatch(
        &self,
        messages: Vec<QueueMessage>,
        mut slots: Vec<OwnedSemaphorePermit>,
        tasks: &mut JoinSet<()>,
    ) {
        WorkerStats::add(&self.stats.received, messages.len() as u64);
        if messages.len() > slots.len() {
            tracing::warn!(
                asked = slots.len(),
                got = messages.len(),
                "the queue returned more messages than asked for"
            );
        }
        for message in &messages {
            self.held.insert(&message.receipt_handle);
        }
        let units = if self.queue.is_fifo() {
            by_group(messages)
        } else {
            messages.into_iter().map(|m| vec![m]).collect()
        };
        for unit in units {
            let take = unit.len().min(slots.len());
            let unit_slots: Vec<_> = slots.drain(..take).collect();
            tasks.spawn(self.clone().run_unit(unit, unit_slots));
        }
    }

    /// Handles a unit's messages in order while the heartbeat keeps them invisible. After the
    /// first one that is not acked, the rest are released unhandled (FIFO order).
    async fn run_unit(self, messages: Vec<QueueMessage>, mut slots: Vec<OwnedSemaphorePermit>) {
        let receipts: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
        let work = async {
            let mut pending = messages.into_iter();
            while let Some(message) = pending.next() {
                let acked = self.handle_one(message).await;
                slots.pop();
                if !acked {
                    let rest: Vec<String> = pending.map(|m| m.receipt_handle).collect();
                    if !rest.is_empty() {
                        tracing::info!(
                            released = rest.len(),
                            "releasing the rest of the message group to keep its order"
                        );
                        for receipt in &rest {
                            self.held.remove(receipt);
                        }
                        self.release(&rest).await;
                    }
                    break;
                }
            }
        };
        tokio::select! {
            () = work => {}
            never = self.heartbeat(&receipts) => match never {},
        }
    }

    /// Runs the handler on one message and carries out its answer; `true` if it was acked.
    /// Everything logged about the message happens in a `message` span with its id; the
    /// handler records `event_id` and `invite_id` in it once it has decoded the body.
    async fn handle_one(&self, message: QueueMessage) -> bool {
        let span = tracing::info_span!(
            "message",
            message_id = %message.message_id,
            receive_count = message.receive_count,
            event_id = tracing::field::Empty,
            invite_id = tracing::field::Empty,
        );
        async {
            let _gauge = InFlight::enter(&self.stats);
            let message = Arc::new(message);
            let started = Instant::now();
            let disposition = self.call_handler(message.clone()).await;
            self.stats.latency.observe(started.elapsed());
            self.settle(&message, disposition).await
        }
        .instrument(span)
        .await
    }

    /// The handler in its own task, so a panic is caught and a timeout can stop it.
    async fn call_handler(&self, message: Arc<QueueMessage>) -> Disposition {
        let handler = self.handler.clone();
        let input = message.clone();
        // Rate-limiter waits end by three quarters of the timeout: a limiter gives up rather
        // than let the timeout abort the handler mid-operation (worker::backpressure).
        let waits_end = Instant::now() + backpressure::wait_deadline(self.options.handler_timeout);
        let mut task = AbortOnDrop(tokio::spawn(
            with_wait_deadline(waits_end, async move { handler.handle(&input).await })
                .instrument(tracing::Span::current()),
        ));
        match tokio::time::timeout(self.options.handler_timeout, &mut task.0).await {
            Ok(Ok(disposition)) => disposition,
            Ok(Err(e)) if e.is_panic() => {
                WorkerStats::inc(&self.stats.handler_panics);
                tracing::error!(message_id = %message.message_id, receive_count = message.receive_count, "handler panicked; the message will be retried");
                retry_because("handler panicked")
            }
            Ok(Err(_)) => retry_because("handler task was cancelled"),
            Err(_) => {
                WorkerStats::inc(&self.stats.handler_timeouts);
                tracing::warn!(
                    message_id = %message.message_id,
                    receive_count = message.receive_count,
                    timeout_ms = self.options.handler_timeout.as_millis() as u64,
                    "handler timed out; the message will be retried"
                );
                retry_because(format!(
                    "handler timed out after {} ms",
                    self.options.handler_timeout.as_millis()
                ))
            }
        }
    }

    /// Carries out a disposition; `true` for an ack.
    async fn settle(&self, message: &QueueMessage, disposition: Disposition) -> bool {
        self.stats.record_progress();
        let (id, count) = (message.message_id.as_str(), message.receive_count);
        match disposition {
            Disposition::Ack { outcome } => {
                self.stats.record_ack(outcome);
                self.held.remove(&message.receipt_handle);
                tracing::info!(message_id = %id, receive_count = count, disposition = "ack", outcome, "message handled");
                if !self.deletes.delete(message.receipt_handle.clone()) {
                    WorkerStats::inc(&self.stats.delete_failures);
                    tracing::error!(message_id = %id, "delete batcher gone; the message will be delivered again");
                }
                true
            }
            Disposition::Retry {
                reason,
                after,
                downstream,
            } if count < self.options.max_attempts => {
                // Stop the heartbeat first, so it cannot overwrite the backoff.
                self.held.remove(&message.receipt_handle);
                let delay = backoff::random_retry_delay(
                    count,
                    self.options.retry_base,
                    self.options.retry_max,
                    after,
                );
                self.stats.record_retry(downstream);
                tracing::info!(
                    message_id = %id,
                    receive_count = count,
                    disposition = "retry",
                    reason = %reason,
                    downstream = downstream.map(|s| s.as_str()),
                    delay_s = delay.as_secs(),
                    "message will be retried"
                );
                if let Err(e) = self
                    .queue
                    .change_visibility(&message.receipt_handle, delay)
                    .await
                {
                    tracing::warn!(message_id = %id, error = %e, "could not set the retry delay; the message comes back after its visibility timeout");
                }
                false
            }
            Disposition::Retry { reason, .. } => {
                self.dead_letter(message, RETRIES_EXHAUSTED, reason).await;
                false
            }
            Disposition::DeadLetter { code, reason } => {
                self.dead_letter(message, &code, reason).await;
                false
            }
        }
    }

    /// Sends a message to the DLQ and, only if that worked, deletes it.
    async fn dead_letter(&self, message: &QueueMessage, code: &str, reason: String) {
        let why = DeadLetter {
            reason_code: code.to_string(),
            reason,
            attempts: message.receive_count,
        };
        let sent = (|| async { self.queue.dead_letter(message, &why).await })
            .retry(backoff::sqs_call())
            .sleep(tokio::time::sleep)
            .when(|e| e.is_transient())
            .await;
        self.held.remove(&message.receipt_handle);
        let (id, count) = (message.message_id.as_str(), message.receive_count);
        match sent {
            Ok(()) => {
                self.stats.record_dead_letter(&why.reason_code);
                tracing::warn!(
                    message_id = %id,
                    receive_count = count,
                    disposition = "dead_letter",
                    reason_code = %why.reason_code,
                    reason = %why.reason,
                    "message dead-lettered"
                );
                if !self.deletes.delete(message.receipt_handle.clone()) {
                    WorkerStats::inc(&self.stats.delete_failures);
                }
            }
            Err(e) => {
                WorkerStats::inc(&self.stats.dead_letter_failures);
                tracing::error!(
                    message_id = %id,
                    receive_count = count,
                    disposition = "dead_letter",
                    reason_code = %why.reason_code,
                    error = %e,
                    "could not send the message to the DLQ; it stays on the queue and will come back"
                );
            }
        }
    }

    /// Makes messages visible again at once (unhandled).
    async fn release(&self, receipt_handles: &[String]) {
        for receipt in receipt_handles {
            match self.queue.change_visibility(receipt, Duration::ZERO).await {
                Ok(()) => WorkerStats::inc(&self.stats.released),
                Err(e) => {
                    tracing::warn!(error = %e, "could not release a message; it comes back after its visibility timeout")
                }
            }
        }
    }

    /// Every half visibility timeout, extends the visibility of the unit's messages still held.
    async fn heartbeat(&self, receipt_handles: &[String]) -> Infallible {
        let timeout = self.options.visibility_timeout;
        let period = (timeout / 2).max(Duration::from_millis(500));
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            for receipt in receipt_handles.iter().filter(|r| self.held.contains(r)) {
                match self.queue.change_visibility(receipt, timeout).await {
                    Ok(()) => WorkerStats::inc(&self.stats.visibility_extensions),
                    Err(e) => tracing::warn!(error = %e, "could not extend a message's visibility"),
                }
            }
        }
    }
}

fn retry_because(reason: impl Into<String>) -> Disposition {
    Disposition::Retry {
        reason: reason.into(),
        after: None,
        downstream: None,
    }
}

/// Splits a FIFO batch into per-group runs, keeping the order within each group. Messages
/// without a group each stand alone.
fn by_group(messages: Vec<QueueMessage>) -> Vec<Vec<QueueMessage>> {
    let mut units: Vec<Vec<QueueMessage>> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for message in messages {
        match message.group_id.clone() {
            Some(group) => match index.get(&group) {
                Some(&i) => units[i].push(message),
                None => {
                    index.insert(group, units.len());
                    units.push(vec![message]);
                }
            },
            None => units.push(vec![message]),
        }
    }
    units
}
