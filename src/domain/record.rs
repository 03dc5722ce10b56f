//! The record rules, pure: how an invite record is opened, re-opened, stamped and versioned, which
//! events no longer apply to it (stale, moot, a replay of an event it has seen), what its history
//! says and which lifecycle event a transition publishes. The service ([`crate::app::handler`])
//! calls them between its reads and its conditional writes; no I/O and no clock happen here.

use time::OffsetDateTime;

use super::email::EmailAddress;
use super::invite::{
    HistoryEntry, Invite, InviteDetails, InviteId, InviteStatus, PendingPublication, Replay,
};
use super::state::Trigger;

/// The event behind a change to a record, as its history remembers it.
#[derive(Clone, Copy, Debug)]
pub struct Cause<'a> {
    /// `None` for an internal trigger (cleanup, reconcile).
    pub event_id: Option<&'a str>,
    pub event_type: &'a str,
    /// Set when an operator replayed the message (`dlq replay`).
    pub replay: Option<&'a Replay>,
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
    }
}

/// The outbound lifecycle event for a transition (contract in docs/lifecycle-events.md). Its id
/// is derived from the invite and the record version, so a re-publication carries the same id.
pub fn lifecycle_event(rec: &Invite, to: InviteStatus, now: OffsetDateTime) -> PendingPublication {
    let event_type = format!("invite.{}", to.as_str());
    let name = format!("{}/{}/{}", rec.invite_id, rec.version, event_type);
    let event_id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string();
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    };
    let body = serde_json::json!({
        "version": 1,
        "type": event_type,
        "id": event_id,
        "occurred_at": rfc(now),
        "data": {
            "invite_id": rec.invite_id.to_string(),
            "email": rec.email.as_str(),
            "user_pool_id": rec.user_pool_id,
            "status": to.as_str(),
            "reason": rec.reason,
            "generation": rec.generation,
            "send_count": rec.send_count,
            "expires_at": rfc(rec.expires_at),
            "sent_at": rec.sent_at.and_then(rfc),
            "accepted_at": rec.accepted_at.and_then(rfc),
            "external_id": rec.details.external_id,
            "source": rec.details.source,
            "user_sub": rec.user_sub,
        }
    });
    PendingPublication {
        event_id,
        event_type,
        body,
    }
}
