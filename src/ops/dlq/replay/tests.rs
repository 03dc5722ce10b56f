use super::*;
use crate::adapters::memory::MemoryQueues;
use crate::adapters::sqs::{ATTR_ORIGINAL_MESSAGE_ID, ATTR_REASON_CODE, ATTR_SOURCE_QUEUE};
use crate::ops::dlq::{ATTR_REPLAYED_AT, ATTR_REPLAY_COUNT};

pub(crate) const DLQ: &str = "https://sqs.example/1/invites-dlq";
const SOURCE: &str = "https://sqs.example/1/invites";
const OTHER: &str = "https://sqs.example/1/other";

pub(crate) fn invite(id: &str, email: &str) -> String {
    format!(r#"{{"version":1,"type":"invite.requested","id":"{id}","data":{{"email":"{email}"}}}}"#)
}

fn revoke(id: &str, email: &str) -> String {
    format!(r#"{{"version":1,"type":"invite.revoke","id":"{id}","data":{{"email":"{email}"}}}}"#)
}

/// A dead letter as the worker writes it.
pub(crate) fn dead_letter(q: &MemoryQueues, body: &str, code: &str) -> String {
    q.put(
        DLQ,
        body,
        &[
            (ATTR_REASON_CODE, code),
            (ATTR_SOURCE_QUEUE, SOURCE),
            (ATTR_ORIGINAL_MESSAGE_ID, "first"),
            ("trace_id", "t-1"),
        ],
    )
}

fn options(filters: &[&str]) -> ReplayOptions {
    ReplayOptions {
        filters: Filters::parse(filters).unwrap(),
        max: None,
        rate_per_second: None,
        dry_run: false,
        configured_queue: SOURCE.into(),
        to_queue: None,
        scan: ScanOptions::default(),
    }
}

#[tokio::test]
async fn replays_what_matches_and_leaves_the_rest_visible() {
    let q = MemoryQueues::new();
    dead_letter(&q, &invite("e-1", "a@example.com"), "user_pool_not_found");
    dead_letter(&q, &invite("e-2", "b@example.com"), "invalid_attributes");
    dead_letter(&q, &revoke("e-3", "c@example.com"), "user_pool_not_found");
    q.put(DLQ, &invite("e-4", "d@example.com"), &[]);

    let s = replay(
        &q,
        DLQ,
        &options(&["reason=user_pool_not_found", "type=invite.requested"]),
    )
    .await
    .unwrap();
    assert_eq!(
        (s.examined, s.matched, s.replayed, s.skipped, s.failed),
        (4, 1, 1, 3, 0)
    );
    assert!(s.ok());
    let sent = q.messages(SOURCE);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body, invite("e-1", "a@example.com"));
    assert_eq!(sent[0].attributes[ATTR_ORIGINAL_MESSAGE_ID], "first");
    assert_eq!(sent[0].attributes[ATTR_REPLAY_COUNT], "1");
    assert!(sent[0].attributes.contains_key(ATTR_REPLAYED_AT));
    assert_eq!(sent[0].attributes["trace_id"], "t-1");
    assert!(!sent[0].attributes.contains_key(ATTR_REASON_CODE));
    assert_eq!(q.messages(DLQ).len(), 3, "only the replayed one is gone");
    assert_eq!(q.visible_len(DLQ), 3, "the rest are released");
    assert_eq!(
        s.entries[0].outcome,
        ReplayOutcome::Replayed {
            destination: SOURCE.into()
        }
    );
}

#[tokio::test]
async fn no_filter_replays_everything_to_the_configured_queue() {
    let q = MemoryQueues::new();
    dead_letter(&q, &invite("e-1", "a@example.com"), "user_pool_not_found");
    q.put(DLQ, &invite("e-2", "b@example.com"), &[]);
    let s = replay(&q, DLQ, &options(&[])).await.unwrap();
    assert_eq!((s.matched, s.replayed, s.disagreeing_sources), (2, 2, 0));
    assert_eq!(q.messages(SOURCE).len(), 2);
    assert!(q.messages(DLQ).is_empty());
}

#[tokio::test]
async fn a_forged_source_attribute_is_reported_not_followed() {
    let q = MemoryQueues::new();
    for forged in [DLQ, OTHER] {
        q.put(
            DLQ,
            &invite("e-1", "a@example.com"),
            &[(ATTR_REASON_CODE, "x"), (ATTR_SOURCE_QUEUE, forged)],
        );
    }
    let s = replay(&q, DLQ, &options(&[])).await.unwrap();
    assert_eq!((s.replayed, s.disagreeing_sources), (2, 2));
    assert_eq!(
        q.messages(SOURCE).len(),
        2,
        "both went to the configured queue"
    );
    assert!(q.messages(OTHER).is_empty());
    assert!(q.messages(DLQ).is_empty(), "nothing went back onto the DLQ");
    let mut claimed: Vec<_> = s
        .entries
        .iter()
        .map(|e| e.disagreeing_source.clone().unwrap())
        .collect();
    claimed.sort();
    assert_eq!(claimed, [DLQ, OTHER]);
}

#[tokio::test]
async fn to_queue_names_another_destination_but_never_the_dlq() {
    let q = MemoryQueues::new();
    dead_letter(&q, &invite("e-1", "a@example.com"), "x");
    let to_other = ReplayOptions {
        to_queue: Some(OTHER.into()),
        ..options(&[])
    };
    let s = replay(&q, DLQ, &to_other).await.unwrap();
    assert_eq!((s.replayed, s.disagreeing_sources), (1, 1));
    assert_eq!(q.messages(OTHER).len(), 1);
    assert_eq!(s.entries[0].disagreeing_source.as_deref(), Some(SOURCE));

    dead_letter(&q, &invite("e-2", "b@example.com"), "x");
    for (configured, to_queue) in [(SOURCE, Some(format!("{DLQ}/"))), (DLQ, None), ("", None)] {
        let refused = ReplayOptions {
            configured_queue: configured.into(),
            to_queue,
            ..options(&[])
        };
        let e = replay(&q, DLQ, &refused).await.unwrap_err();
        assert!(matches!(e, DlqError::Refused(_)), "{e}");
    }
    assert_eq!(
        q.messages(DLQ).len(),
        1,
        "a refused replay receives nothing"
    );
    assert_eq!(q.visible_len(DLQ), 1);
}

#[tokio::test]
async fn a_dry_run_moves_nothing() {
    let q = MemoryQueues::new();
    dead_letter(&q, &invite("e-1", "a@example.com"), "user_pool_not_found");
    let s = replay(
        &q,
        DLQ,
        &ReplayOptions {
            dry_run: true,
            ..options(&["reason=user_pool_not_found"])
        },
    )
    .await
    .unwrap();
    assert_eq!((s.matched, s.replayed), (1, 0));
    assert_eq!(
        s.entries[0].outcome,
        ReplayOutcome::WouldReplay {
            destination: SOURCE.into()
        }
    );
    assert!(q.messages(SOURCE).is_empty());
    assert_eq!(q.visible_len(DLQ), 1);
}

#[tokio::test]
async fn max_limits_the_replay() {
    let q = MemoryQueues::new();
    for i in 0..15 {
        dead_letter(&q, &invite(&format!("e-{i}"), "a@example.com"), "x");
    }
    let s = replay(
        &q,
        DLQ,
        &ReplayOptions {
            max: Some(12),
            ..options(&[])
        },
    )
    .await
    .unwrap();
    assert_eq!((s.matched, s.replayed), (12, 12));
    assert_eq!(q.messages(SOURCE).len(), 12);
    assert_eq!(q.visible_len(DLQ), 3);
}

#[tokio::test]
async fn a_refused_send_keeps_the_dead_letter_and_fails_the_summary() {
    let q = MemoryQueues::new();
    dead_letter(&q, &invite("e-1", "a@example.com"), "x");
    dead_letter(&q, &invite("e-2", "b@example.com"), "x");
    q.fail_send_entries(SOURCE, 1, true);
    let s = replay(&q, DLQ, &options(&[])).await.unwrap();
    assert_eq!((s.matched, s.replayed, s.failed), (2, 1, 1));
    assert!(!s.ok());
    assert!(matches!(s.entries[0].outcome, ReplayOutcome::SendFailed(_)));
    assert_eq!(q.messages(SOURCE).len(), 1);
    assert_eq!(q.visible_len(DLQ), 1, "the failed one is still there");
}

#[tokio::test]
async fn a_failed_delete_after_a_good_send_is_reported_and_loses_nothing() {
    let q = MemoryQueues::new();
    dead_letter(&q, &invite("e-1", "a@example.com"), "x");
    q.fail_delete_calls(DLQ, 10);
    let s = replay(&q, DLQ, &options(&[])).await.unwrap();
    assert_eq!((s.replayed, s.not_deleted), (0, 1));
    assert!(!s.ok());
    assert_eq!(q.messages(SOURCE).len(), 1);
    assert_eq!(q.visible_len(DLQ), 1);
}

#[tokio::test]
async fn a_crash_between_send_and_delete_loses_nothing() {
    let q = MemoryQueues::new();
    dead_letter(&q, &invite("e-1", "a@example.com"), "x");
    // The send step of a replay, then the process dies before deleting.
    let mut scan = Scan::new(&q, DLQ, ScanOptions::default());
    let m = scan.next(10).await.unwrap().remove(0);
    let copy = replay_copy(&m, SOURCE, OffsetDateTime::now_utc());
    assert!(send_copies(&q, &[copy], None).await[0].is_ok());
    q.expire_holds(DLQ);
    // The next replay sends it again and this time deletes it.
    let s = replay(&q, DLQ, &options(&[])).await.unwrap();
    assert_eq!(s.replayed, 1);
    assert!(q.messages(DLQ).is_empty());
    let copies = q.messages(SOURCE);
    assert_eq!(copies.len(), 2, "a duplicate, never a loss");
    assert_eq!(copies[0].body, copies[1].body);
    assert_eq!(
        copies[0].attributes[ATTR_REPLAY_COUNT],
        copies[1].attributes[ATTR_REPLAY_COUNT]
    );
}

#[tokio::test]
async fn on_fifo_the_duplicate_of_a_crashed_replay_is_deduplicated() {
    let q = MemoryQueues::new();
    let (dlq, source) = (
        "https://sqs.example/1/invites-dlq.fifo",
        "https://sqs.example/1/invites.fifo",
    );
    q.put_in_group(
        dlq,
        &invite("e-1", "a@example.com"),
        &[
            (ATTR_SOURCE_QUEUE, source),
            (ATTR_ORIGINAL_MESSAGE_ID, "first"),
        ],
        Some("a@example.com"),
    );
    let mut scan = Scan::new(&q, dlq, ScanOptions::default());
    let m = scan.next(10).await.unwrap().remove(0);
    send_copies(
        &q,
        &[replay_copy(&m, source, OffsetDateTime::now_utc())],
        None,
    )
    .await;
    q.expire_holds(dlq);
    let to_fifo = ReplayOptions {
        configured_queue: source.into(),
        ..options(&[])
    };
    let s = replay(&q, dlq, &to_fifo).await.unwrap();
    assert_eq!(s.replayed, 1);
    let copies = q.messages(source);
    assert_eq!(copies.len(), 1, "same dedup id: SQS drops the second");
    assert_eq!(copies[0].group_id.as_deref(), Some("a@example.com"));
    assert_eq!(copies[0].dedup_id.as_deref(), Some("replay-first-1"));
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_paces_the_sends() {
    let q = MemoryQueues::new();
    for i in 0..5 {
        dead_letter(&q, &invite(&format!("e-{i}"), "a@example.com"), "x");
    }
    let start = tokio::time::Instant::now();
    let s = replay(
        &q,
        DLQ,
        &ReplayOptions {
            rate_per_second: Some(2.0),
            ..options(&[])
        },
    )
    .await
    .unwrap();
    assert_eq!(s.replayed, 5);
    let elapsed = start.elapsed();
    // One token at once, four more at two per second.
    assert!(
        elapsed >= Duration::from_millis(1990) && elapsed < Duration::from_millis(2500),
        "{elapsed:?}"
    );
}

#[test]
fn the_hold_outlasts_a_batch_at_the_rate() {
    assert_eq!(
        ReplayOptions::scan_for_rate(None).hold,
        Duration::from_secs(300)
    );
    assert_eq!(
        ReplayOptions::scan_for_rate(Some(0.1)).hold,
        Duration::from_secs(500)
    );
}
