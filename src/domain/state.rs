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
//! | undeliverable   | reopen       | note      | note               | note            | reopen        | note         | accepted      | note           |
//!
//! Mail feedback (SES sending events about the invite's emails; docs/lifecycle.md, "Delivery
//! awareness"):
//!
//! | from \ trigger  | undeliverable        | mail_delivered   | mail_delayed | complained | complaint_cleared |
//! |-----------------|----------------------|------------------|--------------|------------|-------------------|
//! | (none)          | note unknown         | note unknown     | note unknown | note unknown | note unknown    |
//! | pending         | undeliverable        | remember         | note         | remember   | remember          |
//! | sent            | undeliverable        | remember         | note         | remember   | remember          |
//! | accepted        | note                 | note             | note         | remember   | remember          |
//! | revoked         | note                 | note             | note         | remember   | remember          |
//! | expired         | note                 | note             | note         | remember   | remember          |
//! | failed          | note                 | note             | note         | remember   | remember          |
//! | undeliverable   | note                 | note             | note         | remember   | remember          |
//!
//! "undeliverable" (a permanent bounce or a reject) deletes the never-used user, like a revoke;
//! a user found registered makes the invite `accepted` instead (as at expiry). "remember" keeps
//! a fact in the record without changing the status ([`Fact`]): the delivery time, or the
//! complaint (on any status: the address complained, whatever became of the invite).
//! Decided before this table (in `crate::domain::record`): feedback about an older generation's
//! email is a note (`stale_feedback`); a complaint on the record holds back every outcome that
//! emails the address (`held_by_complaint`). After it: an outcome that would create a user for an
//! address on the suppression list ends `undeliverable` instead ([`when_suppressed`]).
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

use super::feedback::{BounceType, FeedbackKind};
use super::invite::InviteStatus;
use super::standing::UserStanding;

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
    /// SES: the address cannot receive mail (a permanent bounce or a reject), with a reason code
    /// (`bounce_permanent`, `rejected`).
    Undeliverable(String),
    /// SES: the recipient's mail server accepted the email.
    MailDelivered,
    /// SES: a transient or undetermined bounce, or a delivery delay. History only.
    MailDelayed,
    /// SES: the recipient marked the email as spam.
    Complained,
    /// An operator cleared the complaint (`invites clear-complaint`).
    ComplaintCleared,
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
            Trigger::Undeliverable(_) => "undeliverable",
            Trigger::MailDelivered => "mail_delivered",
            Trigger::MailDelayed => "mail_delayed",
            Trigger::Complained => "complained",
            Trigger::ComplaintCleared => "complaint_cleared",
        }
    }

    /// The trigger of a piece of mail feedback: a permanent bounce or a reject makes the address
    /// undeliverable; a transient or undetermined bounce and a delay are history only.
    pub fn of_feedback(kind: &FeedbackKind) -> Trigger {
        match kind {
            FeedbackKind::Bounce {
                bounce_type: BounceType::Permanent,
                ..
            } => Trigger::Undeliverable("bounce_permanent".into()),
            FeedbackKind::Reject { .. } => Trigger::Undeliverable("rejected".into()),
            FeedbackKind::Bounce { .. } | FeedbackKind::DeliveryDelay { .. } => {
                Trigger::MailDelayed
            }
            FeedbackKind::Delivery => Trigger::MailDelivered,
            FeedbackKind::Complaint { .. } => Trigger::Complained,
        }
    }

    /// Whether this is mail feedback from SES (its generation tag matters).
    pub fn is_feedback(&self) -> bool {
        matches!(
            self,
            Trigger::Undeliverable(_)
                | Trigger::MailDelivered
                | Trigger::MailDelayed
                | Trigger::Complained
        )
    }
}

