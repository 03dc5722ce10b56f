//! Delivery awareness over in-memory fakes: mail feedback (bounces, rejects, deliveries,
//! complaints, delays) applied to invites in every order that matters, the complaint hold and
//! its clearing, and the suppression list read before a user is created.

use time::macros::datetime;
use time::OffsetDateTime;

use super::handle_error::HandleError;
use super::lifecycle_tests::{invite_id, mail_kinds, record, request, resend, send, world};
use super::test_world::{World, START};
use crate::domain::feedback::{BounceType, FeedbackKind, MailFeedback};
use crate::domain::state::Trigger;
use crate::domain::{InviteStatus, Lease};
use crate::error::{Disposition, ErrorKind};
use crate::ports::{InviteStore, SuppressionReason, UserStatus};

const JANE: &str = "jane@example.com";
const SES_TIME: OffsetDateTime = datetime!(2026-11-26 12:00:30 UTC);

fn feedback(
    event_id: &str,
    email: &str,
    generation: Option<u32>,
    kind: FeedbackKind,
) -> MailFeedback {
    MailFeedback {
        event_id: event_id.into(),
        invite_id: invite_id(email),
        generation,
        ses_message_id: "0100018c-ses-message".into(),
        occurred_at: SES_TIME,
        kind,
    }
}

fn hard_bounce() -> FeedbackKind {
    FeedbackKind::Bounce {
        bounce_type: BounceType::Permanent,
        sub_type: "NoEmail".into(),
        diagnostic: Some("smtp; 550 5.1.1 <jane@example.com>: user unknown\r\n".into()),
    }
}

fn complaint() -> FeedbackKind {
    FeedbackKind::Complaint {
        feedback_type: Some("abuse".into()),
    }
}

async fn apply(w: &World, f: &MailFeedback) -> String {
    match w.service.apply_feedback(f).await {
        Ok(h) => h.outcome.to_string(),
        Err(e) => format!("error: {e}"),
    }
}

/// Jane invited and sent (generation 1).
async fn invited(w: &World) {
    assert_eq!(send(w, &request("r1", JANE, None)).await, "sent");
}

#[tokio::test]
async fn a_permanent_bounce_after_sending_makes_the_invite_undeliverable_and_deletes_the_user() {
    let w = world();
    invited(&w).await;
    let out = apply(&w, &feedback("b1", JANE, Some(1), hard_bounce())).await;
    assert_eq!(out, "undeliverable");
    let rec = record(&w, JANE);
    assert_eq!(rec.status, InviteStatus::Undeliverable);
    assert_eq!(rec.reason.as_deref(), Some("bounce_permanent"));
    let bounce = rec.mail.bounce.clone().expect("the bounce is kept");
    assert_eq!(bounce.bounce_type.as_deref(), Some("Permanent"));
    assert_eq!(bounce.sub_type.as_deref(), Some("NoEmail"));
    assert_eq!(
        bounce.diagnostic.as_deref(),
        Some("smtp; 550 5.1.1 <jane@example.com>: user unknown"),
        "control characters are gone"
    );
    assert_eq!(bounce.at, SES_TIME);
    assert!(w.dir.user(JANE).is_none(), "the never-used user is deleted");
    assert!(rec.lease.is_none());
    let last = rec.history.last().unwrap();
    assert_eq!(last.event_type, "ses.bounce");
    assert_eq!(last.event_id.as_deref(), Some("b1"));
    assert_eq!(
        w.publisher.types(),
        vec!["invite.sent", "invite.undeliverable"]
    );
    let event = w.publisher.published().pop().unwrap().body;
    assert_eq!(event["data"]["status"], "undeliverable");
    assert_eq!(event["data"]["reason"], "bounce_permanent");
    assert_eq!(event["data"]["bounce_type"], "Permanent");
    assert_eq!(event["data"]["bounce_sub_type"], "NoEmail");
    assert!(event["data"]["diagnostic"]
        .as_str()
        .unwrap()
        .contains("user unknown"));
}

