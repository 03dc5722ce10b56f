//! The DynamoDB store and the SQS queue against the local emulator (moto).
//!
//! Needs the local stack, so `#[ignore]`d: scripts/test.sh runs them (`--include-ignored`); run
//! by hand without `AWS_ENDPOINT_URL` they fail. Every test creates its own uniquely named table and queues
//! (the server is shared) and removes them afterwards.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use invite_worker::adapters::dynamo::{self, DynamoInviteStore};
use invite_worker::adapters::sqs::{self, SqsQueue};
use invite_worker::domain::invite::PendingPublication;
use invite_worker::domain::{
    BounceDetail, Complaint, EmailAddress, HistoryEntry, Invite, InviteDetails, InviteId,
    InviteStatus,
};
use invite_worker::ports::OutgoingMessage;
use invite_worker::ports::{DeadLetter, InviteStore, Queue, StoreError};
use time::{Duration as TimeDelta, OffsetDateTime};

const POOL: &str = "us-east-1_moto";

async fn sdk_config() -> aws_config::SdkConfig {
    support::stack_sdk().await
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn key(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .expect("key schema")
}

fn attr(name: &str, t: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(t)
        .build()
        .expect("attribute definition")
}

fn gsi(name: &str, hash: &str, range: &str, projection: ProjectionType) -> GlobalSecondaryIndex {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash))
        .key_schema(key(range, KeyType::Range))
        .projection(Projection::builder().projection_type(projection).build())
        .build()
        .expect("gsi")
}

/// The table as bootstrap creates it, from the adapter's names.
async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    use ScalarAttributeType::{N, S};
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(dynamo::ATTR_PK, KeyType::Hash))
        .key_schema(key(dynamo::ATTR_SK, KeyType::Range))
        .attribute_definitions(attr(dynamo::ATTR_PK, S))
        .attribute_definitions(attr(dynamo::ATTR_SK, S))
        .attribute_definitions(attr(dynamo::ATTR_OPEN_SHARD, S))
        .attribute_definitions(attr(dynamo::ATTR_OPEN_EXPIRES_AT, N))
        .attribute_definitions(attr(dynamo::ATTR_STATUS, S))
        .attribute_definitions(attr(dynamo::ATTR_UPDATED_MS, N))
        .attribute_definitions(attr(dynamo::ATTR_OUTBOX_SHARD, S))
        .global_secondary_indexes(gsi(
            dynamo::INDEX_OPEN,
            dynamo::ATTR_OPEN_SHARD,
            dynamo::ATTR_OPEN_EXPIRES_AT,
            ProjectionType::KeysOnly,
        ))
        .global_secondary_indexes(gsi(
            dynamo::INDEX_STATUS,
            dynamo::ATTR_STATUS,
            dynamo::ATTR_UPDATED_MS,
            ProjectionType::All,
        ))
        .global_secondary_indexes(gsi(
            dynamo::INDEX_UNPUBLISHED,
            dynamo::ATTR_OUTBOX_SHARD,
            dynamo::ATTR_UPDATED_MS,
            ProjectionType::KeysOnly,
        ))
        .send()
        .await
        .expect("create table");
}

/// A fresh invite, whole seconds only (as the service writes them).
fn invite(
    email: &str,
    status: InviteStatus,
    expires_at: OffsetDateTime,
    updated_at: OffsetDateTime,
) -> Invite {
    let email = EmailAddress::parse(email).expect("valid email");
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "crm".into(),
        serde_json::json!({"ids": [1, 2, 3], "score": 0.5, "flags": {"vip": true, "note": null}}),
    );
    Invite {
        invite_id: InviteId::for_email(POOL, &email),
        user_pool_id: POOL.into(),
        username: email.as_str().into(),
        email,
        status,
        reason: None,
        generation: 1,
        opened_by_event: "evt-open".into(),
        created_at: updated_at,
        updated_at,
        expires_at,
        sent_at: None,
        accepted_at: None,
        send_count: 0,
        user_sub: None,
        details: InviteDetails {
            attributes: BTreeMap::from([("given_name".into(), "Ada".into())]),
            groups: vec!["staff".into()],
            locale: Some("en".into()),
            metadata,
            ..Default::default()
        },
        history: vec![HistoryEntry {
            at: updated_at,
            from: None,
            to: InviteStatus::Pending,
            event_id: Some("evt-open".into()),
            event_type: "invite.requested".into(),
            reason: None,
            generation: 1,
            replay: None,
            actor: None,
        }],
        version: 1,
        lease: None,
        outbox: vec![],
        reminded_generation: None,
        last_occurred_at: None,
        mail: Default::default(),
    }
}

