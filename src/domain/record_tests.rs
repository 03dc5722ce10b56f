//! Table tests of the record rules (`domain::record`).

use time::macros::datetime;
use time::OffsetDateTime;

use super::invite::{
    BounceDetail, Complaint, Invite, InviteDetails, InviteId, InviteStatus, Replay,
};
use super::record::{
    bump, expiry, fact_event, feedback_not_for_now, held_by_complaint, history, is_replay_of_seen,
    is_stale, lifecycle_event, moot, new_record, record_finish, remember, reopen, stamp, Cause,
    Finish, Opening,
};
use super::state::{decide, Fact, Outcome, Trigger};
use super::EmailAddress;

const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const EARLIER: OffsetDateTime = datetime!(2026-03-01 11:00 UTC);
const LATER: OffsetDateTime = datetime!(2026-03-01 13:00 UTC);

fn email() -> EmailAddress {
    EmailAddress::parse("jane@example.com").unwrap()
}

fn opening<'a>(event_id: Option<&'a str>, details: Option<&'a InviteDetails>) -> Opening<'a> {
    Opening {
        event_id,
        details,
        expires_at: expiry(NOW, None, 7),
    }
}

/// A written record (version 3) in `status`, opened by `evt-1`, last event at `NOW`.
fn record(status: InviteStatus) -> Invite {
    let id = InviteId::for_email("pool", &email());
    let mut rec = new_record(id, "pool", &email(), &opening(Some("evt-1"), None), NOW);
    rec.status = status;
    rec.version = 3;
    rec.last_occurred_at = Some(NOW);
    rec
}

fn cause<'a>(event_id: Option<&'a str>, replay: Option<&'a Replay>) -> Cause<'a> {
    Cause {
        event_id,
        event_type: "invite.requested",
        replay,
        actor: None,
    }
}

#[test]
fn expiry_takes_the_asked_days_or_the_default() {
    assert_eq!(expiry(NOW, Some(2), 7), datetime!(2026-03-03 12:00 UTC));
    assert_eq!(expiry(NOW, None, 7), datetime!(2026-03-08 12:00 UTC));
}

#[test]
fn a_new_record_is_pending_unwritten_and_keyed_by_its_email() {
    let details = InviteDetails {
        locale: Some("fr".into()),
        ..Default::default()
    };
    let id = InviteId::for_email("pool", &email());
    let rec = new_record(
        id,
        "pool",
        &email(),
        &opening(Some("evt-1"), Some(&details)),
        NOW,
    );
    assert_eq!(rec.invite_id, id);
    assert_eq!(rec.username, "jane@example.com");
    assert_eq!(rec.status, InviteStatus::Pending);
    assert_eq!((rec.generation, rec.version, rec.send_count), (1, 0, 0));
    assert_eq!(rec.opened_by_event, "evt-1");
    assert_eq!(rec.expires_at, datetime!(2026-03-08 12:00 UTC));
    assert_eq!(rec.details, details);
    assert!(rec.history.is_empty() && rec.outbox.is_empty() && rec.lease.is_none());
    let internal = new_record(id, "pool", &email(), &opening(None, None), NOW);
    assert_eq!(internal.opened_by_event, "");
}

#[test]
fn reopen_clears_the_generation_and_keeps_details_unless_given() {
    let mut old = record(InviteStatus::Failed);
    old.reason = Some("bad".into());
    old.send_count = 2;
    old.sent_at = Some(EARLIER);
    old.accepted_at = Some(EARLIER);
    old.user_sub = Some("sub".into());
    old.details.locale = Some("de".into());
    let kept = reopen(old.clone(), &opening(Some("evt-2"), None));
    assert_eq!(
        (kept.generation, kept.opened_by_event.as_str()),
        (2, "evt-2")
    );
    assert_eq!(kept.reason, None);
    assert_eq!(
        (kept.send_count, kept.sent_at, kept.accepted_at),
        (0, None, None)
    );
    assert_eq!(kept.user_sub, None);
    assert_eq!(kept.details.locale.as_deref(), Some("de"));
    assert_eq!(kept.version, old.version, "the caller bumps the version");
    let details = InviteDetails::default();
    let replaced = reopen(old, &opening(Some("evt-2"), Some(&details)));
    assert_eq!(replaced.details, details);
}

