//! An in-memory SQS queue implementing [`Queue`]: visibility deadlines, receive counts, a fresh
//! receipt handle per receive (stale handles fail like SQS's `ReceiptHandleIsInvalid`),
//! long polling that returns as soon as a message becomes available, a dead-letter list, FIFO
//! group ordering and deduplication ids, batch sends, and optional latency and fault injection.
//! Time is `tokio::time`, so tests can pause it. The operator tools' fake
//! ([`crate::adapters::memory::MemoryQueues`]) is one of these per queue URL.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

use crate::error::{DownstreamError, ErrorKind, Service};
use crate::ports::queue_limits::{MAX_BATCH, MAX_VISIBILITY_SECONDS};
use crate::ports::{BatchFailure, DeadLetter, OutgoingMessage, Queue, QueueMessage};

/// SQS's limit on a visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(MAX_VISIBILITY_SECONDS);

/// The operations faults can be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueOp {
    Receive,
    DeleteBatch,
    ChangeVisibility,
    DeadLetter,
    SendBatch,
}

impl QueueOp {
    fn name(self) -> &'static str {
        match self {
            QueueOp::Receive => "ReceiveMessage",
            QueueOp::DeleteBatch => "DeleteMessageBatch",
            QueueOp::ChangeVisibility => "ChangeMessageVisibility",
            QueueOp::DeadLetter => "SendMessage",
            QueueOp::SendBatch => "SendMessageBatch",
        }
    }
}

#[derive(Debug)]
struct Stored {
    message_id: String,
    body: String,
    group_id: Option<String>,
    dedup_id: Option<String>,
    attributes: BTreeMap<String, String>,
    sent_at: OffsetDateTime,
    receive_count: u32,
    visible_at: Instant,
    /// The handle from the latest receive; earlier ones are stale.
    receipt_handle: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    /// Keyed by send sequence, so iteration is send order.
    messages: BTreeMap<u64, Stored>,
    /// Current receipt handle -> sequence.
    receipts: HashMap<String, u64>,
    next_seq: u64,
    /// FIFO deduplication ids seen (a second send with one is dropped, as SQS does).
    dedup_ids: HashSet<String>,
    dead_letters: Vec<(QueueMessage, DeadLetter)>,
    deleted: u64,
    faults: HashMap<QueueOp, u32>,
    /// Every call fails as if the queue did not exist (a setup error, not an outage).
    missing: bool,
    failing_delete_entries: u32,
    /// The next entries sent that fail, and whether as the sender's fault.
    failing_send_entries: (u32, bool),
    send_calls: u32,
    receive_requests: Vec<u8>,
    delete_batch_sizes: Vec<usize>,
    visibility_changes: u64,
}

impl State {
    fn store(&mut self, message_id: String, message: OutgoingMessage, sent_at: OffsetDateTime) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.messages.insert(
            seq,
            Stored {
                message_id,
                body: message.body,
                group_id: message.group_id,
                dedup_id: message.dedup_id,
                attributes: message.attributes,
                sent_at,
                receive_count: 0,
                visible_at: Instant::now(),
                receipt_handle: None,
            },
        );
    }
}

/// A message on a [`MemoryQueue`], as a test sees it.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    pub message_id: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub receive_count: u32,
    /// Whether a receive could return it now (FIFO group locks aside).
    pub visible: bool,
}

/// An in-memory stand-in for an SQS queue (standard or FIFO).
#[derive(Debug)]
pub struct MemoryQueue {
    fifo: bool,
    visibility_timeout: Duration,
    latency: Duration,
    long_polls: bool,
    state: Mutex<State>,
    arrivals: Notify,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::standard()
    }
}

impl MemoryQueue {
    /// A standard queue with a 30 s default visibility timeout.
    pub fn standard() -> Self {
        Self {
            fifo: false,
            visibility_timeout: Duration::from_secs(30),
            latency: Duration::ZERO,
            long_polls: true,
            state: Mutex::new(State::default()),
            arrivals: Notify::new(),
        }
    }

