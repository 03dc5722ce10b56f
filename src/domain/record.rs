//! The record rules, pure: how an invite record is opened, re-opened, stamped and versioned, which
//! events no longer apply to it (stale, moot, a replay of an event it has seen), what its history
//! says and which lifecycle event a transition publishes. The service ([`crate::app::handler`])
//! calls them between its reads and its conditional writes; no I/O and no clock happen here.

use time::OffsetDateTime;

use super::email::EmailAddress;
use super::invite::{
    Complaint, HistoryEntry, Invite, InviteDetails, InviteId, InviteStatus, MailFacts,
    PendingPublication, Replay,
};
use super::state::{Effect, Fact, Outcome, Trigger};

/// The event behind a change to a record, as its history remembers it.
#[derive(Clone, Copy, Debug)]
pub struct Cause<'a> {
    /// `None` for an internal trigger (cleanup, reconcile).
    pub event_id: Option<&'a str>,
    pub event_type: &'a str,
    /// Set when an operator replayed the message (`dlq replay`).
    pub replay: Option<&'a Replay>,
    /// Who did it, for an operator's command.
    pub actor: Option<&'a str>,
}

/// What a request or a re-opening resend brings to a new generation of an invite.
#[derive(Clone, Copy, Debug)]
pub struct Opening<'a> {
    /// The event that opens the generation (empty for none).
    pub event_id: Option<&'a str>,
    /// The sender's details; a re-open without them keeps the previous ones.
    pub details: Option<&'a InviteDetails>,
    pub expires_at: OffsetDateTime,
}

/// What the effects of a claimed attempt came to: the status the invite ends in and what the
/// record remembers of it.
pub struct Finish {
    pub to: InviteStatus,
    pub reason: Option<String>,
    pub invitation_sent: bool,
    pub reminder_sent: bool,
    pub sub: Option<String>,
}

impl Finish {
    /// The invite ends `failed` with `reason`, nothing sent.
    pub fn failed(reason: String) -> Self {
        Finish {
            to: InviteStatus::Failed,
            reason: Some(reason),
            invitation_sent: false,
            reminder_sent: false,
            sub: None,
        }
    }
}

/// Writes what an attempt's effects came to into the claimed record: the status, the reason
/// (`event_reason` when the effects gave none; kept only by a closed invite), what was sent and
/// learnt, and one history line from `from`. The lease is given back.
pub fn record_finish(
    rec: &mut Invite,
    from: InviteStatus,
    finish: Finish,
    cause: &Cause<'_>,
    event_reason: Option<&str>,
    now: OffsetDateTime,
) {
    let reason = finish.reason.or_else(|| event_reason.map(str::to_string));
    rec.status = finish.to;
    rec.reason = if finish.to.is_open() {
        None
    } else {
        reason.clone()
    };
    rec.lease = None;
    if finish.invitation_sent {
        rec.send_count += 1;
        rec.sent_at = Some(now);
    }
    if finish.sub.is_some() {
        rec.user_sub = finish.sub;
    }
    if finish.reminder_sent {
        rec.reminded_generation = Some(rec.generation);
    }
    if finish.to == InviteStatus::Accepted {
        rec.accepted_at = Some(now);
    }
    rec.push_history(history(
        now,
        Some(from),
        finish.to,
        cause,
        reason,
        rec.generation,
    ));
}

/// When an invite opened or resent at `now` expires: after the days the event asks for, or the
/// configured default.
pub fn expiry(now: OffsetDateTime, asked_days: Option<u32>, default_days: u32) -> OffsetDateTime {
    now + time::Duration::days(i64::from(asked_days.unwrap_or(default_days)))
}

/// A fresh record for the first generation of an invite: `pending`, version 0 (not yet written).
pub fn new_record(
    id: InviteId,
    user_pool_id: &str,
    email: &EmailAddress,
    opening: &Opening<'_>,
    now: OffsetDateTime,
) -> Invite {
    Invite {
        invite_id: id,
        user_pool_id: user_pool_id.to_string(),
        email: email.clone(),
        username: email.as_str().to_string(),
        status: InviteStatus::Pending,
        reason: None,
        generation: 1,
        opened_by_event: opening.event_id.unwrap_or_default().to_string(),
        created_at: now,
        updated_at: now,
        expires_at: opening.expires_at,
        sent_at: None,
        accepted_at: None,
        send_count: 0,
        user_sub: None,
        details: opening.details.cloned().unwrap_or_default(),
        history: vec![],
        version: 0,
        lease: None,
        outbox: vec![],
        reminded_generation: None,
        last_occurred_at: None,
        mail: MailFacts::default(),
    }
}

