//! [`OpsQueue`]: the queue calls the operations tools make, on any queue URL (the inbound queue,
//! its DLQ, or the queue a dead letter came from), and [`SqsOps`], its SQS implementation.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;

use crate::adapters::aws_errors::classify;
use crate::adapters::sqs::{OutgoingMessage, SqsQueue, MAX_VISIBILITY_SECONDS};
use crate::error::{DownstreamError, Service};
use crate::ports::{BatchFailure, QueueMessage};

/// Queue calls by URL. Implemented by [`SqsOps`]; tests use an in-memory fake.
#[async_trait]
pub trait OpsQueue: Send + Sync {
    /// Receives up to `max` (1 to 10) messages, long-polling up to `wait`, and keeps them
    /// invisible to other consumers for `hold`.
    async fn receive(
        &self,
        queue_url: &str,
        max: u8,
        wait: Duration,
        hold: Duration,
    ) -> Result<Vec<QueueMessage>, DownstreamError>;

    /// Sends messages (any number; batched by the implementation); returns the entries that
    /// failed, by index into `entries`.
    async fn send(
        &self,
        queue_url: &str,
        entries: Vec<OutgoingMessage>,
    ) -> Result<Vec<BatchFailure>, DownstreamError>;

    /// Deletes messages by receipt handle; returns the entries that failed, by index.
    async fn delete(
        &self,
        queue_url: &str,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, DownstreamError>;

    /// `ChangeMessageVisibility`: zero makes a received message visible again at once.
    async fn set_visibility(
        &self,
        queue_url: &str,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), DownstreamError>;
}

/// [`OpsQueue`] on Amazon SQS: [`SqsQueue`]'s URL-explicit calls plus `ChangeMessageVisibility`
/// on any queue. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqsOps {
    queue: SqsQueue,
    client: Client,
}

impl SqsOps {
    /// `queue`'s URL-explicit calls, and `client` for `ChangeMessageVisibility` (built together by
    /// [`crate::wiring::ops_queue`]).
    pub fn new(queue: SqsQueue, client: Client) -> Self {
        Self { queue, client }
    }
}

/// Our reason codes for the SQS errors `ChangeMessageVisibility` can return.
fn visibility_code(code: &str) -> Option<&'static str> {
    match code {
        "QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue" => Some("queue_not_found"),
        "ReceiptHandleIsInvalid" => Some("receipt_handle_invalid"),
        "MessageNotInflight" | "AWS.SimpleQueueService.MessageNotInflight" => {
            Some("message_not_inflight")
        }
        _ => None,
    }
}

#[async_trait]
impl OpsQueue for SqsOps {
    async fn receive(
        &self,
        queue_url: &str,
        max: u8,
        wait: Duration,
        hold: Duration,
    ) -> Result<Vec<QueueMessage>, DownstreamError> {
        self.queue
            .receive_from(queue_url, max, wait, Some(hold))
            .await
    }

    async fn send(
        &self,
        queue_url: &str,
        entries: Vec<OutgoingMessage>,
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        self.queue.send_batch(queue_url, entries).await
    }

    async fn delete(
        &self,
        queue_url: &str,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        self.queue.delete_from(queue_url, receipt_handles).await
    }

    async fn set_visibility(
        &self,
        queue_url: &str,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), DownstreamError> {
        self.client
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(timeout.as_secs().min(MAX_VISIBILITY_SECONDS) as i32)
            .send()
            .await
            .map_err(|e| classify(Service::Sqs, "ChangeMessageVisibility", &e, visibility_code))?;
        Ok(())
    }
}