    /// A FIFO queue: a group with a message in flight delivers nothing more until it is done.
    pub fn fifo() -> Self {
        Self {
            fifo: true,
            ..Self::standard()
        }
    }

    /// The queue's default visibility timeout, applied at each receive.
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// Adds `latency` to every call.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Receives return at once instead of long-polling, so a scan that ends on an empty queue
    /// ends at once.
    pub fn without_long_polls(mut self) -> Self {
        self.long_polls = false;
        self
    }

    /// Makes the next `times` calls of `op` fail with a transient (`Unavailable`) error.
    pub fn fail_next(&self, op: QueueOp, times: u32) {
        self.lock().faults.insert(op, times);
    }

    /// Makes every later call fail as SQS does for a queue that does not exist.
    pub fn remove_queue(&self) {
        self.lock().missing = true;
    }

    /// Makes the next `entries` delete entries fail with a receiver-side (retryable) failure.
    pub fn fail_next_delete_entries(&self, entries: u32) {
        self.lock().failing_delete_entries = entries;
    }

    /// Sends a message; returns its id.
    pub fn push(&self, body: impl Into<String>) -> String {
        self.send(body.into(), None)
    }

    /// Sends a message to a FIFO message group; returns its id.
    pub fn push_to_group(&self, body: impl Into<String>, group: impl Into<String>) -> String {
        self.send(body.into(), Some(group.into()))
    }

    /// Every message sent to the dead-letter queue, with its reason, in order.
    pub fn dead_letters(&self) -> Vec<(QueueMessage, DeadLetter)> {
        self.lock().dead_letters.clone()
    }

    /// Messages that a receive could return now (ignoring FIFO group locks).
    pub fn visible_len(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .messages
            .values()
            .filter(|m| m.visible_at <= now)
            .count()
    }

    /// Messages received and not yet deleted whose visibility has not expired.
    pub fn in_flight_len(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .messages
            .values()
            .filter(|m| m.visible_at > now)
            .count()
    }

    /// Messages on the queue, visible or not.
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    /// Whether the queue holds no message at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages deleted so far.
    pub fn deleted_count(&self) -> u64 {
        self.lock().deleted
    }

    /// How many times a message has been received, if it is still on the queue.
    pub fn receive_count(&self, message_id: &str) -> Option<u32> {
        self.lock()
            .messages
            .values()
            .find(|m| m.message_id == message_id)
            .map(|m| m.receive_count)
    }

    /// How long until a message becomes visible again (zero if it is visible), if it is still on
    /// the queue.
    pub fn invisible_for(&self, message_id: &str) -> Option<Duration> {
        let now = Instant::now();
        self.lock()
            .messages
            .values()
            .find(|m| m.message_id == message_id)
            .map(|m| m.visible_at.saturating_duration_since(now))
    }

    /// The `max` of every receive call so far, in order.
    pub fn receive_requests(&self) -> Vec<u8> {
        self.lock().receive_requests.clone()
    }

    /// The number of entries in every `delete_batch` call that got past fault injection.
    pub fn delete_batch_sizes(&self) -> Vec<usize> {
        self.lock().delete_batch_sizes.clone()
    }

    /// Successful `change_visibility` calls so far.
    pub fn visibility_changes(&self) -> u64 {
        self.lock().visibility_changes
    }

    fn send(&self, body: String, group_id: Option<String>) -> String {
        self.put(body, BTreeMap::new(), group_id, OffsetDateTime::now_utc())
    }

    /// Puts a message with `attributes`, sent at `sent_at`, on the queue directly (a dead letter a
    /// test sets up, say); returns its id.
    pub fn put(
        &self,
        body: impl Into<String>,
        attributes: BTreeMap<String, String>,
        group_id: Option<String>,
        sent_at: OffsetDateTime,
    ) -> String {
        let message = OutgoingMessage {
            id: String::new(),
            body: body.into(),
            attributes,
            group_id,
            dedup_id: None,
        };
        let message_id = uuid::Uuid::new_v4().to_string();
        self.lock().store(message_id.clone(), message, sent_at);
        self.arrivals.notify_waiters();
        message_id
    }

