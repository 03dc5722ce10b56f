//! One SES sending-event document (what SES publishes through a configuration set, `eventType`,
//! or the older identity notification, `notificationType`) turned into a [`MailFeedback`].
//! Pure: no I/O. Every error names its field relative to the document (`bounce.bounceType`,
//! `mail.tags.invite_id`), whatever envelope it came in.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::parse::{ParseError, Parsed};
use crate::domain::feedback::{
    BounceType, FeedbackKind, MailFeedback, TAG_GENERATION, TAG_INVITE_ID,
};
use crate::domain::text::forbidden_char;
use crate::domain::InviteId;

/// The header that carries the invite id when SES publishes no tags (identity notifications).
pub const HEADER_INVITE_ID: &str = "X-Invite-Id";
/// The header that carries the invite's generation, likewise.
pub const HEADER_GENERATION: &str = "X-Invite-Generation";
/// The longest identifier (`mail.messageId`, `feedbackId`) or code (`bounceSubType`,
/// `delayType`...) accepted: SES's are well under it; longer ones are not SES's.
const MAX_CODE_CHARS: usize = 256;
/// A receiving server's diagnostic or a reject reason longer than this is cut (it is kept in
/// the invite's history).
pub const MAX_TEXT_CHARS: usize = 1000;

/// The event types the worker acts on; every other one (`Send`, `Open`, `Click`,
/// `Rendering Failure`, `Subscription`, `AmazonSnsSubscriptionSucceeded`...) is acked unread.
const ACTED_ON: [&str; 5] = ["Bounce", "Complaint", "Delivery", "Reject", "DeliveryDelay"];

/// Reads one SES document (already known to be a JSON object).
pub(super) fn feedback_of(doc: &Map<String, Value>) -> Result<Parsed, ParseError> {
    let type_field = if doc.contains_key("eventType") {
        "eventType"
    } else {
        "notificationType"
    };
    let event_type = string(doc, type_field, type_field)?;
    if !ACTED_ON.contains(&event_type) {
        return Ok(Parsed::Ignored {
            reason: format!(
                "SES event type {} is not acted on",
                printable(event_type, 64)
            ),
        });
    }
    let mail = object(doc, "mail", "mail")?;
    let Some(invite_id) = invite_id_of(mail)? else {
        return Ok(Parsed::Ignored {
            reason: "not an invite-worker email (no invite_id tag or X-Invite-Id header)".into(),
        });
    };
    let generation = generation_of(mail)?;
    let ses_message_id = code(mail, "messageId", "mail.messageId")?;
    let (kind, occurred_at, at_text, feedback_id) = kind_of(event_type, doc, mail)?;
    let event_id = format!(
        "ses:{ses_message_id}:{}:{}",
        kind.event_type(),
        feedback_id.unwrap_or(at_text)
    );
    Ok(Parsed::Feedback(MailFeedback {
        event_id,
        invite_id,
        generation,
        ses_message_id: ses_message_id.to_string(),
        occurred_at,
        kind,
    }))
}

/// What happened, when (as a time and as written, for the event id) and SES's `feedbackId`.
type Kind<'a> = (FeedbackKind, OffsetDateTime, &'a str, Option<&'a str>);

