use std::collections::BTreeMap;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use serde_json::json;
use time::macros::datetime;

use super::*;
use crate::domain::invite::PendingPublication;
use crate::domain::{EmailAddress, HistoryEntry, InviteDetails, Lease};

fn client(rules: &[&Rule]) -> Client {
    mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules, |c| c
        .retry_config(RetryConfig::disabled()))
}

fn store(rules: &[&Rule]) -> DynamoInviteStore {
    DynamoInviteStore::new(client(rules), "invites", 4)
}

/// A DynamoDB (awsJson1_0) error response.
fn error_response(status: u16, code: &str) -> HttpResponse {
    let body =
        json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{code}"), "message": "mocked"});
    let status = StatusCode::try_from(status).expect("valid status");
    HttpResponse::new(status, SdkBody::from(body.to_string()))
}

fn invite(status: InviteStatus) -> Invite {
    let email = EmailAddress::parse("jane@example.com").expect("valid email");
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "team".into(),
        json!({"name": "core", "tags": ["a", 1, 2.5, null, {"deep": true}]}),
    );
    metadata.insert("score".into(), json!(0.75));
    metadata.insert("count".into(), json!(-3));
    Invite {
        invite_id: InviteId::for_email("us-east-1_pool", &email),
        user_pool_id: "us-east-1_pool".into(),
        username: email.as_str().into(),
        email,
        status,
        reason: None,
        generation: 2,
        opened_by_event: "evt-1".into(),
        created_at: datetime!(2025-01-02 03:04:05.123 UTC),
        updated_at: datetime!(2025-01-03 00:00:00.5 UTC),
        expires_at: datetime!(2025-01-10 00:00:00 UTC),
        sent_at: Some(datetime!(2025-01-02 03:05:00 UTC)),
        accepted_at: None,
        send_count: 1,
        user_sub: Some("sub-123".into()),
        details: InviteDetails {
            attributes: BTreeMap::from([("given_name".into(), "Jane".into())]),
            groups: vec!["staff".into()],
            locale: Some("en-GB".into()),
            invited_by: None,
            external_id: Some("ext-9".into()),
            redirect_url: None,
            metadata,
            source: Some("test".into()),
        },
        history: vec![HistoryEntry {
            at: datetime!(2025-01-02 03:04:05 UTC),
            from: None,
            to: InviteStatus::Pending,
            event_id: Some("evt-1".into()),
            event_type: "invite.requested".into(),
            reason: None,
            generation: 2,
            replay: Some(crate::domain::Replay {
                number: 2,
                original_message_id: Some("msg-1".into()),
            }),
            actor: Some("ops@example.com".into()),
        }],
        version: u64::MAX - 1,
        lease: Some(Lease {
            token: "tok".into(),
            until: datetime!(2025-01-02 03:09:05 UTC),
        }),
        outbox: vec![],
        reminded_generation: None,
        last_occurred_at: None,
        mail: crate::domain::MailFacts {
            delivered_at: Some(datetime!(2025-01-02 03:05:00 UTC)),
            complaint: Some(crate::domain::Complaint {
                at: datetime!(2025-01-02 03:06:00 UTC),
                feedback_type: Some("abuse".into()),
            }),
            bounce: Some(crate::domain::BounceDetail {
                at: datetime!(2025-01-02 03:07:00 UTC),
                bounce_type: Some("Permanent".into()),
                sub_type: Some("NoEmail".into()),
                diagnostic: Some("smtp; 550 5.1.1 user unknown".into()),
            }),
        },
    }
}

#[test]
fn item_round_trips_a_full_invite() {
    let mut original = invite(InviteStatus::Sent);
    original.outbox.push(PendingPublication {
        event_id: "pub-1".into(),
        event_type: "invite.sent".into(),
        body: json!({"nested": {"list": [1, 2.5, "x"]}}),
    });
    let item = item::to_item(&original, 4).expect("item");
    assert_eq!(
        item[ATTR_VERSION],
        AttributeValue::N((u64::MAX - 1).to_string())
    );
    assert!(
        matches!(item["details"], AttributeValue::M(_)),
        "stored as a native map"
    );
    let back = item::from_item(&item).expect("readable");
    assert_eq!(back, original);
}

#[test]
fn open_invites_are_in_the_open_index_and_never_expire() {
    let open = invite(InviteStatus::Pending);
    let item = item::to_item(&open, 4).unwrap();
    let shard = item::shard_of(&open.invite_id, 4);
    assert_eq!(
        item[ATTR_OPEN_SHARD],
        AttributeValue::S(format!("OPEN#{shard}"))
    );
    assert_eq!(
        item[ATTR_OPEN_EXPIRES_AT],
        AttributeValue::N(open.expires_at.unix_timestamp().to_string())
    );
    assert_eq!(
        item[ATTR_UPDATED_MS],
        AttributeValue::N("1735862400500".into())
    );
    assert_eq!(
        item[ATTR_PK],
        AttributeValue::S(format!("INVITE#{}", open.invite_id))
    );
    assert_eq!(item[ATTR_SK], AttributeValue::S("INVITE".into()));
    assert!(!item.contains_key(ATTR_TTL));
    assert!(!item.contains_key(ATTR_OUTBOX_SHARD));
}

