//! [`Queues`] over the in-memory SQS fake ([`MemoryQueue`]) for the operator tools' unit tests:
//! any number of queues by URL, each the same fake the worker's tests use (visibility deadlines,
//! fresh receipt handles per receive, FIFO deduplication ids, injectable failures). Receives do
//! not long-poll here, so a scan that ends on an empty queue ends at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::adapters::memory::queue::{MemoryQueue, QueueOp, StoredMessage};
use crate::ports::{Queue, Queues};

#[derive(Default)]
pub struct MemoryQueues {
    queues: Mutex<HashMap<String, Arc<MemoryQueue>>>,
}

impl MemoryQueues {
    pub fn new() -> Self {
        Self::default()
    }

    /// The queue at `url` (created empty on first use).
    pub fn queue(&self, url: &str) -> Arc<MemoryQueue> {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(url.to_string())
            .or_insert_with(|| Arc::new(MemoryQueue::standard().without_long_polls()))
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
    pub fn messages(&self, url: &str) -> Vec<StoredMessage> {
        self.queue(url).messages()
    }

    pub fn bodies(&self, url: &str) -> Vec<String> {
        self.messages(url).into_iter().map(|m| m.body).collect()
    }

    pub fn visible_len(&self, url: &str) -> usize {
        self.queue(url).visible_len()
    }

    /// The next `entries` entries sent to `url` fail (retryable unless `sender_fault`).
    pub fn fail_send_entries(&self, url: &str, entries: u32, sender_fault: bool) {
        self.queue(url)
            .fail_next_send_entries(entries, sender_fault);
    }

    /// The next `calls` send calls to `url` fail as a whole, transiently.
    pub fn fail_send_calls(&self, url: &str, calls: u32) {
        self.queue(url).fail_next(QueueOp::SendBatch, calls);
    }

    /// The next `calls` delete calls on `url` fail as a whole, transiently.
    pub fn fail_delete_calls(&self, url: &str, calls: u32) {
        self.queue(url).fail_next(QueueOp::DeleteBatch, calls);
    }

    /// `SendMessageBatch` calls so far, to any queue, failed ones included.
    pub fn send_calls(&self) -> u32 {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|q| q.send_calls())
            .sum()
    }

    /// Makes every message on `url` visible, as an expired visibility timeout would.
    pub fn expire_holds(&self, url: &str) {
        self.queue(url).expire_holds();
    }
}

impl Queues for MemoryQueues {
    fn at(&self, queue_url: &str) -> Arc<dyn Queue> {
        self.queue(queue_url)
    }
}