fn now_seconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

async fn all_open_expired(
    store: &DynamoInviteStore,
    now: OffsetDateTime,
    page: usize,
) -> Vec<InviteId> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let p = store
            .open_expired(now, page, cursor)
            .await
            .expect("open_expired");
        assert!(p.items.len() <= page);
        ids.extend(p.items);
        match p.next {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test]
async fn store_saves_conditionally_and_keeps_its_indexes() {
    let conf = sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&conf);
    let table = unique("invites-test");
    create_table(&client, &table).await;
    let store = DynamoInviteStore::new(client.clone(), &table, 4);
    let result = store_scenario(&store).await;
    let _ = client.delete_table().table_name(&table).send().await;
    result.expect("scenario");
}

async fn store_scenario(store: &DynamoInviteStore) -> Result<(), String> {
    let now = now_seconds();
    let past = now - TimeDelta::days(1);
    let future = now + TimeDelta::days(7);

    // Conditional saves.
    let mut a = invite(
        "a@example.com",
        InviteStatus::Pending,
        past,
        now - TimeDelta::minutes(5),
    );
    store
        .save(&a)
        .await
        .map_err(|e| format!("save a v1: {e}"))?;
    match store.save(&a).await {
        Err(StoreError::Conflict) => {}
        other => return Err(format!("second v1 save should conflict, got {other:?}")),
    }
    a.version = 2;
    a.status = InviteStatus::Sent;
    a.sent_at = Some(now - TimeDelta::minutes(4));
    a.send_count = 1;
    a.user_sub = Some("sub-a".into());
    store
        .save(&a)
        .await
        .map_err(|e| format!("save a v2: {e}"))?;
    let mut stale = a.clone();
    stale.version = 2;
    assert!(
        matches!(store.save(&stale).await, Err(StoreError::Conflict)),
        "v2 again conflicts"
    );
    let mut skipping = a.clone();
    skipping.version = 9;
    assert!(
        matches!(store.save(&skipping).await, Err(StoreError::Conflict)),
        "skipping versions conflicts"
    );

    // Load round trip.
    assert_eq!(
        store.load(&a.invite_id).await.map_err(|e| e.to_string())?,
        Some(a.clone())
    );
    let nobody = InviteId::for_email(POOL, &EmailAddress::parse("nobody@example.com").unwrap());
    assert_eq!(store.load(&nobody).await.map_err(|e| e.to_string())?, None);

    // More invites: open and past expiry, open in the future, closed in the past.
    let b = invite(
        "b@example.com",
        InviteStatus::Pending,
        past - TimeDelta::hours(1),
        now - TimeDelta::minutes(3),
    );
    let c = invite(
        "c@example.com",
        InviteStatus::Sent,
        future,
        now - TimeDelta::minutes(2),
    );
    let mut d = invite(
        "d@example.com",
        InviteStatus::Failed,
        past,
        now - TimeDelta::minutes(1),
    );
    d.reason = Some("email_rejected".into());
    let mut extra = Vec::new();
    for i in 0..5 {
        extra.push(invite(
            &format!("x{i}@example.com"),
            InviteStatus::Pending,
            past,
            now - TimeDelta::minutes(10 + i),
        ));
    }
    for inv in [&b, &c, &d].into_iter().chain(extra.iter()) {
        store
            .save(inv)
            .await
            .map_err(|e| format!("save {}: {e}", inv.email.as_str()))?;
    }

    let expect: BTreeSet<InviteId> = [a.invite_id, b.invite_id]
        .into_iter()
        .chain(extra.iter().map(|i| i.invite_id))
        .collect();
    let got: BTreeSet<InviteId> = all_open_expired(store, now, 100)
        .await
        .into_iter()
        .collect();
    assert_eq!(
        got, expect,
        "open and expired only: not c (future), not d (closed)"
    );
    let paged = all_open_expired(store, now, 2).await;
    assert_eq!(
        paged.len(),
        expect.len(),
        "paging returns each once: {paged:?}"
    );
    assert_eq!(paged.iter().copied().collect::<BTreeSet<_>>(), expect);

    // Sparse: closing an invite takes it out of the open index.
    a.version = 3;
    a.status = InviteStatus::Revoked;
    a.reason = Some("revoked_by_admin".into());
    a.updated_at = now;
    store
        .save(&a)
        .await
        .map_err(|e| format!("save a v3: {e}"))?;
    let got: BTreeSet<InviteId> = all_open_expired(store, now, 100)
        .await
        .into_iter()
        .collect();
    assert!(
        !got.contains(&a.invite_id) && got.contains(&b.invite_id),
        "{got:?}"
    );
    let items = store_item(store, &a.invite_id).await;
    assert!(
        items.contains_key(dynamo::ATTR_TTL) && !items.contains_key(dynamo::ATTR_OPEN_SHARD),
        "{:?}",
        items.keys()
    );

    // By status, newest first, with paging.
    let pending = collect_by_status(store, InviteStatus::Pending, 2).await?;
    let emails: Vec<&str> = pending.iter().map(|i| i.email.as_str()).collect();
    assert_eq!(
        emails,
        [
            "b@example.com",
            "x0@example.com",
            "x1@example.com",
            "x2@example.com",
            "x3@example.com",
            "x4@example.com"
        ]
    );
    let revoked = collect_by_status(store, InviteStatus::Revoked, 10).await?;
    assert_eq!(revoked, vec![a.clone()]);

    // The outbox index.
    assert!(store
        .with_unpublished(10)
        .await
        .map_err(|e| e.to_string())?
        .is_empty());
    let mut with_outbox = c.clone();
    with_outbox.version = 2;
    with_outbox.outbox.push(PendingPublication {
        event_id: "pub-1".into(),
        event_type: "invite.sent".into(),
        body: serde_json::json!({"invite_id": c.invite_id.to_string()}),
    });
    store
        .save(&with_outbox)
        .await
        .map_err(|e| format!("save c v2: {e}"))?;
    assert_eq!(
        store
            .with_unpublished(10)
            .await
            .map_err(|e| e.to_string())?,
        vec![c.invite_id]
    );
    with_outbox.version = 3;
    with_outbox.outbox.clear();
    store
        .save(&with_outbox)
        .await
        .map_err(|e| format!("save c v3: {e}"))?;
    assert!(
        store
            .with_unpublished(10)
            .await
            .map_err(|e| e.to_string())?
            .is_empty(),
        "published: gone from the index"
    );

    // Undeliverable, with what SES said: listed by its status and read back whole.
    let mut u = invite(
        "u@example.com",
        InviteStatus::Undeliverable,
        past,
        now - TimeDelta::minutes(1),
    );
    u.reason = Some("bounce_permanent".into());
    u.mail.delivered_at = Some(now - TimeDelta::minutes(3));
    u.mail.bounce = Some(BounceDetail {
        at: now - TimeDelta::minutes(2),
        bounce_type: Some("Permanent".into()),
        sub_type: Some("NoEmail".into()),
        diagnostic: Some("smtp; 550 5.1.1 user unknown".into()),
    });
    u.mail.complaint = Some(Complaint {
        at: now - TimeDelta::minutes(1),
        feedback_type: None,
    });
    store.save(&u).await.map_err(|e| format!("save u: {e}"))?;
    assert_eq!(
        collect_by_status(store, InviteStatus::Undeliverable, 10).await?,
        vec![u.clone()]
    );
    assert_eq!(
        store.load(&u.invite_id).await.map_err(|e| e.to_string())?,
        Some(u)
    );
    Ok(())
}

