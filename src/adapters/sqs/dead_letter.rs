//! What a dead-lettered message carries: the body unchanged, our reason attributes first, then
//! as many of the original attributes as still fit in SQS's limit of 10 message attributes.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::ports::{DeadLetter, QueueMessage};

pub use crate::ports::queue_limits::MAX_FIFO_ID_CHARS as MAX_DEDUP_ID_LEN;
pub use crate::ports::queue_limits::MAX_MESSAGE_ATTRIBUTES;
/// Longest `reason` attribute, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// The message group of dead letters whose original had none (FIFO DLQ only).
pub const DEFAULT_GROUP_ID: &str = "dead-letters";

/// Prefix of every attribute this service adds to a dead letter.
pub const ATTR_PREFIX: &str = "invite_worker.";
/// Short snake_case reason code (String).
pub const ATTR_REASON_CODE: &str = "invite_worker.reason_code";
/// Human-readable reason, at most [`MAX_REASON_CHARS`] characters (String).
pub const ATTR_REASON: &str = "invite_worker.reason";
/// How many times the message was received (Number).
pub const ATTR_ATTEMPTS: &str = "invite_worker.attempts";
/// The worker's version (String).
pub const ATTR_WORKER_VERSION: &str = "invite_worker.worker_version";
/// The URL of the queue the message came from (String).
pub const ATTR_SOURCE_QUEUE: &str = "invite_worker.source_queue";
/// The message id on the source queue (String).
pub const ATTR_ORIGINAL_MESSAGE_ID: &str = "invite_worker.original_message_id";

/// SQS's attribute data types that we send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    String,
    Number,
}

impl DataType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::String => "String",
            DataType::Number => "Number",
        }
    }
}

/// The message attributes of a dead letter, in order: ours, then the originals that fit.
/// An original attribute with one of our names is replaced by ours; empty originals (which SQS
/// would refuse) are dropped.
pub fn attributes(
    message: &QueueMessage,
    why: &DeadLetter,
    worker_version: &str,
    source_queue: &str,
) -> Vec<(String, DataType, String)> {
    let ours = [
        (
            ATTR_REASON_CODE,
            DataType::String,
            non_empty(&why.reason_code),
        ),
        (
            ATTR_REASON,
            DataType::String,
            non_empty(&truncate_chars(&why.reason, MAX_REASON_CHARS)),
        ),
        (ATTR_ATTEMPTS, DataType::Number, why.attempts.to_string()),
        (
            ATTR_WORKER_VERSION,
            DataType::String,
            non_empty(worker_version),
        ),
        (ATTR_SOURCE_QUEUE, DataType::String, non_empty(source_queue)),
        (
            ATTR_ORIGINAL_MESSAGE_ID,
            DataType::String,
            non_empty(first_message_id(message)),
        ),
    ];
    let mut out: Vec<(String, DataType, String)> = ours
        .into_iter()
        .map(|(n, t, v)| (n.to_string(), t, sqs_safe(&v)))
        .collect();
    let originals = originals_that_fit(&message.attributes, &out);
    out.extend(originals);
    out
}

/// The id of the first message in a replay lineage: a replayed message carries it as an
/// attribute (see `crate::ops::dlq::lineage`); any other message is its own first.
fn first_message_id(message: &QueueMessage) -> &str {
    message
        .attributes
        .get(ATTR_ORIGINAL_MESSAGE_ID)
        .map(String::as_str)
        .filter(|id| !id.is_empty() && *id != "-")
        .unwrap_or(&message.message_id)
}

/// Originals that fit after ours; replay lineage (other `invite_worker.*` attributes) first, so
/// it survives a second dead-lettering.
fn originals_that_fit(
    originals: &BTreeMap<String, String>,
    ours: &[(String, DataType, String)],
) -> Vec<(String, DataType, String)> {
    let (lineage, senders): (Vec<_>, Vec<_>) = originals
        .iter()
        .partition(|(name, _)| name.starts_with(ATTR_PREFIX));
    lineage
        .into_iter()
        .chain(senders)
        .filter(|(name, value)| !value.is_empty() && !ours.iter().any(|(n, _, _)| n == *name))
        .take(MAX_MESSAGE_ATTRIBUTES.saturating_sub(ours.len()))
        .map(|(name, value)| (name.clone(), DataType::String, sqs_safe(value)))
        .collect()
}

/// `key` as a FIFO `MessageGroupId` or `MessageDeduplicationId` (SQS allows at most 128 ASCII
/// letters, digits and punctuation in both): the key itself when it fits, else the 64 lower-case
/// hex digits of its SHA-256. Stable: the same key always gets the same id.
pub fn fifo_id(key: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c.is_ascii_punctuation();
    if !key.is_empty() && key.len() <= MAX_DEDUP_ID_LEN && key.chars().all(allowed) {
        key.to_string()
    } else {
        hex::encode(Sha256::digest(key.as_bytes()))
    }
}

/// The FIFO deduplication id of a dead letter: the original message id and receive count, so a
/// retried dead-lettering of the same delivery is deduplicated while a later one is not.
pub fn dedup_id(message: &QueueMessage) -> String {
    fifo_id(&format!("{}-{}", message.message_id, message.receive_count))
}