#[tokio::test]
async fn a_reject_makes_the_invite_undeliverable_too() {
    let w = world();
    invited(&w).await;
    let reject = FeedbackKind::Reject {
        reason: "Bad content".into(),
    };
    assert_eq!(
        apply(&w, &feedback("x1", JANE, Some(1), reject)).await,
        "undeliverable"
    );
    let rec = record(&w, JANE);
    assert_eq!(rec.reason.as_deref(), Some("rejected"));
    assert_eq!(
        rec.mail.bounce.unwrap().diagnostic.as_deref(),
        Some("Bad content")
    );
    assert!(w.dir.user(JANE).is_none());
}

#[tokio::test]
async fn a_bounce_for_a_person_who_already_registered_accepts_the_invite_and_keeps_the_user() {
    let w = world();
    invited(&w).await;
    w.dir.set_status(JANE, UserStatus::Confirmed, true);
    let out = apply(&w, &feedback("b1", JANE, Some(1), hard_bounce())).await;
    assert_eq!(out, "accepted");
    let rec = record(&w, JANE);
    assert_eq!(rec.status, InviteStatus::Accepted);
    assert_eq!(rec.reason.as_deref(), Some("found_confirmed"));
    assert!(rec.mail.bounce.is_none());
    let user = w
        .dir
        .user(JANE)
        .expect("a registered user is never deleted");
    assert!(user.info.enabled);
    assert_eq!(mail_kinds(&w, JANE), vec!["invite", "welcome"]);
}

#[tokio::test]
async fn a_bounce_delivered_twice_or_reported_twice_changes_nothing_more() {
    let w = world();
    invited(&w).await;
    let b = feedback("b1", JANE, Some(1), hard_bounce());
    assert_eq!(apply(&w, &b).await, "undeliverable");
    let after_first = record(&w, JANE);
    assert_eq!(apply(&w, &b).await, "redelivered");
    assert_eq!(record(&w, JANE), after_first, "a redelivery writes nothing");
    let again = feedback("b2", JANE, Some(1), hard_bounce());
    assert_eq!(apply(&w, &again).await, "undeliverable");
    let rec = record(&w, JANE);
    assert_eq!(rec.history.len(), after_first.history.len() + 1);
    assert_eq!(
        rec.history.last().unwrap().reason.as_deref(),
        Some("undeliverable")
    );
    assert_eq!(w.publisher.types().len(), 2, "no second event");
}

#[tokio::test]
async fn a_bounce_of_an_older_generations_email_is_history_only() {
    let w = world();
    invited(&w).await;
    // Revoked and requested again: generation 2 is out.
    let revoke = super::lifecycle_tests::revoke("v1", JANE, None);
    assert_eq!(send(&w, &revoke).await, "revoked");
    assert_eq!(send(&w, &request("r2", JANE, None)).await, "sent");
    assert_eq!(record(&w, JANE).generation, 2);
    let out = apply(&w, &feedback("b1", JANE, Some(1), hard_bounce())).await;
    assert_eq!(out, "stale_feedback");
    let rec = record(&w, JANE);
    assert_eq!(rec.status, InviteStatus::Sent);
    assert!(w.dir.user(JANE).is_some());
    // A delivery of generation 1's email does not say generation 2's arrived.
    let delivered = feedback("d1", JANE, Some(1), FeedbackKind::Delivery);
    assert_eq!(apply(&w, &delivered).await, "stale_feedback");
    assert!(record(&w, JANE).mail.delivered_at.is_none());
    // An email without a generation tag counts as the current generation's.
    let untagged = feedback("b2", JANE, None, hard_bounce());
    assert_eq!(apply(&w, &untagged).await, "undeliverable");
}

#[tokio::test]
async fn a_bounce_that_arrives_while_the_send_is_in_flight_waits_for_the_lease() {
    let w = world();
    invited(&w).await;
    let mut rec = record(&w, JANE);
    rec.status = InviteStatus::Pending;
    rec.lease = Some(Lease {
        token: "the-sending-worker".into(),
        until: START + time::Duration::minutes(2),
    });
    rec.version += 1;
    w.store.save(&rec).await.unwrap();
    let err = w
        .service
        .apply_feedback(&feedback("b1", JANE, Some(1), hard_bounce()))
        .await
        .unwrap_err();
    assert!(matches!(err, HandleError::Busy(..)), "{err:?}");
    assert!(matches!(
        err.disposition(),
        Disposition::Retry { after: Some(_), .. }
    ));
    assert_eq!(record(&w, JANE).status, InviteStatus::Pending);
    assert!(w.dir.user(JANE).is_some());

    // The lease ran out (the sender crashed after sending): the bounce applies, and the
    // redelivered request does not send to the dead address again.
    w.clock.advance(time::Duration::minutes(3));
    let out = apply(&w, &feedback("b1", JANE, Some(1), hard_bounce())).await;
    assert_eq!(out, "undeliverable");
    assert!(w.dir.user(JANE).is_none());
    assert_eq!(send(&w, &request("r1", JANE, None)).await, "redelivered");
    assert_eq!(mail_kinds(&w, JANE), vec!["invite"]);
}