/// The next generation of a closed invite: what the previous one sent and learnt is cleared, the
/// history and the identity stay.
pub fn reopen(mut rec: Invite, opening: &Opening<'_>) -> Invite {
    rec.generation += 1;
    rec.opened_by_event = opening.event_id.unwrap_or_default().to_string();
    rec.reason = None;
    rec.sent_at = None;
    rec.accepted_at = None;
    rec.send_count = 0;
    rec.user_sub = None;
    // What SES said about the last generation's emails is history now; a complaint stays until
    // an operator clears it.
    rec.mail.delivered_at = None;
    rec.mail.bounce = None;
    rec.expires_at = opening.expires_at;
    if let Some(details) = opening.details {
        rec.details = details.clone();
    }
    rec
}

/// Whether an event is older than the newest one already applied (out-of-order delivery).
/// Acceptance is a fact read from Cognito, never stale.
pub fn is_stale(
    current: Option<&Invite>,
    trigger: &Trigger,
    occurred_at: Option<OffsetDateTime>,
) -> bool {
    let (Some(rec), Some(at)) = (current, occurred_at) else {
        return false;
    };
    matches!(
        trigger,
        Trigger::Requested | Trigger::Resend | Trigger::Revoke | Trigger::Replayed
    ) && rec.last_occurred_at.is_some_and(|last| at < last)
}

/// Whether `cause` is an operator's replay (`dlq replay`) of a request or resend that the invite
/// has already seen: then it is decided as [`Trigger::Replayed`], which re-opens only a `failed`
/// invite. A forged replay attribute can do no more than a new event id could (a new request
/// re-opens a `failed` invite too); revokes and acceptances are never turned into replays.
pub fn is_replay_of_seen(current: Option<&Invite>, trigger: &Trigger, cause: &Cause<'_>) -> bool {
    match (current, cause.event_id, cause.replay) {
        (Some(rec), Some(event_id), Some(_)) => {
            matches!(trigger, Trigger::Requested | Trigger::Resend) && rec.has_seen(event_id)
        }
        _ => false,
    }
}

/// Whether an internal trigger no longer applies to the record as it is now (it changed since the
/// caller looked): an invite whose expiry was extended by a resend is not expired, and an invite
/// already reminded in this generation is not reminded again. Checked on the freshly loaded
/// record, inside the conditional-write loop, so two cleanups cannot both act on stale reads.
pub fn moot(
    current: Option<&Invite>,
    trigger: &Trigger,
    now: OffsetDateTime,
) -> Option<&'static str> {
    let rec = current?;
    match trigger {
        Trigger::ExpiryReached if rec.status.is_open() && rec.expires_at > now => {
            Some("not_expired")
        }
        Trigger::ReminderDue
            if rec.status == InviteStatus::Sent
                && rec.reminded_generation == Some(rec.generation) =>
        {
            Some("already_reminded")
        }
        _ => None,
    }
}

/// Whether mail feedback about the email of `generation` (its message tag; `None` when the email
/// carried none, taken as the current one) no longer applies to the record: an older
/// generation's email is history (`stale_feedback`), a newer one than the record knows is odd
/// (`unknown_generation`). A complaint always applies: the address complained, whatever became
/// of the invite since.
pub fn feedback_not_for_now(
    current: Option<&Invite>,
    trigger: &Trigger,
    generation: Option<u32>,
) -> Option<&'static str> {
    let (rec, generation) = (current?, generation?);
    if !trigger.is_feedback() || *trigger == Trigger::Complained {
        return None;
    }
    match generation.cmp(&rec.generation) {
        std::cmp::Ordering::Less => Some("stale_feedback"),
        std::cmp::Ordering::Greater => Some("unknown_generation"),
        std::cmp::Ordering::Equal => None,
    }
}

/// What a complaint on the record makes of `outcome`: nothing that emails the address (an
/// invitation, a resend, a reminder; a request or replay re-opening the invite) goes ahead until
/// an operator clears the complaint. The welcome after a registration is not held back: the
/// person asked for the account. A refusal for the sender's events, a note for cleanup's.
pub fn held_by_complaint(current: Option<&Invite>, trigger: &Trigger, outcome: Outcome) -> Outcome {
    let complained = current.is_some_and(|r| r.mail.complaint.is_some());
    let emails = match &outcome {
        Outcome::Transition { effects, .. } | Outcome::Resume { effects } => effects
            .iter()
            .any(|e| matches!(e, Effect::SendInvitation | Effect::SendReminder)),
        _ => false,
    };
    if !(complained && emails) {
        return outcome;
    }
    match trigger {
        Trigger::Requested | Trigger::Resend | Trigger::Replayed => Outcome::Refused {
            reason: "complained",
        },
        _ => Outcome::Note {
            reason: "complained",
        },
    }
}

/// What [`remember`] did: the history line's reason, whether the record changed, and the
/// lifecycle event to publish (`invite.delivered`, `invite.complained`), if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remembered {
    pub reason: &'static str,
    pub changed: bool,
    pub event_type: Option<&'static str>,
}

