//! The worker in front of a slowed rate limiter: a downstream slowdown must never dead-letter
//! good messages, and a handler is not killed mid-operation for waiting its turn
//! (docs/reliability.md, "A slowed rate limiter").
//!
//! The handler sends one email through a [`RateLimitedMailer`] over a token bucket of 0.7
//! emails/s, the rate a throttling cut left a worker at in CI, and turns an error into a
//! disposition as the real handler does ([`HandleError`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::adapters::limited::RateLimitedMailer;
use crate::adapters::memory::queue::MemoryQueue;
use crate::app::handle_error::HandleError;
use crate::error::{Disposition, DownstreamError};
use crate::ports::{Mailer, OutgoingMail, Queue, QueueMessage};
use crate::ratelimit::{Backlog, TokenBucket};

/// Sends instantly; counts the sends.
#[derive(Default)]
struct Outbox(AtomicUsize);

#[async_trait]
impl Mailer for Outbox {
    async fn send(&self, _mail: &OutgoingMail) -> Result<String, DownstreamError> {
        Ok(format!("id-{}", self.0.fetch_add(1, Ordering::SeqCst)))
    }
}

/// Claims the invite (100 ms), sends its email through the limiter.
struct Inviting {
    mailer: Arc<RateLimitedMailer<Outbox>>,
}

#[async_trait]
impl MessageHandler for Inviting {
    async fn handle(&self, _message: &QueueMessage) -> Disposition {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mail = OutgoingMail::example();
        match self.mailer.send(&mail).await {
            Ok(_) => Disposition::Ack { outcome: "sent" },
            Err(e) => HandleError::from(e).disposition(),
        }
    }
}

/// Scenario A's worker settings, with fewer attempts so that the old behaviour fails clearly.
fn scenario_a_options() -> WorkerOptions {
    WorkerOptions {
        concurrency: 64,
        wait: Duration::from_secs(1),
        max_messages: 10,
        visibility_timeout: Duration::from_secs(10),
        max_attempts: 5,
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(2),
        shutdown_grace: Duration::from_secs(5),
        handler_timeout: Duration::from_secs(8),
        until_idle: Some(2),
        pause_when: None,
        limiters: Vec::new(),
    }
}

fn slowed_mailer() -> Arc<RateLimitedMailer<Outbox>> {
    Arc::new(RateLimitedMailer::new(
        Outbox::default(),
        TokenBucket::new(0.7, 1).named("email-send"),
    ))
}

#[tokio::test(start_paused = true)]
async fn a_slowed_limiter_never_dead_letters_good_messages() {
    let queue = Arc::new(MemoryQueue::standard().with_visibility_timeout(Duration::from_secs(10)));
    for i in 0..64 {
        queue.push(format!("invite {i}"));
    }
    let mailer = slowed_mailer();
    let mut options = scenario_a_options();
    options.limiters = mailer
        .limiters()
        .into_iter()
        .map(|l| l as Arc<dyn Backlog>)
        .collect();
    let handler = Arc::new(Inviting {
        mailer: mailer.clone(),
    });
    let worker = Worker::new(queue.clone() as Arc<dyn Queue>, handler, options);
    let start = Instant::now();
    let summary = worker.run(CancellationToken::new()).await;
    let dead: Vec<String> = queue
        .dead_letters()
        .iter()
        .map(|(_, why)| format!("{}: {}", why.reason_code, why.reason))
        .collect();
    assert!(dead.is_empty(), "{} dead letters: {dead:?}", dead.len());
    assert_eq!(summary.handler_timeouts, 0, "{summary:?}");
    assert_eq!(summary.acked, 64, "{summary:?}");
    assert!(summary.backpressure_pauses > 0, "{summary:?}");
    assert_eq!(mailer.inner().0.load(Ordering::SeqCst), 64);
    // 64 emails at 0.7/s take 90 s; the retries' delays cost little on top.
    let took = start.elapsed();
    eprintln!("64 messages behind 0.7 emails/s: {took:?}, {summary:?}");
    assert!(took < Duration::from_secs(130), "{took:?} {summary:?}");
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_handler_runs_with_a_wait_deadline_of_three_quarters_of_its_timeout() {
    struct Peek(std::sync::Mutex<Option<Duration>>);
    #[async_trait]
    impl MessageHandler for Peek {
        async fn handle(&self, _message: &QueueMessage) -> Disposition {
            let left = crate::ratelimit::wait_limit::wait_deadline()
                .map(|at| at.saturating_duration_since(Instant::now()));
            *self.0.lock().unwrap() = left;
            Disposition::Ack { outcome: "done" }
        }
    }
    let queue = Arc::new(MemoryQueue::standard());
    queue.push("m");
    let peek = Arc::new(Peek(std::sync::Mutex::new(None)));
    let worker = Worker::new(
        queue.clone() as Arc<dyn Queue>,
        peek.clone(),
        scenario_a_options(),
    );
    worker.poll_once().await;
    assert_eq!(*peek.0.lock().unwrap(), Some(Duration::from_secs(6)));
}
