//! The invite record: one per (user pool, normalised email), moved through the state machine in
//! [`crate::domain::state`]. A record that is closed (revoked, expired, failed) can be re-opened as
//! a new *generation*; its history keeps every generation's transitions.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::email::EmailAddress;

/// How many history entries a record keeps; older ones are dropped first.
pub const HISTORY_LIMIT: usize = 50;

/// An invite's stable id: a UUIDv5 of the user pool id and the normalised email, so the same
/// person in the same pool always has the same id, and an id can be derived from an email.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InviteId(Uuid);

const INVITE_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a7e_8a8d_4c41_9e57_1d3b_5f0a_9c21);

impl InviteId {
    pub fn for_email(user_pool_id: &str, email: &EmailAddress) -> Self {
        let name = format!("{user_pool_id}\n{}", email.as_str());
        Self(Uuid::new_v5(&INVITE_NAMESPACE, name.as_bytes()))
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| "is not a UUID".to_string())
    }
}

impl fmt::Display for InviteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for InviteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InviteId({self})")
    }
}

/// Public statuses. `pending` and `sent` are *open*; the rest are closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum InviteStatus {
    Pending,
    Sent,
    Accepted,
    Revoked,
    Expired,
    Failed,
    /// The address cannot receive mail: a permanent bounce, a reject, or the account's
    /// suppression list (`reason` says which). Closed; a new request re-opens it.
    Undeliverable,
}

impl InviteStatus {
    pub const ALL: [InviteStatus; 7] = [
        InviteStatus::Pending,
        InviteStatus::Sent,
        InviteStatus::Accepted,
        InviteStatus::Revoked,
        InviteStatus::Expired,
        InviteStatus::Failed,
        InviteStatus::Undeliverable,
    ];

    pub fn is_open(self) -> bool {
        matches!(self, InviteStatus::Pending | InviteStatus::Sent)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InviteStatus::Pending => "pending",
            InviteStatus::Sent => "sent",
            InviteStatus::Accepted => "accepted",
            InviteStatus::Revoked => "revoked",
            InviteStatus::Expired => "expired",
            InviteStatus::Failed => "failed",
            InviteStatus::Undeliverable => "undeliverable",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}; expected one of pending, sent, accepted, revoked, expired, failed, undeliverable"))
    }
}

impl fmt::Display for InviteStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the sender asked for; kept so that a retry, a resend or a re-open can act again.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InviteDetails {
    pub attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One line of history: a transition, or a note about an event that changed nothing
/// (`to == from`), such as a duplicate request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub from: Option<InviteStatus>,
    pub to: InviteStatus,
    pub event_id: Option<String>,
    pub event_type: String,
    pub reason: Option<String>,
    pub generation: u32,
    /// Set when the event came back through `dlq replay`: which replay of which message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<Replay>,
    /// Who did it, for an operator's command (`invites clear-complaint --by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// What the worker learnt about its emails from SES's sending events (mail feedback; see
/// docs/lifecycle.md, "Delivery awareness"). Stored flat in the record; every field is optional,
/// so records written before these existed read back as "nothing known".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MailFacts {
    /// When the recipient's mail server accepted an email of the current generation (the first
    /// SES `Delivery`); reset when the invite re-opens.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub delivered_at: Option<OffsetDateTime>,
    /// The recipient marked an email as spam. Kept across generations until an operator clears
    /// it (`invites clear-complaint`); meanwhile nothing but a welcome is emailed to the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complaint: Option<Complaint>,
    /// Why the current generation is `undeliverable`: what SES said (reset when it re-opens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce: Option<BounceDetail>,
}

/// A recipient's complaint about an email (SES `Complaint`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Complaint {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The provider's `complaintFeedbackType` (`abuse`, `not-spam`...), when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_type: Option<String>,
}