#[tokio::test]
async fn feedback_for_an_unknown_invite_is_acknowledged_and_writes_nothing() {
    let w = world();
    for (i, kind) in [hard_bounce(), FeedbackKind::Delivery, complaint()]
        .into_iter()
        .enumerate()
    {
        let f = feedback(&format!("u{i}"), "nobody@example.com", Some(1), kind);
        let handled = w.service.apply_feedback(&f).await.expect("acknowledged");
        assert_eq!(handled.outcome, "unknown_invite");
        assert!(!handled.changed);
    }
    assert!(w.store.get(&invite_id("nobody@example.com")).is_none());
}

#[tokio::test]
async fn a_delivery_sets_delivered_at_once_and_a_reopened_invite_forgets_it() {
    let w = world();
    invited(&w).await;
    let d1 = feedback("d1", JANE, Some(1), FeedbackKind::Delivery);
    assert_eq!(apply(&w, &d1).await, "delivered");
    let rec = record(&w, JANE);
    assert_eq!(rec.status, InviteStatus::Sent);
    assert_eq!(rec.mail.delivered_at, Some(SES_TIME));
    assert_eq!(w.publisher.types(), vec!["invite.sent", "invite.delivered"]);
    let event = w.publisher.published().pop().unwrap().body;
    assert_eq!(event["data"]["status"], "sent");
    assert_eq!(event["data"]["delivered_at"], "2026-11-26T12:00:30Z");

    assert_eq!(apply(&w, &d1).await, "redelivered");
    let later = MailFeedback {
        occurred_at: SES_TIME + time::Duration::hours(1),
        ..feedback("d2", JANE, Some(1), FeedbackKind::Delivery)
    };
    assert_eq!(apply(&w, &later).await, "already_delivered");
    assert_eq!(
        record(&w, JANE).mail.delivered_at,
        Some(SES_TIME),
        "kept once"
    );
    assert_eq!(w.publisher.types().len(), 2);

    // Expired, then re-opened: the new generation's email has not arrived yet.
    w.clock.advance(time::Duration::days(8));
    w.service
        .apply_internal(invite_id(JANE), Trigger::ExpiryReached, "cleanup.expiry")
        .await
        .unwrap();
    assert_eq!(send(&w, &request("r2", JANE, None)).await, "sent");
    assert!(record(&w, JANE).mail.delivered_at.is_none());
}

#[tokio::test]
async fn transient_bounces_and_delays_are_history_only() {
    let w = world();
    invited(&w).await;
    let soft = FeedbackKind::Bounce {
        bounce_type: BounceType::Transient,
        sub_type: "MailboxFull".into(),
        diagnostic: None,
    };
    let delay = FeedbackKind::DeliveryDelay {
        delay_type: "TransientCommunicationFailure".into(),
    };
    assert_eq!(
        apply(&w, &feedback("t1", JANE, Some(1), soft)).await,
        "delivery_delayed"
    );
    assert_eq!(
        apply(&w, &feedback("t2", JANE, Some(1), delay)).await,
        "delivery_delayed"
    );
    let rec = record(&w, JANE);
    assert_eq!(rec.status, InviteStatus::Sent);
    let types: Vec<_> = rec.history.iter().map(|h| h.event_type.as_str()).collect();
    assert!(
        types.ends_with(&["ses.bounce", "ses.delivery_delay"]),
        "{types:?}"
    );
    assert!(w.dir.user(JANE).is_some());
    assert_eq!(w.publisher.types(), vec!["invite.sent"]);
}

