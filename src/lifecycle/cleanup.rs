//! Cleanup: one pass over the open invites that are due, for a scheduler (cron, a Kubernetes
//! CronJob, an EventBridge schedule). See docs/lifecycle.md.
//!
//! 1. **Expiry.** Open invites with `expires_at <= now`, read from the sparse open-by-expiry
//!    index (never a scan). Each is re-checked in Cognito first: a user who completed
//!    registration (`CONFIRMED` and enabled, nothing else) makes the invite `accepted` (groups
//!    added, welcome email sent, exactly as a reported `registration.completed`); otherwise it
//!    becomes `expired` and its never-used `FORCE_CHANGE_PASSWORD` user is deleted with
//!    `Directory::delete_if_never_used` (disable, check again, delete).
//! 2. **Reminders** (when `invites.reminder_days_before_expiry` > 0). Invites still `sent` that
//!    expire within that many days and were not reminded in their current generation get a
//!    fresh temporary password and the reminder email, at most once per generation.
//! 3. **Relay.** Lifecycle events left in outboxes by a publishing outage are published.
//!
//! The ids are read first (up to `limit` per phase), then acted on one by one: acting removes
//! invites from the index being read, and reading ahead keeps paging correct whatever the
//! store's cursors are. Each action re-reads the record and is decided again under the lease
//! (an invite resent since the read is not expired; one reminded by a concurrent run is not
//! reminded twice).

use serde::Serialize;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::{outcome_of, rfc3339, Action, InviteLine, Outcome, Tally, PAGE_SIZE};
use crate::app::handler::InviteService;
use crate::domain::state::Trigger;
use crate::domain::{Invite, InviteId, InviteStatus};
use crate::ports::{InviteStore, StoreError, UserStanding};

/// The history's `event_type` for what cleanup does.
pub const EVENT_TYPE: &str = "cleanup";
/// The history's `event_type` for reminders.
pub const REMINDER_EVENT_TYPE: &str = "cleanup.reminder";
/// Invites whose outboxes one relay pass looks at.
pub const RELAY_LIMIT: usize = 500;

#[derive(Clone, Debug)]
pub struct CleanupOptions {
    /// Report what would happen; change nothing (no Cognito writes, no emails, no relay).
    pub dry_run: bool,
    /// At most this many invites read from the index per phase; the next run continues.
    pub limit: usize,
    /// Send reminders to invites expiring within this many days; 0 is off.
    pub reminder_days: u32,
}

/// What one cleanup run did.
#[derive(Clone, Debug, Serialize)]
pub struct CleanupReport {
    /// The time the run evaluated against (`--now`, or the clock).
    pub now: String,
    pub dry_run: bool,
    pub summary: Tally,
    /// Lifecycle events' invites the relay looked at.
    pub relayed: usize,
    /// A phase stopped at `limit`: run again (or raise it) for the rest.
    pub more: bool,
    pub invites: Vec<InviteLine>,
    /// Failures that are not about one invite (an index query, the relay).
    pub errors: Vec<String>,
}

impl CleanupReport {
    /// Everything went through: no invite failed and no phase stopped on an error.
    pub fn succeeded(&self) -> bool {
        self.summary.failed == 0 && self.errors.is_empty()
    }

    fn push(&mut self, rec: &Invite, action: Action, outcome: Outcome, detail: Option<String>) {
        match outcome {
            Outcome::Failed => {
                warn!(invite_id = %rec.invite_id, ?action, detail = detail.as_deref(), "cleanup: failed")
            }
            _ => {
                info!(invite_id = %rec.invite_id, ?action, ?outcome, detail = detail.as_deref(), "cleanup")
            }
        }
        self.summary.count(outcome);
        self.invites.push(InviteLine {
            invite_id: rec.invite_id,
            email: rec.email.as_str().to_string(),
            action,
            outcome,
            detail,
        });
    }
}

/// Runs one cleanup pass as of `service.now()`.
pub async fn cleanup(service: &InviteService, options: &CleanupOptions) -> CleanupReport {
    let now = service.now();
    let mut report = CleanupReport {
        now: rfc3339(now),
        dry_run: options.dry_run,
        summary: Tally::default(),
        relayed: 0,
        more: false,
        invites: Vec::new(),
        errors: Vec::new(),
    };
    expire(service, options, now, &mut report).await;
    if options.reminder_days > 0 {
        remind(service, options, now, &mut report).await;
    }
    if !options.dry_run {
        match service.relay_unpublished(RELAY_LIMIT).await {
            Ok(n) => report.relayed = n,
            Err(e) => report
                .errors
                .push(format!("relaying lifecycle events: {e}")),
        }
    }
    report
}

