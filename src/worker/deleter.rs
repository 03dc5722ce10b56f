//! The delete batcher: acked messages' receipt handles go into a channel; one task deletes them
//! ten at a time (`DeleteMessageBatch`), at once when ten are ready or after a short linger.
//! Failed entries are retried a couple of times; invalid receipt handles (the message was
//! received again, or the failure is the sender's fault) are logged and dropped — the message
//! comes back and the handler, being idempotent, acks it again.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff;
use super::stats::WorkerStats;
use crate::ports::{BatchFailure, Queue};

/// SQS's limit on entries per `DeleteMessageBatch`.
pub(crate) use crate::ports::queue_limits::MAX_BATCH as BATCH_SIZE;
/// How long a partial batch waits for company.
pub(crate) const LINGER: Duration = Duration::from_millis(50);

/// Where handlers' acks go: a cheap, cloneable sender.
#[derive(Clone, Debug)]
pub(crate) struct Deletes(mpsc::UnboundedSender<String>);

impl Deletes {
    /// Queues a delete; `false` if the batcher is already gone (the message will come back).
    pub(crate) fn delete(&self, receipt_handle: String) -> bool {
        self.0.send(receipt_handle).is_ok()
    }
}

/// The running batcher task.
pub(crate) struct DeleteBatcher {
    sender: Deletes,
    closing: CancellationToken,
    task: JoinHandle<()>,
}

impl DeleteBatcher {
    pub(crate) fn spawn(queue: Arc<dyn Queue>, stats: Arc<WorkerStats>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let closing = CancellationToken::new();
        let task = tokio::spawn(batch_loop(queue, stats, rx, closing.clone()));
        Self {
            sender: Deletes(tx),
            closing,
            task,
        }
    }

    pub(crate) fn sender(&self) -> Deletes {
        self.sender.clone()
    }

    /// Flushes everything queued so far and stops.
    pub(crate) async fn close(self) {
        self.closing.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the delete batcher task failed");
        }
    }
}

async fn batch_loop(
    queue: Arc<dyn Queue>,
    stats: Arc<WorkerStats>,
    mut rx: mpsc::UnboundedReceiver<String>,
    closing: CancellationToken,
) {
    let mut batch: Vec<String> = Vec::with_capacity(BATCH_SIZE);
    'running: loop {
        if batch.is_empty() {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(handle) => batch.push(handle),
                    None => break 'running,
                },
                () = closing.cancelled() => break 'running,
            }
        }
        let deadline = Instant::now() + LINGER;
        while batch.len() < BATCH_SIZE {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(handle) => batch.push(handle),
                    None => break 'running,
                },
                () = tokio::time::sleep_until(deadline) => break,
                () = closing.cancelled() => break 'running,
            }
        }
        flush(queue.as_ref(), &stats, std::mem::take(&mut batch)).await;
    }
    // Closing: whatever is still in the channel goes out now, in full batches.
    rx.close();
    while let Ok(handle) = rx.try_recv() {
        batch.push(handle);
    }
    for chunk in batch.chunks(BATCH_SIZE) {
        flush(queue.as_ref(), &stats, chunk.to_vec()).await;
    }
}

/// A failure that retrying cannot fix.
fn is_permanent(failure: &BatchFailure) -> bool {
    failure.sender_fault || failure.code.contains("ReceiptHandleIsInvalid")
}