fn kind_of<'a>(
    event_type: &str,
    doc: &'a Map<String, Value>,
    mail: &'a Map<String, Value>,
) -> Result<Kind<'a>, ParseError> {
    match event_type {
        "Bounce" => {
            let b = object(doc, "bounce", "bounce")?;
            let bounce_type = match string(b, "bounceType", "bounce.bounceType")? {
                "Permanent" => BounceType::Permanent,
                "Transient" => BounceType::Transient,
                "Undetermined" => BounceType::Undetermined,
                other => {
                    return Err(ParseError::new(
                        "bounce.bounceType",
                        format!(
                            "is {:?}; expected Permanent, Transient or Undetermined",
                            printable(other, 64)
                        ),
                    ))
                }
            };
            let sub_type = code(b, "bounceSubType", "bounce.bounceSubType")?.to_string();
            let diagnostic = diagnostic_of(b)?;
            let (at, text) = timestamp(b, "bounce.timestamp")?;
            let feedback_id = optional_code(b, "feedbackId", "bounce.feedbackId")?;
            let kind = FeedbackKind::Bounce {
                bounce_type,
                sub_type,
                diagnostic,
            };
            Ok((kind, at, text, feedback_id))
        }
        "Complaint" => {
            let c = object(doc, "complaint", "complaint")?;
            let feedback_type = optional_code(
                c,
                "complaintFeedbackType",
                "complaint.complaintFeedbackType",
            )?
            .map(str::to_string);
            let (at, text) = timestamp(c, "complaint.timestamp")?;
            let feedback_id = optional_code(c, "feedbackId", "complaint.feedbackId")?;
            Ok((
                FeedbackKind::Complaint { feedback_type },
                at,
                text,
                feedback_id,
            ))
        }
        "Delivery" => {
            let d = object(doc, "delivery", "delivery")?;
            let (at, text) = timestamp(d, "delivery.timestamp")?;
            Ok((FeedbackKind::Delivery, at, text, None))
        }
        "Reject" => {
            let r = object(doc, "reject", "reject")?;
            let reason = text(string(r, "reason", "reject.reason")?);
            // A reject has no time of its own: SES refused the mail when it was sent.
            let (at, text) = timestamp(mail, "mail.timestamp")?;
            Ok((FeedbackKind::Reject { reason }, at, text, None))
        }
        // `DeliveryDelay`, the last of ACTED_ON (the caller passes no other type).
        _ => {
            let d = object(doc, "deliveryDelay", "deliveryDelay")?;
            let delay_type = code(d, "delayType", "deliveryDelay.delayType")?.to_string();
            let (at, text) = timestamp(d, "deliveryDelay.timestamp")?;
            Ok((FeedbackKind::DeliveryDelay { delay_type }, at, text, None))
        }
    }
}

/// The invite id from the `invite_id` tag, else the `X-Invite-Id` header; `None` if the mail
/// has neither (it was not sent by invite-worker).
fn invite_id_of(mail: &Map<String, Value>) -> Result<Option<InviteId>, ParseError> {
    let found = match tag(mail, TAG_INVITE_ID)? {
        Some(v) => Some((v, format!("mail.tags.{TAG_INVITE_ID}"))),
        None => {
            header(mail, HEADER_INVITE_ID)?.map(|v| (v, format!("mail.headers.{HEADER_INVITE_ID}")))
        }
    };
    found
        .map(|(value, field)| {
            InviteId::parse(value.trim()).map_err(|reason| ParseError::new(field, reason))
        })
        .transpose()
}

/// The generation from the `invite_generation` tag, else the `X-Invite-Generation` header.
fn generation_of(mail: &Map<String, Value>) -> Result<Option<u32>, ParseError> {
    let found = match tag(mail, TAG_GENERATION)? {
        Some(v) => Some((v, format!("mail.tags.{TAG_GENERATION}"))),
        None => header(mail, HEADER_GENERATION)?
            .map(|v| (v, format!("mail.headers.{HEADER_GENERATION}"))),
    };
    found
        .map(|(value, field)| {
            value
                .trim()
                .parse::<u32>()
                .map_err(|_| ParseError::new(field, "is not a whole number"))
        })
        .transpose()
}

/// The first value of a message tag: SES publishes tags as `name -> [values]`.
fn tag<'a>(mail: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ParseError> {
    let tags = match mail.get("tags") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(tags)) => tags,
        Some(_) => return Err(ParseError::new("mail.tags", "must be a JSON object")),
    };
    let field = || format!("mail.tags.{name}");
    match tags.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(values)) => match values.first() {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ParseError::new(field(), "must be a list of strings")),
        },
        Some(_) => Err(ParseError::new(field(), "must be a list of strings")),
    }
}