async fn collect_by_status(
    store: &DynamoInviteStore,
    status: InviteStatus,
    page: usize,
) -> Result<Vec<Invite>, String> {
    let mut all = Vec::new();
    let mut cursor = None;
    for _ in 0..50 {
        let p = store
            .list_by_status(status, page, cursor)
            .await
            .map_err(|e| format!("list {status}: {e}"))?;
        all.extend(p.items);
        match p.next {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
    Err("list_by_status never ended".into())
}

async fn store_item(
    store: &DynamoInviteStore,
    id: &InviteId,
) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    let conf = sdk_config().await;
    aws_sdk_dynamodb::Client::new(&conf)
        .get_item()
        .table_name(store.table())
        .set_key(Some(dynamo::item::key_for(id)))
        .send()
        .await
        .expect("get item")
        .item()
        .cloned()
        .unwrap_or_default()
}

async fn create_queue(client: &aws_sdk_sqs::Client, name: &str) -> String {
    let mut create = client.create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        create = create.attributes(QueueAttributeName::FifoQueue, "true");
    }
    create
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string()
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test]
async fn queue_receives_deletes_and_dead_letters() {
    let conf = sdk_config().await;
    let client = aws_sdk_sqs::Client::new(&conf);
    let queue_url = create_queue(&client, &unique("invites-in")).await;
    let dlq_url = create_queue(&client, &unique("invites-dlq")).await;
    let queue = SqsQueue::new(client.clone(), &queue_url, &dlq_url, "9.9.9-test");
    let result = queue_scenario(&queue).await;
    for url in [&queue_url, &dlq_url] {
        let _ = client.delete_queue().queue_url(url).send().await;
    }
    result.expect("scenario");
}

