use std::time::Duration;

use super::*;
use crate::adapters::memory::MemoryQueues;
use crate::domain::event::decode;

const CSV: &str = "email,given_name,family_name,groups,expires_in_days\n\
                   jane@example.com,Jane,Doe,employees,7\n\
                   max@example.com,Max,Mustermann,,\n\
                   not-an-address,Nobody,Nowhere,,\n\
                   amy@example.com,Amy,Lee,,365\n\
                   li@example.com,Li,Wei,new starters,\n";

fn quick() -> EnqueueOptions {
    EnqueueOptions {
        backoff: ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(2))
            .with_max_times(2),
        ..Default::default()
    }
}

fn prepared(text: &str) -> Vec<Prepared> {
    parse("new.csv", text, Format::Auto)
        .unwrap()
        .into_iter()
        .map(|i| prepare(i, None))
        .collect()
}

#[tokio::test]
async fn only_good_rows_are_sent_and_bad_ones_are_named_by_line() {
    let q = MemoryQueues::new();
    let report = enqueue(&q, "q", prepared(CSV), &quick()).await;
    assert_eq!(report.summary(), "5 rows: 2 sent, 3 invalid, 0 failed");
    assert!(!report.all_good());
    assert_eq!(
        report.problems(),
        [
            "line 4: data.email: has no @",
            "line 5: data.expires_in_days: must be between 1 and 90",
            "line 6: data.groups[0]: contains white space, which Cognito group names do not allow",
        ]
    );
    let bodies = q.bodies("q");
    assert_eq!(bodies.len(), 2);
    let emails: Vec<String> = bodies
        .iter()
        .map(|b| match decode(b).unwrap().body {
            EventBody::InviteRequested(r) => r.email.as_str().to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(emails, ["jane@example.com", "max@example.com"]);
}

#[tokio::test]
async fn the_same_file_twice_sends_the_same_event_ids() {
    let q = MemoryQueues::new();
    let first = enqueue(&q, "q", prepared(CSV), &quick()).await;
    let second = enqueue(&q, "q", prepared(CSV), &quick()).await;
    let ids = |r: &EnqueueReport| -> Vec<Option<String>> {
        r.rows.iter().map(|r| r.event_id.clone()).collect()
    };
    assert_eq!(ids(&first), ids(&second));
    let sent: Vec<String> = q
        .bodies("q")
        .iter()
        .map(|b| decode(b).unwrap().id)
        .collect();
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0..2], sent[2..4]);
}

#[tokio::test]
async fn a_dry_run_validates_and_sends_nothing() {
    let q = MemoryQueues::new();
    let report = enqueue(
        &q,
        "q",
        prepared(CSV),
        &EnqueueOptions {
            dry_run: true,
            ..quick()
        },
    )
    .await;
    assert_eq!(
        report.summary(),
        "5 rows: 2 valid, 3 invalid (dry run: nothing sent)"
    );
    assert_eq!(report.count(RowStatus::Valid), 2);
    assert!(q.bodies("q").is_empty());
    assert_eq!(q.send_calls(), 0);
}

#[tokio::test]
async fn fifo_messages_are_grouped_by_address_and_deduplicated_by_event_id() {
    let q = MemoryQueues::new();
    let report = enqueue(&q, "q.fifo", prepared(CSV), &quick()).await;
    let sent = q.messages("q.fifo");
    assert_eq!(sent[0].group_id.as_deref(), Some("jane@example.com"));
    assert_eq!(sent[0].dedup_id, report.rows[0].event_id);
    // The same file again: SQS's deduplication drops every message.
    enqueue(&q, "q.fifo", prepared(CSV), &quick()).await;
    assert_eq!(q.messages("q.fifo").len(), 2);
}

#[tokio::test]
async fn rows_sqs_refuses_are_reported_as_failed() {
    let q = MemoryQueues::new();
    q.fail_send_entries("q", 1, true);
    let report = enqueue(&q, "q", prepared(CSV), &quick()).await;
    assert_eq!(report.count(RowStatus::Failed), 1);
    assert_eq!(report.rows[0].status, RowStatus::Failed);
    assert_eq!(
        report.problems()[0],
        "line 2: not sent: InvalidParameterValue: injected"
    );
    assert_eq!(q.bodies("q").len(), 1);
}

#[tokio::test]
async fn transient_failures_are_retried() {
    let q = MemoryQueues::new();
    q.fail_send_calls("q", 1);
    q.fail_send_entries("q", 1, false);
    let report = enqueue(&q, "q", prepared(CSV), &quick()).await;
    assert_eq!(report.count(RowStatus::Sent), 2);
    assert_eq!(q.bodies("q").len(), 2);
}

#[tokio::test]
async fn no_validate_sends_invalid_rows_but_not_unreadable_ones() {
    let q = MemoryQueues::new();
    let csv = "email,given_name\nnope,A\nb@example.com,B,extra\n";
    let report = enqueue(
        &q,
        "q",
        prepared(csv),
        &EnqueueOptions {
            no_validate: true,
            ..quick()
        },
    )
    .await;
    assert_eq!(report.rows[0].status, RowStatus::Sent);
    assert!(report.rows[0].message.starts_with("invalid, sent anyway"));
    assert_eq!(report.rows[1].status, RowStatus::Invalid);
    assert_eq!(q.bodies("q").len(), 1);
}

#[tokio::test]
async fn a_repeated_address_is_sent_with_a_note() {
    let q = MemoryQueues::new();
    let csv = "email,given_name\njane@example.com,Jane\nJANE@example.com,Janet\n";
    let report = enqueue(&q, "q", prepared(csv), &quick()).await;
    assert!(report.all_good());
    assert_eq!(
        report.problems(),
        ["line 3: note: same address as line 2; the worker records this one as a duplicate request"]
    );
    assert_eq!(q.bodies("q").len(), 2);

    let csv = "email,given_name\njane@example.com,Jane\nJANE@example.com,Jane\n";
    let report = enqueue(&q, "q", prepared(csv), &quick()).await;
    assert_eq!(
        report.problems(),
        ["line 3: note: the same event as line 2; the worker handles it once"]
    );
    // A resend for the same address is not a repeated invite.
    let mut items = parse("a.csv", "email\njane@example.com\n", Format::Auto).unwrap();
    items.extend(
        parse(
            "b.jsonl",
            r#"{"version":1,"type":"invite.resend","id":"r-1","data":{"email":"jane@example.com"}}"#,
            Format::Jsonl,
        )
        .unwrap(),
    );
    let report = enqueue(
        &q,
        "q",
        items.into_iter().map(|i| prepare(i, None)).collect(),
        &quick(),
    )
    .await;
    assert!(report.problems().is_empty(), "{:?}", report.problems());
}

#[tokio::test]
async fn several_files_are_named_in_problems() {
    let q = MemoryQueues::new();
    let mut items = parse("a.csv", "email\nx\n", Format::Auto).unwrap();
    items.extend(parse("b.jsonl", "{\"email\":\"y\"}\n", Format::Auto).unwrap());
    let prepared = items.into_iter().map(|i| prepare(i, None)).collect();
    let report = enqueue(&q, "q", prepared, &quick()).await;
    assert_eq!(
        report.problems(),
        [
            "a.csv line 2: data.email: has no @",
            "b.jsonl line 1: data.email: has no @"
        ]
    );
}