/// The FIFO group of a dead letter: the original's, or [`DEFAULT_GROUP_ID`].
pub fn group_id(message: &QueueMessage) -> String {
    message
        .group_id
        .clone()
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| DEFAULT_GROUP_ID.to_string())
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => text[..cut].to_string(),
        None => text.to_string(),
    }
}

fn non_empty(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text.to_string()
    }
}

/// SQS accepts only XML characters in attribute values (`#x9 | #xA | #xD | #x20-#xD7FF |
/// #xE000-#xFFFD | #x10000-#x10FFFF`); anything else becomes U+FFFD.
pub fn sqs_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            '\u{FFFE}' | '\u{FFFF}' => char::REPLACEMENT_CHARACTER,
            c if (c as u32) < 0x20 => char::REPLACEMENT_CHARACTER,
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attributes: &[(&str, &str)]) -> QueueMessage {
        QueueMessage {
            message_id: "m-1".into(),
            receipt_handle: "rh".into(),
            body: "{}".into(),
            receive_count: 4,
            group_id: None,
            sent_at: None,
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn why(reason: &str) -> DeadLetter {
        DeadLetter {
            reason_code: "invalid_event".into(),
            reason: reason.into(),
            attempts: 4,
        }
    }

    #[test]
    fn ours_come_first_and_originals_fill_up_to_ten() {
        let originals: Vec<(String, String)> =
            (0..8).map(|i| (format!("a{i}"), format!("v{i}"))).collect();
        let refs: Vec<(&str, &str)> = originals
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let attrs = attributes(&message(&refs), &why("bad"), "1.2.3", "https://q/in");
        assert_eq!(attrs.len(), MAX_MESSAGE_ATTRIBUTES);
        let names: Vec<&str> = attrs.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                ATTR_REASON_CODE,
                ATTR_REASON,
                ATTR_ATTEMPTS,
                ATTR_WORKER_VERSION,
                ATTR_SOURCE_QUEUE,
                ATTR_ORIGINAL_MESSAGE_ID,
                "a0",
                "a1",
                "a2",
                "a3"
            ]
        );
        assert_eq!(
            attrs[2],
            (ATTR_ATTEMPTS.to_string(), DataType::Number, "4".to_string())
        );
        assert_eq!(attrs[4].2, "https://q/in");
        assert_eq!(attrs[5].2, "m-1");
    }

    #[test]
    fn ours_replace_originals_with_the_same_name() {
        let attrs = attributes(
            &message(&[
                (ATTR_REASON_CODE, "old"),
                ("invite_worker.other", "kept"),
                ("empty", ""),
            ]),
            &why("r"),
            "v",
            "q",
        );
        let codes: Vec<&str> = attrs
            .iter()
            .filter(|(n, _, _)| n == ATTR_REASON_CODE)
            .map(|(_, _, v)| v.as_str())
            .collect();
        assert_eq!(codes, ["invalid_event"]);
        assert!(attrs
            .iter()
            .any(|(n, _, v)| n == "invite_worker.other" && v == "kept"));
        assert!(!attrs.iter().any(|(n, _, _)| n == "empty"));
    }

    #[test]
    fn replay_lineage_survives_a_second_dead_lettering() {
        let attrs = attributes(
            &message(&[
                ("a0", "v"),
                ("a1", "v"),
                ("a2", "v"),
                (ATTR_ORIGINAL_MESSAGE_ID, "first"),
                ("invite_worker.replay_count", "1"),
                ("invite_worker.replayed_at", "2026-11-27T09:30:00Z"),
            ]),
            &why("again"),
            "v",
            "q",
        );
        assert_eq!(attrs.len(), MAX_MESSAGE_ATTRIBUTES);
        assert_eq!(
            attrs[5],
            (
                ATTR_ORIGINAL_MESSAGE_ID.into(),
                DataType::String,
                "first".into()
            )
        );
        let names: Vec<&str> = attrs[6..].iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "invite_worker.replay_count",
                "invite_worker.replayed_at",
                "a0",
                "a1"
            ]
        );
    }

    #[test]
    fn reasons_are_truncated_and_made_safe() {
        let long = "é".repeat(1500);
        let attrs = attributes(&message(&[]), &why(&long), "v", "q");
        assert_eq!(attrs[1].2.chars().count(), MAX_REASON_CHARS);
        let attrs = attributes(&message(&[]), &why("a\u{0}b\nc"), "v", "q");
        assert_eq!(attrs[1].2, "a\u{FFFD}b\nc");
        let attrs = attributes(&message(&[]), &why(""), "", "q");
        assert_eq!((attrs[1].2.as_str(), attrs[3].2.as_str()), ("-", "-"));
    }

    #[test]
    fn dedup_ids_fit_fifo_limits() {
        let mut m = message(&[]);
        assert_eq!(dedup_id(&m), "m-1-4");
        m.message_id = "x".repeat(200);
        let id = dedup_id(&m);
        assert_eq!(id.len(), 64);
        assert_ne!(id, {
            m.receive_count = 5;
            dedup_id(&m)
        });
        assert_eq!(group_id(&m), DEFAULT_GROUP_ID);
        m.group_id = Some("g".into());
        assert_eq!(group_id(&m), "g");
    }
}