#[tokio::test]
async fn feedback_on_a_closed_invite_is_a_note() {
    let w = world();
    invited(&w).await;
    w.dir.set_status(JANE, UserStatus::Confirmed, true);
    let done = super::lifecycle_tests::completed("c1", JANE, None);
    assert_eq!(send(&w, &done).await, "accepted");
    let out = apply(&w, &feedback("b1", JANE, Some(1), hard_bounce())).await;
    assert_eq!(out, "already_accepted");
    assert_eq!(record(&w, JANE).status, InviteStatus::Accepted);
    assert!(w.dir.user(JANE).is_some());
}

#[tokio::test]
async fn a_complaint_holds_back_every_email_to_the_address_until_an_operator_clears_it() {
    let w = world();
    invited(&w).await;
    let id = invite_id(JANE);
    assert_eq!(
        apply(&w, &feedback("c1", JANE, Some(1), complaint())).await,
        "complained"
    );
    let rec = record(&w, JANE);
    assert_eq!(rec.status, InviteStatus::Sent);
    let kept = rec.mail.complaint.expect("the complaint is kept");
    assert_eq!(
        (kept.at, kept.feedback_type.as_deref()),
        (SES_TIME, Some("abuse"))
    );
    assert_eq!(
        w.publisher.types(),
        vec!["invite.sent", "invite.complained"]
    );
    assert_eq!(
        apply(&w, &feedback("c2", JANE, Some(1), complaint())).await,
        "already_complained"
    );

    // Resend, reminder, and (after expiry) a re-opening request: refused, nothing sent.
    assert_eq!(send(&w, &resend("s1", JANE, None)).await, "complained");
    let reminder = w
        .service
        .apply_internal(id, Trigger::ReminderDue, "cleanup.reminder")
        .await
        .unwrap();
    assert_eq!(reminder.outcome, "complained");
    w.clock.advance(time::Duration::days(8));
    w.service
        .apply_internal(id, Trigger::ExpiryReached, "cleanup.expiry")
        .await
        .unwrap();
    assert_eq!(record(&w, JANE).status, InviteStatus::Expired);
    assert_eq!(send(&w, &request("r2", JANE, None)).await, "complained");
    assert_eq!(record(&w, JANE).status, InviteStatus::Expired);
    assert_eq!(
        record(&w, JANE).generation,
        1,
        "the complaint survives: no new generation"
    );
    assert_eq!(mail_kinds(&w, JANE), vec!["invite"]);

    // Cleared by an operator, with who and when in the history: a new request goes out.
    let cleared = w
        .service
        .clear_complaint(id, "ops@example.com")
        .await
        .unwrap();
    assert_eq!(cleared.outcome, "complaint_cleared");
    let rec = record(&w, JANE);
    assert!(rec.mail.complaint.is_none());
    let line = rec.history.last().unwrap();
    assert_eq!(line.event_type, "operator.clear_complaint");
    assert_eq!(line.actor.as_deref(), Some("ops@example.com"));
    let again = w
        .service
        .clear_complaint(id, "ops@example.com")
        .await
        .unwrap();
    assert_eq!(again.outcome, "no_complaint");
    assert_eq!(send(&w, &request("r3", JANE, None)).await, "sent");
    assert_eq!(mail_kinds(&w, JANE), vec!["invite", "invite"]);
}

#[tokio::test]
async fn a_complaint_survives_a_new_generation() {
    let w = world();
    invited(&w).await;
    let b = feedback("b1", JANE, Some(1), hard_bounce());
    assert_eq!(apply(&w, &b).await, "undeliverable");
    // A complaint about generation 1's email still counts after the invite closed.
    assert_eq!(
        apply(&w, &feedback("c1", JANE, Some(1), complaint())).await,
        "complained"
    );
    assert_eq!(send(&w, &request("r2", JANE, None)).await, "complained");
    assert_eq!(record(&w, JANE).status, InviteStatus::Undeliverable);
}

#[tokio::test]
async fn an_undeliverable_invite_reopens_on_a_new_request() {
    let w = world();
    invited(&w).await;
    assert_eq!(
        apply(&w, &feedback("b1", JANE, Some(1), hard_bounce())).await,
        "undeliverable"
    );
    // The mailbox was fixed; HR asks again.
    assert_eq!(send(&w, &request("r2", JANE, None)).await, "sent");
    let rec = record(&w, JANE);
    assert_eq!(rec.status, InviteStatus::Sent);
    assert_eq!(rec.generation, 2);
    assert!(rec.mail.bounce.is_none() && rec.reason.is_none());
    assert!(w.dir.user(JANE).is_some());
}