    /// `SendMessageBatch`: up to ten entries; returns the entries that failed (injected), by
    /// index. An entry whose deduplication id was seen before is accepted and dropped.
    pub async fn send_batch(
        &self,
        entries: Vec<OutgoingMessage>,
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        self.lock().send_calls += 1;
        self.enter(QueueOp::SendBatch).await?;
        if entries.is_empty() || entries.len() > MAX_BATCH {
            return Err(rejected(
                QueueOp::SendBatch,
                "too_many_entries_in_batch_request",
                "1 to 10 entries",
            ));
        }
        let mut failures = Vec::new();
        {
            let mut state = self.lock();
            for (index, entry) in entries.into_iter().enumerate() {
                let (failing, sender_fault) = state.failing_send_entries;
                if failing > 0 {
                    state.failing_send_entries.0 -= 1;
                    failures.push(BatchFailure {
                        index,
                        code: if sender_fault {
                            "InvalidParameterValue".into()
                        } else {
                            "InternalError".into()
                        },
                        message: "injected".into(),
                        sender_fault,
                    });
                    continue;
                }
                if let Some(dedup) = &entry.dedup_id {
                    if !state.dedup_ids.insert(dedup.clone()) {
                        continue;
                    }
                }
                state.store(
                    uuid::Uuid::new_v4().to_string(),
                    entry,
                    OffsetDateTime::now_utc(),
                );
            }
        }
        self.arrivals.notify_waiters();
        Ok(failures)
    }

    /// Makes the next `entries` entries sent fail (retryable unless `sender_fault`).
    pub fn fail_next_send_entries(&self, entries: u32, sender_fault: bool) {
        self.lock().failing_send_entries = (entries, sender_fault);
    }

    /// How many injected entry failures are still to come.
    pub fn failing_send_entries(&self) -> u32 {
        self.lock().failing_send_entries.0
    }

    /// `send_batch` calls so far, failed ones included.
    pub fn send_calls(&self) -> u32 {
        self.lock().send_calls
    }

    /// Makes every message visible, as if every visibility timeout had run out.
    pub fn expire_holds(&self) {
        let now = Instant::now();
        for m in self.lock().messages.values_mut() {
            m.visible_at = m.visible_at.min(now);
        }
        self.arrivals.notify_waiters();
    }

    /// Every message on the queue, in send order, as a test sees it.
    pub fn messages(&self) -> Vec<StoredMessage> {
        let now = Instant::now();
        self.lock()
            .messages
            .values()
            .map(|m| StoredMessage {
                message_id: m.message_id.clone(),
                body: m.body.clone(),
                attributes: m.attributes.clone(),
                group_id: m.group_id.clone(),
                dedup_id: m.dedup_id.clone(),
                receive_count: m.receive_count,
                visible: m.visible_at <= now,
            })
            .collect()
    }

