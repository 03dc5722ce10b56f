//! The invite state machine, pure: `(current status, trigger) -> outcome`. No I/O, no clock; the
//! caller applies the outcome with a conditional write and runs its effects. Tested as a table.
//!
//! | from \ trigger  | requested    | delivered | already_registered | delivery_failed | resend        | revoke       | accepted      | expiry_reached |
//! |-----------------|--------------|-----------|--------------------|-----------------|---------------|--------------|---------------|----------------|
//! | (none)          | open pending | -         | -                  | -               | note unknown  | tombstone    | note unknown  | -              |
//! | pending         | resume       | sent      | failed             | failed          | resume        | revoked      | accepted      | expired        |
//! | sent            | note dup     | note      | note               | note            | resend (sent) | revoked      | accepted      | expired        |
//! | accepted        | note         | note      | note               | note            | refused       | refused      | note          | note           |
//! | revoked         | reopen       | note      | note               | note            | refused       | note         | note          | note           |
//! | expired         | reopen       | note      | note               | note            | reopen        | note         | accepted      | note           |
//! | failed          | reopen       | note      | note               | note            | reopen        | note         | note          | note           |
//!
//! "note" records the event in the history without changing the status; "refused" does the same
//! and reports the refusal. "tombstone": a revoke that arrives before its request creates a
//! `revoked` record, so the late request (older by `occurred_at`) is ignored as stale. A
//! redelivered event (its id already in the history) and a stale event (older than the last
//! event applied) are decided before this table, as no-ops.
//!
//! `reminder_due` (cleanup, before expiry): `sent` -> `sent` with a fresh password and the
//! reminder email; a note everywhere else.
//!
//! `replayed`: an operator replayed (`dlq replay`) a request or resend this invite has already
//! seen: a deliberate decision to try again. It re-opens only a `failed` invite, resumes a
//! `pending` one, and is a note everywhere else (an invite sent, accepted, revoked or expired
//! since stays as it is). A plain redelivery of the same event stays a no-op (decided before
//! this table), and so does a second delivery of the same replay.

use super::invite::InviteStatus;

/// What happened to an invite, in the state machine's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// `invite.requested`.
    Requested,
    /// The invitation email went out (internal).
    Delivered,
    /// The Cognito user exists and already completed registration (internal).
    AlreadyRegistered,
    /// Creating the user or sending the email failed for good (internal), with a reason code.
    DeliveryFailed(String),
    /// `invite.resend`.
    Resend,
    /// `invite.revoke`.
    Revoke,
    /// `registration.completed`, verified against Cognito, or found by reconcile/cleanup.
    Accepted,
    /// Cleanup found the invite past its expiry.
    ExpiryReached,
    /// Cleanup found the invite close to its expiry, not yet reminded in this generation.
    ReminderDue,
    /// An operator replayed a request or resend whose id the invite has already seen.
    Replayed,
}

impl Trigger {
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::Requested => "requested",
            Trigger::Delivered => "delivered",
            Trigger::AlreadyRegistered => "already_registered",
            Trigger::DeliveryFailed(_) => "delivery_failed",
            Trigger::Resend => "resend",
            Trigger::Revoke => "revoke",
            Trigger::Accepted => "accepted",
            Trigger::ExpiryReached => "expiry_reached",
            Trigger::ReminderDue => "reminder_due",
            Trigger::Replayed => "replayed",
        }
    }
}