#[test]
fn closed_invites_leave_the_open_index_and_get_a_ttl() {
    for status in [
        InviteStatus::Accepted,
        InviteStatus::Revoked,
        InviteStatus::Expired,
        InviteStatus::Failed,
        InviteStatus::Undeliverable,
    ] {
        let closed = invite(status);
        let item = item::to_item(&closed, 4).unwrap();
        assert!(
            !item.contains_key(ATTR_OPEN_SHARD) && !item.contains_key(ATTR_OPEN_EXPIRES_AT),
            "{status}"
        );
        let ttl = (closed.updated_at + time::Duration::days(RETENTION_DAYS)).unix_timestamp();
        assert_eq!(item[ATTR_TTL], AttributeValue::N(ttl.to_string()));
        assert_eq!(item[ATTR_STATUS], AttributeValue::S(status.as_str().into()));
    }
}

#[test]
fn an_outbox_puts_the_invite_in_the_unpublished_index() {
    let mut with_outbox = invite(InviteStatus::Sent);
    with_outbox.outbox.push(PendingPublication {
        event_id: "e".into(),
        event_type: "t".into(),
        body: json!({}),
    });
    let item = item::to_item(&with_outbox, 4).unwrap();
    assert_eq!(
        item[ATTR_OUTBOX_SHARD],
        AttributeValue::S(OUTBOX_SHARD.into())
    );
}

#[test]
fn shards_are_stable_and_in_range() {
    let a = invite(InviteStatus::Pending).invite_id;
    assert_eq!(item::shard_of(&a, 8), item::shard_of(&a, 8));
    assert_eq!(item::shard_of(&a, 1), 0);
    assert_eq!(item::shard_of(&a, 0), 0);
    let spread: std::collections::BTreeSet<u32> = (0..64)
        .map(|i| {
            item::shard_of(
                &InviteId::for_email("p", &EmailAddress::parse(&format!("u{i}@x.org")).unwrap()),
                4,
            )
        })
        .collect();
    assert_eq!(spread.len(), 4, "64 ids spread over all 4 shards");
}

#[tokio::test]
async fn first_save_requires_no_record_and_a_race_is_a_conflict() {
    let rule = mock!(Client::put_item)
        .match_requests(|req| {
            req.condition_expression() == Some("attribute_not_exists(#pk)")
                && req
                    .expression_attribute_names()
                    .and_then(|n| n.get("#pk"))
                    .map(String::as_str)
                    == Some("pk")
        })
        .then_error(|| {
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .message("exists")
                    .build(),
            )
        });
    let mut first = invite(InviteStatus::Pending);
    first.version = 1;
    let err = store(&[&rule]).save(&first).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn later_saves_require_the_previous_version() {
    let rule = mock!(Client::put_item)
        .match_requests(|req| {
            req.condition_expression() == Some("#v = :prev")
                && req
                    .expression_attribute_names()
                    .and_then(|n| n.get("#v"))
                    .map(String::as_str)
                    == Some("version")
                && req
                    .expression_attribute_values()
                    .and_then(|v| v.get(":prev"))
                    == Some(&AttributeValue::N("6".into()))
                && req.item().and_then(|i| i.get("version")) == Some(&AttributeValue::N("7".into()))
        })
        .then_output(|| PutItemOutput::builder().build());
    let mut next = invite(InviteStatus::Sent);
    next.version = 7;
    store(&[&rule]).save(&next).await.expect("saved");
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn version_zero_is_refused_without_a_call() {
    let mut bad = invite(InviteStatus::Sent);
    bad.version = 0;
    let err = store(&[]).save(&bad).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { reason, .. } if reason.contains("version 0")),
        "{err:?}"
    );
}

#[tokio::test]
async fn throttling_is_transient() {
    for code in [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
    ] {
        let rule = mock!(Client::put_item).then_http_response(move || error_response(400, code));
        let err = store(&[&rule])
            .save(&invite(InviteStatus::Sent))
            .await
            .unwrap_err();
        let StoreError::Downstream(d) = err else {
            panic!("{code}: expected a downstream error, got {err:?}")
        };
        assert_eq!(d.kind, ErrorKind::Throttled, "{code}");
        assert!(d.is_transient());
        assert_eq!((d.service, d.operation), (Service::DynamoDb, "PutItem"));
    }
}