/// Keeps `fact` in the record, which happened at `at` (SES's timestamp). A delivery is kept once
/// per generation, a complaint once until cleared; a repeat changes nothing.
pub fn remember(
    rec: &mut Invite,
    fact: Fact,
    at: OffsetDateTime,
    feedback_type: Option<&str>,
) -> Remembered {
    let unchanged = |reason| Remembered {
        reason,
        changed: false,
        event_type: None,
    };
    match fact {
        Fact::Delivered if rec.mail.delivered_at.is_some() => unchanged("already_delivered"),
        Fact::Delivered => {
            rec.mail.delivered_at = Some(at);
            Remembered {
                reason: "delivered",
                changed: true,
                event_type: Some("invite.delivered"),
            }
        }
        Fact::Complaint if rec.mail.complaint.is_some() => unchanged("already_complained"),
        Fact::Complaint => {
            rec.mail.complaint = Some(Complaint {
                at,
                feedback_type: feedback_type.map(str::to_string),
            });
            Remembered {
                reason: "complained",
                changed: true,
                event_type: Some("invite.complained"),
            }
        }
        Fact::ComplaintCleared if rec.mail.complaint.is_none() => unchanged("no_complaint"),
        Fact::ComplaintCleared => {
            rec.mail.complaint = None;
            Remembered {
                reason: "complaint_cleared",
                changed: true,
                event_type: None,
            }
        }
    }
}

/// Remembers the newest `occurred_at` applied, so an older event arriving later is stale.
pub fn stamp(rec: &mut Invite, occurred_at: Option<OffsetDateTime>) {
    if let Some(at) = occurred_at {
        rec.last_occurred_at = Some(rec.last_occurred_at.map_or(at, |last| last.max(at)));
    }
}

/// The next version of the record, for a conditional write over the one it read.
pub fn bump(rec: &mut Invite, now: OffsetDateTime) {
    rec.version += 1;
    rec.updated_at = now;
}

/// The history line for a change from `from` to `to` (equal for a note) caused by `cause`.
pub fn history(
    now: OffsetDateTime,
    from: Option<InviteStatus>,
    to: InviteStatus,
    cause: &Cause<'_>,
    reason: Option<String>,
    generation: u32,
) -> HistoryEntry {
    HistoryEntry {
        at: now,
        from,
        to,
        event_id: cause.event_id.map(str::to_string),
        event_type: cause.event_type.to_string(),
        reason,
        generation,
        replay: cause.replay.cloned(),
        actor: cause.actor.map(str::to_string),
    }
}

/// The outbound lifecycle event for a transition (contract in docs/lifecycle-events.md). Its id
/// is derived from the invite and the record version, so a re-publication carries the same id.
pub fn lifecycle_event(rec: &Invite, to: InviteStatus, now: OffsetDateTime) -> PendingPublication {
    lifecycle_event_of_type(rec, &format!("invite.{}", to.as_str()), to, now)
}

/// The outbound lifecycle event of a fact the record keeps (`invite.delivered`,
/// `invite.complained`): the status is the record's, unchanged.
pub fn fact_event(rec: &Invite, event_type: &str, now: OffsetDateTime) -> PendingPublication {
    lifecycle_event_of_type(rec, event_type, rec.status, now)
}

fn lifecycle_event_of_type(
    rec: &Invite,
    event_type: &str,
    status: InviteStatus,
    now: OffsetDateTime,
) -> PendingPublication {
    let name = format!("{}/{}/{}", rec.invite_id, rec.version, event_type);
    let event_id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string();
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    };
    let bounce = rec.mail.bounce.as_ref();
    let body = serde_json::json!({
        "version": 1,
        "type": event_type,
        "id": event_id,
        "occurred_at": rfc(now),
        "data": {
            "invite_id": rec.invite_id.to_string(),
            "email": rec.email.as_str(),
            "user_pool_id": rec.user_pool_id,
            "status": status.as_str(),
            "reason": rec.reason,
            "generation": rec.generation,
            "send_count": rec.send_count,
            "expires_at": rfc(rec.expires_at),
            "sent_at": rec.sent_at.and_then(rfc),
            "accepted_at": rec.accepted_at.and_then(rfc),
            "external_id": rec.details.external_id,
            "source": rec.details.source,
            "user_sub": rec.user_sub,
            "delivered_at": rec.mail.delivered_at.and_then(rfc),
            "bounce_type": bounce.and_then(|b| b.bounce_type.clone()),
            "bounce_sub_type": bounce.and_then(|b| b.sub_type.clone()),
            "diagnostic": bounce.and_then(|b| b.diagnostic.clone()),
            "complained_at": rec.mail.complaint.as_ref().and_then(|c| rfc(c.at)),
        }
    });
    PendingPublication {
        event_id,
        event_type: event_type.to_string(),
        body,
    }
}
