//! Mail feedback applied to invites: what SES said about an invitation email after it was sent
//! (a bounce, a complaint, a delivery, a reject, a delay), the account's suppression list read
//! before an invite creates its user, and the operator's clearing of a complaint. Everything
//! goes through the service's one conditional-write loop ([`InviteService`]); the rules are in
//! `crate::domain::state` (the feedback triggers) and `crate::domain::record` (generations,
//! complaints, facts). See docs/lifecycle.md, "Delivery awareness".

use time::OffsetDateTime;
use tracing::Instrument;

use super::handle_error::HandleError;
use super::handler::{Handled, InviteService, Request};
use crate::domain::feedback::{FeedbackKind, MailFeedback};
use crate::domain::state::Trigger;
use crate::domain::{BounceDetail, InviteId};
use crate::ports::{Suppressed, SuppressionReason};

impl InviteService {
    /// Applies one piece of mail feedback to its invite (found by the email's `invite_id` tag).
    /// A permanent bounce or a reject makes an open invite `undeliverable` (its never-used user
    /// deleted); a delivery sets `delivered_at`; a complaint is kept; the rest is history. An
    /// unknown invite is `unknown_invite`, a repeat `redelivered`: both acknowledged. An invite
    /// whose attempt is in flight is `Busy` (retry later).
    pub async fn apply_feedback(&self, feedback: &MailFeedback) -> Result<Handled, HandleError> {
        let trigger = Trigger::of_feedback(&feedback.kind);
        let code = match &trigger {
            Trigger::Undeliverable(code) => Some(code.clone()),
            _ => None,
        };
        let reason = code.as_deref();
        let bounce = bounce_detail(feedback);
        let request = Request {
            reason,
            feedback: Some(feedback),
            bounce: bounce.as_ref(),
            ..Request::bare(Some(&feedback.event_id), history_type(&feedback.kind))
        };
        let span = tracing::info_span!(
            "feedback",
            event_id = %feedback.event_id,
            feedback_type = feedback.kind.event_type(),
            invite_id = %feedback.invite_id,
        );
        self.apply(feedback.invite_id, trigger, &request)
            .instrument(span)
            .await
    }

    /// Clears the complaint on invite `id` (`invites clear-complaint`): emails may go to its
    /// address again. `actor` (who) goes into the history line; `no_complaint` if there was none.
    pub async fn clear_complaint(&self, id: InviteId, actor: &str) -> Result<Handled, HandleError> {
        let event_id = format!("operator:clear-complaint:{}", uuid::Uuid::new_v4());
        let request = Request {
            actor: Some(actor),
            ..Request::bare(Some(&event_id), "operator.clear_complaint")
        };
        self.apply(id, Trigger::ComplaintCleared, &request).await
    }
}

/// The history line's event type for a piece of feedback.
fn history_type(kind: &FeedbackKind) -> &'static str {
    match kind {
        FeedbackKind::Bounce { .. } => "ses.bounce",
        FeedbackKind::Complaint { .. } => "ses.complaint",
        FeedbackKind::Delivery => "ses.delivery",
        FeedbackKind::Reject { .. } => "ses.reject",
        FeedbackKind::DeliveryDelay { .. } => "ses.delivery_delay",
    }
}

/// What an `undeliverable` invite keeps of a permanent bounce or a reject (`None` for the rest).
fn bounce_detail(feedback: &MailFeedback) -> Option<BounceDetail> {
    match &feedback.kind {
        FeedbackKind::Bounce {
            bounce_type,
            sub_type,
            diagnostic,
        } if feedback.kind.is_undeliverable() => Some(BounceDetail {
            at: feedback.occurred_at,
            bounce_type: Some(bounce_type.as_str().to_string()),
            sub_type: Some(sub_type.clone()),
            diagnostic: BounceDetail::clean_diagnostic(diagnostic.as_deref()),
        }),
        FeedbackKind::Reject { reason } => Some(BounceDetail {
            at: feedback.occurred_at,
            bounce_type: None,
            sub_type: None,
            diagnostic: BounceDetail::clean_diagnostic(Some(reason)),
        }),
        _ => None,
    }
}

/// The reason code and the record's detail for an address on the suppression list.
pub(super) fn suppression_detail(
    entry: &Suppressed,
    now: OffsetDateTime,
) -> (&'static str, BounceDetail) {
    let reason = match entry.reason {
        SuppressionReason::Bounce => "suppressed_bounce",
        SuppressionReason::Complaint => "suppressed_complaint",
    };
    let detail = BounceDetail {
        at: entry.since.unwrap_or(now),
        bounce_type: None,
        sub_type: Some(entry.reason.as_str().to_string()),
        diagnostic: Some("on the SES account-level suppression list".into()),
    };
    (reason, detail)
}

/// When a fact happened (SES's timestamp; `now` for an operator's command) and a complaint's
/// feedback type.
pub(super) fn when_and_what(
    feedback: Option<&MailFeedback>,
    now: OffsetDateTime,
) -> (OffsetDateTime, Option<&str>) {
    match feedback {
        Some(f) => {
            let feedback_type = match &f.kind {
                FeedbackKind::Complaint { feedback_type } => feedback_type.as_deref(),
                _ => None,
            };
            (f.occurred_at, feedback_type)
        }
        None => (now, None),
    }
}