/// What made an invite `undeliverable`, as SES said it. Never secret: SES's words about the
/// address, cut to [`DIAGNOSTIC_LIMIT`] characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BounceDetail {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// SES's `bounceType` (`Permanent`); `None` for a reject or a suppressed address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce_type: Option<String>,
    /// SES's `bounceSubType` (`General`, `NoEmail`, `Suppressed`...); for a suppressed address
    /// the list's reason (`BOUNCE`, `COMPLAINT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_type: Option<String>,
    /// The receiving server's diagnostic, or SES's reject reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostic: Option<String>,
}

/// The longest diagnostic a record keeps, in characters.
pub const DIAGNOSTIC_LIMIT: usize = 500;

impl BounceDetail {
    /// `diagnostic` without control characters and cut to [`DIAGNOSTIC_LIMIT`].
    pub fn clean_diagnostic(diagnostic: Option<&str>) -> Option<String> {
        let text: String = diagnostic?
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(DIAGNOSTIC_LIMIT)
            .collect();
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }
}

/// An operator's replay of a dead letter (`dlq replay`), from the lineage attributes of the copy:
/// a deliberate decision to try an event again. See docs/lifecycle.md, "Replay".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    /// 1 for the first replay of a message, then counting up.
    pub number: u32,
    /// The id of the message that started it all (kept across replays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_message_id: Option<String>,
}

/// A claim on the record while side effects run, so two deliveries of one message (or a worker
/// and a cleanup) never act on the same invite at once. It expires by itself after a crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

/// A lifecycle event waiting to be published (the outbox): written in the same conditional write
/// as the transition that caused it, removed once published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingPublication {
    pub event_id: String,
    pub event_type: String,
    pub body: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Invite {
    pub invite_id: InviteId,
    pub user_pool_id: String,
    pub email: EmailAddress,
    /// The Cognito username: the normalised email.
    pub username: String,
    pub status: InviteStatus,
    /// Why it failed, or why it was revoked; a short snake_case code.
    pub reason: Option<String>,
    pub generation: u32,
    /// The event that opened the current generation.
    pub opened_by_event: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub accepted_at: Option<OffsetDateTime>,
    /// How many invitation emails this generation has sent (a resend adds one).
    pub send_count: u32,
    /// Cognito's `sub` for the user, once known.
    pub user_sub: Option<String>,
    pub details: InviteDetails,
    pub history: Vec<HistoryEntry>,
    /// Optimistic-concurrency counter: every write is conditional on the previous value.
    pub version: u64,
    pub lease: Option<Lease>,
    #[serde(default)]
    pub outbox: Vec<PendingPublication>,
    /// Set once a reminder was sent for this generation.
    #[serde(default)]
    pub reminded_generation: Option<u32>,
    /// The newest `occurred_at` of the events that opened, re-opened or revoked this invite: a
    /// request, resend or revoke that occurred earlier but arrives later is stale and ignored
    /// (out-of-order delivery). See docs/lifecycle.md.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_occurred_at: Option<OffsetDateTime>,
    /// What SES said about the emails: delivered, complained about, bounced.
    #[serde(flatten)]
    pub mail: MailFacts,
}

impl Invite {
    /// Whether `event_id` already left a mark on this record (a redelivery).
    pub fn has_seen(&self, event_id: &str) -> bool {
        self.opened_by_event == event_id
            || self
                .history
                .iter()
                .any(|h| h.event_id.as_deref() == Some(event_id))
    }

    /// Whether this replay of `event_id` already left a mark (a redelivery of the replay copy).
    pub fn has_seen_replay(&self, event_id: &str, replay: &Replay) -> bool {
        self.history.iter().any(|h| {
            h.event_id.as_deref() == Some(event_id)
                && h.replay.as_ref().is_some_and(|r| r.number == replay.number)
        })
    }

    pub fn push_history(&mut self, entry: HistoryEntry) {
        self.history.push(entry);
        if self.history.len() > HISTORY_LIMIT {
            let drop = self.history.len() - HISTORY_LIMIT;
            self.history.drain(..drop);
        }
    }

    pub fn lease_held_by_other(&self, now: OffsetDateTime, token: &str) -> Option<OffsetDateTime> {
        match &self.lease {
            Some(l) if l.until > now && l.token != token => Some(l.until),
            _ => None,
        }
    }
}
