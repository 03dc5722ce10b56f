//! Worker behaviour against the in-memory queue, with a handler scripted by message bodies.
//!
//! A body is `label|command` (or just `command`): `ack`, `retry`, `retry-after:<s>`, `dead`,
//! `panic`, `sleep:<s>:<command>`. Anything else is "malformed" and dead-lettered, like the
//! real handler does with a body it cannot decode.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::adapters::memory::queue::{MemoryQueue, QueueOp};
use crate::error::{Disposition, Service};
use crate::ports::{Queue, QueueMessage};

#[derive(Default)]
struct Scripted {
    handled: Mutex<Vec<String>>,
    current: AtomicUsize,
    max_concurrent: AtomicUsize,
}

impl Scripted {
    fn handled(&self) -> Vec<String> {
        self.handled.lock().unwrap().clone()
    }
    fn max_concurrent(&self) -> usize {
        self.max_concurrent.load(Ordering::SeqCst)
    }
}

struct Busy<'a>(&'a Scripted);

impl<'a> Busy<'a> {
    fn enter(s: &'a Scripted) -> Self {
        let now = s.current.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_concurrent.fetch_max(now, Ordering::SeqCst);
        Busy(s)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::SeqCst);
    }
}

fn run_command(command: &str) -> Result<Disposition, Duration> {
    if let Some(rest) = command.strip_prefix("sleep:") {
        let secs = rest
            .split(':')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        return Err(Duration::from_secs(secs));
    }
    Ok(match command {
        "ack" => Disposition::Ack { outcome: "done" },
        "retry" => Disposition::Retry {
            reason: "downstream busy".into(),
            after: None,
            downstream: Some(Service::Cognito),
        },
        "dead" => Disposition::DeadLetter {
            code: "bad_input".into(),
            reason: "email: not an address".into(),
        },
        "panic" => panic!("scripted panic"),
        other => match other
            .strip_prefix("retry-after:")
            .and_then(|s| s.parse().ok())
        {
            Some(secs) => Disposition::Retry {
                reason: "throttled".into(),
                after: Some(Duration::from_secs(secs)),
                downstream: None,
            },
            None => Disposition::DeadLetter {
                code: "malformed".into(),
                reason: "body: not a command".into(),
            },
        },
    })
}

#[async_trait]
impl MessageHandler for Scripted {
    async fn handle(&self, message: &QueueMessage) -> Disposition {
        let _busy = Busy::enter(self);
        let (label, mut command) = message
            .body
            .split_once('|')
            .unwrap_or((&message.body, &message.body));
        self.handled.lock().unwrap().push(label.to_string());
        loop {
            match run_command(command) {
                Ok(disposition) => return disposition,
                Err(pause) => {
                    tokio::time::sleep(pause).await;
                    command = command.splitn(3, ':').nth(2).unwrap_or("ack");
                }
            }
        }
    }
}

fn options() -> WorkerOptions {
    WorkerOptions {
        concurrency: 10,
        wait: Duration::from_secs(1),
        max_messages: 10,
        visibility_timeout: Duration::from_secs(30),
        max_attempts: 5,
        retry_base: Duration::from_secs(10),
        retry_max: Duration::from_secs(100),
        shutdown_grace: Duration::from_secs(5),
        handler_timeout: Duration::from_secs(60),
        until_idle: None,
        pause_when: None,
        limiters: Vec::new(),
    }
}

fn worker(queue: &Arc<MemoryQueue>, options: WorkerOptions) -> (Worker, Arc<Scripted>) {
    let handler = Arc::new(Scripted::default());
    let worker = Worker::new(queue.clone() as Arc<dyn Queue>, handler.clone(), options);
    (worker, handler)
}