#[test]
fn staleness_table() {
    let rec = record(InviteStatus::Sent);
    let cases: &[(Option<&Invite>, Trigger, Option<OffsetDateTime>, bool)] = &[
        (None, Trigger::Requested, Some(EARLIER), false),
        (Some(&rec), Trigger::Requested, None, false),
        (Some(&rec), Trigger::Requested, Some(EARLIER), true),
        (Some(&rec), Trigger::Requested, Some(NOW), false),
        (Some(&rec), Trigger::Requested, Some(LATER), false),
        (Some(&rec), Trigger::Resend, Some(EARLIER), true),
        (Some(&rec), Trigger::Revoke, Some(EARLIER), true),
        (Some(&rec), Trigger::Replayed, Some(EARLIER), true),
        (Some(&rec), Trigger::Accepted, Some(EARLIER), false),
        (Some(&rec), Trigger::ExpiryReached, Some(EARLIER), false),
    ];
    for (current, trigger, at, stale) in cases {
        assert_eq!(
            is_stale(*current, trigger, *at),
            *stale,
            "{trigger:?} at {at:?}"
        );
    }
    let mut unstamped = record(InviteStatus::Sent);
    unstamped.last_occurred_at = None;
    assert!(!is_stale(
        Some(&unstamped),
        &Trigger::Requested,
        Some(EARLIER)
    ));
}

#[test]
fn replay_of_seen_table() {
    let rec = record(InviteStatus::Failed);
    let replay = Replay {
        number: 1,
        original_message_id: None,
    };
    let cases: &[(Option<&Invite>, Trigger, Cause, bool)] = &[
        (
            Some(&rec),
            Trigger::Requested,
            cause(Some("evt-1"), Some(&replay)),
            true,
        ),
        (
            Some(&rec),
            Trigger::Resend,
            cause(Some("evt-1"), Some(&replay)),
            true,
        ),
        (
            Some(&rec),
            Trigger::Revoke,
            cause(Some("evt-1"), Some(&replay)),
            false,
        ),
        (
            Some(&rec),
            Trigger::Accepted,
            cause(Some("evt-1"), Some(&replay)),
            false,
        ),
        (
            Some(&rec),
            Trigger::Requested,
            cause(Some("evt-9"), Some(&replay)),
            false,
        ),
        (
            Some(&rec),
            Trigger::Requested,
            cause(Some("evt-1"), None),
            false,
        ),
        (
            Some(&rec),
            Trigger::Requested,
            cause(None, Some(&replay)),
            false,
        ),
        (
            None,
            Trigger::Requested,
            cause(Some("evt-1"), Some(&replay)),
            false,
        ),
    ];
    for (current, trigger, cause, replayed) in cases {
        assert_eq!(
            is_replay_of_seen(*current, trigger, cause),
            *replayed,
            "{trigger:?} {cause:?}"
        );
    }
}

#[test]
fn moot_table() {
    let open = record(InviteStatus::Sent); // expires a week after NOW
    let mut past = record(InviteStatus::Sent);
    past.expires_at = EARLIER;
    let mut reminded = record(InviteStatus::Sent);
    reminded.reminded_generation = Some(reminded.generation);
    let mut reminded_before = record(InviteStatus::Sent);
    reminded_before.reminded_generation = Some(0);
    let closed = record(InviteStatus::Revoked);
    let cases: &[(Option<&Invite>, Trigger, Option<&str>)] = &[
        (None, Trigger::ExpiryReached, None),
        (Some(&open), Trigger::ExpiryReached, Some("not_expired")),
        (Some(&past), Trigger::ExpiryReached, None),
        (Some(&closed), Trigger::ExpiryReached, None),
        (Some(&open), Trigger::ReminderDue, None),
        (
            Some(&reminded),
            Trigger::ReminderDue,
            Some("already_reminded"),
        ),
        (Some(&reminded_before), Trigger::ReminderDue, None),
        (Some(&reminded), Trigger::Requested, None),
    ];
    for (current, trigger, moot_reason) in cases {
        assert_eq!(moot(*current, trigger, NOW), *moot_reason, "{trigger:?}");
    }
}

#[test]
fn stamp_keeps_the_newest_occurrence() {
    let cases = [
        (None, None, None),
        (None, Some(NOW), Some(NOW)),
        (Some(NOW), None, Some(NOW)),
        (Some(NOW), Some(EARLIER), Some(NOW)),
        (Some(NOW), Some(LATER), Some(LATER)),
    ];
    for (last, at, after) in cases {
        let mut rec = record(InviteStatus::Sent);
        rec.last_occurred_at = last;
        stamp(&mut rec, at);
        assert_eq!(rec.last_occurred_at, after, "{last:?} then {at:?}");
    }
}