/// Deletes up to ten messages, retrying failed entries a couple of times.
pub(crate) async fn flush(queue: &dyn Queue, stats: &WorkerStats, mut entries: Vec<String>) {
    let mut delays = backoff::sqs_call().build();
    while !entries.is_empty() {
        match queue.delete_messages(&entries).await {
            Ok(failures) => {
                let mut again = Vec::new();
                for failure in failures {
                    let Some(handle) = entries.get(failure.index) else {
                        tracing::warn!(
                            index = failure.index,
                            "DeleteMessageBatch reported a failure for an entry it was not sent"
                        );
                        continue;
                    };
                    if is_permanent(&failure) {
                        WorkerStats::inc(&stats.delete_failures);
                        tracing::warn!(
                            code = %failure.code,
                            error = %failure.message,
                            "could not delete an acked message (receipt handle no longer valid); it will be delivered again"
                        );
                    } else {
                        again.push(handle.clone());
                    }
                }
                entries = again;
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, entries = entries.len(), "DeleteMessageBatch failed; retrying");
            }
            Err(e) => {
                WorkerStats::add(&stats.delete_failures, entries.len() as u64);
                tracing::error!(error = %e, entries = entries.len(), "DeleteMessageBatch rejected; the messages will be delivered again");
                return;
            }
        }
        if entries.is_empty() {
            return;
        }
        match delays.next() {
            Some(delay) => tokio::time::sleep(delay).await,
            None => {
                WorkerStats::add(&stats.delete_failures, entries.len() as u64);
                tracing::warn!(
                    entries = entries.len(),
                    "gave up deleting acked messages; they will be delivered again"
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::queue::{MemoryQueue, QueueOp};

    async fn received(queue: &MemoryQueue, n: usize) -> Vec<String> {
        for i in 0..n {
            queue.push(format!("m{i}"));
        }
        let mut handles = Vec::new();
        while handles.len() < n {
            let got = queue.receive(10, Duration::ZERO).await.unwrap();
            handles.extend(got.into_iter().map(|m| m.receipt_handle));
        }
        handles
    }

    #[tokio::test(start_paused = true)]
    async fn full_batches_go_out_at_once_and_the_rest_after_the_linger() {
        let queue = Arc::new(MemoryQueue::standard());
        let stats = Arc::new(WorkerStats::default());
        let handles = received(&queue, 13).await;
        let batcher = DeleteBatcher::spawn(queue.clone(), stats.clone());
        let start = Instant::now();
        for h in handles {
            assert!(batcher.sender().delete(h));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(queue.deleted_count(), 10, "a full batch does not wait");
        tokio::time::sleep(LINGER).await;
        assert_eq!(queue.deleted_count(), 13);
        assert!(start.elapsed() < Duration::from_millis(100));
        assert_eq!(queue.delete_batch_sizes(), vec![10, 3]);
        batcher.close().await;
        assert_eq!(stats.snapshot().delete_failures, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn close_flushes_what_is_pending() {
        let queue = Arc::new(MemoryQueue::standard());
        let stats = Arc::new(WorkerStats::default());
        let handles = received(&queue, 4).await;
        let batcher = DeleteBatcher::spawn(queue.clone(), stats.clone());
        for h in handles {
            batcher.sender().delete(h);
        }
        batcher.close().await;
        assert_eq!(queue.deleted_count(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_entry_failures_are_retried() {
        let queue = MemoryQueue::standard();
        let stats = WorkerStats::default();
        let handles = received(&queue, 3).await;
        queue.fail_next_delete_entries(2);
        flush(&queue, &stats, handles).await;
        assert_eq!(queue.deleted_count(), 3);
        assert_eq!(queue.delete_batch_sizes(), vec![3, 2]);
        assert_eq!(stats.snapshot().delete_failures, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_calls_are_retried_a_couple_of_times_then_counted() {
        let queue = MemoryQueue::standard();
        let stats = WorkerStats::default();
        let handles = received(&queue, 2).await;
        queue.fail_next(QueueOp::DeleteBatch, 2);
        flush(&queue, &stats, handles.clone()).await;
        assert_eq!(queue.deleted_count(), 2);

        let more = received(&queue, 2).await;
        queue.fail_next(QueueOp::DeleteBatch, 5);
        flush(&queue, &stats, more).await;
        assert_eq!(queue.deleted_count(), 2);
        assert_eq!(stats.snapshot().delete_failures, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_receipt_handles_are_dropped_without_retry() {
        let queue = MemoryQueue::standard();
        let stats = WorkerStats::default();
        let mut handles = received(&queue, 1).await;
        handles.push("stale".into());
        flush(&queue, &stats, handles).await;
        assert_eq!(queue.deleted_count(), 1);
        assert_eq!(queue.delete_batch_sizes(), vec![2]);
        assert_eq!(stats.snapshot().delete_failures, 1);
    }
}