    /// `ReceiveMessage` with an explicit visibility timeout for what it returns (`None`: the
    /// queue's default), long-polling up to `wait`.
    pub async fn receive_holding(
        &self,
        max: u8,
        wait: Duration,
        hold: Option<Duration>,
    ) -> Result<Vec<QueueMessage>, DownstreamError> {
        self.enter(QueueOp::Receive).await?;
        self.lock().receive_requests.push(max);
        if !(1..=MAX_BATCH).contains(&usize::from(max)) {
            return Err(rejected(
                QueueOp::Receive,
                "invalid_parameter_value",
                "MaxNumberOfMessages must be 1 to 10",
            ));
        }
        let hold = hold.unwrap_or(self.visibility_timeout);
        let wait = if self.long_polls {
            wait
        } else {
            Duration::ZERO
        };
        let deadline = Instant::now() + wait.min(Duration::from_secs(20));
        loop {
            // Register interest before looking, so an arrival in between is not missed.
            let arrival = self.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            match self.take(usize::from(max), hold) {
                Ok(messages) => return Ok(messages),
                Err(next_visible) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(Vec::new());
                    }
                    let until = next_visible.map_or(deadline, |at| at.min(deadline));
                    let _ = tokio::time::timeout_at(until, arrival).await;
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not wedge every other user of the queue.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn enter(&self, op: QueueOp) -> Result<(), DownstreamError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let mut state = self.lock();
        if state.missing {
            return Err(DownstreamError::new(
                Service::Sqs,
                op.name(),
                ErrorKind::Rejected("queue_not_found".into()),
                "AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist.",
            )
            .with_setup(Some(crate::error::SetupCause::NotFound)));
        }
        if let Some(left) = state.faults.get_mut(&op) {
            if *left > 0 {
                *left -= 1;
                return Err(DownstreamError::new(
                    Service::Sqs,
                    op.name(),
                    ErrorKind::Unavailable,
                    "injected fault",
                ));
            }
        }
        Ok(())
    }

    /// Takes up to `max` deliverable messages, marking them in flight. `None` when nothing is
    /// deliverable; then also when the next message becomes visible.
    fn take(&self, max: usize, hold: Duration) -> Result<Vec<QueueMessage>, Option<Instant>> {
        let now = Instant::now();
        let mut state = self.lock();
        let blocked: HashSet<String> = if self.fifo {
            state
                .messages
                .values()
                .filter(|m| m.visible_at > now)
                .filter_map(|m| m.group_id.clone())
                .collect()
        } else {
            HashSet::new()
        };
        let chosen: Vec<u64> = state
            .messages
            .iter()
            .filter(|(_, m)| m.visible_at <= now)
            .filter(|(_, m)| m.group_id.as_ref().is_none_or(|g| !blocked.contains(g)))
            .map(|(seq, _)| *seq)
            .take(max)
            .collect();
        if chosen.is_empty() {
            let next = state
                .messages
                .values()
                .map(|m| m.visible_at)
                .filter(|at| *at > now)
                .min();
            return Err(next);
        }
        let mut out = Vec::with_capacity(chosen.len());
        for seq in chosen {
            let handle = uuid::Uuid::new_v4().to_string();
            let Some(m) = state.messages.get_mut(&seq) else {
                continue;
            };
            let stale = m.receipt_handle.replace(handle.clone());
            m.receive_count += 1;
            m.visible_at = now + hold;
            let message = QueueMessage {
                message_id: m.message_id.clone(),
                receipt_handle: handle.clone(),
                body: m.body.clone(),
                receive_count: m.receive_count,
                group_id: m.group_id.clone(),
                sent_at: Some(m.sent_at),
                attributes: m.attributes.clone(),
            };
            if let Some(stale) = stale {
                state.receipts.remove(&stale);
            }
            state.receipts.insert(handle, seq);
            out.push(message);
        }
        Ok(out)
    }
}

fn rejected(op: QueueOp, code: &str, message: &str) -> DownstreamError {
    DownstreamError::new(
        Service::Sqs,
        op.name(),
        ErrorKind::Rejected(code.into()),
        message,
    )
}

impl MemoryQueue {
    /// One `DeleteMessageBatch` as SQS answers it: 1 to 10 entries (else the whole call is
    /// refused), failures by index. `delete_messages` sends any number through it in tens.
    pub async fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        self.enter(QueueOp::DeleteBatch).await?;
        if receipt_handles.is_empty() {
            return Err(rejected(
                QueueOp::DeleteBatch,
                "empty_batch_request",
                "no entries",
            ));
        }
        if receipt_handles.len() > MAX_BATCH {
            return Err(rejected(
                QueueOp::DeleteBatch,
                "too_many_entries_in_batch_request",
                "at most 10 entries",
            ));
        }
        let mut state = self.lock();
        state.delete_batch_sizes.push(receipt_handles.len());
        let mut failures = Vec::new();
        for (index, handle) in receipt_handles.iter().enumerate() {
            if state.failing_delete_entries > 0 {
                state.failing_delete_entries -= 1;
                failures.push(BatchFailure {
                    index,
                    code: "InternalError".into(),
                    message: "injected fault".into(),
                    sender_fault: false,
                });
                continue;
            }
            match state.receipts.remove(handle) {
                Some(seq) => {
                    state.messages.remove(&seq);
                    state.deleted += 1;
                }
                None => failures.push(BatchFailure {
                    index,
                    code: "ReceiptHandleIsInvalid".into(),
                    message: "The receipt handle is not valid for this message".into(),
                    sender_fault: true,
                }),
            }
        }
        Ok(failures)
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn receive(&self, max: u8, wait: Duration) -> Result<Vec<QueueMessage>, DownstreamError> {
        self.receive_holding(max, wait, None).await
    }

