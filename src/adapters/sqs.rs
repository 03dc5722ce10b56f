//! [`SqsQueue`]: the inbound queue and its dead-letter queue on Amazon SQS.
//!
//! Besides the [`Queue`] port it offers queue-URL-explicit calls ([`SqsQueue::receive_from`],
//! [`SqsQueue::delete_from`], [`SqsQueue::send_batch`]) for the enqueue and DLQ tools; the port's
//! methods are thin wrappers over them.
//!
//! A dead letter keeps the original body and carries why it was dead-lettered as message
//! attributes (names in [`dead_letter`], e.g. [`ATTR_REASON_CODE`]), followed by as many of the
//! original attributes as fit in SQS's limit of 10.

pub mod dead_letter;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use time::OffsetDateTime;

pub use dead_letter::{
    ATTR_ATTEMPTS, ATTR_ORIGINAL_MESSAGE_ID, ATTR_PREFIX, ATTR_REASON, ATTR_REASON_CODE,
    ATTR_SOURCE_QUEUE, ATTR_WORKER_VERSION, MAX_MESSAGE_ATTRIBUTES,
};

use crate::adapters::aws_errors::classify;
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::ports::{BatchFailure, DeadLetter, OutgoingMessage, Queue, QueueMessage, Queues};

pub use crate::ports::queue_limits::{MAX_BATCH, MAX_VISIBILITY_SECONDS, MAX_WAIT_SECONDS};

/// SQS error codes that mean "slow down" but that the shared table does not know.
const SQS_THROTTLING: &[&str] = &["OverLimit", "KmsThrottled", "KMS.ThrottlingException"];

/// Our reason codes for SQS's own error codes.
fn sqs_code(code: &str) -> Option<&'static str> {
    match code {
        "QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue" => Some("queue_not_found"),
        "ReceiptHandleIsInvalid" => Some("receipt_handle_invalid"),
        "MessageNotInflight" | "AWS.SimpleQueueService.MessageNotInflight" => {
            Some("message_not_inflight")
        }
        _ => None,
    }
}

/// Maps any SQS SDK error.
fn downstream<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> DownstreamError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut e = classify(Service::Sqs, operation, err, sqs_code);
    let code = err.as_service_error().and_then(|s| s.code());
    if code.is_some_and(|c| SQS_THROTTLING.contains(&c)) {
        e.kind = ErrorKind::Throttled;
    }
    e
}

fn invalid_request(operation: &'static str, what: String) -> DownstreamError {
    DownstreamError::new(
        Service::Sqs,
        operation,
        ErrorKind::Rejected("invalid_request".into()),
        what,
    )
}

/// The queue adapter. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dlq_url: String,
    worker_version: String,
    visibility_timeout: Option<Duration>,
}

impl SqsQueue {
    pub fn new(
        client: Client,
        queue_url: impl Into<String>,
        dlq_url: impl Into<String>,
        worker_version: &str,
    ) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dlq_url: dlq_url.into(),
            worker_version: worker_version.to_string(),
            visibility_timeout: None,
        }
    }

    /// Receives with this visibility timeout instead of the queue's own, so a killed worker's
    /// messages come back after the time the worker is configured for.
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = Some(timeout);
        self
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    /// Receives up to `max` (1 to 10) messages from `queue_url`, long-polling up to `wait`
    /// (at most 20 s), optionally with a visibility timeout other than the queue's.
    pub async fn receive_from(
        &self,
        queue_url: &str,
        max: u8,
        wait: Duration,
        visibility_timeout: Option<Duration>,
    ) -> Result<Vec<QueueMessage>, DownstreamError> {
        let out = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(i32::from(max.clamp(1, MAX_BATCH as u8)))
            .wait_time_seconds(seconds(wait, MAX_WAIT_SECONDS))
            .set_visibility_timeout(visibility_timeout.map(|v| seconds(v, MAX_VISIBILITY_SECONDS)))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| downstream("ReceiveMessage", &e))?;
        Ok(out.messages().iter().filter_map(to_queue_message).collect())
    }

    /// Deletes messages from `queue_url` by receipt handle, in batches of 10; returns the entries
    /// that failed, by index into `receipt_handles`.
    pub async fn delete_from(
        &self,
        queue_url: &str,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        let mut failures = Vec::new();
        for (chunk_no, chunk) in receipt_handles.chunks(MAX_BATCH).enumerate() {
            let offset = chunk_no * MAX_BATCH;
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid_request("DeleteMessageBatch", e.to_string()))?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| downstream("DeleteMessageBatch", &e))?;
            failures.extend(
                out.failed()
                    .iter()
                    .filter_map(|f| to_failure(f, offset, chunk.len())),
            );
        }
        Ok(failures)
    }

    /// Sends messages to `queue_url` in batches of 10; returns the entries that failed, by index
    /// into `entries`.
    pub async fn send_batch(
        &self,
        queue_url: &str,
        entries: Vec<OutgoingMessage>,
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        let mut failures = Vec::new();
        for (chunk_no, chunk) in entries.chunks(MAX_BATCH).enumerate() {
            let offset = chunk_no * MAX_BATCH;
            let mut batch = Vec::with_capacity(chunk.len());
            for (i, message) in chunk.iter().enumerate() {
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&message.body)
                    .set_message_group_id(message.group_id.clone())
                    .set_message_deduplication_id(message.dedup_id.clone());
                for (name, value) in &message.attributes {
                    entry = entry.message_attributes(
                        name,
                        attribute("SendMessageBatch", dead_letter::DataType::String, value)?,
                    );
                }
                batch.push(
                    entry
                        .build()
                        .map_err(|e| invalid_request("SendMessageBatch", e.to_string()))?,
                );
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(batch))
                .send()
                .await
                .map_err(|e| downstream("SendMessageBatch", &e))?;
            failures.extend(
                out.failed()
                    .iter()
                    .filter_map(|f| to_failure(f, offset, chunk.len())),
            );
        }
        Ok(failures)
    }
}

