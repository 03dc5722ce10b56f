//! Reconcile: finds acceptances nobody reported. Cognito's PostConfirmation trigger does not fire
//! when an admin-created user answers `NEW_PASSWORD_REQUIRED`, so unless the sign-in application
//! sends `registration.completed`, an invite stays `sent` after the person registered. Reconcile
//! reads every `sent` invite (the by-status index), asks Cognito (`AdminGetUser`) at a bounded
//! rate, and records each confirmed user's acceptance (groups, welcome email) through the same
//! lease and conditional writes as the worker.

use serde::Serialize;
use tracing::{info, warn};

use super::{outcome_of, Action, InviteLine, Outcome, Tally, PAGE_SIZE};
use crate::app::handler::InviteService;
use crate::domain::state::Trigger;
use crate::domain::{Invite, InviteStatus};
use crate::ports::{InviteStore, StoreError, UserStanding};
use crate::ratelimit::TokenBucket;

/// The history's `event_type` for acceptances reconcile records.
pub const EVENT_TYPE: &str = "reconcile";

#[derive(Clone, Debug)]
pub struct ReconcileOptions {
    /// At most this many `sent` invites per run (most recently updated first).
    pub limit: usize,
    /// `AdminGetUser` calls per second: reconcile's share of Cognito's read quota.
    pub rate_per_second: f64,
    /// Report the acceptances it would record; change nothing.
    pub dry_run: bool,
}

/// What one reconcile run did.
#[derive(Clone, Debug, Serialize)]
pub struct ReconcileReport {
    pub dry_run: bool,
    pub summary: Tally,
    /// Stopped at `limit`: run again (or raise it) for the rest.
    pub more: bool,
    /// Only the invites whose state changed, would change, or failed; the ones still waiting for
    /// their person are only counted (`still_sent`).
    pub invites: Vec<InviteLine>,
    pub errors: Vec<String>,
}

impl ReconcileReport {
    /// Everything went through: no invite failed and the index could be read.
    pub fn succeeded(&self) -> bool {
        self.summary.failed == 0 && self.errors.is_empty()
    }
}

/// Runs one reconcile pass.
pub async fn reconcile(service: &InviteService, options: &ReconcileOptions) -> ReconcileReport {
    let mut report = ReconcileReport {
        dry_run: options.dry_run,
        summary: Tally::default(),
        more: false,
        invites: Vec::new(),
        errors: Vec::new(),
    };
    let (invites, more) = match sent_invites(service.store().as_ref(), options.limit).await {
        Ok(found) => found,
        Err(e) => {
            report
                .errors
                .push(format!("reading the by-status index: {e}"));
            return report;
        }
    };
    report.more = more;
    let bucket = TokenBucket::new(options.rate_per_second, 1);
    for rec in invites {
        bucket.acquire().await;
        let (outcome, detail) = match service.directory().get_user(&rec.username).await {
            Err(e) => (Outcome::Failed, Some(e.to_string())),
            Ok(Some(u)) if UserStanding::of(&u.status, u.enabled).is_accepted() => {
                if options.dry_run {
                    (Outcome::WouldAccept, None)
                } else {
                    outcome_of(
                        service
                            .apply_internal(rec.invite_id, Trigger::Accepted, EVENT_TYPE)
                            .await,
                    )
                }
            }
            Ok(_) => (Outcome::StillSent, None),
        };
        report.summary.count(outcome);
        match outcome {
            Outcome::StillSent => continue,
            Outcome::Failed => {
                warn!(invite_id = %rec.invite_id, detail = detail.as_deref(), "reconcile: failed")
            }
            _ => {
                info!(invite_id = %rec.invite_id, ?outcome, detail = detail.as_deref(), "reconcile")
            }
        }
        report.invites.push(InviteLine {
            invite_id: rec.invite_id,
            email: rec.email.as_str().to_string(),
            action: Action::Accept,
            outcome,
            detail,
        });
    }
    report
}

/// `sent` invites, most recently updated first, at most `limit`; and whether there were more.
pub async fn sent_invites(
    store: &dyn InviteStore,
    limit: usize,
) -> Result<(Vec<Invite>, bool), StoreError> {
    let mut invites = Vec::new();
    let mut cursor = None;
    loop {
        let want = limit.saturating_sub(invites.len()).min(PAGE_SIZE);
        if want == 0 {
            return Ok((invites, cursor.is_some()));
        }
        let page = store
            .list_by_status(InviteStatus::Sent, want, cursor)
            .await?;
        invites.extend(page.items);
        cursor = page.next;
        if cursor.is_none() {
            return Ok((invites, false));
        }
    }
}