#[tokio::test(start_paused = true)]
async fn acks_are_deleted_in_one_batch() {
    let queue = Arc::new(MemoryQueue::standard());
    for i in 0..7 {
        queue.push(format!("m{i}|ack"));
    }
    let (worker, handler) = worker(&queue, options());
    let report = worker.poll_once().await;
    assert_eq!(report.received, 7);
    assert_eq!(report.acked, 7);
    assert_eq!(queue.deleted_count(), 7);
    assert!(queue.is_empty());
    assert_eq!(queue.delete_batch_sizes(), vec![7]);
    assert_eq!(handler.handled().len(), 7);
    let stats = worker.stats();
    assert_eq!(stats.ack_outcomes().get("done"), Some(&7));
    assert_eq!(stats.latency.count(), 7);
    assert_eq!(stats.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn retry_leaves_the_message_with_a_backoff_delay() {
    let queue = Arc::new(MemoryQueue::standard());
    let plain = queue.push("plain|retry");
    let hinted = queue.push("hinted|retry-after:40");
    let (worker, _) = worker(&queue, options());
    let report = worker.poll_once().await;
    assert_eq!(report.retried, 2);
    assert_eq!(report.acked + report.dead_lettered, 0);
    assert_eq!(queue.len(), 2);
    assert_eq!(queue.deleted_count(), 0);
    // First delivery: full jitter up to retry_base.
    assert!(queue.invisible_for(&plain).unwrap() <= Duration::from_secs(10));
    // The handler's hint is a floor.
    assert_eq!(queue.invisible_for(&hinted), Some(Duration::from_secs(40)));
}

#[tokio::test(start_paused = true)]
async fn retry_past_max_attempts_dead_letters_with_retries_exhausted() {
    let queue = Arc::new(MemoryQueue::standard());
    let id = queue.push("x|retry");
    let opts = WorkerOptions {
        max_attempts: 3,
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(1),
        ..options()
    };
    let (worker, handler) = worker(&queue, opts);
    let mut retried = 0;
    for _ in 0..3 {
        let report = worker.poll_once().await;
        retried += report.retried;
        tokio::time::advance(Duration::from_secs(2)).await;
    }
    assert_eq!(retried, 2);
    assert_eq!(handler.handled().len(), 3);
    let dlq = queue.dead_letters();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].0.message_id, id);
    assert_eq!(dlq[0].1.reason_code, "retries_exhausted");
    assert_eq!(dlq[0].1.reason, "downstream busy");
    assert_eq!(dlq[0].1.attempts, 3);
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn dead_letter_goes_to_the_dlq_and_is_deleted() {
    let queue = Arc::new(MemoryQueue::standard());
    queue.push("bad|dead");
    let (worker, _) = worker(&queue, options());
    let report = worker.poll_once().await;
    assert_eq!(report.dead_lettered, 1);
    let dlq = queue.dead_letters();
    assert_eq!(dlq[0].0.body, "bad|dead");
    assert_eq!(dlq[0].1.reason_code, "bad_input");
    assert_eq!(dlq[0].1.reason, "email: not an address");
    assert_eq!(dlq[0].1.attempts, 1);
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failed_dlq_send_does_not_delete() {
    let queue = Arc::new(MemoryQueue::standard());
    queue.push("bad|dead");
    queue.fail_next(QueueOp::DeadLetter, 10);
    let (worker, _) = worker(&queue, options());
    let report = worker.poll_once().await;
    assert_eq!(report.dead_lettered, 0);
    assert_eq!(report.dead_letter_failures, 1);
    assert!(queue.dead_letters().is_empty());
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.deleted_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_transient_dlq_failure_is_retried() {
    let queue = Arc::new(MemoryQueue::standard());
    queue.push("bad|dead");
    queue.fail_next(QueueOp::DeadLetter, 1);
    let (worker, _) = worker(&queue, options());
    let report = worker.poll_once().await;
    assert_eq!(report.dead_lettered, 1);
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_does_not_kill_the_worker() {
    let queue = Arc::new(MemoryQueue::standard().with_visibility_timeout(Duration::from_secs(30)));
    queue.push("boom|panic");
    queue.push("fine|ack");
    let opts = WorkerOptions {
        max_attempts: 2,
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(1),
        until_idle: Some(3),
        ..options()
    };
    let (worker, handler) = worker(&queue, opts);
    let summary = worker.run(CancellationToken::new()).await;
    // Retried once as "handler panicked", then dead-lettered on its second delivery.
    assert_eq!(summary.handler_panics, 2);
    assert_eq!(summary.retried, 1);
    assert_eq!(summary.acked, 1);
    assert_eq!(summary.dead_lettered, 1);
    let dlq = queue.dead_letters();
    assert_eq!(dlq[0].1.reason_code, "retries_exhausted");
    assert_eq!(dlq[0].1.reason, "handler panicked");
    assert_eq!(handler.handled().iter().filter(|l| *l == "boom").count(), 2);
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_slow_handler_times_out_and_is_retried() {
    let queue = Arc::new(MemoryQueue::standard());
    let id = queue.push("slow|sleep:100:ack");
    let opts = WorkerOptions {
        handler_timeout: Duration::from_secs(5),
        ..options()
    };
    let (worker, handler) = worker(&queue, opts);
    let start = Instant::now();
    let report = worker.poll_once().await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(report.handler_timeouts, 1);
    assert_eq!(report.retried, 1);
    assert_eq!(queue.receive_count(&id), Some(1));
    // The abandoned handler was stopped, not left running.
    tokio::task::yield_now().await;
    assert_eq!(handler.current.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_never_exceeded_and_receives_ask_only_for_free_slots() {
    let queue = Arc::new(MemoryQueue::standard());
    for i in 0..10 {
        queue.push(format!("m{i}|sleep:1:ack"));
    }
    let opts = WorkerOptions {
        concurrency: 3,
        until_idle: Some(2),
        ..options()
    };
    let (worker, handler) = worker(&queue, opts);
    let summary = worker.run(CancellationToken::new()).await;
    assert_eq!(summary.acked, 10);
    assert_eq!(handler.max_concurrent(), 3);
    let asks = queue.receive_requests();
    assert_eq!(asks[0], 3);
    assert!(asks.iter().all(|&n| (1..=3).contains(&n)), "{asks:?}");
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn max_messages_caps_a_receive() {
    let queue = Arc::new(MemoryQueue::standard());
    for i in 0..5 {
        queue.push(format!("m{i}|ack"));
    }
    let opts = WorkerOptions {
        concurrency: 50,
        max_messages: 4,
        ..options()
    };
    let (worker, _) = worker(&queue, opts);
    assert_eq!(worker.poll_once().await.received, 4);
    assert_eq!(queue.receive_requests(), vec![4]);
}

#[tokio::test(start_paused = true)]
async fn heartbeat_keeps_a_slow_message_invisible() {
    let queue = Arc::new(MemoryQueue::standard().with_visibility_timeout(Duration::from_secs(10)));
    queue.push("slow|sleep:25:ack");
    let opts = WorkerOptions {
        visibility_timeout: Duration::from_secs(10),
        ..options()
    };
    let (worker, _) = worker(&queue, opts);
    let competitor = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut stolen = 0;
            // Past the queue's 10 s visibility twice over: only the heartbeat keeps it hidden.
            for pause in [12, 10] {
                tokio::time::sleep(Duration::from_secs(pause)).await;
                stolen += queue.receive(10, Duration::ZERO).await.unwrap().len();
            }
            stolen
        })
    };
    let report = worker.poll_once().await;
    assert_eq!(
        competitor.await.unwrap(),
        0,
        "nobody else could receive the message while it was handled"
    );
    assert_eq!(report.acked, 1);
    assert_eq!(queue.deleted_count(), 1);
    // Every 5 s for 25 s.
    assert!(worker.stats().snapshot().visibility_extensions >= 4);
}

#[tokio::test(start_paused = true)]
async fn shutdown_finishes_work_within_grace_and_releases_the_rest() {
    let queue = Arc::new(MemoryQueue::standard().with_visibility_timeout(Duration::from_secs(60)));
    queue.push("fast|sleep:2:ack");
    let slow = queue.push("slow|sleep:100:ack");
    let opts = WorkerOptions {
        shutdown_grace: Duration::from_secs(5),
        handler_timeout: Duration::from_secs(200),
        ..options()
    };
    let (worker, handler) = worker(&queue, opts);
    let worker = Arc::new(worker);
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let running = {
        let (worker, shutdown) = (worker.clone(), shutdown.clone());
        tokio::spawn(async move { worker.run(shutdown).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    shutdown.cancel();
    let summary = running.await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(6),
        "one second of work, then the five-second grace"
    );
    assert_eq!(summary.acked, 1);
    assert_eq!(summary.released, 1);
    assert_eq!(queue.deleted_count(), 1);
    assert_eq!(queue.visible_len(), 1);
    assert_eq!(queue.receive_count(&slow), Some(1));
    tokio::task::yield_now().await;
    assert_eq!(
        handler.current.load(Ordering::SeqCst),
        0,
        "the abandoned handler was stopped"
    );
    assert_eq!(worker.stats().snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_with_nothing_in_flight_returns_at_once() {
    let queue = Arc::new(MemoryQueue::standard());
    let (worker, _) = worker(
        &queue,
        WorkerOptions {
            wait: Duration::from_secs(20),
            ..options()
        },
    );
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.cancel();
    });
    let summary = worker.run(shutdown).await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(3),
        "the long poll is abandoned"
    );
    assert_eq!(summary, RunSummary::default());
}

#[tokio::test(start_paused = true)]
async fn until_idle_exits_after_consecutive_empty_receives() {
    let queue = Arc::new(MemoryQueue::standard());
    let (worker, _) = worker(
        &queue,
        WorkerOptions {
            until_idle: Some(3),
            ..options()
        },
    );
    let start = Instant::now();
    let summary = worker.run(CancellationToken::new()).await;
    assert_eq!(summary.empty_receives, 3);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn until_idle_on_an_empty_queue_exits_within_two_seconds_despite_long_polls() {
    let queue = Arc::new(MemoryQueue::standard());
    let (worker, _) = worker(
        &queue,
        WorkerOptions {
            wait: Duration::from_secs(20),
            until_idle: Some(2),
            ..options()
        },
    );
    let start = Instant::now();
    let summary = worker.run(CancellationToken::new()).await;
    assert_eq!(summary.empty_receives, 2);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn until_idle_never_exits_while_its_own_retry_is_pending() {
    let queue = Arc::new(MemoryQueue::standard());
    queue.push("later|retry-after:30");
    let (worker, handler) = worker(
        &queue,
        WorkerOptions {
            wait: Duration::from_secs(20),
            max_attempts: 2,
            until_idle: Some(2),
            ..options()
        },
    );
    let start = Instant::now();
    let summary = worker.run(CancellationToken::new()).await;
    assert_eq!(
        (summary.retried, summary.dead_lettered),
        (1, 1),
        "{summary:?}"
    );
    assert_eq!(handler.handled(), vec!["later", "later"]);
    assert!(start.elapsed() >= Duration::from_secs(30));
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn until_idle_waits_for_in_flight_work() {
    let queue = Arc::new(MemoryQueue::standard());
    queue.push("long|sleep:5:ack");
    let (worker, _) = worker(
        &queue,
        WorkerOptions {
            until_idle: Some(2),
            ..options()
        },
    );
    let summary = worker.run(CancellationToken::new()).await;
    assert_eq!(summary.acked, 1);
    assert!(summary.empty_receives >= 5, "{summary:?}");
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn fifo_keeps_group_order_and_releases_the_rest_after_a_failure() {
    let queue = Arc::new(MemoryQueue::fifo());
    queue.push_to_group("a1|ack", "a");
    let a2 = queue.push_to_group("a2|retry-after:30", "a");
    let a3 = queue.push_to_group("a3|ack", "a");
    queue.push_to_group("b1|ack", "b");
    queue.push_to_group("b2|ack", "b");
    let (worker, handler) = worker(&queue, options());
    let report = worker.poll_once().await;
    assert_eq!(report.received, 5);
    assert_eq!((report.acked, report.retried, report.released), (3, 1, 1));
    let handled = handler.handled();
    assert!(
        !handled.contains(&"a3".to_string()),
        "a3 must wait for a2: {handled:?}"
    );
    let pos = |l: &str| handled.iter().position(|h| h == l).unwrap();
    assert!(pos("a1") < pos("a2"));
    assert!(pos("b1") < pos("b2"));
    // a3 is back on the queue unhandled, but its group is held by a2's retry.
    assert_eq!(queue.receive_count(&a3), Some(1));
    assert_eq!(queue.invisible_for(&a3), Some(Duration::ZERO));
    assert_eq!(queue.invisible_for(&a2), Some(Duration::from_secs(30)));
    assert_eq!(worker.poll_once().await.received, 0);
    // Once a2 is visible again, the group continues in order.
    tokio::time::advance(Duration::from_secs(30)).await;
    worker.poll_once().await;
    let handled = handler.handled();
    assert_eq!(handled.last().map(String::as_str), Some("a2"));
}

#[tokio::test(start_paused = true)]
async fn fifo_handles_a_group_one_message_at_a_time() {
    let queue = Arc::new(MemoryQueue::fifo());
    for i in 0..4 {
        queue.push_to_group(format!("g{i}|sleep:1:ack"), "g");
    }
    let (worker, handler) = worker(&queue, options());
    let start = Instant::now();
    let report = worker.poll_once().await;
    assert_eq!(report.acked, 4);
    assert_eq!(handler.max_concurrent(), 1);
    assert_eq!(handler.handled(), vec!["g0", "g1", "g2", "g3"]);
    assert_eq!(start.elapsed(), Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn a_malformed_message_is_dead_lettered_while_its_neighbours_ack() {
    let queue = Arc::new(MemoryQueue::standard());
    queue.push("good1|ack");
    queue.push("{\"not\": \"an invite\"");
    queue.push("good2|ack");
    let (worker, _) = worker(&queue, options());
    let report = worker.poll_once().await;
    assert_eq!(
        (report.received, report.acked, report.dead_lettered),
        (3, 2, 1)
    );
    let dlq = queue.dead_letters();
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].0.body, "{\"not\": \"an invite\"");
    assert_eq!(dlq[0].1.reason_code, "malformed");
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn receive_errors_back_off_and_never_stop_the_worker() {
    let queue = Arc::new(MemoryQueue::standard());
    queue.push("m|ack");
    queue.fail_next(QueueOp::Receive, 4);
    let (worker, _) = worker(
        &queue,
        WorkerOptions {
            until_idle: Some(1),
            ..options()
        },
    );
    let start = Instant::now();
    let summary = worker.run(CancellationToken::new()).await;
    assert_eq!(summary.receive_errors, 4);
    assert_eq!(summary.acked, 1);
    // 0.5 + 1 + 2 + 4 s at least, with jitter at most double.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(7_500) && waited <= Duration::from_secs(17),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_queue_that_does_not_exist_stops_the_worker_at_once() {
    let queue = Arc::new(MemoryQueue::standard());
    queue.remove_queue();
    let (worker, _) = worker(&queue, options());
    let start = Instant::now();
    // No until_idle and no shutdown: only the setup error can end this run.
    let summary = worker.run(CancellationToken::new()).await;
    assert_eq!(summary.receive_errors, 1);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let error = worker.setup_error().expect("the reason it stopped");
    assert_eq!(error.rejection_code(), Some("queue_not_found"));
}

#[tokio::test(start_paused = true)]
async fn the_pause_hook_holds_off_receiving() {
    let queue = Arc::new(MemoryQueue::standard());
    queue.push("m|ack");
    let calls = Arc::new(AtomicUsize::new(0));
    let hook_calls = calls.clone();
    let hook: PauseHook = Arc::new(move || {
        (hook_calls.fetch_add(1, Ordering::SeqCst) < 2).then_some(Duration::from_secs(10))
    });
    let opts = WorkerOptions {
        until_idle: Some(1),
        pause_when: Some(hook),
        ..options()
    };
    let (worker, _) = worker(&queue, opts);
    let start = Instant::now();
    let summary = worker.run(CancellationToken::new()).await;
    assert_eq!(summary.acked, 1);
    assert!(start.elapsed() >= Duration::from_secs(20));
    assert_eq!(queue.receive_requests().len(), 2, "no receive while paused");
}

#[tokio::test(start_paused = true)]
async fn a_stale_receipt_on_delete_is_counted_not_fatal() {
    // The queue's own visibility is shorter than the handler; a competitor receives the
    // message meanwhile (the heartbeat is slower than the queue's timeout here).
    let queue = Arc::new(MemoryQueue::standard().with_visibility_timeout(Duration::from_secs(2)));
    queue.push("m|sleep:5:ack");
    let opts = WorkerOptions {
        visibility_timeout: Duration::from_secs(20),
        ..options()
    };
    let (worker, _) = worker(&queue, opts);
    let competitor = {
        let queue = queue.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            queue.receive(10, Duration::ZERO).await.unwrap().len()
        })
    };
    let report = worker.poll_once().await;
    assert_eq!(competitor.await.unwrap(), 1);
    assert_eq!(report.acked, 1);
    assert_eq!(report.delete_failures, 1);
    assert_eq!(queue.len(), 1);
}

#[test]
fn options_from_settings_and_clamping() {
    let mut settings: crate::config::Settings = {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))
                .unwrap();
        let cfg = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .build()
            .unwrap();
        cfg.try_deserialize().unwrap()
    };
    settings.queue.wait_seconds = 20;
    let opts = WorkerOptions::from_settings(&settings, true);
    assert_eq!(opts.until_idle, Some(settings.worker.idle_polls.max(1)));
    assert_eq!(opts.concurrency, settings.worker.concurrency);
    assert_eq!(
        opts.visibility_timeout,
        Duration::from_secs(settings.queue.visibility_timeout_seconds)
    );
    assert_eq!(
        WorkerOptions::from_settings(&settings, false).until_idle,
        None
    );

    let wild = WorkerOptions {
        concurrency: 0,
        wait: Duration::from_secs(60),
        max_messages: 50,
        max_attempts: 0,
        ..options()
    }
    .clamped();
    assert_eq!(
        (
            wild.concurrency,
            wild.wait,
            wild.max_messages,
            wild.max_attempts
        ),
        (1, Duration::from_secs(20), 10, 1)
    );
}

#[test]
fn the_summary_reads_as_a_sentence_and_names_only_the_trouble_that_happened() {
    let summary = RunSummary {
        received: 6,
        acked: 3,
        retried: 1,
        dead_lettered: 2,
        empty_receives: 4,
        ..RunSummary::default()
    };
    assert_eq!(
        summary.to_string(),
        "6 messages received: 3 acked, 1 retried, 2 dead-lettered"
    );
    let troubled = RunSummary {
        received: 1,
        released: 1,
        receive_errors: 2,
        ..RunSummary::default()
    };
    assert_eq!(
        troubled.to_string(),
        "1 message received: 0 acked, 0 retried, 0 dead-lettered\n  1 released unhandled (delivered again)\n  2 receive errors (retried)"
    );
    let json = serde_json::to_value(summary).expect("json");
    assert_eq!(json["acked"], 3);
    assert_eq!(json["empty_receives"], 4);
}

/// The value of one exact series (`name{labels}`) on a metrics page, 0 when absent.
fn series(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// The sum of every sample of `name`, over all labels.
fn family_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every worker metric means what docs/observability.md says, and the counters add up: each
/// received message is processed once (ack outcome, retry or dead_letter), `retries_total`
/// breaks the retries down by downstream and `dead_letters_total` the dead letters by reason.
#[tokio::test(start_paused = true)]
async fn metrics_add_up_to_what_happened() {
    let queue = Arc::new(MemoryQueue::standard());
    for body in [
        "a|ack",
        "b|ack",
        "c|retry",
        "d|retry-after:5",
        "e|dead",
        "f|panic",
        "g|sleep:90:ack",
    ] {
        queue.push(body);
    }
    let (worker, _) = worker(&queue, options());
    worker.poll_once().await;
    let observer = crate::observe::Observer::default();
    let text = crate::observe::metrics::render(&crate::observe::metrics::MetricsSources {
        stats: &worker.stats(),
        downstream: observer.downstream(),
        circuits: observer.circuits(),
        version: "t",
        seconds_since_progress: 0.0,
    });
    let m = |s: &str| series(&text, &format!("invite_worker_{s}"));
    let processed = |outcome: &str| {
        m(&format!(
            "messages_processed_total{{outcome=\"{outcome}\"}}"
        ))
    };

    assert_eq!(m("messages_received_total"), 7.0);
    assert_eq!(processed("done"), 2.0, "the handler's ack outcome code");
    // c (Cognito), d (no downstream: a busy invite), f (panic), g (timeout after 60 s).
    assert_eq!(processed("retry"), 4.0);
    assert_eq!(processed("dead_letter"), 1.0);
    assert_eq!(
        family_sum(&text, "invite_worker_messages_processed_total"),
        m("messages_received_total"),
        "each received message is processed exactly once\n{text}"
    );
    assert_eq!(m("retries_total{downstream=\"cognito\"}"), 1.0);
    assert_eq!(m("retries_total{downstream=\"none\"}"), 3.0);
    assert_eq!(
        family_sum(&text, "invite_worker_retries_total"),
        processed("retry"),
        "retries_total is the retries broken down by downstream"
    );
    assert_eq!(m("dead_letters_total{reason=\"bad_input\"}"), 1.0);
    assert_eq!(
        family_sum(&text, "invite_worker_dead_letters_total"),
        processed("dead_letter")
    );
    assert_eq!(m("handler_panics_total"), 1.0);
    assert_eq!(m("handler_timeouts_total"), 1.0);
    assert_eq!(
        m("handler_duration_seconds_count"),
        7.0,
        "one per handler answer"
    );
    assert_eq!(m("in_flight"), 0.0);
    assert_eq!(m("empty_receives_total"), 0.0);
    assert_eq!(m("receive_errors_total"), 0.0);
    assert_eq!(m("dead_letter_failures_total"), 0.0);
    assert_eq!(m("messages_released_total"), 0.0);
    assert_eq!(m("delete_failures_total"), 0.0);
    assert_eq!(
        queue.deleted_count(),
        3,
        "two acks and one dead letter left the queue"
    );
}
