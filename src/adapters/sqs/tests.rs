use std::collections::BTreeMap;

use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityOutput;
use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchOutput;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput;
use aws_sdk_sqs::operation::send_message::SendMessageOutput;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_sdk_sqs::types::{BatchResultErrorEntry, DeleteMessageBatchResultEntry};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

use super::*;

const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123/invites";
const DLQ: &str = "https://sqs.us-east-1.amazonaws.com/123/invites-dlq";

fn client(rules: &[&Rule]) -> Client {
    mock_client!(aws_sdk_sqs, RuleMode::MatchAny, rules, |c| c
        .retry_config(RetryConfig::disabled()))
}

fn queue(rules: &[&Rule]) -> SqsQueue {
    SqsQueue::new(client(rules), QUEUE, DLQ, "1.2.3")
}

/// An SQS (awsJson1_0, query-compatible) error response.
fn error_response(status: u16, code: &str, query_code: Option<&str>) -> HttpResponse {
    let body =
        serde_json::json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": "mocked"});
    let mut resp = HttpResponse::new(
        StatusCode::try_from(status).expect("status"),
        SdkBody::from(body.to_string()),
    );
    if let Some(q) = query_code {
        resp.headers_mut()
            .insert("x-amzn-query-error", format!("{q};Sender"));
    }
    resp
}

fn string_attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .unwrap()
}

fn received(id: &str, count: Option<&str>) -> Message {
    let mut m = Message::builder()
        .message_id(id)
        .receipt_handle(format!("rh-{id}"))
        .body(format!("body-{id}"))
        .attributes(MessageSystemAttributeName::SentTimestamp, "1735689600123")
        .message_attributes("trace", string_attr("abc"))
        .message_attributes(
            "n",
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value("7")
                .build()
                .unwrap(),
        )
        .message_attributes(
            "bin",
            MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(aws_smithy_types::Blob::new(vec![1]))
                .build()
                .unwrap(),
        );
    if let Some(c) = count {
        m = m.attributes(MessageSystemAttributeName::ApproximateReceiveCount, c);
    }
    m.build()
}