    async fn receive_and_hold(
        &self,
        max: u8,
        wait: Duration,
        hold: Duration,
    ) -> Result<Vec<QueueMessage>, DownstreamError> {
        self.receive_holding(max, wait, Some(hold)).await
    }

    async fn send_messages(
        &self,
        mut entries: Vec<OutgoingMessage>,
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        let mut failures = Vec::new();
        let mut offset = 0;
        while !entries.is_empty() {
            let rest = entries.split_off(entries.len().min(MAX_BATCH));
            let n = entries.len();
            for mut f in self.send_batch(entries).await? {
                f.index += offset;
                failures.push(f);
            }
            offset += n;
            entries = rest;
        }
        Ok(failures)
    }

    async fn delete_messages(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        let mut failures = Vec::new();
        for (chunk_no, chunk) in receipt_handles.chunks(MAX_BATCH).enumerate() {
            for mut f in self.delete_batch(chunk).await? {
                f.index += chunk_no * MAX_BATCH;
                failures.push(f);
            }
        }
        Ok(failures)
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), DownstreamError> {
        self.enter(QueueOp::ChangeVisibility).await?;
        if timeout > MAX_VISIBILITY {
            return Err(rejected(
                QueueOp::ChangeVisibility,
                "invalid_parameter_value",
                "VisibilityTimeout must be at most 43200",
            ));
        }
        {
            let mut state = self.lock();
            let Some(seq) = state.receipts.get(receipt_handle).copied() else {
                return Err(rejected(
                    QueueOp::ChangeVisibility,
                    "receipt_handle_is_invalid",
                    "The receipt handle is not valid",
                ));
            };
            let Some(message) = state.messages.get_mut(&seq) else {
                return Err(rejected(
                    QueueOp::ChangeVisibility,
                    "receipt_handle_is_invalid",
                    "The receipt handle is not valid",
                ));
            };
            message.visible_at = Instant::now() + timeout;
            state.visibility_changes += 1;
        }
        // A release (or shorter timeout) may make something deliverable for a long poll.
        self.arrivals.notify_waiters();
        Ok(())
    }

    async fn dead_letter(
        &self,
        message: &QueueMessage,
        why: &DeadLetter,
    ) -> Result<(), DownstreamError> {
        self.enter(QueueOp::DeadLetter).await?;
        self.lock()
            .dead_letters
            .push((message.clone(), why.clone()));
        Ok(())
    }

    fn is_fifo(&self) -> bool {
        self.fifo
    }