/// [`Queues`] on Amazon SQS: an [`SqsQueue`] at any URL (without a dead-letter queue of its own),
/// for the operator tools. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqsQueues {
    client: Client,
    worker_version: String,
}

impl SqsQueues {
    pub fn new(client: Client, worker_version: impl Into<String>) -> Self {
        Self {
            client,
            worker_version: worker_version.into(),
        }
    }
}

impl Queues for SqsQueues {
    fn at(&self, queue_url: &str) -> Arc<dyn Queue> {
        Arc::new(SqsQueue::new(
            self.client.clone(),
            queue_url,
            "",
            &self.worker_version,
        ))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn receive(&self, max: u8, wait: Duration) -> Result<Vec<QueueMessage>, DownstreamError> {
        self.receive_from(&self.queue_url, max, wait, self.visibility_timeout)
            .await
    }

    async fn receive_and_hold(
        &self,
        max: u8,
        wait: Duration,
        hold: Duration,
    ) -> Result<Vec<QueueMessage>, DownstreamError> {
        self.receive_from(&self.queue_url, max, wait, Some(hold))
            .await
    }

    async fn delete_messages(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        self.delete_from(&self.queue_url, receipt_handles).await
    }

    async fn send_messages(
        &self,
        entries: Vec<OutgoingMessage>,
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        self.send_batch(&self.queue_url, entries).await
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), DownstreamError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds(timeout, MAX_VISIBILITY_SECONDS))
            .send()
            .await
            .map_err(|e| downstream("ChangeMessageVisibility", &e))?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        message: &QueueMessage,
        why: &DeadLetter,
    ) -> Result<(), DownstreamError> {
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(&message.body);
        for (name, data_type, value) in
            dead_letter::attributes(message, why, &self.worker_version, &self.queue_url)
        {
            send = send.message_attributes(name, attribute("SendMessage", data_type, &value)?);
        }
        if self.dlq_url.ends_with(".fifo") {
            send = send
                .message_group_id(dead_letter::group_id(message))
                .message_deduplication_id(dead_letter::dedup_id(message));
        }
        send.send()
            .await
            .map_err(|e| downstream("SendMessage", &e))?;
        Ok(())
    }

    fn is_fifo(&self) -> bool {
        self.queue_url.ends_with(".fifo")
    }

    async fn messages_left(&self) -> Result<Option<u64>, DownstreamError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| downstream("GetQueueAttributes", &e))?;
        let total = out
            .attributes()
            .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0);
        Ok(Some(total))
    }
}

fn attribute(
    operation: &'static str,
    data_type: dead_letter::DataType,
    value: &str,
) -> Result<MessageAttributeValue, DownstreamError> {
    MessageAttributeValue::builder()
        .data_type(data_type.as_str())
        .string_value(value)
        .build()
        .map_err(|e| invalid_request(operation, e.to_string()))
}

/// Whole seconds of `d`, at most `max`.
fn seconds(d: Duration, max: u64) -> i32 {
    d.as_secs().min(max) as i32
}

/// A failed batch entry, by index into the caller's slice. Entry ids are the positions we sent;
/// an id SQS made up cannot be matched and is logged and dropped (for a delete that means a
/// redelivery later, which the handler tolerates).
fn to_failure(
    entry: &aws_sdk_sqs::types::BatchResultErrorEntry,
    offset: usize,
    sent: usize,
) -> Option<BatchFailure> {
    let Some(index) = entry.id().parse::<usize>().ok().filter(|i| *i < sent) else {
        tracing::warn!(
            entry_id = entry.id(),
            code = entry.code(),
            "SQS reported a failure for a batch entry we did not send"
        );
        return None;
    };
    Some(BatchFailure {
        index: offset + index,
        code: entry.code().to_string(),
        message: entry.message().unwrap_or_default().to_string(),
        sender_fault: entry.sender_fault(),
    })
}

/// A received message in port terms; `None` (with a warning) for one without an id or receipt
/// handle, which could be neither tracked nor deleted.
fn to_queue_message(m: &Message) -> Option<QueueMessage> {
    let (Some(message_id), Some(receipt_handle)) = (m.message_id(), m.receipt_handle()) else {
        tracing::warn!(
            message_id = m.message_id(),
            "SQS returned a message without an id or receipt handle; skipped"
        );
        return None;
    };
    let system = |name: MessageSystemAttributeName| {
        m.attributes()
            .and_then(|a| a.get(&name))
            .map(String::as_str)
    };
    let receive_count = system(MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let sent_at = system(MessageSystemAttributeName::SentTimestamp)
        .and_then(|ms| ms.parse::<i128>().ok())
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok());
    let attributes = m
        .message_attributes()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.data_type().starts_with("String") || v.data_type().starts_with("Number"))
        .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_string())))
        .collect();
    Some(QueueMessage {
        message_id: message_id.to_string(),
        receipt_handle: receipt_handle.to_string(),
        body: m.body().unwrap_or_default().to_string(),
        receive_count,
        group_id: system(MessageSystemAttributeName::MessageGroupId).map(str::to_string),
        sent_at,
        attributes,
    })
}

#[cfg(test)]
mod tests;