#[test]
fn bump_counts_the_version_and_the_time() {
    let mut rec = record(InviteStatus::Sent);
    bump(&mut rec, LATER);
    assert_eq!((rec.version, rec.updated_at), (4, LATER));
}

#[test]
fn history_names_the_cause() {
    let replay = Replay {
        number: 2,
        original_message_id: Some("m-1".into()),
    };
    let entry = history(
        NOW,
        Some(InviteStatus::Failed),
        InviteStatus::Pending,
        &cause(Some("evt-1"), Some(&replay)),
        Some("why".into()),
        3,
    );
    assert_eq!(entry.at, NOW);
    assert_eq!(
        (entry.from, entry.to),
        (Some(InviteStatus::Failed), InviteStatus::Pending)
    );
    assert_eq!(entry.event_id.as_deref(), Some("evt-1"));
    assert_eq!(entry.event_type, "invite.requested");
    assert_eq!(
        (entry.reason.as_deref(), entry.generation),
        (Some("why"), 3)
    );
    assert_eq!(entry.replay, Some(replay));
    let internal = history(
        NOW,
        None,
        InviteStatus::Expired,
        &cause(None, None),
        None,
        1,
    );
    assert_eq!((internal.event_id, internal.replay), (None, None));
}

#[test]
fn a_lifecycle_event_has_an_id_stable_per_version() {
    let rec = record(InviteStatus::Sent);
    let first = lifecycle_event(&rec, InviteStatus::Sent, NOW);
    assert_eq!(first.event_type, "invite.sent");
    assert_eq!(first, lifecycle_event(&rec, InviteStatus::Sent, NOW));
    assert_eq!(first.body["id"], first.event_id.as_str());
    assert_eq!(first.body["type"], "invite.sent");
    assert_eq!(first.body["occurred_at"], "2026-03-01T12:00:00Z");
    assert_eq!(first.body["data"]["email"], "jane@example.com");
    assert_eq!(first.body["data"]["status"], "sent");
    assert_eq!(first.body["data"]["invite_id"], rec.invite_id.to_string());
    let mut next = rec.clone();
    next.version += 1;
    assert_ne!(
        lifecycle_event(&next, InviteStatus::Sent, NOW).event_id,
        first.event_id
    );
    assert_ne!(
        lifecycle_event(&rec, InviteStatus::Revoked, NOW).event_id,
        first.event_id
    );
}

fn finish(to: InviteStatus, reason: Option<&str>) -> Finish {
    Finish {
        to,
        reason: reason.map(str::to_string),
        invitation_sent: false,
        reminder_sent: false,
        sub: None,
    }
}

#[test]
fn record_finish_table() {
    // (what the effects came to, the event's reason) -> (status, reason kept, history reason)
    let cases = [
        (finish(InviteStatus::Sent, None), None, None, None),
        (finish(InviteStatus::Sent, Some("x")), None, None, Some("x")),
        (
            finish(InviteStatus::Failed, Some("bad")),
            Some("ev"),
            Some("bad"),
            Some("bad"),
        ),
        (
            finish(InviteStatus::Revoked, None),
            Some("ev"),
            Some("ev"),
            Some("ev"),
        ),
        (finish(InviteStatus::Accepted, None), None, None, None),
    ];
    for (done, event_reason, kept, noted) in cases {
        let to = done.to;
        let mut rec = record(InviteStatus::Pending);
        rec.lease = Some(super::invite::Lease {
            token: "t".into(),
            until: LATER,
        });
        record_finish(
            &mut rec,
            InviteStatus::Pending,
            done,
            &cause(Some("evt-2"), None),
            event_reason,
            NOW,
        );
        assert_eq!(rec.status, to);
        assert_eq!(rec.reason.as_deref(), kept, "{to}");
        assert_eq!(rec.lease, None);
        let line = rec.history.last().unwrap();
        assert_eq!((line.from, line.to), (Some(InviteStatus::Pending), to));
        assert_eq!(line.reason.as_deref(), noted, "{to}");
        assert_eq!(
            rec.accepted_at,
            (to == InviteStatus::Accepted).then_some(NOW)
        );
        assert_eq!(
            (rec.send_count, rec.sent_at, rec.reminded_generation),
            (0, None, None)
        );
    }
}

