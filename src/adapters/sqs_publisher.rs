//! [`SqsPublisher`]: lifecycle events out, one SQS message per event (contract in
//! docs/lifecycle-events.md).
//!
//! The message body is the event's JSON; the message attribute `event_type` (String) carries its
//! type so consumers can filter without parsing. On a FIFO queue the message group is the invite
//! id (one invite's events stay in order, different invites flow in parallel) and the
//! deduplication id is the event id (a re-publication within SQS's five-minute window is dropped
//! by SQS itself; consumers still deduplicate by `id`, since delivery is at least once).

use async_trait::async_trait;
use aws_sdk_sqs::types::MessageAttributeValue;
use aws_sdk_sqs::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::adapters::aws_errors::classify;
use crate::domain::invite::PendingPublication;
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::ports::Publisher;

/// The message attribute that carries the event type.
pub const ATTR_EVENT_TYPE: &str = "event_type";

const OPERATION: &str = "SendMessage";

/// SQS error codes that mean "slow down" but that the shared table does not know.
const SQS_THROTTLING: &[&str] = &["OverLimit", "KmsThrottled", "KMS.ThrottlingException"];

/// Publishes lifecycle events to one SQS queue (standard or FIFO). Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqsPublisher {
    client: Client,
    queue_url: String,
}

impl SqsPublisher {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    pub fn is_fifo(&self) -> bool {
        self.queue_url.ends_with(".fifo")
    }
}

/// The FIFO message group of an event: its invite id (`data.invite_id`), or the event id for an
/// event without one, so that a malformed event never blocks a group.
pub fn group_id(event: &PendingPublication) -> String {
    event
        .body
        .pointer("/data/invite_id")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or(&event.event_id)
        .to_string()
}

#[async_trait]
impl Publisher for SqsPublisher {
    async fn publish(&self, event: &PendingPublication) -> Result<(), DownstreamError> {
        let event_type = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(&event.event_type)
            .build()
            .map_err(|e| {
                DownstreamError::new(
                    Service::Sqs,
                    OPERATION,
                    ErrorKind::Rejected("invalid_request".into()),
                    e.to_string(),
                )
            })?;
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(event.body.to_string())
            .message_attributes(ATTR_EVENT_TYPE, event_type);
        if self.is_fifo() {
            send = send
                .message_group_id(group_id(event))
                .message_deduplication_id(&event.event_id);
        }
        send.send().await.map_err(|e| downstream(&e))?;
        Ok(())
    }
}

fn downstream<E>(err: &SdkError<E, HttpResponse>) -> DownstreamError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut e = classify(Service::Sqs, OPERATION, err, |code| match code {
        "QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue" => Some("queue_not_found"),
        _ => None,
    });
    let code = err.as_service_error().and_then(|s| s.code());
    if code.is_some_and(|c| SQS_THROTTLING.contains(&c)) {
        e.kind = ErrorKind::Throttled;
    }
    e
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::config::retry::RetryConfig;
    use aws_sdk_sqs::operation::send_message::SendMessageOutput;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use serde_json::json;

    use super::*;

    const STANDARD: &str = "https://sqs.us-east-1.amazonaws.com/123/invite-events-events";
    const FIFO: &str = "https://sqs.us-east-1.amazonaws.com/123/invite-lifecycle.fifo";

    fn client(rules: &[&Rule]) -> Client {
        mock_client!(aws_sdk_sqs, RuleMode::MatchAny, rules, |c| c
            .retry_config(RetryConfig::disabled()))
    }

    fn event() -> PendingPublication {
        PendingPublication {
            event_id: "6c1e5b8e-0d55-5c43-9a0c-2f4f3f1d7a10".into(),
            event_type: "invite.sent".into(),
            body: json!({
                "version": 1, "type": "invite.sent", "id": "6c1e5b8e-0d55-5c43-9a0c-2f4f3f1d7a10",
                "data": {"invite_id": "0f4e7f2a-8c8e-5d0b-b9a6-4d9f0b1f4c11", "status": "sent"}
            }),
        }
    }

    fn error_response(status: u16, code: &str, query_code: Option<&str>) -> HttpResponse {
        let body =
            json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": "mocked"}).to_string();
        let mut resp = HttpResponse::new(
            StatusCode::try_from(status).expect("status"),
            SdkBody::from(body),
        );
        if let Some(q) = query_code {
            resp.headers_mut()
                .insert("x-amzn-query-error", format!("{q};Sender"));
        }
        resp
    }

    #[tokio::test]
    async fn a_standard_queue_gets_the_body_and_the_event_type_attribute() {
        let expected_body = event().body.to_string();
        let rule = mock!(Client::send_message)
            .match_requests(move |req| {
                let attr = req
                    .message_attributes()
                    .and_then(|a| a.get(ATTR_EVENT_TYPE))
                    .and_then(|v| v.string_value());
                req.queue_url() == Some(STANDARD)
                    && req.message_body() == Some(expected_body.as_str())
                    && attr == Some("invite.sent")
                    && req.message_group_id().is_none()
                    && req.message_deduplication_id().is_none()
            })
            .then_output(|| SendMessageOutput::builder().message_id("m1").build());
        let publisher = SqsPublisher::new(client(&[&rule]), STANDARD);
        assert!(!publisher.is_fifo());
        publisher.publish(&event()).await.unwrap();
        assert_eq!(rule.num_calls(), 1, "the request matched every expectation");
    }

    #[tokio::test]
    async fn a_fifo_queue_groups_by_invite_and_deduplicates_by_event_id() {
        let rule = mock!(Client::send_message)
            .match_requests(|req| {
                req.message_group_id() == Some("0f4e7f2a-8c8e-5d0b-b9a6-4d9f0b1f4c11")
                    && req.message_deduplication_id()
                        == Some("6c1e5b8e-0d55-5c43-9a0c-2f4f3f1d7a10")
            })
            .then_output(|| SendMessageOutput::builder().build());
        let publisher = SqsPublisher::new(client(&[&rule]), FIFO);
        assert!(publisher.is_fifo());
        publisher.publish(&event()).await.unwrap();
        assert_eq!(rule.num_calls(), 1);
    }

    #[test]
    fn an_event_without_an_invite_id_is_its_own_group() {
        let mut e = event();
        e.body = json!({"version": 1});
        assert_eq!(group_id(&e), e.event_id);
    }

    #[tokio::test]
    async fn throttling_and_outages_are_transient() {
        for (status, code, query, kind) in [
            (400, "ThrottlingException", None, ErrorKind::Throttled),
            (400, "OverLimit", Some("OverLimit"), ErrorKind::Throttled),
            (500, "InternalError", None, ErrorKind::Unavailable),
        ] {
            let rule = mock!(Client::send_message)
                .then_http_response(move || error_response(status, code, query));
            let err = SqsPublisher::new(client(&[&rule]), STANDARD)
                .publish(&event())
                .await
                .unwrap_err();
            assert_eq!(err.kind, kind, "{code}: {err}");
            assert!(err.is_transient());
            assert_eq!((err.service, err.operation), (Service::Sqs, "SendMessage"));
        }
    }

    #[tokio::test]
    async fn a_missing_queue_is_a_permanent_rejection_with_a_reason_code() {
        let rule = mock!(Client::send_message).then_http_response(|| {
            error_response(
                400,
                "QueueDoesNotExist",
                Some("AWS.SimpleQueueService.NonExistentQueue"),
            )
        });
        let err = SqsPublisher::new(client(&[&rule]), STANDARD)
            .publish(&event())
            .await
            .unwrap_err();
        assert_eq!(err.rejection_code(), Some("queue_not_found"), "{err}");
    }
}