fn message(attributes: &[(&str, &str)]) -> QueueMessage {
    QueueMessage {
        message_id: "m-1".into(),
        receipt_handle: "rh".into(),
        body: r#"{"type":"invite.requested"}"#.into(),
        receive_count: 3,
        group_id: Some("grp".into()),
        sent_at: None,
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[tokio::test]
async fn receive_maps_attributes_and_receive_count() {
    let rule = mock!(Client::receive_message)
        .match_requests(|req| {
            req.queue_url() == Some(QUEUE)
                && req.max_number_of_messages() == Some(10)
                && req.wait_time_seconds() == Some(20)
                && req.visibility_timeout().is_none()
                && req.message_system_attribute_names() == [MessageSystemAttributeName::All]
                && req.message_attribute_names() == ["All".to_string()]
        })
        .then_output(|| {
            ReceiveMessageOutput::builder()
                .messages(received("a", Some("3")))
                .messages(received("b", None))
                .messages(Message::builder().body("no handle").build())
                .build()
        });
    let got = queue(&[&rule])
        .receive(50, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        got.len(),
        2,
        "the message without a receipt handle is skipped"
    );
    assert_eq!(got[0].message_id, "a");
    assert_eq!(got[0].receipt_handle, "rh-a");
    assert_eq!(got[0].body, "body-a");
    assert_eq!(got[0].receive_count, 3);
    assert_eq!(
        got[1].receive_count, 1,
        "missing count defaults to the first delivery"
    );
    assert_eq!(
        got[0].sent_at,
        Some(OffsetDateTime::from_unix_timestamp_nanos(1_735_689_600_123_000_000).unwrap())
    );
    assert_eq!(
        got[0].attributes,
        BTreeMap::from([
            ("n".to_string(), "7".to_string()),
            ("trace".to_string(), "abc".to_string())
        ])
    );
    assert_eq!(got[0].group_id, None);
}

#[tokio::test]
async fn receive_from_passes_the_visibility_timeout_and_group() {
    let rule = mock!(Client::receive_message)
        .match_requests(|req| {
            req.queue_url() == Some(DLQ)
                && req.visibility_timeout() == Some(43_200)
                && req.max_number_of_messages() == Some(1)
        })
        .then_output(|| {
            ReceiveMessageOutput::builder()
                .messages(
                    Message::builder()
                        .message_id("x")
                        .receipt_handle("r")
                        .attributes(MessageSystemAttributeName::MessageGroupId, "g1")
                        .build(),
                )
                .build()
        });
    let got = queue(&[&rule])
        .receive_from(DLQ, 0, Duration::ZERO, Some(Duration::from_secs(100_000)))
        .await
        .unwrap();
    assert_eq!(got[0].group_id.as_deref(), Some("g1"));
    assert_eq!(got[0].body, "");
}

#[tokio::test]
async fn delete_batch_reports_partial_failures_by_index() {
    let rule = mock!(Client::delete_message_batch)
        .match_requests(|req| {
            let ids: Vec<&str> = req.entries().iter().map(|e| e.id()).collect();
            req.queue_url() == Some(QUEUE) && ids == ["0", "1", "2"]
        })
        .then_output(|| {
            DeleteMessageBatchOutput::builder()
                .successful(
                    DeleteMessageBatchResultEntry::builder()
                        .id("0")
                        .build()
                        .unwrap(),
                )
                .successful(
                    DeleteMessageBatchResultEntry::builder()
                        .id("2")
                        .build()
                        .unwrap(),
                )
                .failed(
                    BatchResultErrorEntry::builder()
                        .id("1")
                        .code("ReceiptHandleIsInvalid")
                        .message("expired")
                        .sender_fault(true)
                        .build()
                        .unwrap(),
                )
                .failed(
                    BatchResultErrorEntry::builder()
                        .id("7")
                        .code("Odd")
                        .sender_fault(false)
                        .build()
                        .unwrap(),
                )
                .build()
                .expect("output")
        });
    let handles = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let failures = queue(&[&rule]).delete_messages(&handles).await.unwrap();
    assert_eq!(
        failures,
        vec![BatchFailure {
            index: 1,
            code: "ReceiptHandleIsInvalid".into(),
            message: "expired".into(),
            sender_fault: true
        }]
    );
}

#[tokio::test]
async fn delete_batch_splits_into_tens_and_offsets_indexes() {
    let rule = mock!(Client::delete_message_batch).then_compute_output(|req| {
        let entries = req.entries();
        let out = DeleteMessageBatchOutput::builder().set_successful(Some(vec![]));
        // Fail the last entry of every batch.
        let last = entries
            .last()
            .map(|e| e.id().to_string())
            .unwrap_or_default();
        out.failed(
            BatchResultErrorEntry::builder()
                .id(last)
                .code("InternalError")
                .sender_fault(false)
                .build()
                .unwrap(),
        )
        .build()
        .expect("output")
    });
    let handles: Vec<String> = (0..12).map(|i| format!("h{i}")).collect();
    let failures = queue(&[&rule]).delete_messages(&handles).await.unwrap();
    assert_eq!(
        failures.iter().map(|f| f.index).collect::<Vec<_>>(),
        [9, 11]
    );
    assert_eq!(rule.num_calls(), 2);
    assert!(
        queue(&[]).delete_messages(&[]).await.unwrap().is_empty(),
        "nothing to delete makes no call"
    );
}

#[tokio::test]
async fn change_visibility_clamps_to_twelve_hours() {
    let rule = mock!(Client::change_message_visibility)
        .match_requests(|req| {
            req.receipt_handle() == Some("rh") && req.visibility_timeout() == Some(43_200)
        })
        .then_output(|| ChangeMessageVisibilityOutput::builder().build());
    queue(&[&rule])
        .change_visibility("rh", Duration::from_secs(90_000))
        .await
        .unwrap();
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn dead_letter_sets_reason_attributes_and_keeps_originals_within_ten() {
    let rule = mock!(Client::send_message)
        .match_requests(|req| {
            let attrs = req.message_attributes().cloned().unwrap_or_default();
            let get = |n: &str| {
                attrs
                    .get(n)
                    .and_then(|v| v.string_value())
                    .unwrap_or("")
                    .to_string()
            };
            req.queue_url() == Some(DLQ)
                && req.message_body() == Some(r#"{"type":"invite.requested"}"#)
                && attrs.len() == 10
                && get(ATTR_REASON_CODE) == "invalid_event"
                && get(ATTR_REASON) == "data.email: is empty"
                && get(ATTR_ATTEMPTS) == "3"
                && attrs.get(ATTR_ATTEMPTS).map(|v| v.data_type()) == Some("Number")
                && get(ATTR_WORKER_VERSION) == "1.2.3"
                && get(ATTR_SOURCE_QUEUE) == QUEUE
                && get(ATTR_ORIGINAL_MESSAGE_ID) == "m-1"
                && get("a0") == "v0"
                && !attrs.contains_key("a4")
                && req.message_group_id().is_none()
                && req.message_deduplication_id().is_none()
        })
        .then_output(|| SendMessageOutput::builder().message_id("dlq-1").build());
    let originals: Vec<(String, String)> =
        (0..6).map(|i| (format!("a{i}"), format!("v{i}"))).collect();
    let refs: Vec<(&str, &str)> = originals
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let why = DeadLetter {
        reason_code: "invalid_event".into(),
        reason: "data.email: is empty".into(),
        attempts: 3,
    };
    queue(&[&rule])
        .dead_letter(&message(&refs), &why)
        .await
        .unwrap();
    assert_eq!(rule.num_calls(), 1, "the request matched every expectation");
}

#[tokio::test]
async fn dead_letter_to_a_fifo_dlq_sets_group_and_dedup_id() {
    let rule = mock!(Client::send_message)
        .match_requests(|req| {
            req.message_group_id() == Some("grp") && req.message_deduplication_id() == Some("m-1-3")
        })
        .then_output(|| SendMessageOutput::builder().build());
    let q = SqsQueue::new(
        client(&[&rule]),
        "https://q/in.fifo",
        "https://q/dlq.fifo",
        "1",
    );
    assert!(q.is_fifo() && !queue(&[]).is_fifo());
    let why = DeadLetter {
        reason_code: "x".into(),
        reason: "y".into(),
        attempts: 3,
    };
    q.dead_letter(&message(&[]), &why).await.unwrap();
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn send_batch_uses_positions_as_ids_and_reports_failures() {
    let rule = mock!(Client::send_message_batch)
        .match_requests(|req| {
            let entries = req.entries();
            entries.len() == 2
                && entries[0].id() == "0"
                && entries[1].message_group_id() == Some("g")
                && entries[1].message_deduplication_id() == Some("d")
                && entries[0]
                    .message_attributes()
                    .and_then(|a| a.get("k"))
                    .and_then(|v| v.string_value())
                    == Some("v")
        })
        .then_output(|| {
            SendMessageBatchOutput::builder()
                .set_successful(Some(vec![]))
                .failed(
                    BatchResultErrorEntry::builder()
                        .id("1")
                        .code("InvalidParameterValue")
                        .sender_fault(true)
                        .build()
                        .unwrap(),
                )
                .build()
                .expect("output")
        });
    let entries = vec![
        OutgoingMessage {
            id: "evt-a".into(),
            body: "a".into(),
            attributes: BTreeMap::from([("k".into(), "v".into())]),
            ..Default::default()
        },
        OutgoingMessage {
            id: "evt-b".into(),
            body: "b".into(),
            group_id: Some("g".into()),
            dedup_id: Some("d".into()),
            ..Default::default()
        },
    ];
    let failures = queue(&[&rule]).send_batch(QUEUE, entries).await.unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (
            failures[0].index,
            failures[0].code.as_str(),
            failures[0].sender_fault
        ),
        (1, "InvalidParameterValue", true)
    );
}

#[tokio::test]
async fn throttling_is_transient() {
    for (code, query) in [
        ("ThrottlingException", None),
        ("RequestThrottled", Some("RequestThrottled")),
        ("OverLimit", Some("OverLimit")),
    ] {
        let rule = mock!(Client::receive_message)
            .then_http_response(move || error_response(400, code, query));
        let err = queue(&[&rule])
            .receive(10, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Throttled, "{code}: {err}");
        assert!(err.is_transient());
        assert_eq!(
            (err.service, err.operation),
            (Service::Sqs, "ReceiveMessage")
        );
    }
    let rule = mock!(Client::receive_message)
        .then_http_response(|| error_response(500, "InternalError", None));
    let err = queue(&[&rule])
        .receive(10, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
}

#[tokio::test]
async fn missing_queues_and_bad_handles_have_reason_codes() {
    let rule = mock!(Client::receive_message).then_http_response(|| {
        error_response(
            400,
            "QueueDoesNotExist",
            Some("AWS.SimpleQueueService.NonExistentQueue"),
        )
    });
    let err = queue(&[&rule])
        .receive(1, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.rejection_code(), Some("queue_not_found"), "{err}");

    let rule = mock!(Client::change_message_visibility)
        .then_http_response(|| error_response(400, "ReceiptHandleIsInvalid", None));
    let err = queue(&[&rule])
        .change_visibility("rh", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(
        err.rejection_code(),
        Some("receipt_handle_invalid"),
        "{err}"
    );
}

#[tokio::test]
async fn the_queue_at_a_url_calls_that_queue_and_names_a_message_not_in_flight() {
    let rule = mock!(Client::change_message_visibility)
        .match_requests(|req| req.queue_url() == Some(DLQ) && req.visibility_timeout() == Some(0))
        .then_http_response(|| {
            error_response(
                400,
                "MessageNotInflight",
                Some("AWS.SimpleQueueService.MessageNotInflight"),
            )
        });
    let err = SqsQueues::new(client(&[&rule]), "1.2.3")
        .at(DLQ)
        .change_visibility("rh", Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.rejection_code(), Some("message_not_inflight"), "{err}");
    assert_eq!(rule.num_calls(), 1);
}