#[tokio::test]
async fn a_suppressed_address_is_undeliverable_at_once_without_a_user_or_an_email() {
    let w = world();
    w.suppression.suppress(JANE, SuppressionReason::Bounce);
    assert_eq!(
        w.service.handle_body(&request("r1", JANE, None)).await,
        Disposition::Ack {
            outcome: "undeliverable"
        },
        "acknowledged, not dead-lettered"
    );
    let rec = record(&w, JANE);
    assert_eq!(rec.status, InviteStatus::Undeliverable);
    assert_eq!(rec.reason.as_deref(), Some("suppressed_bounce"));
    assert_eq!(rec.generation, 1);
    assert_eq!(rec.mail.bounce.unwrap().sub_type.as_deref(), Some("BOUNCE"));
    assert!(
        !w.dir.calls().contains(&"AdminCreateUser"),
        "{:?}",
        w.dir.calls()
    );
    assert!(w.dir.user(JANE).is_none());
    assert!(w.mailer.sent_to(JANE).is_empty());
    assert_eq!(w.publisher.types(), vec!["invite.undeliverable"]);
    let event = w.publisher.published().pop().unwrap().body;
    assert_eq!(event["data"]["reason"], "suppressed_bounce");
    let path: Vec<_> = rec.history.iter().map(|h| (h.from, h.to)).collect();
    assert_eq!(
        path,
        vec![
            (None, InviteStatus::Pending),
            (Some(InviteStatus::Pending), InviteStatus::Undeliverable)
        ]
    );
    // A redelivery is a no-op; a complaint-suppressed address says so.
    assert_eq!(send(&w, &request("r1", JANE, None)).await, "redelivered");
    w.suppression
        .suppress("joe@example.com", SuppressionReason::Complaint);
    assert_eq!(
        send(&w, &request("r2", "joe@example.com", None)).await,
        "undeliverable"
    );
    assert_eq!(
        record(&w, "joe@example.com").reason.as_deref(),
        Some("suppressed_complaint")
    );
}

#[tokio::test]
async fn a_suppressed_address_also_stops_a_reopening() {
    let w = world();
    invited(&w).await;
    assert_eq!(
        apply(&w, &feedback("b1", JANE, Some(1), hard_bounce())).await,
        "undeliverable"
    );
    // SES put the address on the account's list after the bounce: asking again does nothing.
    w.suppression.suppress(JANE, SuppressionReason::Bounce);
    assert_eq!(send(&w, &request("r2", JANE, None)).await, "undeliverable");
    let rec = record(&w, JANE);
    assert_eq!(
        (rec.generation, rec.reason.as_deref()),
        (2, Some("suppressed_bounce"))
    );
    assert!(w.dir.user(JANE).is_none());
    assert_eq!(mail_kinds(&w, JANE), vec!["invite"]);
}

#[tokio::test]
async fn a_suppression_list_that_cannot_be_read_does_not_hold_the_invite_back() {
    // Throttled or down: the invite goes out; SES itself refuses a suppressed address and says
    // so with a bounce on the feedback queue.
    for kind in [ErrorKind::Throttled, ErrorKind::Unavailable] {
        let w = world();
        w.suppression
            .faults
            .fail_next("GetSuppressedDestination", 1, kind.clone());
        assert_eq!(
            send(&w, &request("r1", JANE, None)).await,
            "sent",
            "{kind:?}"
        );
        assert!(w.dir.user(JANE).is_some());
    }
}

#[tokio::test]
async fn a_fresh_invite_to_the_corrected_address_goes_through() {
    let w = world();
    invited(&w).await;
    w.suppression.suppress(JANE, SuppressionReason::Bounce);
    assert_eq!(
        apply(&w, &feedback("b1", JANE, Some(1), hard_bounce())).await,
        "undeliverable"
    );
    let fixed = "jane.doe@example.com";
    assert_eq!(send(&w, &request("r2", fixed, None)).await, "sent");
    assert_eq!(record(&w, fixed).status, InviteStatus::Sent);
    assert!(w.dir.user(fixed).is_some());
    assert_eq!(mail_kinds(&w, fixed), vec!["invite"]);
    assert_eq!(record(&w, JANE).status, InviteStatus::Undeliverable);
}