/// A side effect the caller must run (in this order) after writing the new state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Create the Cognito user with a fresh temporary password, or rotate the password of an
    /// existing user that never completed registration.
    ProvisionUser,
    /// Rotate the temporary password of the existing user (resend).
    RotatePassword,
    /// Send the invitation email with the password from the step before.
    SendInvitation,
    /// Delete the Cognito user if, and only if, it never completed registration.
    DeleteUnusedUser,
    /// Add the user to the invite's groups.
    AddToGroups,
    /// Send the welcome email.
    SendWelcome,
    /// Send the reminder email with the password from the step before.
    SendReminder,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Move to `to`. `new_generation` re-opens a closed record (or opens the first one).
    Transition {
        to: InviteStatus,
        new_generation: bool,
        effects: Vec<Effect>,
    },
    /// Stay in `pending` and (re)run the work; the transition to `sent` follows the effects.
    Resume { effects: Vec<Effect> },
    /// Nothing changes; record the event with this reason code.
    Note { reason: &'static str },
    /// Nothing changes; the request is refused with this reason code (recorded and reported).
    Refused { reason: &'static str },
}

use Effect::*;
use InviteStatus::*;

fn open_work() -> Vec<Effect> {
    vec![ProvisionUser, SendInvitation]
}

/// The transition table. `current` is `None` when no record exists yet.
pub fn decide(current: Option<InviteStatus>, trigger: &Trigger) -> Outcome {
    use Outcome::*;
    match (current, trigger) {
        (None, Trigger::Requested) => Transition {
            to: Pending,
            new_generation: true,
            effects: open_work(),
        },
        (None, Trigger::Revoke) => Transition {
            to: Revoked,
            new_generation: true,
            effects: vec![],
        },
        (None, _) => Note {
            reason: "unknown_invite",
        },

        (Some(Sent), Trigger::ReminderDue) => Transition {
            to: Sent,
            new_generation: false,
            effects: vec![RotatePassword, SendReminder],
        },
        (Some(Pending), Trigger::ReminderDue) => Note {
            reason: "not_sent_yet",
        },

        (Some(Failed), Trigger::Replayed) => Transition {
            to: Pending,
            new_generation: true,
            effects: open_work(),
        },
        (Some(Pending), Trigger::Replayed) => Resume {
            effects: open_work(),
        },
        (Some(Sent), Trigger::Replayed) => Note {
            reason: "already_sent",
        },

        (Some(Pending), Trigger::Requested | Trigger::Resend) => Resume {
            effects: open_work(),
        },
        (Some(Pending), Trigger::Delivered) => Transition {
            to: Sent,
            new_generation: false,
            effects: vec![],
        },
        (Some(Pending), Trigger::AlreadyRegistered) => Transition {
            to: Failed,
            new_generation: false,
            effects: vec![],
        },
        (Some(Pending), Trigger::DeliveryFailed(_)) => Transition {
            to: Failed,
            new_generation: false,
            effects: vec![DeleteUnusedUser],
        },

        (Some(Sent), Trigger::Requested) => Note {
            reason: "duplicate_request",
        },
        (Some(Sent), Trigger::Resend) => Transition {
            to: Sent,
            new_generation: false,
            effects: vec![RotatePassword, SendInvitation],
        },
        (
            Some(Sent),
            Trigger::Delivered | Trigger::AlreadyRegistered | Trigger::DeliveryFailed(_),
        ) => Note {
            reason: "already_sent",
        },

        (Some(Pending | Sent), Trigger::Revoke) => Transition {
            to: Revoked,
            new_generation: false,
            effects: vec![DeleteUnusedUser],
        },
        (Some(Pending | Sent | Expired), Trigger::Accepted) => Transition {
            to: Accepted,
            new_generation: false,
            effects: vec![AddToGroups, SendWelcome],
        },
        (Some(Pending | Sent), Trigger::ExpiryReached) => Transition {
            to: Expired,
            new_generation: false,
            effects: vec![DeleteUnusedUser],
        },

        (Some(Accepted), Trigger::Resend | Trigger::Revoke) => Refused {
            reason: "already_accepted",
        },
        (Some(Accepted), _) => Note {
            reason: "already_accepted",
        },

        (Some(Revoked), Trigger::Requested) => Transition {
            to: Pending,
            new_generation: true,
            effects: open_work(),
        },
        (Some(Revoked), Trigger::Resend) => Refused { reason: "revoked" },
        (Some(Revoked), _) => Note { reason: "revoked" },

        (Some(Expired | Failed), Trigger::Requested | Trigger::Resend) => Transition {
            to: Pending,
            new_generation: true,
            effects: open_work(),
        },
        (Some(Expired), _) => Note { reason: "expired" },
        (Some(Failed), _) => Note { reason: "failed" },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_triggers() -> Vec<Trigger> {
        vec![
            Trigger::Requested,
            Trigger::Delivered,
            Trigger::AlreadyRegistered,
            Trigger::DeliveryFailed("email_rejected".into()),
            Trigger::Resend,
            Trigger::Revoke,
            Trigger::Accepted,
            Trigger::ExpiryReached,
            Trigger::ReminderDue,
            Trigger::Replayed,
        ]
    }

    fn short(o: &Outcome) -> String {
        match o {
            Outcome::Transition {
                to,
                new_generation: true,
                ..
            } => format!("open {to}"),
            Outcome::Transition { to, .. } => format!("-> {to}"),
            Outcome::Resume { .. } => "resume".into(),
            Outcome::Note { reason } => format!("note {reason}"),
            Outcome::Refused { reason } => format!("refused {reason}"),
        }
    }

    /// The whole table, row by row, in the order of `all_triggers`.
    #[test]
    #[rustfmt::skip]
    fn exhaustive_table() {
        // Columns in the order of `all_triggers`: requested, delivered, already_registered,
        // delivery_failed, resend, revoke, accepted, expiry_reached, reminder_due, replayed.
        let table: Vec<(Option<InviteStatus>, [&str; 10])> = vec![
            (None, ["open pending", "note unknown_invite", "note unknown_invite", "note unknown_invite",
                    "note unknown_invite", "open revoked", "note unknown_invite", "note unknown_invite",
                    "note unknown_invite", "note unknown_invite"]),
            (Some(Pending), ["resume", "-> sent", "-> failed", "-> failed",
                             "resume", "-> revoked", "-> accepted", "-> expired", "note not_sent_yet",
                             "resume"]),
            (Some(Sent), ["note duplicate_request", "note already_sent", "note already_sent", "note already_sent",
                          "-> sent", "-> revoked", "-> accepted", "-> expired", "-> sent",
                          "note already_sent"]),
            (Some(Accepted), ["note already_accepted", "note already_accepted", "note already_accepted",
                              "note already_accepted", "refused already_accepted", "refused already_accepted",
                              "note already_accepted", "note already_accepted", "note already_accepted",
                              "note already_accepted"]),
            (Some(Revoked), ["open pending", "note revoked", "note revoked", "note revoked",
                             "refused revoked", "note revoked", "note revoked", "note revoked", "note revoked",
                             "note revoked"]),
            (Some(Expired), ["open pending", "note expired", "note expired", "note expired",
                             "open pending", "note expired", "-> accepted", "note expired", "note expired",
                             "note expired"]),
            (Some(Failed), ["open pending", "note failed", "note failed", "note failed",
                            "open pending", "note failed", "note failed", "note failed", "note failed",
                            "open pending"]),
        ];
        for (from, row) in table {
            for (trigger, want) in all_triggers().iter().zip(row) {
                let got = short(&decide(from, trigger));
                assert_eq!(got, want, "from {from:?} on {}", trigger.name());
            }
        }
    }

    #[test]
    fn effects_never_delete_a_user_on_acceptance_and_always_rotate_before_sending() {
        for from in [
            None,
            Some(Pending),
            Some(Sent),
            Some(Accepted),
            Some(Revoked),
            Some(Expired),
            Some(Failed),
        ] {
            for t in all_triggers() {
                let effects = match decide(from, &t) {
                    Outcome::Transition { effects, .. } | Outcome::Resume { effects } => effects,
                    _ => continue,
                };
                if let Some(send) = effects
                    .iter()
                    .position(|e| matches!(e, SendInvitation | SendReminder))
                {
                    let pw = effects
                        .iter()
                        .position(|e| matches!(e, ProvisionUser | RotatePassword));
                    assert!(
                        matches!(pw, Some(p) if p < send),
                        "{from:?} {t:?}: email without a fresh password"
                    );
                }
                if t == Trigger::Accepted {
                    assert!(!effects.contains(&DeleteUnusedUser));
                }
            }
        }
    }

    #[test]
    fn closed_states_never_go_back_to_sent_without_a_new_generation() {
        for from in [Accepted, Revoked, Expired, Failed] {
            for t in all_triggers() {
                if let Outcome::Transition {
                    to, new_generation, ..
                } = decide(Some(from), &t)
                {
                    assert!(new_generation || to == Accepted, "{from} on {}", t.name());
                }
            }
        }
    }
}
