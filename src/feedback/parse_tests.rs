//! `parse` over the fixtures in `tests/fixtures/ses-events/` (SES's documented shapes with our
//! tags added, in each envelope), field-naming errors, and garbled input that must never panic.

use rand::{Rng, SeedableRng};
use serde_json::Value;
use time::macros::datetime;

use super::parse::{parse, Parsed, MAX_BODY_BYTES};
use crate::domain::feedback::{BounceType, FeedbackKind, MailFeedback};
use crate::domain::InviteId;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ses-events/",
            $name,
            ".json"
        ))
    };
}

/// Every fixture (the handler's worker-loop test uses them too).
pub(super) const FIXTURES: [&str; 18] = [
    fixture!("bounce-permanent.raw"),
    fixture!("bounce-permanent.sns"),
    fixture!("bounce-permanent.eventbridge"),
    fixture!("bounce-transient.raw"),
    fixture!("bounce-transient.sns"),
    fixture!("complaint.raw"),
    fixture!("complaint.sns"),
    fixture!("delivery.raw"),
    fixture!("delivery.sns"),
    fixture!("delivery.eventbridge"),
    fixture!("reject.raw"),
    fixture!("reject.sns"),
    fixture!("delivery-delay.raw"),
    fixture!("delivery-delay.sns"),
    fixture!("notification-bounce.sns"),
    fixture!("subscription-confirmation"),
    fixture!("send.sns"),
    fixture!("untagged-bounce.sns"),
];

const INVITE: &str = "7f0c6a1e-5b2d-4c8e-9a41-3d2f6b8c1e01";

fn invite() -> InviteId {
    InviteId::parse(INVITE).unwrap()
}

fn feedback(body: &str) -> MailFeedback {
    match parse(body) {
        Ok(Parsed::Feedback(f)) => f,
        other => panic!("expected a feedback, got {other:?}"),
    }
}

fn ignored(body: &str) -> String {
    match parse(body) {
        Ok(Parsed::Ignored { reason }) => reason,
        other => panic!("expected ignored, got {other:?}"),
    }
}

