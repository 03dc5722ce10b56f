//! The feedback queue's [`MessageHandler`]: parse the body, hand an SES event about an
//! invitation email to the [`FeedbackTarget`], and say what the worker does with the message.
//!
//! - an ignorable message (SNS subscription confirmation, `Send`/`Open`/`Click` events, a mail
//!   invite-worker did not send): ack, outcome `ignored`;
//! - a body that is not a usable SES event: dead letter, reason code `invalid_feedback`, with
//!   the field and why;
//! - a feedback: the target's answer, mapped like every invite event's
//!   ([`HandleError::disposition`]): a downstream outage is retried, never dead-lettered.
//!
//! Each feedback that settles (acked or dead-lettered by the target, not retried) is counted
//! once in `mail_feedback_total{event_type, bounce_type, sub_type}`; ignored messages are not
//! (they show as `messages_processed_total{outcome="ignored"}`).

use std::sync::Arc;

use async_trait::async_trait;
use tracing::{debug, info, warn, Instrument};

use super::parse::{parse, Parsed};
use super::FeedbackTarget;
use crate::domain::feedback::{FeedbackKind, MailFeedback};
use crate::error::Disposition;
use crate::observe::Observer;
use crate::ports::QueueMessage;
use crate::worker::MessageHandler;

/// The dead-letter reason code of a body that is not a usable SES event.
pub const INVALID_FEEDBACK: &str = "invalid_feedback";
/// The ack outcome of a message with nothing to do.
pub const IGNORED: &str = "ignored";

/// SES's documented `bounceSubType`s: anything else is counted as `unrecognised`, so a metric
/// label never carries arbitrary input.
const BOUNCE_SUB_TYPES: [&str; 9] = [
    "Undetermined",
    "General",
    "NoEmail",
    "Suppressed",
    "OnAccountSuppressionList",
    "MailboxFull",
    "MessageTooLarge",
    "ContentRejected",
    "AttachmentRejected",
];
/// The complaint feedback types (RFC 5965) SES passes on.
const COMPLAINT_TYPES: [&str; 6] = [
    "abuse",
    "auth-failure",
    "fraud",
    "not-spam",
    "other",
    "virus",
];
const UNRECOGNISED: &str = "unrecognised";

pub struct FeedbackHandler<T: FeedbackTarget + ?Sized> {
    target: Arc<T>,
    observer: Arc<Observer>,
}

impl<T: FeedbackTarget + ?Sized> FeedbackHandler<T> {
    /// Applies feedback to `target`, counting it where `observer` keeps the downstream metrics
    /// (so it shows on `/metrics`).
    pub fn new(target: Arc<T>, observer: Arc<Observer>) -> Self {
        Self { target, observer }
    }

    /// Handles one message body.
    pub async fn handle_body(&self, body: &str) -> Disposition {
        match parse(body) {
            Ok(Parsed::Feedback(feedback)) => self.apply(&feedback).await,
            Ok(Parsed::Ignored { reason }) => {
                debug!(%reason, "feedback message ignored");
                Disposition::Ack { outcome: IGNORED }
            }
            Err(e) => {
                warn!(error = %e, "feedback message is not a usable SES event");
                Disposition::DeadLetter {
                    code: INVALID_FEEDBACK.into(),
                    reason: e.to_string(),
                }
            }
        }
    }

    async fn apply(&self, feedback: &MailFeedback) -> Disposition {
        let current = tracing::Span::current();
        current.record("event_id", feedback.event_id.as_str());
        current.record("invite_id", tracing::field::display(feedback.invite_id));
        let span = tracing::info_span!(
            "event",
            event_id = %feedback.event_id,
            event_type = feedback.kind.event_type(),
            invite_id = %feedback.invite_id,
        );
        async {
            let (event_type, bounce_type, sub_type) = metric_labels(&feedback.kind);
            // The diagnostic can quote the recipient's address: debug only.
            info!(
                invite_id = %feedback.invite_id,
                event_id = %feedback.event_id,
                event_type,
                bounce_type,
                sub_type,
                generation = feedback.generation,
                ses_message_id = %feedback.ses_message_id,
                "mail feedback"
            );
            if let FeedbackKind::Bounce {
                diagnostic: Some(d),
                ..
            } = &feedback.kind
            {
                debug!(diagnostic = %d, "bounce diagnostic");
            }
            let disposition = match self.target.apply_feedback(feedback).await {
                Ok(handled) => Disposition::Ack {
                    outcome: handled.outcome,
                },
                Err(e) => e.disposition(),
            };
            if !matches!(disposition, Disposition::Retry { .. }) {
                self.observer
                    .downstream()
                    .record_feedback(event_type, bounce_type, sub_type);
            }
            disposition
        }
        .instrument(span)
        .await
    }
}

#[async_trait]
impl<T: FeedbackTarget + ?Sized + 'static> MessageHandler for FeedbackHandler<T> {
    async fn handle(&self, message: &QueueMessage) -> Disposition {
        self.handle_body(&message.body).await
    }
}

/// `mail_feedback_total`'s labels for one feedback: the event type; for a bounce its type and
/// sub-type; for a complaint its feedback type as the sub-type. Only known codes: anything else
/// is `unrecognised`.
pub fn metric_labels(kind: &FeedbackKind) -> (&'static str, &'static str, &'static str) {
    let known = |value: &str, list: &[&'static str]| -> &'static str {
        list.iter()
            .find(|k| **k == value)
            .copied()
            .unwrap_or(UNRECOGNISED)
    };
    match kind {
        FeedbackKind::Bounce {
            bounce_type,
            sub_type,
            ..
        } => (
            kind.event_type(),
            bounce_type.as_str(),
            known(sub_type, &BOUNCE_SUB_TYPES),
        ),
        FeedbackKind::Complaint { feedback_type } => (
            kind.event_type(),
            "",
            feedback_type
                .as_deref()
                .map_or("", |t| known(t, &COMPLAINT_TYPES)),
        ),
        _ => (kind.event_type(), "", ""),
    }
}

#[cfg(test)]
#[path = "handler_tests.rs"]
mod tests;