/// A header of the original email (`mail.headers`, a list of `{name, value}`), by name in any
/// case; absent when SES did not include the headers.
fn header<'a>(mail: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ParseError> {
    let headers = match mail.get("headers") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(headers)) => headers,
        Some(_) => return Err(ParseError::new("mail.headers", "must be a list")),
    };
    for (i, h) in headers.iter().enumerate() {
        let Value::Object(h) = h else {
            return Err(ParseError::new(
                format!("mail.headers[{i}]"),
                "must be a JSON object",
            ));
        };
        let is_it = matches!(h.get("name"), Some(Value::String(n)) if n.eq_ignore_ascii_case(name));
        if is_it {
            return match h.get("value") {
                Some(Value::String(v)) => Ok(Some(v)),
                _ => Err(ParseError::new(
                    format!("mail.headers.{name}"),
                    "has no string value",
                )),
            };
        }
    }
    Ok(None)
}

/// The first bounced recipient's `diagnosticCode`, cut to [`MAX_TEXT_CHARS`].
fn diagnostic_of(bounce: &Map<String, Value>) -> Result<Option<String>, ParseError> {
    let first = match bounce.get("bouncedRecipients") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list.first(),
        Some(_) => {
            return Err(ParseError::new(
                "bounce.bouncedRecipients",
                "must be a list",
            ))
        }
    };
    match first {
        None => Ok(None),
        Some(Value::Object(r)) => match r.get("diagnosticCode") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(text(s))),
            Some(_) => Err(ParseError::new(
                "bounce.bouncedRecipients[0].diagnosticCode",
                "must be a string",
            )),
        },
        Some(_) => Err(ParseError::new(
            "bounce.bouncedRecipients[0]",
            "must be a JSON object",
        )),
    }
}

/// A required member that is a JSON object.
pub(super) fn object<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'a Map<String, Value>, ParseError> {
    match map.get(key) {
        None | Some(Value::Null) => Err(ParseError::new(field, "missing")),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(ParseError::new(field, "must be a JSON object")),
    }
}

/// A required member that is a string.
pub(super) fn string<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'a str, ParseError> {
    match map.get(key) {
        None | Some(Value::Null) => Err(ParseError::new(field, "missing")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ParseError::new(field, "must be a string")),
    }
}

/// A required identifier or code: not empty, at most [`MAX_CODE_CHARS`] printable characters.
fn code<'a>(map: &'a Map<String, Value>, key: &str, field: &str) -> Result<&'a str, ParseError> {
    let s = string(map, key, field)?;
    if s.trim().is_empty() {
        return Err(ParseError::new(field, "is empty"));
    }
    if s.chars().count() > MAX_CODE_CHARS {
        return Err(ParseError::new(
            field,
            format!("is longer than {MAX_CODE_CHARS} characters"),
        ));
    }
    if s.chars().any(forbidden_char) {
        return Err(ParseError::new(
            field,
            "contains control or invisible formatting characters",
        ));
    }
    Ok(s)
}

fn optional_code<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<&'a str>, ParseError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => code(map, key, field).map(Some),
    }
}

/// A required RFC 3339 time, parsed and as written.
fn timestamp<'a>(
    map: &'a Map<String, Value>,
    field: &str,
) -> Result<(OffsetDateTime, &'a str), ParseError> {
    let s = string(map, "timestamp", field)?;
    let at = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|_| ParseError::new(field, "is not an RFC 3339 time"))?;
    Ok((at, s))
}

/// Free text from a receiving server: control characters become spaces, cut to
/// [`MAX_TEXT_CHARS`] characters.
fn text(s: &str) -> String {
    cleaned(s, MAX_TEXT_CHARS, ' ')
}

/// Input echoed in a reason: at most `max` characters, control characters as `?`.
pub(super) fn printable(s: &str, max: usize) -> String {
    cleaned(s, max, '?')
}

fn cleaned(s: &str, max: usize, instead: char) -> String {
    s.chars()
        .take(max)
        .map(|c| if forbidden_char(c) { instead } else { c })
        .collect()
}