fn error(body: &str) -> String {
    match parse(body) {
        Err(e) => e.to_string(),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The same event in each envelope it comes in parses to the same feedback.
fn same_in_every_envelope(bodies: &[&str]) -> MailFeedback {
    let first = feedback(bodies[0]);
    for body in &bodies[1..] {
        assert_eq!(feedback(body), first);
    }
    first
}

#[test]
fn a_permanent_bounce_in_every_envelope() {
    let f = same_in_every_envelope(&[
        fixture!("bounce-permanent.raw"),
        fixture!("bounce-permanent.sns"),
        fixture!("bounce-permanent.eventbridge"),
    ]);
    let id = "0102019abc11a0f4-2b9c6e1d-7a35-4f08-9d6b-1e2f3a4b5c6d-000000";
    assert_eq!(
        f,
        MailFeedback {
            event_id: format!(
                "ses:{id}:Bounce:0102019abc11d2e3-5f1e7a20-8c4b-4d7e-b1a2-6c0f9e3d2a41-000000"
            ),
            invite_id: invite(),
            generation: Some(2),
            ses_message_id: id.into(),
            occurred_at: datetime!(2026-11-27 09:14:03.512 UTC),
            kind: FeedbackKind::Bounce {
                bounce_type: BounceType::Permanent,
                sub_type: "General".into(),
                diagnostic: Some(
                    "smtp; 550 5.1.1 <jane.doe@example.org>: Recipient address rejected: User unknown"
                        .into()
                ),
            },
        }
    );
    assert!(f.kind.is_undeliverable());
}

#[test]
fn a_transient_bounce() {
    let f = same_in_every_envelope(&[
        fixture!("bounce-transient.raw"),
        fixture!("bounce-transient.sns"),
    ]);
    let id = "0102019abc3d9e20-6c1a2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d-000000";
    assert_eq!(
        f,
        MailFeedback {
            event_id: format!(
                "ses:{id}:Bounce:0102019abc3e7711-9a0d4c6b-3e21-4b8f-a7c5-2d9e8f1a0b33-000000"
            ),
            invite_id: invite(),
            generation: Some(2),
            ses_message_id: id.into(),
            occurred_at: datetime!(2026-11-27 10:02:44.090 UTC),
            kind: FeedbackKind::Bounce {
                bounce_type: BounceType::Transient,
                sub_type: "MailboxFull".into(),
                diagnostic: Some("smtp; 552 5.2.2 Mailbox full".into()),
            },
        }
    );
    assert!(!f.kind.is_undeliverable());
}

#[test]
fn a_complaint() {
    let f = same_in_every_envelope(&[fixture!("complaint.raw"), fixture!("complaint.sns")]);
    let id = "0102019abc8f1001-3a4b5c6d-7e8f-4091-a2b3-c4d5e6f7a8b9-000000";
    assert_eq!(
        f,
        MailFeedback {
            event_id: format!(
                "ses:{id}:Complaint:0102019abc90c5aa-1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b-000000"
            ),
            invite_id: invite(),
            generation: Some(2),
            ses_message_id: id.into(),
            occurred_at: datetime!(2026-11-27 11:30:17 UTC),
            kind: FeedbackKind::Complaint {
                feedback_type: Some("abuse".into())
            },
        }
    );
}

#[test]
fn a_delivery_in_every_envelope() {
    let f = same_in_every_envelope(&[
        fixture!("delivery.raw"),
        fixture!("delivery.sns"),
        fixture!("delivery.eventbridge"),
    ]);
    let id = "0102019abc55b7c2-7d8e9f0a-1b2c-4d3e-9f4a-5b6c7d8e9f0a-000000";
    assert_eq!(
        f,
        MailFeedback {
            // A delivery has no feedbackId: its timestamp makes the id.
            event_id: format!("ses:{id}:Delivery:2026-11-27T12:00:01.942Z"),
            invite_id: invite(),
            generation: Some(2),
            ses_message_id: id.into(),
            occurred_at: datetime!(2026-11-27 12:00:01.942 UTC),
            kind: FeedbackKind::Delivery,
        }
    );
}

#[test]
fn a_reject_happens_when_the_mail_was_sent() {
    let f = same_in_every_envelope(&[fixture!("reject.raw"), fixture!("reject.sns")]);
    let id = "0102019abc66c8d3-8e9f0a1b-2c3d-4e5f-a06b-7c8d9e0f1a2b-000000";
    assert_eq!(
        f,
        MailFeedback {
            event_id: format!("ses:{id}:Reject:2026-11-27T12:10:42.005Z"),
            invite_id: invite(),
            generation: Some(2),
            ses_message_id: id.into(),
            occurred_at: datetime!(2026-11-27 12:10:42.005 UTC),
            kind: FeedbackKind::Reject {
                reason: "Bad content".into()
            },
        }
    );
    assert!(f.kind.is_undeliverable());
}

#[test]
fn a_delivery_delay() {
    let f = same_in_every_envelope(&[
        fixture!("delivery-delay.raw"),
        fixture!("delivery-delay.sns"),
    ]);
    let id = "0102019abc77d9e4-9f0a1b2c-3d4e-4f5a-b17c-8d9e0f1a2b3c-000000";
    assert_eq!(
        f,
        MailFeedback {
            event_id: format!("ses:{id}:DeliveryDelay:2026-11-27T13:15:40.641Z"),
            invite_id: invite(),
            generation: Some(2),
            ses_message_id: id.into(),
            occurred_at: datetime!(2026-11-27 13:15:40.641 UTC),
            kind: FeedbackKind::DeliveryDelay {
                delay_type: "TransientCommunicationFailure".into()
            },
        }
    );
}

#[test]
fn an_eventbridge_detail_without_its_event_type_takes_it_from_the_detail_type() {
    let mut event: Value = serde_json::from_str(fixture!("bounce-permanent.eventbridge")).unwrap();
    event["detail"].as_object_mut().unwrap().remove("eventType");
    assert_eq!(
        feedback(&event.to_string()),
        feedback(fixture!("bounce-permanent.raw"))
    );
    event["detail-type"] = Value::String("Email Opened".into());
    assert!(ignored(&event.to_string()).contains("not a sending event"));
}

#[test]
fn an_identity_notification_finds_the_invite_by_its_headers() {
    let f = feedback(fixture!("notification-bounce.sns"));
    let id = "0102019abcaa0a00-3d4e5f6a-7b8c-4d9e-f5a0-2b3c4d5e6f7a-000000";
    assert_eq!(
        f,
        MailFeedback {
            event_id: format!(
                "ses:{id}:Bounce:0102019abcaa0c17-2c3d4e5f-6a7b-4c8d-e4af-1a2b3c4d5e6f-000000"
            ),
            invite_id: invite(),
            generation: Some(2),
            ses_message_id: id.into(),
            occurred_at: datetime!(2026-11-27 16:05:09 UTC),
            kind: FeedbackKind::Bounce {
                bounce_type: BounceType::Permanent,
                sub_type: "NoEmail".into(),
                // The newline in Gmail's multi-line diagnostic becomes a space.
                diagnostic: Some(
                    "smtp; 550-5.1.1 The email account that you tried to reach does not exist. \
                     550 5.1.1 https://support.google.com/mail/?p=NoSuchUser - gsmtp"
                        .into()
                ),
            },
        }
    );
}

#[test]
fn messages_with_nothing_to_do_are_ignored() {
    assert_eq!(
        ignored(fixture!("subscription-confirmation")),
        "SNS SubscriptionConfirmation message"
    );
    assert_eq!(
        ignored(fixture!("send.sns")),
        "SES event type Send is not acted on"
    );
    assert_eq!(
        ignored(fixture!("untagged-bounce.sns")),
        "not an invite-worker email (no invite_id tag or X-Invite-Id header)"
    );
    for event_type in [
        "Open",
        "Click",
        "Rendering Failure",
        "Subscription",
        "Brand New",
    ] {
        let body = format!(r#"{{"eventType":"{event_type}","mail":{{}}}}"#);
        assert!(ignored(&body).contains(event_type), "{event_type}");
    }
    let vdm = r#"{"version":"0","detail-type":"Advisor Recommendation Status Open","source":"aws.ses","detail":{"recommendation":{}}}"#;
    assert!(ignored(vdm).contains("not a sending event"));
    let other = r#"{"version":"0","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","detail":{}}"#;
    assert!(ignored(other).contains("aws.ec2"));
}

/// A raw bounce document from the fixture, changed by `edit`, as a body.
fn edited(edit: impl FnOnce(&mut Value)) -> String {
    let mut doc: Value = serde_json::from_str(fixture!("bounce-permanent.raw")).unwrap();
    edit(&mut doc);
    doc.to_string()
}

#[test]
fn errors_name_the_field_and_the_reason() {
    let cases: Vec<(String, &str)> = vec![
        (
            edited(|d| d["mail"]["tags"]["invite_id"] = serde_json::json!(["inv-1"])),
            "mail.tags.invite_id: is not a UUID",
        ),
        (
            edited(|d| d["mail"]["tags"]["invite_id"] = serde_json::json!("7f0c6a1e")),
            "mail.tags.invite_id: must be a list of strings",
        ),
        (
            edited(|d| d["mail"]["tags"]["invite_generation"] = serde_json::json!(["two"])),
            "mail.tags.invite_generation: is not a whole number",
        ),
        (
            edited(|d| {
                d["bounce"].as_object_mut().unwrap().remove("bounceType");
            }),
            "bounce.bounceType: missing",
        ),
        (
            edited(|d| d["bounce"]["bounceType"] = serde_json::json!("Soft")),
            "bounce.bounceType: is \"Soft\"; expected Permanent, Transient or Undetermined",
        ),
        (
            edited(|d| {
                d.as_object_mut().unwrap().remove("bounce");
            }),
            "bounce: missing",
        ),
        (
            edited(|d| d["bounce"]["timestamp"] = serde_json::json!("yesterday")),
            "bounce.timestamp: is not an RFC 3339 time",
        ),
        (
            edited(|d| d["mail"]["messageId"] = serde_json::json!("")),
            "mail.messageId: is empty",
        ),
        (
            edited(|d| d["mail"]["messageId"] = serde_json::json!("x".repeat(300))),
            "mail.messageId: is longer than 256 characters",
        ),
        (
            edited(|d| d["bounce"]["bounceSubType"] = serde_json::json!("General\r\nX: y")),
            "bounce.bounceSubType: contains control or invisible formatting characters",
        ),
        (
            edited(|d| d["mail"] = serde_json::json!([])),
            "mail: must be a JSON object",
        ),
        (
            r#"{"Type":"Notification","Message":"not json"}"#.into(),
            "Message: is not valid JSON (expected ident at line 1 column 2)",
        ),
        (
            r#"{"Type":"Notification","Message":"{\"hello\":1}"}"#.into(),
            "Message: is not an SES event: no eventType or notificationType",
        ),
        (
            r#"{"Type":"Notification"}"#.into(),
            "Message: missing",
        ),
        (
            r#"{"detail-type":"Email Bounced","source":"aws.ses","detail":"x"}"#.into(),
            "detail: must be a JSON object",
        ),
        (
            r#"{"invite":"x"}"#.into(),
            "body: is not an SES event: no eventType or notificationType, no SNS Type, no EventBridge detail",
        ),
        ("[1,2]".into(), "body: must be a JSON object"),
        (
            r#"{"eventType":7}"#.into(),
            "eventType: must be a string",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(error(&body), expected);
    }
    // The header fallback names the header.
    let body = edited(|d| {
        d["mail"].as_object_mut().unwrap().remove("tags");
        d["mail"]["headers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "x-invite-id", "value": "nope"}));
    });
    assert_eq!(error(&body), "mail.headers.X-Invite-Id: is not a UUID");
}

#[test]
fn long_diagnostics_are_cut_and_bodies_over_the_sqs_limit_refused() {
    let body = edited(|d| {
        d["bounce"]["bouncedRecipients"][0]["diagnosticCode"] = serde_json::json!("é".repeat(5000))
    });
    match feedback(&body).kind {
        FeedbackKind::Bounce {
            diagnostic: Some(d),
            ..
        } => assert_eq!(d.chars().count(), super::MAX_TEXT_CHARS),
        other => panic!("{other:?}"),
    }
    let huge = format!(
        r#"{{"eventType":"Send","pad":"{}"}}"#,
        "x".repeat(MAX_BODY_BYTES)
    );
    assert!(error(&huge).starts_with("body: is 262"), "{}", error(&huge));
}

/// Truncated, byte-flipped and spliced fixtures: `parse` answers every one (no panic), and an
/// error always names a field and stays short enough for a DLQ attribute.
#[test]
fn garbled_fixtures_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let mut answered = 0usize;
    let mut check = |body: &[u8]| {
        let text = String::from_utf8_lossy(body);
        if let Err(e) = parse(&text) {
            assert!(!e.field.is_empty(), "{e}");
            assert!(e.to_string().len() < 1024, "{e}");
        }
        answered += 1;
    };
    for fixture in FIXTURES {
        let bytes = fixture.as_bytes();
        for end in (0..bytes.len()).step_by(13) {
            check(&bytes[..end]);
        }
        for _ in 0..300 {
            let mut mutated = bytes.to_vec();
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..mutated.len());
                mutated[i] = match rng.random_range(0..4) {
                    0 => b'"',
                    1 => b'{',
                    2 => b'\\',
                    _ => rng.random(),
                };
            }
            check(&mutated);
        }
        // A fixture's SES document spliced into another one's place.
        let other = FIXTURES[rng.random_range(0..FIXTURES.len())].as_bytes();
        let cut = rng.random_range(0..bytes.len());
        let cut2 = rng.random_range(0..other.len());
        check(&[&bytes[..cut], &other[cut2..]].concat());
    }
    // Deep nesting: serde_json's recursion limit answers with an error, not a stack overflow.
    check(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes());
    check(
        format!(
            r#"{{"Type":"Notification","Message":"{}"}}"#,
            "[".repeat(50_000)
        )
        .as_bytes(),
    );
    assert!(answered > 5000);
}