#[tokio::test]
async fn server_errors_are_transient_and_a_missing_table_too() {
    let rule =
        mock!(Client::get_item).then_http_response(|| error_response(500, "InternalServerError"));
    let err = store(&[&rule])
        .load(&invite(InviteStatus::Sent).invite_id)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Downstream(d) if d.kind == ErrorKind::Unavailable),
        "{err:?}"
    );

    let rule = mock!(Client::get_item)
        .then_http_response(|| error_response(400, "ResourceNotFoundException"));
    let err = store(&[&rule])
        .load(&invite(InviteStatus::Sent).invite_id)
        .await
        .unwrap_err();
    let StoreError::Downstream(d) = err else {
        panic!("expected downstream")
    };
    assert_eq!(d.kind, ErrorKind::Unavailable);
    assert!(d.message.contains("invites"), "{}", d.message);
}

#[tokio::test]
async fn validation_errors_are_permanent() {
    let rule =
        mock!(Client::put_item).then_http_response(|| error_response(400, "ValidationException"));
    let err = store(&[&rule])
        .save(&invite(InviteStatus::Sent))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Downstream(d) if d.kind == ErrorKind::Rejected("validation".into())),
        "{err:?}"
    );
}

#[tokio::test]
async fn load_reads_consistently_and_a_miss_is_none() {
    let rule = mock!(Client::get_item)
        .match_requests(|req| {
            req.consistent_read() == Some(true) && req.table_name() == Some("invites")
        })
        .then_output(|| GetItemOutput::builder().build());
    assert!(store(&[&rule])
        .load(&invite(InviteStatus::Sent).invite_id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn load_round_trips_what_save_wrote() {
    let original = invite(InviteStatus::Sent);
    let item = item::to_item(&original, 4).unwrap();
    let rule = mock!(Client::get_item).then_output(move || {
        GetItemOutput::builder()
            .set_item(Some(item.clone()))
            .build()
    });
    assert_eq!(
        store(&[&rule]).load(&original.invite_id).await.unwrap(),
        Some(original)
    );
}

#[tokio::test]
async fn garbage_is_corrupt_and_names_the_key() {
    let id = invite(InviteStatus::Sent).invite_id;
    let pk = format!("INVITE#{id}");
    let garbage = item::key_for(&id)
        .into_iter()
        .chain([("status".to_string(), AttributeValue::S("bogus".into()))])
        .collect::<Item>();
    let rule = mock!(Client::get_item).then_output(move || {
        GetItemOutput::builder()
            .set_item(Some(garbage.clone()))
            .build()
    });
    let err = store(&[&rule]).load(&id).await.unwrap_err();
    let StoreError::Corrupt { key, reason } = err else {
        panic!("expected corrupt, got {err:?}")
    };
    assert_eq!(key, pk);
    assert!(!reason.is_empty());

    let sets = item::key_for(&id)
        .into_iter()
        .chain([("details".to_string(), AttributeValue::Ss(vec!["x".into()]))])
        .collect::<Item>();
    let rule = mock!(Client::get_item).then_output(move || {
        GetItemOutput::builder()
            .set_item(Some(sets.clone()))
            .build()
    });
    let err = store(&[&rule]).load(&id).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { reason, .. } if reason.contains("$.details")),
        "{err:?}"
    );
}

fn open_key(id: &InviteId, shard: u32, expires: i64) -> Item {
    let mut key = item::key_for(id);
    key.insert(
        ATTR_OPEN_SHARD.into(),
        AttributeValue::S(item::shard_name(shard)),
    );
    key.insert(
        ATTR_OPEN_EXPIRES_AT.into(),
        AttributeValue::N(expires.to_string()),
    );
    key
}

fn id(n: u32) -> InviteId {
    InviteId::for_email("p", &EmailAddress::parse(&format!("u{n}@x.org")).unwrap())
}

#[tokio::test]
async fn open_expired_walks_the_shards_with_a_cursor() {
    // Shard 0 holds ids 0 and 1 (returned one per page), shard 1 is empty, shard 2 holds id 2.
    let rule = mock!(Client::query)
        .match_requests(|req| {
            req.index_name() == Some(INDEX_OPEN)
                && req.key_condition_expression() == Some("#shard = :shard AND #exp <= :now")
                && req.scan_index_forward() == Some(true)
                && req
                    .expression_attribute_values()
                    .and_then(|v| v.get(":now"))
                    == Some(&AttributeValue::N("1000".into()))
        })
        .then_compute_output(|req| {
            let shard = match req
                .expression_attribute_values()
                .and_then(|v| v.get(":shard"))
            {
                Some(AttributeValue::S(s)) => s.clone(),
                _ => String::new(),
            };
            let started = req.exclusive_start_key().is_some();
            let out = QueryOutput::builder();
            match (shard.as_str(), started) {
                ("OPEN#0", false) => out
                    .items(open_key(&id(0), 0, 10))
                    .last_evaluated_key(ATTR_PK, AttributeValue::S(item::pk_for(&id(0)))),
                ("OPEN#0", true) => out.items(open_key(&id(1), 0, 20)),
                ("OPEN#2", _) => out.items(open_key(&id(2), 2, 5)),
                _ => out,
            }
            .build()
        });
    let store = store(&[&rule]);
    let now = OffsetDateTime::from_unix_timestamp(1000).unwrap();

    let first = store.open_expired(now, 2, None).await.unwrap();
    assert_eq!(first.items, vec![id(0), id(1)]);
    let cursor = first.next.expect("more shards to read");
    let second = store.open_expired(now, 2, Some(cursor)).await.unwrap();
    assert_eq!(second.items, vec![id(2)]);
    assert_eq!(second.next, None);
    assert_eq!(
        rule.num_calls(),
        2 + 1 + 1 + 1,
        "two pages of shard 0, then shards 1, 2 and 3"
    );

    // One at a time: the cursor carries the LastEvaluatedKey within a shard.
    let page = store.open_expired(now, 1, None).await.unwrap();
    assert_eq!(page.items, vec![id(0)]);
    let page = store.open_expired(now, 1, page.next).await.unwrap();
    assert_eq!(page.items, vec![id(1)]);
}

#[tokio::test]
async fn a_foreign_cursor_is_refused() {
    let store = store(&[]);
    let foreign = Cursor::new("status:sent", None, None).unwrap().encode();
    let err = store
        .open_expired(OffsetDateTime::now_utc(), 5, Some(foreign))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Downstream(d) if d.rejection_code() == Some("invalid_cursor")),
        "{err:?}"
    );
    let err = store
        .list_by_status(InviteStatus::Sent, 5, Some("not a cursor".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Downstream(d) if d.rejection_code() == Some("invalid_cursor")),
        "{err:?}"
    );
}

