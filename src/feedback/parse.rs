//! The feedback queue's message bodies: which envelope an SES sending event came in, and what
//! it says. Pure: no I/O, never panics.
//!
//! Accepted shapes (docs/lifecycle.md, "Delivery awareness"):
//! - an SNS notification (`{"Type":"Notification","Message":"<SES document as a JSON
//!   string>",...}`), what an SQS queue subscribed to the configuration set's topic receives;
//! - the SES document itself, when the subscription uses raw message delivery;
//! - an EventBridge event (`{"detail-type":"Email Bounced","source":"aws.ses","detail":{...}}`);
//! - in each, the event-publishing document (`eventType`, with message tags) or the older
//!   identity notification (`notificationType`, no tags: the invite id comes from the
//!   `X-Invite-Id` header, when SES includes the headers).
//!
//! The answer is [`Parsed::Feedback`] for an event the worker acts on, [`Parsed::Ignored`] for a
//! legitimate message it has nothing to do with (an SNS subscription confirmation, a `Send` or
//! `Open` event, a mail invite-worker did not send), or a [`ParseError`] naming the field.

use serde_json::{Map, Value};

use super::document::{feedback_of, object, printable, string};
use crate::domain::feedback::MailFeedback;

/// A body that is not a usable SES event: which field, and why. The handler dead-letters it
/// with the reason code `invalid_feedback`. (The same error type as the invite events'.)
pub type ParseError = crate::domain::event::DecodeError;

/// The largest body read: SQS's own limit (256 KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What a feedback queue message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// An SES event about an invitation email that the worker acts on.
    Feedback(MailFeedback),
    /// A legitimate message with nothing to do: ack it. `reason` says why (for the log; no
    /// address in it).
    Ignored { reason: String },
}

/// Reads one message body from the feedback queue.
pub fn parse(body: &str) -> Result<Parsed, ParseError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ParseError::new(
            "body",
            format!("is {} bytes; the limit is {MAX_BODY_BYTES}", body.len()),
        ));
    }
    let top = json_object(body, "body")?;
    if top.contains_key("Type") {
        sns(&top)
    } else if top.contains_key("detail-type") || top.contains_key("detail") {
        eventbridge(&top)
    } else if top.contains_key("eventType") || top.contains_key("notificationType") {
        feedback_of(&top)
    } else {
        Err(ParseError::new(
            "body",
            "is not an SES event: no eventType or notificationType, no SNS Type, no EventBridge detail",
        ))
    }
}

/// An SNS message: a notification carries the SES document as a JSON string in `Message`;
/// the subscription's own messages are acknowledged.
fn sns(envelope: &Map<String, Value>) -> Result<Parsed, ParseError> {
    match string(envelope, "Type", "Type")? {
        "Notification" => {
            let message = string(envelope, "Message", "Message")?;
            let doc = json_object(message, "Message")?;
            if doc.contains_key("eventType") || doc.contains_key("notificationType") {
                feedback_of(&doc)
            } else {
                Err(ParseError::new(
                    "Message",
                    "is not an SES event: no eventType or notificationType",
                ))
            }
        }
        other => Ok(Parsed::Ignored {
            reason: format!("SNS {} message", printable(other, 64)),
        }),
    }
}

/// An EventBridge event from SES: the SES document is its `detail`.
fn eventbridge(event: &Map<String, Value>) -> Result<Parsed, ParseError> {
    match event.get("source") {
        Some(Value::String(s)) if s == "aws.ses" => {}
        Some(Value::String(s)) => {
            return Ok(Parsed::Ignored {
                reason: format!("EventBridge event from {}, not aws.ses", printable(s, 64)),
            })
        }
        _ => return Err(ParseError::new("source", "missing")),
    }
    let detail = object(event, "detail", "detail")?;
    if detail.contains_key("eventType") || detail.contains_key("notificationType") {
        return feedback_of(detail);
    }
    // A detail without its event type: the detail-type says it.
    let implied = match event.get("detail-type") {
        Some(Value::String(t)) => EVENTBRIDGE_TYPES
            .iter()
            .find(|(detail_type, _)| detail_type == t)
            .map(|(_, event_type)| *event_type),
        _ => None,
    };
    match implied {
        Some(event_type) => {
            let mut detail = detail.clone();
            detail.insert("eventType".into(), Value::String(event_type.into()));
            feedback_of(&detail)
        }
        // SES's other EventBridge events (Virtual Deliverability Manager advice, sending
        // status) are not about one email.
        None => Ok(Parsed::Ignored {
            reason: "SES EventBridge event that is not a sending event".into(),
        }),
    }
}

/// EventBridge's `detail-type` of each SES sending event the worker acts on, and its `eventType`.
const EVENTBRIDGE_TYPES: [(&str, &str); 5] = [
    ("Email Bounced", "Bounce"),
    ("Email Complaint Received", "Complaint"),
    ("Email Delivered", "Delivery"),
    ("Email Rejected", "Reject"),
    ("Email Delivery Delayed", "DeliveryDelay"),
];

/// Text that must be a JSON object; `field` names it in the error.
fn json_object(text: &str, field: &str) -> Result<Map<String, Value>, ParseError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParseError::new(field, "must be a JSON object")),
        Err(e) => Err(ParseError::new(field, format!("is not valid JSON ({e})"))),
    }
}