async fn expire(
    service: &InviteService,
    options: &CleanupOptions,
    now: OffsetDateTime,
    report: &mut CleanupReport,
) {
    let (ids, more) = match open_until(service.store().as_ref(), now, options.limit).await {
        Ok(found) => found,
        Err(e) => {
            report
                .errors
                .push(format!("reading the open-by-expiry index: {e}"));
            return;
        }
    };
    report.more |= more;
    for id in ids {
        let Some(rec) = reload(service, id, report).await else {
            continue;
        };
        if !rec.status.is_open() || rec.expires_at > now {
            // The index lags the table a little; this one was closed or extended meanwhile.
            continue;
        }
        let confirmed = match service.directory().get_user(&rec.username).await {
            Ok(user) => user.is_some_and(|u| UserStanding::of(&u.status, u.enabled).is_accepted()),
            Err(e) => {
                report.push(&rec, Action::Expire, Outcome::Failed, Some(e.to_string()));
                continue;
            }
        };
        let (action, trigger, would) = if confirmed {
            (Action::Accept, Trigger::Accepted, Outcome::WouldAccept)
        } else {
            (Action::Expire, Trigger::ExpiryReached, Outcome::WouldExpire)
        };
        if options.dry_run {
            report.push(&rec, action, would, None);
            continue;
        }
        let (outcome, detail) = outcome_of(service.apply_internal(id, trigger, EVENT_TYPE).await);
        report.push(&rec, action, outcome, detail);
    }
}

async fn remind(
    service: &InviteService,
    options: &CleanupOptions,
    now: OffsetDateTime,
    report: &mut CleanupReport,
) {
    let horizon = now + time::Duration::days(i64::from(options.reminder_days));
    let (ids, more) = match open_until(service.store().as_ref(), horizon, options.limit).await {
        Ok(found) => found,
        Err(e) => {
            report.errors.push(format!(
                "reading the open-by-expiry index for reminders: {e}"
            ));
            return;
        }
    };
    report.more |= more;
    for id in ids {
        let Some(rec) = reload(service, id, report).await else {
            continue;
        };
        if !reminder_due(&rec, now, horizon) {
            continue;
        }
        if options.dry_run {
            report.push(&rec, Action::Remind, Outcome::WouldRemind, None);
            continue;
        }
        let (outcome, detail) = outcome_of(
            service
                .apply_internal(id, Trigger::ReminderDue, REMINDER_EVENT_TYPE)
                .await,
        );
        report.push(&rec, Action::Remind, outcome, detail);
    }
}

/// Whether `rec` should get its reminder now: still `sent`, not yet expired, expiring before
/// `horizon`, and not reminded in its current generation.
pub fn reminder_due(rec: &Invite, now: OffsetDateTime, horizon: OffsetDateTime) -> bool {
    rec.status == InviteStatus::Sent
        && rec.expires_at > now
        && rec.expires_at <= horizon
        && rec.reminded_generation != Some(rec.generation)
}

async fn reload(
    service: &InviteService,
    id: InviteId,
    report: &mut CleanupReport,
) -> Option<Invite> {
    match service.store().load(&id).await {
        Ok(rec) => rec,
        Err(e) => {
            report.errors.push(format!("loading invite {id}: {e}"));
            None
        }
    }
}

/// Ids of open invites expiring at or before `until`, oldest first, at most `limit`; and whether
/// the index had more.
pub async fn open_until(
    store: &dyn InviteStore,
    until: OffsetDateTime,
    limit: usize,
) -> Result<(Vec<InviteId>, bool), StoreError> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let want = limit.saturating_sub(ids.len()).min(PAGE_SIZE);
        if want == 0 {
            return Ok((ids, cursor.is_some()));
        }
        let page = store.open_expired(until, want, cursor).await?;
        ids.extend(page.items);
        cursor = page.next;
        if cursor.is_none() {
            return Ok((ids, false));
        }
    }
}
