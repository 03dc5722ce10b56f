//! The copy of a dead letter that a replay sends back: the body unchanged, the sender's original
//! message attributes, none of our diagnosis attributes (`invite_worker.reason` etc.: the worker
//! adds fresh ones if it dead-letters the message again), and lineage:
//! [`ATTR_ORIGINAL_MESSAGE_ID`] (the very first message id, kept across replays),
//! [`ATTR_REPLAY_COUNT`] and [`ATTR_REPLAYED_AT`]. At most SQS's 10 attributes: lineage first,
//! then the originals in name order.

use std::collections::BTreeMap;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::adapters::sqs::dead_letter::{fifo_id, sqs_safe, DEFAULT_GROUP_ID};
use crate::adapters::sqs::{
    ATTR_ORIGINAL_MESSAGE_ID, ATTR_PREFIX, ATTR_SOURCE_QUEUE, MAX_MESSAGE_ATTRIBUTES,
};
use crate::domain::event::decode;
use crate::domain::Replay;
use crate::ops::dlq::{ATTR_REPLAYED_AT, ATTR_REPLAY_COUNT};
use crate::ports::{OutgoingMessage, QueueMessage};

/// A dead letter ready to go back to its queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayCopy {
    /// The dead letter's id on the DLQ and its receipt handle there (to delete it afterwards).
    pub dlq_message_id: String,
    pub receipt_handle: String,
    /// The queue the copy goes to.
    pub destination: String,
    pub message: OutgoingMessage,
    /// Original attributes that did not fit in SQS's limit.
    pub dropped_attributes: Vec<String>,
}

fn attribute<'a>(m: &'a QueueMessage, name: &str) -> Option<&'a str> {
    m.attributes
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty() && *v != "-")
}

/// The queue a dead letter says it came from (`invite_worker.source_queue`), if it says so.
/// Only a report: anyone who can write to the DLQ can forge it, so a replay never sends there
/// because of it (see [`crate::ops::dlq::ReplayOptions`]).
pub fn claimed_source(m: &QueueMessage) -> Option<&str> {
    attribute(m, ATTR_SOURCE_QUEUE)
}

/// Whether two queue URLs name the same queue: the same path (`/<account>/<name>`), whatever
/// the host is called (`sqs.<region>.amazonaws.com`, the legacy `queue.amazonaws.com`, a VPC
/// endpoint) and however a trailing `/` is written. Errs towards "the same", which is what a
/// refusal needs.
pub fn same_queue(a: &str, b: &str) -> bool {
    let path = |u: &str| match url::Url::parse(u.trim()) {
        Ok(url) => url.path().trim_end_matches('/').to_string(),
        Err(_) => u.trim().trim_end_matches('/').to_string(),
    };
    path(a) == path(b)
}

/// The id of the message that started it all: the lineage attribute if the dead letter has
/// one, else its own id (SQS's redrive keeps message ids).
pub fn original_message_id(m: &QueueMessage) -> String {
    attribute(m, ATTR_ORIGINAL_MESSAGE_ID)
        .unwrap_or(&m.message_id)
        .to_string()
}

/// The replay number this copy gets (1 for the first replay).
pub fn replay_count(m: &QueueMessage) -> u32 {
    attribute(m, ATTR_REPLAY_COUNT)
        .and_then(|c| c.parse::<u32>().ok())
        .unwrap_or(0)
        .saturating_add(1)
}

/// The longest original message id a replay mark keeps (SQS ids have 36 characters; the
/// attribute may come from anyone who can send to the queue).
const MAX_ORIGINAL_ID_CHARS: usize = 128;

