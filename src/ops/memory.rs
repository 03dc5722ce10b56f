//! [`OpsQueue`] over the in-memory SQS fake ([`MemoryQueue`]) for the unit tests: any number of
//! queues by URL, each the same fake the worker's tests use (visibility deadlines, fresh receipt
//! handles per receive, FIFO deduplication ids, injectable failures). Receives do not long-poll
//! here (`wait` is ignored), so a scan that ends on an empty queue ends at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::adapters::memory::queue::{MemoryQueue, QueueOp, StoredMessage};
use crate::adapters::sqs::OutgoingMessage;
use crate::ops::queue::OpsQueue;
use crate::ports::queue_limits::MAX_BATCH;
use crate::ports::{BatchFailure, Queue, QueueMessage};

/// A message as the fake holds it.
pub type Stored = StoredMessage;

/// Faults injected on every queue, by call.
#[derive(Default)]
struct Faults {
    send_entries: (u32, bool),
    send_calls: u32,
    delete_calls: u32,
}

#[derive(Default)]
pub struct MemoryOps {
    queues: Mutex<HashMap<String, Arc<MemoryQueue>>>,
    faults: Mutex<Faults>,
    send_calls: Mutex<u32>,
}

impl MemoryOps {
    pub fn new() -> Self {
        Self::default()
    }

    /// The queue at `url` (created empty on first use).
    pub fn queue(&self, url: &str) -> Arc<MemoryQueue> {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(url.to_string())
            .or_insert_with(|| Arc::new(MemoryQueue::standard()))
            .clone()
    }

    /// Puts a message on `url` directly (a dead letter, say), sent five minutes ago; returns its
    /// message id.
    pub fn put(&self, url: &str, body: &str, attributes: &[(&str, &str)]) -> String {
        self.put_in_group(url, body, attributes, None)
    }

    pub fn put_in_group(
        &self,
        url: &str,
        body: &str,
        attributes: &[(&str, &str)],
        group_id: Option<&str>,
    ) -> String {
        let attributes: BTreeMap<String, String> = attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sent_at = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
        self.queue(url)
            .put(body, attributes, group_id.map(str::to_string), sent_at)
    }

    /// Everything on `url`, in send order.
    pub fn messages(&self, url: &str) -> Vec<Stored> {
        self.queue(url).messages()
    }

    pub fn bodies(&self, url: &str) -> Vec<String> {
        self.messages(url).into_iter().map(|m| m.body).collect()
    }

    pub fn visible_len(&self, url: &str) -> usize {
        self.queue(url).visible_len()
    }

    /// The next `entries` entries sent (to any queue) fail (retryable unless `sender_fault`).
    pub fn fail_send_entries(&self, entries: u32, sender_fault: bool) {
        self.faults().send_entries = (entries, sender_fault);
    }

    /// The next `calls` send calls fail as a whole, transiently.
    pub fn fail_send_calls(&self, calls: u32) {
        self.faults().send_calls = calls;
    }

    /// The next `calls` delete calls fail as a whole, transiently.
    pub fn fail_delete_calls(&self, calls: u32) {
        self.faults().delete_calls = calls;
    }

    pub fn send_calls(&self) -> u32 {
        *self.send_calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every message on `url` visible, as an expired visibility timeout would.
    pub fn expire_holds(&self, url: &str) {
        self.queue(url).expire_holds();
    }

    /// Passes one of the call failures asked for `op` on to the queue the call goes to.
    fn inject_call_fault(&self, queue: &MemoryQueue, op: QueueOp) {
        let mut faults = self.faults();
        let left = match op {
            QueueOp::SendBatch => &mut faults.send_calls,
            _ => &mut faults.delete_calls,
        };
        if *left > 0 {
            *left -= 1;
            queue.fail_next(op, 1);
        }
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl OpsQueue for MemoryOps {
    async fn receive(
        &self,
        queue_url: &str,
        max: u8,
        _wait: Duration,
        hold: Duration,
    ) -> Result<Vec<QueueMessage>, crate::error::DownstreamError> {
        self.queue(queue_url)
            .receive_holding(max, Duration::ZERO, Some(hold))
            .await
    }

    async fn send(
        &self,
        queue_url: &str,
        entries: Vec<OutgoingMessage>,
    ) -> Result<Vec<BatchFailure>, crate::error::DownstreamError> {
        *self.send_calls.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let queue = self.queue(queue_url);
        self.inject_call_fault(&queue, QueueOp::SendBatch);
        let (entries_left, sender_fault) = self.faults().send_entries;
        queue.fail_next_send_entries(entries_left, sender_fault);
        let mut failures = Vec::new();
        let mut offset = 0;
        let mut entries = entries;
        while !entries.is_empty() {
            let rest = entries.split_off(entries.len().min(MAX_BATCH));
            let n = entries.len();
            let result = queue.send_batch(entries).await;
            // What the engine did not use of the injected entry failures stays for the next call.
            self.faults().send_entries.0 = queue.failing_send_entries();
            for mut f in result? {
                f.index += offset;
                failures.push(f);
            }
            offset += n;
            entries = rest;
        }
        Ok(failures)
    }

    async fn delete(
        &self,
        queue_url: &str,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, crate::error::DownstreamError> {
        let queue = self.queue(queue_url);
        self.inject_call_fault(&queue, QueueOp::DeleteBatch);
        let mut failures = Vec::new();
        for (chunk_no, chunk) in receipt_handles.chunks(MAX_BATCH).enumerate() {
            for mut f in queue.delete_batch(chunk).await? {
                f.index += chunk_no * MAX_BATCH;
                failures.push(f);
            }
        }
        Ok(failures)
    }

    async fn set_visibility(
        &self,
        queue_url: &str,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), crate::error::DownstreamError> {
        self.queue(queue_url)
            .change_visibility(receipt_handle, timeout)
            .await
    }
}