#[test]
fn record_finish_remembers_what_was_sent_and_learnt() {
    let mut rec = record(InviteStatus::Pending);
    rec.user_sub = Some("old".into());
    let sent = Finish {
        invitation_sent: true,
        sub: Some("sub-1".into()),
        ..finish(InviteStatus::Sent, None)
    };
    record_finish(
        &mut rec,
        InviteStatus::Pending,
        sent,
        &cause(None, None),
        None,
        NOW,
    );
    assert_eq!((rec.send_count, rec.sent_at), (1, Some(NOW)));
    assert_eq!(rec.user_sub.as_deref(), Some("sub-1"));
    let reminded = Finish {
        reminder_sent: true,
        ..finish(InviteStatus::Sent, None)
    };
    record_finish(
        &mut rec,
        InviteStatus::Sent,
        reminded,
        &cause(None, None),
        None,
        LATER,
    );
    assert_eq!(rec.reminded_generation, Some(rec.generation));
    assert_eq!(
        (rec.send_count, rec.sent_at),
        (1, Some(NOW)),
        "a reminder is not an invitation"
    );
    assert_eq!(
        rec.user_sub.as_deref(),
        Some("sub-1"),
        "no sub learnt keeps the old one"
    );
}

/// Feedback about generation g of an invite at generation 2: only the current generation's
/// applies (or an untagged email's); a complaint always does.
#[test]
#[rustfmt::skip]
fn feedback_generation_table() {
    let mut rec = record(InviteStatus::Sent);
    rec.generation = 2;
    let bounce = Trigger::Undeliverable("bounce_permanent".into());
    let cases: [(Trigger, Option<u32>, Option<&str>); 10] = [
        (bounce.clone(), Some(1), Some("stale_feedback")),
        (bounce.clone(), Some(2), None),
        (bounce.clone(), Some(3), Some("unknown_generation")),
        (bounce.clone(), None, None),
        (Trigger::MailDelivered, Some(1), Some("stale_feedback")),
        (Trigger::MailDelayed, Some(1), Some("stale_feedback")),
        (Trigger::Complained, Some(1), None),
        (Trigger::Complained, Some(3), None),
        // Not feedback: the generation tag means nothing to them.
        (Trigger::Resend, Some(1), None),
        (Trigger::ComplaintCleared, Some(1), None),
    ];
    for (trigger, generation, want) in cases {
        assert_eq!(
            feedback_not_for_now(Some(&rec), &trigger, generation),
            want,
            "{trigger:?} {generation:?}"
        );
    }
    assert_eq!(feedback_not_for_now(None, &bounce, Some(1)), None);
}

/// With a complaint on the record, everything that would email the address is held back (the
/// sender's events refused, cleanup's noted); everything else goes on. Without one, nothing is.
#[test]
fn complaint_hold_table() {
    let statuses = InviteStatus::ALL;
    let triggers = crate::domain::state::tests::all_triggers();
    for status in statuses {
        let clean = record(status);
        let mut complained = record(status);
        complained.mail.complaint = Some(Complaint {
            at: NOW,
            feedback_type: None,
        });
        for t in &triggers {
            let outcome = decide(Some(status), t);
            assert_eq!(
                held_by_complaint(Some(&clean), t, outcome.clone()),
                outcome,
                "no complaint: {status} {t:?}"
            );
            let emails = match &outcome {
                Outcome::Transition { effects, .. } | Outcome::Resume { effects } => {
                    effects.iter().any(|e| {
                        matches!(
                            e,
                            super::state::Effect::SendInvitation
                                | super::state::Effect::SendReminder
                        )
                    })
                }
                _ => false,
            };
            let held = held_by_complaint(Some(&complained), t, outcome.clone());
            let want = match (emails, t) {
                (false, _) => outcome,
                (true, Trigger::ReminderDue) => Outcome::Note {
                    reason: "complained",
                },
                (true, _) => Outcome::Refused {
                    reason: "complained",
                },
            };
            assert_eq!(held, want, "complaint: {status} {t:?}");
        }
    }
}