/// A fact the record keeps without changing its status ([`Outcome::Remember`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact {
    /// The email reached the recipient's server: `delivered_at`, once per generation.
    Delivered,
    /// The recipient complained: the complaint, until an operator clears it.
    Complaint,
    /// An operator cleared the complaint.
    ComplaintCleared,
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
    /// The status stays; the record keeps a fact about its mail (one conditional write, no
    /// side effects).
    Remember(Fact),
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

        (Some(_), Trigger::Complained) => Remember(Fact::Complaint),
        (Some(_), Trigger::ComplaintCleared) => Remember(Fact::ComplaintCleared),
        (Some(_), Trigger::MailDelayed) => Note {
            reason: "delivery_delayed",
        },
        (Some(Pending | Sent), Trigger::Undeliverable(_)) => Transition {
            to: Undeliverable,
            new_generation: false,
            effects: vec![DeleteUnusedUser],
        },
        (Some(Pending | Sent), Trigger::MailDelivered) => Remember(Fact::Delivered),

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
        (Some(Pending | Sent | Expired | Undeliverable), Trigger::Accepted) => Transition {
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

        (Some(Expired | Failed | Undeliverable), Trigger::Requested | Trigger::Resend) => {
            Transition {
                to: Pending,
                new_generation: true,
                effects: open_work(),
            }
        }
        (Some(Expired), _) => Note { reason: "expired" },
        (Some(Failed), _) => Note { reason: "failed" },
        (Some(Undeliverable), _) => Note {
            reason: "undeliverable",
        },
    }
}

/// What an opening outcome becomes when the address is on the account's suppression list: the
/// invite ends `undeliverable` without creating a user or sending anything. A new generation
/// opens and closes at once; a `pending` invite being resumed removes the never-used user an
/// interrupted attempt may have left. `None` for an outcome that opens nothing (no check needed).
pub fn when_suppressed(outcome: &Outcome) -> Option<Outcome> {
    match outcome {
        Outcome::Transition {
            new_generation,
            effects,
            ..
        } if effects.contains(&ProvisionUser) => Some(Outcome::Transition {
            to: Undeliverable,
            new_generation: *new_generation,
            effects: if *new_generation {
                vec![]
            } else {
                vec![DeleteUnusedUser]
            },
        }),
        Outcome::Resume { effects } if effects.contains(&ProvisionUser) => {
            Some(Outcome::Transition {
                to: Undeliverable,
                new_generation: false,
                effects: vec![DeleteUnusedUser],
            })
        }
        _ => None,
    }
}

/// What the invite does with a Cognito user that an effect finds already there (see
/// [`UserStanding`]): only a never-used user is given a password or deleted, and only a
/// registered (`CONFIRMED`, enabled) one is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FoundUser {
    /// Never used: go on (a fresh temporary password, or the deletion).
    Proceed,
    /// The person registered: record the acceptance (groups, welcome), reason `found_confirmed`.
    Accept,
    /// The invite cannot use this user: it ends `failed` with this reason, the user untouched.
    Fail(String),
    /// The user stays as it is; the invite closes as the trigger says.
    Keep,
}

