//! Mail feedback applied to invites: what SES said about an invitation email after it was sent
//! (a bounce, a complaint, a delivery, a reject, a delay), the account's suppression list read
//! before an invite creates its user, and the operator's clearing of a complaint. Everything
//! goes through the service's one conditional-write loop ([`InviteService`]); the rules are in
//! `crate::domain::state` (the feedback triggers) and `crate::domain::record` (generations,
//! complaints, facts). See docs/lifecycle.md, "Delivery awareness".

use time::OffsetDateTime;
use tracing::{info, warn, Instrument};

use super::handle_error::HandleError;
use super::handler::{Attempt, Handled, InviteService, Request, Step};
use crate::domain::feedback::{FeedbackKind, MailFeedback};
use crate::domain::record::{bump, history, remember};
use crate::domain::state::{when_suppressed, Fact, Outcome, Trigger};
use crate::domain::{BounceDetail, Invite, InviteId};
use crate::ports::{Suppressed, SuppressionReason};

impl InviteService {
    /// Applies one piece of mail feedback to its invite (found by the email's `invite_id` tag).
    /// A permanent bounce or a reject makes an open invite `undeliverable` (its never-used user
    /// deleted); a delivery sets `delivered_at`; a complaint is kept; the rest is history. An
    /// unknown invite is `unknown_invite`, a repeat `redelivered`: both acknowledged. An invite
    /// whose attempt is in flight is `Busy` (retry later).
    ///
    /// `Handled::outcome`: `undeliverable`, `accepted` (the person had registered), `delivered`,
    /// `already_delivered`, `complained`, `already_complained`, `delivery_delayed`,
    /// `stale_feedback` (an older generation's email), `unknown_generation`, `unknown_invite`,
    /// `redelivered`, or the closed invite's note (`already_accepted`, `revoked`, `expired`,
    /// `failed`, `undeliverable`). Errors are the service's usual ones: `Busy`, `Contended` and
    /// a store or Cognito outage (`Transient`) are retries; a Cognito rejection while deleting
    /// the user is `Rejected`.
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

    /// What `outcome` becomes if it would create a user for an address on the suppression list:
    /// the closing outcome, its reason code and what the record keeps. `None` when it opens
    /// nothing or the address is not suppressed. A check that fails (throttled: SES's
    /// non-sending API has a low account rate; an outage) lets the invite go ahead: SES refuses a
    /// suppressed address itself and reports it as a permanent bounce (`OnAccountSuppressionList`)
    /// on the feedback queue, which makes the invite `undeliverable` moments later. Retrying
    /// instead would hold every invite back on a list lookup.
    pub(super) async fn suppressed(
        &self,
        id: InviteId,
        outcome: &Outcome,
        current: Option<&Invite>,
        req: &Request<'_>,
    ) -> Result<Option<(Outcome, &'static str, BounceDetail)>, HandleError> {
        let Some(closed) = when_suppressed(outcome) else {
            return Ok(None);
        };
        let Some(email) = current.map(|r| &r.email).or(req.email) else {
            return Ok(None);
        };
        let entry = match self.suppression.suppressed(email).await {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok(None),
            Err(e) => {
                warn!(invite_id = %id, error = %e, "could not read the suppression list; sending anyway (SES reports a suppressed address as a bounce)");
                return Ok(None);
            }
        };
        let (reason, detail) = suppression_detail(&entry, self.clock.now());
        info!(invite_id = %id, reason, "address on the suppression list; the invite is undeliverable, no user is created");
        Ok(Some((closed, reason, detail)))
    }

    /// Keeps a fact about the invite's mail in the record (one conditional write, no side
    /// effects), with a history line and its lifecycle event.
    pub(super) async fn remember(
        &self,
        at: &Attempt<'_>,
        current: Option<Invite>,
        fact: Fact,
    ) -> Result<Handled, Step> {
        let (req, now) = (at.req, at.now);
        let Some(mut rec) = current else {
            return self.note(at, None, "unknown_invite").await;
        };
        let (happened, feedback_type) = when_and_what(req.feedback, now);
        let done = remember(&mut rec, fact, happened, feedback_type);
        rec.push_history(history(
            now,
            Some(rec.status),
            rec.status,
            &req.cause(),
            Some(done.reason.to_string()),
            rec.generation,
        ));
        bump(&mut rec, now);
        if let (Some(event_type), Some(outbox)) = (done.event_type, &self.outbox) {
            outbox.queue_fact(&mut rec, event_type, now);
        }
        self.save(&rec).await?;
        self.flush_outbox(rec.invite_id).await;
        info!(invite_id = %rec.invite_id, event_id = req.event_id, status = %rec.status, outcome = done.reason, "mail fact recorded");
        Ok(Handled {
            outcome: done.reason,
            invite_id: Some(rec.invite_id),
            status: Some(rec.status),
            changed: done.changed,
        })
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
