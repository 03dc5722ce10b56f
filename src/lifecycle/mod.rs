//! The invite lifecycle beyond single events: [`cleanup`] (expiry and reminders, run from a
//! scheduler), [`reconcile`] (acceptances nobody reported) and [`relay`] (lifecycle events left in
//! outboxes). Each is a function over the [`InviteService`](crate::app::handler::InviteService)
//! and its ports, so the fakes in `crate::adapters::memory` test them with a manual clock; the
//! commands in `crate::cli` only parse arguments and print reports.
//!
//! Every change goes through `InviteService::apply_internal`: the same lease and conditional
//! writes as event handling, so a cleanup, a reconcile and the worker (or two cleanups started at
//! once) never act on one invite together; the one that finds the invite claimed reports it as
//! `skipped_busy` and leaves it to the holder or to the next run.

pub mod cleanup;
pub mod reconcile;
pub mod relay;

use serde::Serialize;
use time::OffsetDateTime;

use crate::app::handler::{HandleError, Handled};
use crate::domain::{InviteId, InviteStatus};
use crate::ports::Clock;

/// How many ids or records one index query asks for.
pub const PAGE_SIZE: usize = 100;

/// A clock that reads `at` when it is built and then runs with real time: `cleanup --now`
/// evaluates as of another time while leases still last their real length.
#[derive(Clone, Copy, Debug)]
pub struct ShiftedClock {
    offset: time::Duration,
}

impl ShiftedClock {
    pub fn starting_at(at: OffsetDateTime) -> Self {
        Self {
            offset: at - OffsetDateTime::now_utc(),
        }
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.offset
    }
}

/// What a run meant to do with one invite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Past expiry, never used: expire it (and delete the unused Cognito user).
    Expire,
    /// The person completed registration: record the acceptance.
    Accept,
    /// Close to expiry, not reminded in this generation: send the reminder.
    Remind,
}

/// What happened to one invite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Expired,
    Accepted,
    Reminded,
    /// `--dry-run`: what a real run would do.
    WouldExpire,
    WouldAccept,
    WouldRemind,
    /// Reconcile: the user has not completed registration yet.
    StillSent,
    /// Another process holds the invite (a lease) or kept changing it; left for it or the next
    /// run. Not a failure.
    SkippedBusy,
    /// Nothing to do after all (another process got there first, a resend extended the expiry,
    /// it was already reminded...); `detail` says why.
    Unchanged,
    /// A downstream error or a rejection; `detail` says which. Makes the run exit non-zero.
    Failed,
}

/// One invite's line in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InviteLine {
    pub invite_id: InviteId,
    pub email: String,
    pub action: Action,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Counts by outcome; `examined` is every invite a run considered acting on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub examined: usize,
    pub expired: usize,
    pub accepted: usize,
    pub reminded: usize,
    pub would_expire: usize,
    pub would_accept: usize,
    pub would_remind: usize,
    pub still_sent: usize,
    pub skipped_busy: usize,
    pub unchanged: usize,
    pub failed: usize,
}

impl Tally {
    pub fn count(&mut self, outcome: Outcome) {
        self.examined += 1;
        let slot = match outcome {
            Outcome::Expired => &mut self.expired,
            Outcome::Accepted => &mut self.accepted,
            Outcome::Reminded => &mut self.reminded,
            Outcome::WouldExpire => &mut self.would_expire,
            Outcome::WouldAccept => &mut self.would_accept,
            Outcome::WouldRemind => &mut self.would_remind,
            Outcome::StillSent => &mut self.still_sent,
            Outcome::SkippedBusy => &mut self.skipped_busy,
            Outcome::Unchanged => &mut self.unchanged,
            Outcome::Failed => &mut self.failed,
        };
        *slot += 1;
    }
}

/// Reads what `apply_internal` returned as a report outcome.
pub fn outcome_of(result: Result<Handled, HandleError>) -> (Outcome, Option<String>) {
    match result {
        Ok(h) if h.changed => match (h.status, h.outcome) {
            (Some(InviteStatus::Expired), _) => (Outcome::Expired, None),
            (Some(InviteStatus::Accepted), "accepted") => (Outcome::Accepted, None),
            // A reminder or an expiry that found the person registered after all.
            (Some(InviteStatus::Accepted), other) => (Outcome::Accepted, Some(other.to_string())),
            (Some(InviteStatus::Sent), "reminded") => (Outcome::Reminded, None),
            (_, other) => (Outcome::Unchanged, Some(other.to_string())),
        },
        Ok(h) => (Outcome::Unchanged, Some(h.outcome.to_string())),
        Err(e @ (HandleError::Busy(..) | HandleError::Contended(_))) => {
            (Outcome::SkippedBusy, Some(e.to_string()))
        }
        Err(e) => (Outcome::Failed, Some(e.to_string())),
    }
}

/// RFC 3339 for reports.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_clock_starts_at_the_given_time_and_runs() {
        let at = OffsetDateTime::now_utc() + time::Duration::days(30);
        let clock = ShiftedClock::starting_at(at);
        let first = clock.now();
        assert!((first - at).abs() < time::Duration::seconds(5));
        assert!(clock.now() >= first);
    }

    #[test]
    fn outcomes_read_changed_from_unchanged() {
        let id = InviteId::parse("0f4e7f2a-8c8e-5d0b-b9a6-4d9f0b1f4c11").unwrap();
        let handled = |outcome, status, changed| Handled {
            outcome,
            invite_id: Some(id),
            status: Some(status),
            changed,
        };
        assert_eq!(
            outcome_of(Ok(handled("expired", InviteStatus::Expired, true))).0,
            Outcome::Expired
        );
        assert_eq!(
            outcome_of(Ok(handled("expired", InviteStatus::Expired, false))),
            (Outcome::Unchanged, Some("expired".into())),
            "a note that reads like a transition is not counted as one"
        );
        assert_eq!(
            outcome_of(Ok(handled("accepted", InviteStatus::Accepted, true))),
            (Outcome::Accepted, None)
        );
        assert_eq!(
            outcome_of(Ok(handled("reminded", InviteStatus::Sent, true))).0,
            Outcome::Reminded
        );
        let busy = HandleError::Busy(
            id,
            OffsetDateTime::now_utc(),
            std::time::Duration::from_secs(1),
        );
        assert_eq!(outcome_of(Err(busy)).0, Outcome::SkippedBusy);
        assert_eq!(
            outcome_of(Err(HandleError::Contended(id))).0,
            Outcome::SkippedBusy
        );
        assert_eq!(
            outcome_of(Err(HandleError::Corrupt("x".into()))),
            (Outcome::Failed, Some("x".into()))
        );
    }

    #[test]
    fn the_tally_counts_every_outcome_once() {
        let mut t = Tally::default();
        for o in [
            Outcome::Expired,
            Outcome::Failed,
            Outcome::SkippedBusy,
            Outcome::Expired,
        ] {
            t.count(o);
        }
        assert_eq!(
            (t.examined, t.expired, t.failed, t.skipped_busy),
            (4, 2, 1, 1)
        );
    }
}