    async fn messages_left(&self) -> Result<Option<u64>, DownstreamError> {
        Ok(Some(self.lock().messages.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const NO_WAIT: Duration = Duration::ZERO;

    fn handles(messages: &[QueueMessage]) -> Vec<String> {
        messages.iter().map(|m| m.receipt_handle.clone()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn receive_hides_messages_until_visibility_expires() {
        let q = MemoryQueue::standard().with_visibility_timeout(Duration::from_secs(10));
        let id = q.push("a");
        let got = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].message_id, id);
        assert_eq!(got[0].receive_count, 1);
        assert_eq!((q.visible_len(), q.in_flight_len()), (0, 1));
        assert!(q.receive(10, NO_WAIT).await.unwrap().is_empty());

        tokio::time::advance(Duration::from_secs(10)).await;
        let again = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(again[0].receive_count, 2);
        assert_ne!(again[0].receipt_handle, got[0].receipt_handle);
    }

    #[tokio::test(start_paused = true)]
    async fn any_number_of_messages_go_in_batches_of_ten_with_failures_by_overall_index() {
        let q = MemoryQueue::standard();
        let entries: Vec<OutgoingMessage> = (0..12)
            .map(|i| OutgoingMessage {
                id: i.to_string(),
                body: format!("m{i}"),
                ..Default::default()
            })
            .collect();
        assert!(q.send_messages(entries).await.unwrap().is_empty());
        assert_eq!((q.send_calls(), q.len()), (2, 12));

        let hold = Duration::from_secs(60);
        let mut held = handles(&q.receive_and_hold(10, NO_WAIT, hold).await.unwrap());
        held.extend(handles(
            &q.receive_and_hold(10, NO_WAIT, hold).await.unwrap(),
        ));
        assert_eq!((held.len(), q.visible_len()), (12, 0));
        held[11] = "stale".into();
        let failures = q.delete_messages(&held).await.unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].index, 11);
        assert_eq!(q.delete_batch_sizes(), vec![10, 2]);
        assert_eq!(q.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn receive_respects_max_and_send_order() {
        let q = MemoryQueue::standard();
        let ids: Vec<_> = (0..5).map(|i| q.push(format!("m{i}"))).collect();
        let first = q.receive(3, NO_WAIT).await.unwrap();
        let second = q.receive(3, NO_WAIT).await.unwrap();
        let got: Vec<_> = first
            .iter()
            .chain(&second)
            .map(|m| m.message_id.clone())
            .collect();
        assert_eq!(got, ids);
        assert_eq!(q.receive_requests(), vec![3, 3]);
        assert!(q.receive(0, NO_WAIT).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn stale_receipt_handles_fail_delete_and_visibility_changes() {
        let q = MemoryQueue::standard().with_visibility_timeout(Duration::from_secs(5));
        q.push("a");
        let first = q.receive(1, NO_WAIT).await.unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        let second = q.receive(1, NO_WAIT).await.unwrap();

        let failures = q.delete_batch(&handles(&first)).await.unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].code, "ReceiptHandleIsInvalid");
        assert!(failures[0].sender_fault);
        let err = q
            .change_visibility(&first[0].receipt_handle, NO_WAIT)
            .await
            .unwrap_err();
        assert_eq!(err.rejection_code(), Some("receipt_handle_is_invalid"));

        assert!(q.delete_batch(&handles(&second)).await.unwrap().is_empty());
        assert_eq!(q.deleted_count(), 1);
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn delete_batch_reports_entries_by_index_and_limits_size() {
        let q = MemoryQueue::standard();
        q.push("a");
        q.push("b");
        let got = q.receive(10, NO_WAIT).await.unwrap();
        let entries = vec![
            got[0].receipt_handle.clone(),
            "bogus".to_string(),
            got[1].receipt_handle.clone(),
        ];
        let failures = q.delete_batch(&entries).await.unwrap();
        assert_eq!(
            failures.iter().map(|f| f.index).collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(q.deleted_count(), 2);
        let too_many: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert!(q.delete_batch(&too_many).await.is_err());
        assert!(q.delete_batch(&[]).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn change_visibility_releases_and_delays() {
        let q = MemoryQueue::standard();
        let id = q.push("a");
        let got = q.receive(1, NO_WAIT).await.unwrap();
        q.change_visibility(&got[0].receipt_handle, Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(q.invisible_for(&id), Some(Duration::from_secs(120)));
        q.change_visibility(&got[0].receipt_handle, NO_WAIT)
            .await
            .unwrap();
        assert_eq!(q.visible_len(), 1);
        assert!(q
            .change_visibility(&got[0].receipt_handle, Duration::from_secs(50_000))
            .await
            .is_err());
        assert_eq!(q.visibility_changes(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_returns_early_when_a_message_arrives() {
        let q = Arc::new(MemoryQueue::standard());
        let start = Instant::now();
        let pusher = {
            let q = q.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                q.push("late");
            })
        };
        let got = q.receive(10, Duration::from_secs(20)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        pusher.await.unwrap();

        // Nothing arrives: the full wait, then an empty answer.
        let start = Instant::now();
        assert!(q
            .receive(10, Duration::from_secs(20))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_wakes_when_visibility_expires() {
        let q = MemoryQueue::standard().with_visibility_timeout(Duration::from_secs(4));
        q.push("a");
        q.receive(1, NO_WAIT).await.unwrap();
        let start = Instant::now();
        let got = q.receive(1, Duration::from_secs(20)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn fifo_holds_back_a_group_with_a_message_in_flight() {
        let q = MemoryQueue::fifo();
        let a1 = q.push_to_group("a1", "a");
        let a2 = q.push_to_group("a2", "a");
        let b1 = q.push_to_group("b1", "b");

        let first = q.receive(1, NO_WAIT).await.unwrap();
        assert_eq!(first[0].message_id, a1);
        // a2 waits for a1; b1 is free.
        let second = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(
            second
                .iter()
                .map(|m| m.message_id.clone())
                .collect::<Vec<_>>(),
            vec![b1]
        );

        q.delete_batch(&handles(&first)).await.unwrap();
        let third = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(third[0].message_id, a2);
        assert_eq!(third[0].group_id.as_deref(), Some("a"));
        assert!(q.is_fifo());
    }

    #[tokio::test(start_paused = true)]
    async fn fifo_delivers_a_whole_group_in_order_in_one_receive() {
        let q = MemoryQueue::fifo();
        let ids: Vec<_> = (0..3)
            .map(|i| q.push_to_group(format!("{i}"), "g"))
            .collect();
        let got = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(
            got.iter().map(|m| m.message_id.clone()).collect::<Vec<_>>(),
            ids
        );
    }

    #[tokio::test(start_paused = true)]
    async fn injected_faults_are_transient_and_run_out() {
        let q = MemoryQueue::standard();
        q.push("a");
        q.fail_next(QueueOp::Receive, 2);
        for _ in 0..2 {
            let err = q.receive(1, NO_WAIT).await.unwrap_err();
            assert!(err.is_transient());
            assert_eq!(err.service, Service::Sqs);
        }
        let got = q.receive(1, NO_WAIT).await.unwrap();
        assert_eq!(got.len(), 1);

        q.fail_next_delete_entries(1);
        let failures = q.delete_batch(&handles(&got)).await.unwrap();
        assert!(!failures[0].sender_fault);
        assert!(q.delete_batch(&handles(&got)).await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn dead_letters_are_recorded_with_their_reason() {
        let q = MemoryQueue::standard();
        q.push("bad");
        let got = q.receive(1, NO_WAIT).await.unwrap();
        let why = DeadLetter {
            reason_code: "malformed".into(),
            reason: "body: not JSON".into(),
            attempts: 1,
        };
        q.dead_letter(&got[0], &why).await.unwrap();
        let dlq = q.dead_letters();
        assert_eq!(dlq.len(), 1);
        assert_eq!(dlq[0].0.body, "bad");
        assert_eq!(dlq[0].1, why);
        // Sending to the DLQ does not delete the original.
        assert_eq!(q.len(), 1);

        q.fail_next(QueueOp::DeadLetter, 1);
        assert!(q.dead_letter(&got[0], &why).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn latency_applies_to_every_call() {
        let q = MemoryQueue::standard().with_latency(Duration::from_millis(40));
        let start = Instant::now();
        q.receive(1, NO_WAIT).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(40));
    }
}