/// What the worker reads from a message about a replay: `None` unless the message carries a
/// replay count of at least 1 (a copy sent by `dlq replay`). The handler re-opens a `failed`
/// invite for it; see docs/lifecycle.md ("Replay") for why a forged attribute is harmless.
pub fn replay_of(m: &QueueMessage) -> Option<Replay> {
    let number = attribute(m, ATTR_REPLAY_COUNT)?
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)?;
    Some(Replay {
        number,
        original_message_id: attribute(m, ATTR_ORIGINAL_MESSAGE_ID)
            .map(|id| id.chars().take(MAX_ORIGINAL_ID_CHARS).collect()),
    })
}

/// The copy's message attributes and the names of originals that did not fit.
pub fn replay_attributes(
    m: &QueueMessage,
    now: OffsetDateTime,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut out = BTreeMap::new();
    out.insert(
        ATTR_ORIGINAL_MESSAGE_ID.to_string(),
        sqs_safe(&original_message_id(m)),
    );
    out.insert(ATTR_REPLAY_COUNT.to_string(), replay_count(m).to_string());
    out.insert(
        ATTR_REPLAYED_AT.to_string(),
        now.format(&Rfc3339).unwrap_or_else(|_| "-".into()),
    );
    let mut dropped = Vec::new();
    for (name, value) in &m.attributes {
        if name.starts_with(ATTR_PREFIX) || value.is_empty() {
            continue;
        }
        if out.len() < MAX_MESSAGE_ATTRIBUTES {
            out.insert(name.clone(), sqs_safe(value));
        } else {
            dropped.push(name.clone());
        }
    }
    (out, dropped)
}

/// The FIFO deduplication id of a replayed copy: the original message id and the replay number,
/// so a replay retried (or repeated after a crash) within SQS's five-minute window is dropped by
/// SQS itself, while a later replay of a message that failed again is not.
pub fn replay_dedup_id(original_message_id: &str, replay_count: u32) -> String {
    fifo_id(&format!("replay-{original_message_id}-{replay_count}"))
}

/// The FIFO group of the copy: the dead letter's own group, else the person's address from the
/// body, else [`DEFAULT_GROUP_ID`].
fn group_id(m: &QueueMessage) -> String {
    m.group_id
        .clone()
        .filter(|g| !g.is_empty())
        .or_else(|| {
            decode(&m.body)
                .ok()
                .map(|e| crate::ops::enqueue::group_id(&e.body))
        })
        .unwrap_or_else(|| DEFAULT_GROUP_ID.to_string())
}