#[test]
fn remember_keeps_each_fact_once() {
    let mut rec = record(InviteStatus::Sent);
    let r = remember(&mut rec, Fact::Delivered, EARLIER, None);
    assert_eq!(
        (r.reason, r.changed, r.event_type),
        ("delivered", true, Some("invite.delivered"))
    );
    assert_eq!(rec.mail.delivered_at, Some(EARLIER));
    let r = remember(&mut rec, Fact::Delivered, LATER, None);
    assert_eq!(
        (r.reason, r.changed, r.event_type),
        ("already_delivered", false, None)
    );
    assert_eq!(rec.mail.delivered_at, Some(EARLIER));

    let r = remember(&mut rec, Fact::Complaint, NOW, Some("abuse"));
    assert_eq!(
        (r.reason, r.event_type),
        ("complained", Some("invite.complained"))
    );
    let kept = rec.mail.complaint.clone().unwrap();
    assert_eq!(
        (kept.at, kept.feedback_type.as_deref()),
        (NOW, Some("abuse"))
    );
    let r = remember(&mut rec, Fact::Complaint, LATER, None);
    assert_eq!((r.reason, r.changed), ("already_complained", false));
    assert_eq!(rec.mail.complaint, Some(kept));

    let r = remember(&mut rec, Fact::ComplaintCleared, LATER, None);
    assert_eq!(
        (r.reason, r.changed, r.event_type),
        ("complaint_cleared", true, None)
    );
    assert!(rec.mail.complaint.is_none());
    let r = remember(&mut rec, Fact::ComplaintCleared, LATER, None);
    assert_eq!((r.reason, r.changed), ("no_complaint", false));
    assert_eq!(
        rec.status,
        InviteStatus::Sent,
        "a fact never changes the status"
    );
}

#[test]
fn reopen_forgets_the_delivery_and_the_bounce_but_keeps_the_complaint() {
    let mut rec = record(InviteStatus::Undeliverable);
    rec.mail.delivered_at = Some(EARLIER);
    rec.mail.bounce = Some(BounceDetail {
        at: NOW,
        bounce_type: Some("Permanent".into()),
        sub_type: Some("General".into()),
        diagnostic: None,
    });
    rec.mail.complaint = Some(Complaint {
        at: NOW,
        feedback_type: None,
    });
    let next = reopen(rec, &opening(Some("evt-2"), None));
    assert!(next.mail.delivered_at.is_none());
    assert!(next.mail.bounce.is_none());
    assert!(next.mail.complaint.is_some());
}

#[test]
fn events_carry_the_mail_facts() {
    let mut rec = record(InviteStatus::Undeliverable);
    rec.reason = Some("bounce_permanent".into());
    rec.mail.bounce = Some(BounceDetail {
        at: NOW,
        bounce_type: Some("Permanent".into()),
        sub_type: Some("NoEmail".into()),
        diagnostic: Some("550 user unknown".into()),
    });
    let e = lifecycle_event(&rec, InviteStatus::Undeliverable, NOW);
    assert_eq!(e.event_type, "invite.undeliverable");
    assert_eq!(e.body["data"]["bounce_type"], "Permanent");
    assert_eq!(e.body["data"]["bounce_sub_type"], "NoEmail");
    assert_eq!(e.body["data"]["diagnostic"], "550 user unknown");
    assert_eq!(e.body["data"]["delivered_at"], serde_json::Value::Null);

    let mut sent = record(InviteStatus::Sent);
    sent.mail.delivered_at = Some(EARLIER);
    let e = fact_event(&sent, "invite.delivered", NOW);
    assert_eq!(e.event_type, "invite.delivered");
    assert_eq!(e.body["type"], "invite.delivered");
    assert_eq!(e.body["data"]["status"], "sent");
    assert_eq!(e.body["data"]["delivered_at"], "2026-03-01T11:00:00Z");
    assert_ne!(
        e.event_id,
        lifecycle_event(&sent, InviteStatus::Sent, NOW).event_id
    );
}

#[test]
fn a_diagnostic_is_kept_clean_and_short() {
    assert_eq!(BounceDetail::clean_diagnostic(None), None);
    assert_eq!(BounceDetail::clean_diagnostic(Some(" \r\n ")), None);
    assert_eq!(
        BounceDetail::clean_diagnostic(Some("550\r\n5.1.1\tunknown")).as_deref(),
        Some("550  5.1.1 unknown")
    );
    let long = "x".repeat(2000);
    assert_eq!(
        BounceDetail::clean_diagnostic(Some(&long)).unwrap().len(),
        500
    );
}

#[test]
fn old_records_without_mail_facts_still_load() {
    let rec = record(InviteStatus::Sent);
    let mut json = serde_json::to_value(&rec).unwrap();
    let fields = json.as_object_mut().unwrap();
    assert!(
        !fields.contains_key("delivered_at"),
        "nothing stored when nothing is known"
    );
    fields.remove("mail");
    let back: Invite = serde_json::from_value(json).unwrap();
    assert_eq!(back.mail, Default::default());
    assert_eq!(
        InviteStatus::parse("undeliverable"),
        Ok(InviteStatus::Undeliverable)
    );
    assert!(!InviteStatus::Undeliverable.is_open());
}