async fn queue_scenario(queue: &SqsQueue) -> Result<(), String> {
    assert!(!queue.is_fifo());
    let mut attributes: BTreeMap<String, String> = (0..6)
        .map(|i| (format!("orig{i}"), format!("value{i}")))
        .collect();
    attributes.insert(sqs::ATTR_REASON_CODE.into(), "stale".into());
    let failures = queue
        .send_batch(
            queue.queue_url(),
            vec![
                OutgoingMessage {
                    id: "one".into(),
                    body: "first".into(),
                    attributes: attributes.clone(),
                    ..Default::default()
                },
                OutgoingMessage {
                    id: "two".into(),
                    body: "second".into(),
                    ..Default::default()
                },
            ],
        )
        .await
        .map_err(|e| format!("send_batch: {e}"))?;
    assert!(failures.is_empty(), "{failures:?}");

    let mut got = receive_all(queue, 2).await?;
    got.sort_by(|x, y| x.body.cmp(&y.body));
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["first", "second"]
    );
    assert!(
        got.iter()
            .all(|m| m.receive_count == 1 && m.sent_at.is_some()),
        "{got:?}"
    );
    assert_eq!(got[0].attributes, attributes);

    // Visible again at once, and received a second time.
    queue
        .change_visibility(&got[1].receipt_handle, Duration::ZERO)
        .await
        .map_err(|e| format!("change_visibility: {e}"))?;
    let again = receive_all(queue, 1).await?;
    assert_eq!(
        (again[0].body.as_str(), again[0].receive_count),
        ("second", 2)
    );

    // Dead-letter the first with its attributes, then delete both.
    let why = DeadLetter {
        reason_code: "invalid_event".into(),
        reason: "data.email: is empty".into(),
        attempts: 1,
    };
    queue
        .dead_letter(&got[0], &why)
        .await
        .map_err(|e| format!("dead_letter: {e}"))?;
    let failures = queue
        .delete_messages(&[
            got[0].receipt_handle.clone(),
            again[0].receipt_handle.clone(),
        ])
        .await
        .map_err(|e| format!("delete_messages: {e}"))?;
    assert!(failures.is_empty(), "{failures:?}");
    assert!(
        queue
            .receive(10, Duration::from_secs(1))
            .await
            .map_err(|e| e.to_string())?
            .is_empty(),
        "queue is empty"
    );

    let dead = queue
        .receive_from(
            queue.dlq_url(),
            10,
            Duration::from_secs(2),
            Some(Duration::from_secs(30)),
        )
        .await
        .map_err(|e| format!("receive dlq: {e}"))?;
    assert_eq!(dead.len(), 1);
    let dl = &dead[0];
    assert_eq!(dl.body, "first");
    assert_eq!(
        dl.attributes.len(),
        sqs::MAX_MESSAGE_ATTRIBUTES,
        "{:?}",
        dl.attributes
    );
    assert_eq!(
        dl.attributes[sqs::ATTR_REASON_CODE],
        "invalid_event",
        "ours replace the original's"
    );
    assert_eq!(dl.attributes[sqs::ATTR_REASON], "data.email: is empty");
    assert_eq!(dl.attributes[sqs::ATTR_ATTEMPTS], "1");
    assert_eq!(dl.attributes[sqs::ATTR_WORKER_VERSION], "9.9.9-test");
    assert_eq!(dl.attributes[sqs::ATTR_SOURCE_QUEUE], queue.queue_url());
    assert_eq!(
        dl.attributes[sqs::ATTR_ORIGINAL_MESSAGE_ID],
        got[0].message_id
    );
    assert_eq!(dl.attributes["orig0"], "value0");
    let failures = queue
        .delete_from(queue.dlq_url(), std::slice::from_ref(&dl.receipt_handle))
        .await
        .map_err(|e| e.to_string())?;
    assert!(failures.is_empty());
    Ok(())
}