/// The copy of dead letter `m` that a replay sends to `destination`.
pub fn replay_copy(m: &QueueMessage, destination: &str, now: OffsetDateTime) -> ReplayCopy {
    let destination = destination.to_string();
    let (attributes, dropped_attributes) = replay_attributes(m, now);
    let fifo = destination.ends_with(".fifo");
    ReplayCopy {
        dlq_message_id: m.message_id.clone(),
        receipt_handle: m.receipt_handle.clone(),
        message: OutgoingMessage {
            id: m.message_id.clone(),
            body: m.body.clone(),
            group_id: fifo.then(|| group_id(m)),
            dedup_id: fifo.then(|| replay_dedup_id(&original_message_id(m), replay_count(m))),
            attributes,
        },
        destination,
        dropped_attributes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::sqs::{ATTR_ATTEMPTS, ATTR_REASON, ATTR_REASON_CODE, ATTR_WORKER_VERSION};

    const NOW: OffsetDateTime = time::macros::datetime!(2026-11-27 09:30 UTC);

    fn dead_letter(attrs: &[(&str, &str)]) -> QueueMessage {
        QueueMessage {
            message_id: "dlq-msg".into(),
            receipt_handle: "rh".into(),
            body: r#"{"version":1,"type":"invite.requested","id":"e-1","data":{"email":"Jane@Example.com"}}"#.into(),
            receive_count: 3,
            group_id: None,
            sent_at: None,
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn diagnosed(extra: &[(&'static str, &'static str)]) -> QueueMessage {
        let mut attrs = vec![
            (ATTR_REASON_CODE, "user_pool_not_found"),
            (ATTR_REASON, "no such pool"),
            (ATTR_ATTEMPTS, "1"),
            (ATTR_WORKER_VERSION, "0.1.0"),
            (ATTR_SOURCE_QUEUE, "https://sqs.example/123/invites"),
            (ATTR_ORIGINAL_MESSAGE_ID, "first-msg"),
        ];
        attrs.extend_from_slice(extra);
        dead_letter(&attrs)
    }

    #[test]
    fn diagnosis_is_dropped_lineage_added_and_originals_kept() {
        let m = diagnosed(&[("trace_id", "t-1"), ("tenant", "acme")]);
        let copy = replay_copy(&m, "https://sqs.example/123/invites", NOW);
        assert_eq!(copy.destination, "https://sqs.example/123/invites");
        assert_eq!(copy.message.body, m.body);
        let names: Vec<&str> = copy.message.attributes.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                ATTR_ORIGINAL_MESSAGE_ID,
                ATTR_REPLAY_COUNT,
                ATTR_REPLAYED_AT,
                "tenant",
                "trace_id"
            ]
        );
        let a = &copy.message.attributes;
        assert_eq!(a[ATTR_ORIGINAL_MESSAGE_ID], "first-msg");
        assert_eq!(a[ATTR_REPLAY_COUNT], "1");
        assert_eq!(a[ATTR_REPLAYED_AT], "2026-11-27T09:30:00Z");
        assert!(copy.dropped_attributes.is_empty());
        assert_eq!((copy.message.group_id, copy.message.dedup_id), (None, None));
    }

    #[test]
    fn a_second_replay_keeps_the_first_id_and_counts_up() {
        let m = diagnosed(&[
            (ATTR_REPLAY_COUNT, "2"),
            (ATTR_REPLAYED_AT, "2026-11-26T00:00:00Z"),
        ]);
        let (a, _) = replay_attributes(&m, NOW);
        assert_eq!(a[ATTR_ORIGINAL_MESSAGE_ID], "first-msg");
        assert_eq!(a[ATTR_REPLAY_COUNT], "3");
        assert_eq!(a[ATTR_REPLAYED_AT], "2026-11-27T09:30:00Z");
    }

    #[test]
    fn a_dead_letter_without_our_attributes_claims_no_source() {
        // Moved by the redrive policy: SQS keeps the message id, adds nothing.
        let m = dead_letter(&[("trace_id", "t-1")]);
        assert_eq!(claimed_source(&m), None);
        let copy = replay_copy(&m, "https://default/q", NOW);
        assert_eq!(copy.destination, "https://default/q");
        assert_eq!(copy.message.attributes[ATTR_ORIGINAL_MESSAGE_ID], "dlq-msg");
        assert_eq!(copy.message.attributes[ATTR_REPLAY_COUNT], "1");
        assert_eq!(copy.message.attributes["trace_id"], "t-1");
    }

    #[test]
    fn originals_beyond_the_attribute_limit_are_dropped_and_named() {
        let names: Vec<String> = (0..9).map(|i| format!("a{i}")).collect();
        let attrs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let (a, dropped) = replay_attributes(&dead_letter(&attrs), NOW);
        assert_eq!(a.len(), MAX_MESSAGE_ATTRIBUTES);
        assert!(a.contains_key(ATTR_REPLAY_COUNT));
        assert_eq!(dropped, ["a7", "a8"]);
    }

    #[test]
    fn fifo_copies_keep_the_group_and_get_a_stable_dedup_id() {
        let mut m = diagnosed(&[]);
        m.attributes.insert(
            ATTR_SOURCE_QUEUE.into(),
            "https://sqs.example/123/invites.fifo".into(),
        );
        m.group_id = Some("jane@example.com".into());
        let fifo = "https://sqs.example/123/invites.fifo";
        let copy = replay_copy(&m, fifo, NOW);
        assert_eq!(copy.message.group_id.as_deref(), Some("jane@example.com"));
        assert_eq!(copy.message.dedup_id.as_deref(), Some("replay-first-msg-1"));
        assert_eq!(
            replay_copy(&m, fifo, NOW + time::Duration::hours(1))
                .message
                .dedup_id,
            copy.message.dedup_id
        );

        // No group on the dead letter: the address from the body.
        m.group_id = None;
        let copy = replay_copy(&m, fifo, NOW);
        assert_eq!(copy.message.group_id.as_deref(), Some("jane@example.com"));
        m.body = "garbage".into();
        let copy = replay_copy(&m, fifo, NOW);
        assert_eq!(copy.message.group_id.as_deref(), Some(DEFAULT_GROUP_ID));
    }

    #[test]
    fn the_worker_reads_the_replay_mark_of_a_copy_and_nothing_from_other_messages() {
        let copy = replay_copy(&diagnosed(&[]), "https://default", NOW);
        let received = QueueMessage {
            attributes: copy.message.attributes.clone(),
            ..dead_letter(&[])
        };
        assert_eq!(
            replay_of(&received),
            Some(Replay {
                number: 1,
                original_message_id: Some("first-msg".into()),
            })
        );
        for count in ["0", "-1", "x", "", "-"] {
            let m = dead_letter(&[(ATTR_REPLAY_COUNT, count)]);
            assert_eq!(replay_of(&m), None, "{count:?}");
        }
        assert_eq!(replay_of(&dead_letter(&[("trace_id", "t")])), None);
        let long = "m".repeat(1000);
        let m = dead_letter(&[(ATTR_REPLAY_COUNT, "2"), (ATTR_ORIGINAL_MESSAGE_ID, &long)]);
        let mark = replay_of(&m).unwrap();
        assert_eq!(mark.number, 2);
        assert_eq!(
            mark.original_message_id.unwrap().len(),
            MAX_ORIGINAL_ID_CHARS
        );
    }

    #[test]
    fn a_long_address_gets_the_same_short_group_from_enqueue_and_replay() {
        let email = format!("{}@{}.example.com", "a".repeat(64), "d".repeat(60));
        assert!(email.len() > 128);
        let body = format!(
            r#"{{"version":1,"type":"invite.requested","id":"e-1","data":{{"email":"{email}"}}}}"#
        );
        let mut m = diagnosed(&[]);
        m.attributes.insert(
            ATTR_SOURCE_QUEUE.into(),
            "https://sqs.example/123/invites.fifo".into(),
        );
        m.body = body.clone();
        let copy = replay_copy(&m, "https://sqs.example/123/invites.fifo", NOW);
        let replayed = copy.message.group_id.expect("a FIFO copy has a group");
        let enqueued = crate::ops::enqueue::group_id(&decode(&body).unwrap().body);
        assert_eq!(replayed, enqueued);
        assert!(replayed.len() <= 128, "{replayed}");
        assert_eq!(replayed, fifo_id(&email));
        assert_eq!(replayed.len(), 64);
    }

    #[test]
    fn queues_are_compared_by_account_and_name() {
        let dlq = "https://sqs.eu-west-1.amazonaws.com/123/invites-dlq";
        assert!(same_queue(
            dlq,
            "https://queue.amazonaws.com/123/invites-dlq/"
        ));
        assert!(same_queue(dlq, dlq));
        assert!(!same_queue(
            dlq,
            "https://sqs.eu-west-1.amazonaws.com/123/invites"
        ));
        assert!(!same_queue(
            dlq,
            "https://sqs.eu-west-1.amazonaws.com/456/invites-dlq"
        ));
    }

    #[test]
    fn long_or_odd_dedup_ids_are_hashed() {
        assert_eq!(replay_dedup_id("abc", 2), "replay-abc-2");
        assert_eq!(replay_dedup_id(&"x".repeat(200), 1).len(), 64);
        assert_eq!(replay_dedup_id("a b", 1).len(), 64);
    }
}
