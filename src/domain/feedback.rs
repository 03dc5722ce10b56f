//! Mail feedback: what SES learned about an invitation email after it was sent (its *sending
//! events*: a bounce, a complaint, a delivery, a reject, a delay), in domain terms. Parsed from
//! the SES event documents by `crate::feedback::parse`; applied to the invite by the handler
//! (docs/lifecycle.md, "Delivery awareness"). No I/O here.
//!
//! Not to be confused with the worker's *deliveries* of SQS messages: a [`FeedbackKind::Delivery`]
//! is SES saying the recipient's mail server accepted the email.

use time::OffsetDateTime;

use super::invite::InviteId;

/// The SES message tag that carries the invite id on every invitation email.
pub const TAG_INVITE_ID: &str = "invite_id";
/// The SES message tag that carries the invite's generation when the email was sent.
pub const TAG_GENERATION: &str = "invite_generation";
/// The SES message tag that says which email it was (`invitation`, `reminder`, `welcome`).
pub const TAG_MAIL_KIND: &str = "mail_kind";

/// SES's `bounceType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BounceType {
    /// The address will never accept mail (no such mailbox, domain gone, on the suppression
    /// list): the invite is undeliverable.
    Permanent,
    /// Mailbox full, message too large, temporary failure: SES stops retrying, but the address
    /// may work another time. History only.
    Transient,
    /// SES could not tell. Treated like a transient bounce (history only).
    Undetermined,
}

impl BounceType {
    pub fn as_str(self) -> &'static str {
        match self {
            BounceType::Permanent => "Permanent",
            BounceType::Transient => "Transient",
            BounceType::Undetermined => "Undetermined",
        }
    }
}

/// What SES reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedbackKind {
    /// `Bounce`: the receiving server refused the email.
    Bounce {
        bounce_type: BounceType,
        /// `bounceSubType`, e.g. `General`, `NoEmail`, `Suppressed`, `MailboxFull`.
        sub_type: String,
        /// The receiving server's diagnostic (`diagnosticCode` of the bounced recipient), if any.
        diagnostic: Option<String>,
    },
    /// `Complaint`: the recipient marked the email as spam.
    Complaint {
        /// `complaintFeedbackType`, e.g. `abuse`, when the provider sent one.
        feedback_type: Option<String>,
    },
    /// `Delivery`: the recipient's mail server accepted the email.
    Delivery,
    /// `Reject`: SES refused to send it (a virus was found).
    Reject { reason: String },
    /// `DeliveryDelay`: SES keeps trying (`delayType`, e.g. `MailboxFull`, `TransientCommunicationFailure`).
    DeliveryDelay { delay_type: String },
}

impl FeedbackKind {
    /// The SES `eventType` this came from, as a metric and history label.
    pub fn event_type(&self) -> &'static str {
        match self {
            FeedbackKind::Bounce { .. } => "Bounce",
            FeedbackKind::Complaint { .. } => "Complaint",
            FeedbackKind::Delivery => "Delivery",
            FeedbackKind::Reject { .. } => "Reject",
            FeedbackKind::DeliveryDelay { .. } => "DeliveryDelay",
        }
    }

    /// Whether this makes the address undeliverable: a permanent bounce or a reject.
    pub fn is_undeliverable(&self) -> bool {
        matches!(
            self,
            FeedbackKind::Bounce {
                bounce_type: BounceType::Permanent,
                ..
            } | FeedbackKind::Reject { .. }
        )
    }
}

/// One SES sending event about one invitation email, found by its message tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailFeedback {
    /// A stable id for deduplication: the same SES event delivered twice has the same id
    /// (`ses:<mail.messageId>:<eventType>:<feedbackId or timestamp>`).
    pub event_id: String,
    /// From the `invite_id` message tag.
    pub invite_id: InviteId,
    /// From the `invite_generation` message tag; `None` if the email carried none. A feedback
    /// for an older generation than the invite's is history only.
    pub generation: Option<u32>,
    /// SES's `mail.messageId`.
    pub ses_message_id: String,
    /// When it happened (the bounce's, complaint's, delivery's... own timestamp).
    pub occurred_at: OffsetDateTime,
    pub kind: FeedbackKind,
}
