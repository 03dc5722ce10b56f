//! [`DeadLetterView`]: what an operator needs to know about one dead letter, read from its body
//! (which may not decode: that is often why it is there) and its message attributes.

use serde::Serialize;
use time::OffsetDateTime;

use crate::adapters::sqs::{
    ATTR_ATTEMPTS, ATTR_ORIGINAL_MESSAGE_ID, ATTR_REASON, ATTR_REASON_CODE, ATTR_SOURCE_QUEUE,
};
use crate::domain::email::mask_email;
use crate::domain::event::decode;
use crate::ops::dlq::ATTR_REPLAY_COUNT;
use crate::ports::QueueMessage;

/// One dead letter, described.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetterView {
    /// The message id on the DLQ.
    pub message_id: String,
    /// `invite.requested`..., from the decoded body, or the raw `type` of one that does not
    /// decode.
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    /// The normalised address, when the body decodes and names one.
    pub email: Option<String>,
    /// Whether the body is a valid event under the contract.
    pub decodes: bool,
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    pub attempts: Option<u32>,
    /// When the message was sent to the DLQ.
    #[serde(with = "time::serde::rfc3339::option")]
    pub dead_lettered_at: Option<OffsetDateTime>,
    pub source_queue: Option<String>,
    pub original_message_id: Option<String>,
    /// How often it was replayed before.
    pub replay_count: u32,
    /// `MessageGroupId` on a FIFO DLQ.
    pub group_id: Option<String>,
}

/// An attribute value, unless missing, empty or `-` (our placeholder for empty).
fn attribute<'a>(m: &'a QueueMessage, name: &str) -> Option<&'a str> {
    m.attributes
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty() && *v != "-")
}

impl DeadLetterView {
    pub fn of(m: &QueueMessage) -> Self {
        let attr = |name: &str| attribute(m, name).map(str::to_string);
        let (event_type, event_id, email, decodes) = match decode(&m.body) {
            Ok(event) => (
                Some(event.body.type_name().to_string()),
                Some(event.id.clone()),
                event.body.target().email().map(|e| e.as_str().to_string()),
                true,
            ),
            Err(_) => {
                let raw: Option<serde_json::Value> = serde_json::from_str(&m.body).ok();
                let field = |name: &str| {
                    raw.as_ref()
                        .and_then(|v| v.get(name))
                        .and_then(|v| v.as_str())
                        .map(printable)
                };
                (field("type"), field("id"), None, false)
            }
        };
        Self {
            message_id: m.message_id.clone(),
            event_type,
            event_id,
            email,
            decodes,
            reason_code: attr(ATTR_REASON_CODE),
            reason: attr(ATTR_REASON),
            attempts: attribute(m, ATTR_ATTEMPTS).and_then(|a| a.parse().ok()),
            dead_lettered_at: m.sent_at,
            source_queue: attr(ATTR_SOURCE_QUEUE),
            original_message_id: attr(ATTR_ORIGINAL_MESSAGE_ID),
            replay_count: attribute(m, ATTR_REPLAY_COUNT)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
            group_id: m.group_id.clone(),
        }
    }

    /// The email for display: masked (`j***@example.com`) unless `show` is set, `-` if unknown.
    pub fn email_for_display(&self, show: bool) -> String {
        match &self.email {
            Some(e) if show => e.clone(),
            Some(e) => mask_email(e),
            None => "-".to_string(),
        }
    }

    /// How long ago it was dead-lettered, compactly (`42s`, `17m`, `5h`, `3d`); `-` if unknown.
    pub fn age(&self, now: OffsetDateTime) -> String {
        let Some(at) = self.dead_lettered_at else {
            return "-".to_string();
        };
        let secs = (now - at).whole_seconds().max(0);
        match secs {
            s if s < 60 => format!("{s}s"),
            s if s < 3600 => format!("{}m", s / 60),
            s if s < 86_400 => format!("{}h", s / 3600),
            s => format!("{}d", s / 86_400),
        }
    }
}

/// A raw value from an undecodable body, safe to print: no control characters, at most 64
/// characters.
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn dead_letter(body: &str, attrs: &[(&str, &str)]) -> QueueMessage {
        QueueMessage {
            message_id: "dlq-1".into(),
            receipt_handle: "rh".into(),
            body: body.into(),
            receive_count: 1,
            group_id: None,
            sent_at: Some(time::macros::datetime!(2026-11-26 12:00 UTC)),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_decodable_dead_letter_is_described_from_body_and_attributes() {
        let body = r#"{"version":1,"type":"invite.requested","id":"e-1","data":{"email":"Jane@Example.com"}}"#;
        let v = DeadLetterView::of(&dead_letter(
            body,
            &[
                (ATTR_REASON_CODE, "user_pool_not_found"),
                (ATTR_REASON, "cognito DescribeUserPool: no such pool"),
                (ATTR_ATTEMPTS, "1"),
                (ATTR_SOURCE_QUEUE, "https://sqs/q/invites"),
                (ATTR_ORIGINAL_MESSAGE_ID, "m-0"),
            ],
        ));
        assert_eq!(v.event_type.as_deref(), Some("invite.requested"));
        assert_eq!(v.event_id.as_deref(), Some("e-1"));
        assert_eq!(v.email.as_deref(), Some("jane@example.com"));
        assert_eq!(v.email_for_display(false), "j***@example.com");
        assert_eq!(v.email_for_display(true), "jane@example.com");
        assert_eq!(v.reason_code.as_deref(), Some("user_pool_not_found"));
        assert_eq!(v.attempts, Some(1));
        assert_eq!(v.source_queue.as_deref(), Some("https://sqs/q/invites"));
        assert_eq!(v.replay_count, 0);
        assert!(v.decodes);
        let later = time::macros::datetime!(2026-11-26 14:30 UTC);
        assert_eq!(v.age(later), "2h");
    }

    #[test]
    fn an_undecodable_body_shows_its_raw_type_and_no_email() {
        let body = r#"{"version":1,"type":"invite.requested","id":"e-2","data":{"email":"nope"}}"#;
        let v = DeadLetterView::of(&dead_letter(body, &[(ATTR_REASON_CODE, "invalid_event")]));
        assert!(!v.decodes);
        assert_eq!(v.event_type.as_deref(), Some("invite.requested"));
        assert_eq!(v.event_id.as_deref(), Some("e-2"));
        assert_eq!(v.email_for_display(true), "-");

        let v = DeadLetterView::of(&dead_letter("not json at all", &[]));
        assert_eq!(
            (&v.event_type, &v.event_id, &v.reason_code),
            (&None, &None, &None)
        );
        assert_eq!(
            v.age(time::macros::datetime!(2026-11-26 12:00:30 UTC)),
            "30s"
        );
    }
}