/// Receives until `n` messages arrived (moto may return fewer per call).
async fn receive_all(
    queue: &SqsQueue,
    n: usize,
) -> Result<Vec<invite_worker::ports::QueueMessage>, String> {
    let mut got = Vec::new();
    for _ in 0..10 {
        let batch = queue
            .receive(10, Duration::from_secs(1))
            .await
            .map_err(|e| format!("receive: {e}"))?;
        got.extend(batch);
        if got.len() >= n {
            return Ok(got);
        }
    }
    Err(format!("received {} of {n} messages", got.len()))
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test]
async fn fifo_dead_letters_keep_the_group() {
    let conf = sdk_config().await;
    let client = aws_sdk_sqs::Client::new(&conf);
    let queue_url = create_queue(&client, &format!("{}.fifo", unique("in"))).await;
    let dlq_url = create_queue(&client, &format!("{}.fifo", unique("dlq"))).await;
    let queue = SqsQueue::new(client.clone(), &queue_url, &dlq_url, "1");
    let result = async {
        assert!(queue.is_fifo());
        let failures = queue
            .send_batch(
                &queue_url,
                vec![OutgoingMessage {
                    id: "e1".into(),
                    body: "fifo body".into(),
                    group_id: Some("pool-1".into()),
                    dedup_id: Some("e1".into()),
                    ..Default::default()
                }],
            )
            .await
            .map_err(|e| format!("send_batch: {e}"))?;
        assert!(failures.is_empty(), "{failures:?}");
        let got = receive_all(&queue, 1).await?;
        assert_eq!(got[0].group_id.as_deref(), Some("pool-1"));
        let why = DeadLetter {
            reason_code: "x".into(),
            reason: "y".into(),
            attempts: 1,
        };
        queue
            .dead_letter(&got[0], &why)
            .await
            .map_err(|e| format!("dead_letter: {e}"))?;
        let dead = queue
            .receive_from(&dlq_url, 10, Duration::from_secs(2), None)
            .await
            .map_err(|e| e.to_string())?;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].group_id.as_deref(), Some("pool-1"));
        Ok::<_, String>(())
    }
    .await;
    for url in [&queue_url, &dlq_url] {
        let _ = client.delete_queue().queue_url(url).send().await;
    }
    result.expect("scenario");
}
