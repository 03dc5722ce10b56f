//! An in-memory [`OpsQueue`] for the unit tests: any number of queues by URL, visibility as a
//! flag (a held message stays invisible until released or deleted), fresh receipt handles per
//! receive, FIFO deduplication ids, and injectable failures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::adapters::sqs::OutgoingMessage;
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::ops::queue::OpsQueue;
use crate::ports::{BatchFailure, QueueMessage};

/// A message as the fake holds it.
#[derive(Clone, Debug)]
pub struct Stored {
    pub message_id: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub receive_count: u32,
    pub visible: bool,
    handle: Option<String>,
}

#[derive(Default)]
struct State {
    queues: HashMap<String, Vec<Stored>>,
    dedup_ids: HashMap<String, HashSet<String>>,
    next: u64,
    fail_send_entries: u32,
    fail_send_entries_sender_fault: bool,
    fail_send_calls: u32,
    fail_delete_calls: u32,
    send_calls: u32,
}

#[derive(Default)]
pub struct MemoryOps {
    state: Mutex<State>,
}

fn unavailable(operation: &'static str) -> DownstreamError {
    DownstreamError::new(
        Service::Sqs,
        operation,
        ErrorKind::Unavailable,
        "injected failure",
    )
}

impl MemoryOps {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a message on `url` directly (a dead letter, say); returns its message id.
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
        let mut s = self.lock();
        s.next += 1;
        let message_id = format!("msg-{}", s.next);
        s.queues.entry(url.to_string()).or_default().push(Stored {
            message_id: message_id.clone(),
            body: body.to_string(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            group_id: group_id.map(str::to_string),
            dedup_id: None,
            receive_count: 0,
            visible: true,
            handle: None,
        });
        message_id
    }

    /// Everything on `url`, in send order.
    pub fn messages(&self, url: &str) -> Vec<Stored> {
        self.lock().queues.get(url).cloned().unwrap_or_default()
    }

    pub fn bodies(&self, url: &str) -> Vec<String> {
        self.messages(url).into_iter().map(|m| m.body).collect()
    }

    pub fn visible_len(&self, url: &str) -> usize {
        self.messages(url).iter().filter(|m| m.visible).count()
    }

    /// The next `entries` entries sent fail (retryable unless `sender_fault`).
    pub fn fail_send_entries(&self, entries: u32, sender_fault: bool) {
        let mut s = self.lock();
        s.fail_send_entries = entries;
        s.fail_send_entries_sender_fault = sender_fault;
    }

    /// The next `calls` send calls fail as a whole, transiently.
    pub fn fail_send_calls(&self, calls: u32) {
        self.lock().fail_send_calls = calls;
    }

    /// The next `calls` delete calls fail as a whole, transiently.
    pub fn fail_delete_calls(&self, calls: u32) {
        self.lock().fail_delete_calls = calls;
    }

    pub fn send_calls(&self) -> u32 {
        self.lock().send_calls
    }

    /// Makes every message on `url` visible, as an expired visibility timeout would.
    pub fn expire_holds(&self, url: &str) {
        if let Some(q) = self.lock().queues.get_mut(url) {
            for m in q {
                m.visible = true;
            }
        }
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
    ) -> Result<Vec<QueueMessage>, DownstreamError> {
        let mut s = self.lock();
        let mut handles = Vec::new();
        for _ in 0..max {
            s.next += 1;
            handles.push(format!("rh-{}", s.next));
        }
        let Some(q) = s.queues.get_mut(queue_url) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for m in q.iter_mut().filter(|m| m.visible).take(max as usize) {
            m.receive_count += 1;
            m.visible = hold.is_zero();
            let handle = handles.pop().unwrap_or_default();
            m.handle = Some(handle.clone());
            out.push(QueueMessage {
                message_id: m.message_id.clone(),
                receipt_handle: handle,
                body: m.body.clone(),
                receive_count: m.receive_count,
                group_id: m.group_id.clone(),
                sent_at: Some(OffsetDateTime::now_utc() - time::Duration::minutes(5)),
                attributes: m.attributes.clone(),
            });
        }
        Ok(out)
    }

    async fn send(
        &self,
        queue_url: &str,
        entries: Vec<OutgoingMessage>,
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        let mut s = self.lock();
        s.send_calls += 1;
        if s.fail_send_calls > 0 {
            s.fail_send_calls -= 1;
            return Err(unavailable("SendMessageBatch"));
        }
        let mut failures = Vec::new();
        for (index, e) in entries.into_iter().enumerate() {
            if s.fail_send_entries > 0 {
                s.fail_send_entries -= 1;
                let sender_fault = s.fail_send_entries_sender_fault;
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
            if let Some(d) = &e.dedup_id {
                let seen = s.dedup_ids.entry(queue_url.to_string()).or_default();
                if !seen.insert(d.clone()) {
                    continue;
                }
            }
            s.next += 1;
            let message_id = format!("msg-{}", s.next);
            s.queues
                .entry(queue_url.to_string())
                .or_default()
                .push(Stored {
                    message_id,
                    body: e.body,
                    attributes: e.attributes,
                    group_id: e.group_id,
                    dedup_id: e.dedup_id,
                    receive_count: 0,
                    visible: true,
                    handle: None,
                });
        }
        Ok(failures)
    }

    async fn delete(
        &self,
        queue_url: &str,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        let mut s = self.lock();
        if s.fail_delete_calls > 0 {
            s.fail_delete_calls -= 1;
            return Err(unavailable("DeleteMessageBatch"));
        }
        let q = s.queues.entry(queue_url.to_string()).or_default();
        let mut failures = Vec::new();
        for (index, handle) in receipt_handles.iter().enumerate() {
            match q.iter().position(|m| m.handle.as_ref() == Some(handle)) {
                Some(pos) => {
                    q.remove(pos);
                }
                None => failures.push(BatchFailure {
                    index,
                    code: "ReceiptHandleIsInvalid".into(),
                    message: "unknown receipt handle".into(),
                    sender_fault: true,
                }),
            }
        }
        Ok(failures)
    }

    async fn set_visibility(
        &self,
        queue_url: &str,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), DownstreamError> {
        let mut s = self.lock();
        let m = s
            .queues
            .get_mut(queue_url)
            .and_then(|q| {
                q.iter_mut()
                    .find(|m| m.handle.as_deref() == Some(receipt_handle))
            })
            .ok_or_else(|| {
                DownstreamError::new(
                    Service::Sqs,
                    "ChangeMessageVisibility",
                    ErrorKind::Rejected("receipt_handle_invalid".into()),
                    "unknown receipt handle",
                )
            })?;
        m.visible = timeout.is_zero();
        Ok(())
    }
}