/// What `effect`, run for `trigger`, does with an existing user of `standing`.
pub fn on_found_user(effect: Effect, trigger: &Trigger, standing: &UserStanding) -> FoundUser {
    if standing.is_never_used() {
        return FoundUser::Proceed;
    }
    match effect {
        RotatePassword | DeleteUnusedUser
            if standing.is_accepted()
                && (effect == RotatePassword
                    || matches!(trigger, Trigger::ExpiryReached | Trigger::Undeliverable(_))) =>
        {
            FoundUser::Accept
        }
        ProvisionUser | RotatePassword => FoundUser::Fail(standing.reason()),
        _ => FoundUser::Keep,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every trigger, one of each kind (the record rules' tables use it too).
    pub(crate) fn all_triggers() -> Vec<Trigger> {
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
            Trigger::Undeliverable("bounce_permanent".into()),
            Trigger::MailDelivered,
            Trigger::MailDelayed,
            Trigger::Complained,
            Trigger::ComplaintCleared,
        ]
    }

    const ALL_FROM: [Option<InviteStatus>; 8] = [
        None,
        Some(Pending),
        Some(Sent),
        Some(Accepted),
        Some(Revoked),
        Some(Expired),
        Some(Failed),
        Some(Undeliverable),
    ];

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
            Outcome::Remember(fact) => format!("remember {fact:?}"),
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
            (Some(Undeliverable), ["open pending", "note undeliverable", "note undeliverable", "note undeliverable",
                                   "open pending", "note undeliverable", "-> accepted", "note undeliverable",
                                   "note undeliverable", "note undeliverable"]),
        ];
        for (from, row) in table {
            for (trigger, want) in all_triggers().iter().zip(row) {
                let got = short(&decide(from, trigger));
                assert_eq!(got, want, "from {from:?} on {}", trigger.name());
            }
        }
    }

    /// The mail-feedback triggers, every status: only an open invite becomes undeliverable or
    /// remembers a delivery; a complaint is remembered whatever the status.
    #[test]
    #[rustfmt::skip]
    fn exhaustive_feedback_table() {
        // Columns in the order of `all_triggers` from the 11th: undeliverable, mail_delivered,
        // mail_delayed, complained, complaint_cleared.
        let unknown = "note unknown_invite";
        let closed = |r: &'static str| -> [&'static str; 5] {
            [r, r, "note delivery_delayed", "remember Complaint", "remember ComplaintCleared"]
        };
        let open = ["-> undeliverable", "remember Delivered", "note delivery_delayed",
                    "remember Complaint", "remember ComplaintCleared"];
        let table: Vec<(Option<InviteStatus>, [&str; 5])> = vec![
            (None, [unknown; 5]),
            (Some(Pending), open),
            (Some(Sent), open),
            (Some(Accepted), closed("note already_accepted")),
            (Some(Revoked), closed("note revoked")),
            (Some(Expired), closed("note expired")),
            (Some(Failed), closed("note failed")),
            (Some(Undeliverable), closed("note undeliverable")),
        ];
        for (from, row) in table {
            for (trigger, want) in all_triggers()[10..].iter().zip(row) {
                let got = short(&decide(from, trigger));
                assert_eq!(got, want, "from {from:?} on {}", trigger.name());
            }
        }
        // An undeliverable invite's user goes the way of a revoked one's.
        assert_eq!(
            decide(Some(Sent), &Trigger::Undeliverable("rejected".into())),
            Outcome::Transition { to: Undeliverable, new_generation: false, effects: vec![DeleteUnusedUser] }
        );
    }

    #[test]
    fn feedback_kinds_map_to_their_triggers() {
        let bounce = |bounce_type| FeedbackKind::Bounce {
            bounce_type,
            sub_type: "General".into(),
            diagnostic: None,
        };
        let cases = [
            (bounce(BounceType::Permanent), "undeliverable"),
            (bounce(BounceType::Transient), "mail_delayed"),
            (bounce(BounceType::Undetermined), "mail_delayed"),
            (
                FeedbackKind::Reject {
                    reason: "Bad content".into(),
                },
                "undeliverable",
            ),
            (
                FeedbackKind::DeliveryDelay {
                    delay_type: "MailboxFull".into(),
                },
                "mail_delayed",
            ),
            (FeedbackKind::Delivery, "mail_delivered"),
            (
                FeedbackKind::Complaint {
                    feedback_type: None,
                },
                "complained",
            ),
        ];
        for (kind, want) in cases {
            let t = Trigger::of_feedback(&kind);
            assert_eq!(t.name(), want, "{kind:?}");
            assert!(t.is_feedback());
            assert_eq!(
                kind.is_undeliverable(),
                matches!(t, Trigger::Undeliverable(_))
            );
        }
        assert_eq!(
            Trigger::of_feedback(&bounce(BounceType::Permanent)),
            Trigger::Undeliverable("bounce_permanent".into())
        );
        assert_eq!(
            Trigger::of_feedback(&FeedbackKind::Reject {
                reason: "virus".into()
            }),
            Trigger::Undeliverable("rejected".into())
        );
    }

    /// Every outcome of the table, suppressed: whatever would create a user ends `undeliverable`
    /// without it; nothing else is touched.
    #[test]
    fn a_suppressed_address_never_gets_a_user_or_an_email() {
        for from in ALL_FROM {
            for t in all_triggers() {
                let outcome = decide(from, &t);
                let opens = match &outcome {
                    Outcome::Transition { effects, .. } | Outcome::Resume { effects } => {
                        effects.contains(&ProvisionUser)
                    }
                    _ => false,
                };
                match when_suppressed(&outcome) {
                    None => assert!(!opens, "{from:?} {t:?}"),
                    Some(Outcome::Transition {
                        to,
                        new_generation,
                        effects,
                    }) => {
                        assert!(opens, "{from:?} {t:?}");
                        assert_eq!(to, Undeliverable);
                        let fresh = matches!(
                            outcome,
                            Outcome::Transition {
                                new_generation: true,
                                ..
                            }
                        );
                        assert_eq!(new_generation, fresh, "{from:?} {t:?}");
                        let want = if fresh {
                            vec![]
                        } else {
                            vec![DeleteUnusedUser]
                        };
                        assert_eq!(effects, want, "{from:?} {t:?}");
                    }
                    Some(other) => panic!("{from:?} {t:?}: {other:?}"),
                }
            }
        }
        assert_eq!(
            when_suppressed(&decide(Some(Pending), &Trigger::Requested)),
            Some(Outcome::Transition {
                to: Undeliverable,
                new_generation: false,
                effects: vec![DeleteUnusedUser]
            })
        );
    }

    #[test]
    fn effects_never_delete_a_user_on_acceptance_and_always_rotate_before_sending() {
        for from in ALL_FROM {
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
        for from in [Accepted, Revoked, Expired, Failed, Undeliverable] {
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

    /// Every effect that meets an existing user, for every standing: only a never-used user is
    /// touched, only a registered one accepted, and nothing else gets groups or a welcome.
    #[test]
    #[rustfmt::skip]
    fn found_users_table() {
        use super::super::standing::UserStatus as S;
        let standings = [
            UserStanding::of(&S::ForceChangePassword, true),
            UserStanding::of(&S::ForceChangePassword, false),
            UserStanding::of(&S::Confirmed, true),
            UserStanding::of(&S::Confirmed, false),
            UserStanding::of(&S::Other("UNCONFIRMED".into()), true),
            UserStanding::of(&S::Other("RESET_REQUIRED".into()), true),
            UserStanding::of(&S::Other("EXTERNAL_PROVIDER".into()), true),
            UserStanding::of(&S::Other("ARCHIVED".into()), true),
            UserStanding::of(&S::Other("COMPROMISED".into()), true),
            UserStanding::of(&S::Other("UNKNOWN".into()), true),
            UserStanding::of(&S::Other("SOMETHING_NEW".into()), false),
        ];
        let short = |f: FoundUser| match f {
            FoundUser::Proceed => "proceed".to_string(),
            FoundUser::Accept => "accept".to_string(),
            FoundUser::Fail(r) => format!("fail {r}"),
            FoundUser::Keep => "keep".to_string(),
        };
        // Columns: provision (request), rotate (resend), rotate (reminder), delete (expiry),
        // delete (revoke), delete (delivery failed), delete (undeliverable).
        let columns = [
            (ProvisionUser, Trigger::Requested),
            (RotatePassword, Trigger::Resend),
            (RotatePassword, Trigger::ReminderDue),
            (DeleteUnusedUser, Trigger::ExpiryReached),
            (DeleteUnusedUser, Trigger::Revoke),
            (DeleteUnusedUser, Trigger::DeliveryFailed("email_rejected".into())),
            (DeleteUnusedUser, Trigger::Undeliverable("bounce_permanent".into())),
        ];
        let fail = |r: &str| format!("fail {r}");
        let rows: Vec<[String; 7]> = vec![
            ["proceed", "proceed", "proceed", "proceed", "proceed", "proceed", "proceed"].map(String::from),
            ["proceed", "proceed", "proceed", "proceed", "proceed", "proceed", "proceed"].map(String::from),
            [fail("already_registered"), "accept".into(), "accept".into(), "accept".into(), "keep".into(), "keep".into(), "accept".into()],
            [fail("user_disabled"), fail("user_disabled"), fail("user_disabled"), "keep".into(), "keep".into(), "keep".into(), "keep".into()],
            [fail("user_status_unconfirmed"), fail("user_status_unconfirmed"), fail("user_status_unconfirmed"), "keep".into(), "keep".into(), "keep".into(), "keep".into()],
            [fail("user_status_reset_required"), fail("user_status_reset_required"), fail("user_status_reset_required"), "keep".into(), "keep".into(), "keep".into(), "keep".into()],
            [fail("user_status_external_provider"), fail("user_status_external_provider"), fail("user_status_external_provider"), "keep".into(), "keep".into(), "keep".into(), "keep".into()],
            [fail("user_status_archived"), fail("user_status_archived"), fail("user_status_archived"), "keep".into(), "keep".into(), "keep".into(), "keep".into()],
            [fail("user_status_compromised"), fail("user_status_compromised"), fail("user_status_compromised"), "keep".into(), "keep".into(), "keep".into(), "keep".into()],
            [fail("user_status_unknown"), fail("user_status_unknown"), fail("user_status_unknown"), "keep".into(), "keep".into(), "keep".into(), "keep".into()],
            [fail("user_status_something_new"), fail("user_status_something_new"), fail("user_status_something_new"), "keep".into(), "keep".into(), "keep".into(), "keep".into()],
        ];
        for (standing, row) in standings.iter().zip(rows) {
            for ((effect, trigger), want) in columns.iter().zip(row) {
                let got = short(on_found_user(*effect, trigger, standing));
                assert_eq!(got, want, "{standing:?} {effect:?} on {}", trigger.name());
            }
        }
    }
}