#[tokio::test]
async fn list_by_status_is_newest_first_with_a_cursor() {
    let sent = invite(InviteStatus::Sent);
    let item = item::to_item(&sent, 4).unwrap();
    let rule = mock!(Client::query)
        .match_requests(|req| {
            req.index_name() == Some(INDEX_STATUS)
                && req.scan_index_forward() == Some(false)
                && req
                    .expression_attribute_names()
                    .and_then(|n| n.get("#status"))
                    .map(String::as_str)
                    == Some("status")
                && req
                    .expression_attribute_values()
                    .and_then(|v| v.get(":status"))
                    == Some(&AttributeValue::S("sent".into()))
                && req.limit() == Some(1)
        })
        .then_compute_output(move |req| {
            let out = QueryOutput::builder().items(item.clone());
            if req.exclusive_start_key().is_none() {
                out.last_evaluated_key(ATTR_PK, AttributeValue::S("INVITE#x".into()))
                    .build()
            } else {
                out.build()
            }
        });
    let store = store(&[&rule]);
    let page = store
        .list_by_status(InviteStatus::Sent, 1, None)
        .await
        .unwrap();
    assert_eq!(page.items, vec![sent.clone()]);
    let page = store
        .list_by_status(InviteStatus::Sent, 1, page.next)
        .await
        .unwrap();
    assert_eq!(page.items, vec![sent]);
    assert_eq!(page.next, None);
}

#[tokio::test]
async fn with_unpublished_reads_the_sparse_index_until_the_limit() {
    let rule = mock!(Client::query)
        .match_requests(|req| req.index_name() == Some(INDEX_UNPUBLISHED))
        .then_compute_output(|req| {
            let out = QueryOutput::builder();
            if req.exclusive_start_key().is_none() {
                // A short page (1 MB cap) with more to come.
                out.items(item::key_for(&id(0)))
                    .last_evaluated_key(ATTR_PK, AttributeValue::S(item::pk_for(&id(0))))
                    .build()
            } else {
                out.items(item::key_for(&id(1)))
                    .items(item::key_for(&id(2)))
                    .build()
            }
        });
    let ids = store(&[&rule]).with_unpublished(5).await.unwrap();
    assert_eq!(ids, vec![id(0), id(1), id(2)]);
}

#[tokio::test]
async fn a_bad_key_in_an_index_is_corrupt() {
    let rule = mock!(Client::query).then_output(|| {
        QueryOutput::builder()
            .items(HashMap::from([(
                ATTR_PK.to_string(),
                AttributeValue::S("USER#nope".into()),
            )]))
            .build()
    });
    let err = store(&[&rule]).with_unpublished(5).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { key, .. } if key == "USER#nope"),
        "{err:?}"
    );
}
