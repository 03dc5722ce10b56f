//! The invite service: applies one event to one invite. It loads the record, asks the pure state
//! machine what to do, claims the record with a lease (a conditional write), runs the side
//! effects (Cognito, email), and writes the outcome with another conditional write.
//!
//! Crash safety rests on three rules:
//! 1. The record is written *before* any side effect (status `pending`, with a lease), and the
//!    final status only *after* them; a crash in between leaves `pending` and a redelivery resumes.
//! 2. Every side effect is safe to repeat: an existing never-used user gets a fresh temporary
//!    password (`Directory::rotate_if_never_used`: never over a password the person chose), so a
//!    re-sent email always carries a working password.
//! 3. An event whose id is already in the record's history is a no-op, unless an operator
//!    replayed it (`dlq replay`): a replay may re-open a `failed` invite (see [`Trigger::Replayed`]).

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tracing::{info, warn, Instrument};

use super::compose::{Composer, MailKind};
use crate::domain::event::{decode, DecodeError, EventBody, InboundEvent, InviteRef};
use crate::domain::invite::PendingPublication;
use crate::domain::password::generate;
use crate::domain::state::{decide, on_found_user, Effect, FoundUser, Outcome, Trigger};
use crate::domain::PoolProfile;
use crate::domain::RedirectHosts;
use crate::domain::{
    EmailAddress, HistoryEntry, Invite, InviteDetails, InviteId, InviteStatus, Lease, Replay,
    TemporaryPassword, UserStanding,
};
use crate::error::{Disposition, DownstreamError};
use crate::ports::{
    left_on_hold, Clock, CreateOutcome, Directory, InviteStore, Mailer, NewUser, Publisher,
    Removal, Rotation, StoreError,
};

/// How often a lost race (a version conflict) is retried within one handling.
const MAX_CONFLICT_RETRIES: usize = 5;
/// The longest a message waits before looking again at an invite another worker holds (the
/// SQS visibility limit is 12 hours; a lease is minutes).
const MAX_BUSY_WAIT_SECONDS: u64 = 3600;
/// How soon a message looks again at an invite whose lease was taken recently.
const YOUNG_LEASE_RETRY_SECONDS: u64 = 5;

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub user_pool_id: String,
    pub default_expiry_days: u32,
    /// How long a claim on an invite lasts if the worker dies holding it.
    pub lease: Duration,
    /// Where an invite's `redirect_url` may point (`email.redirect_hosts`).
    pub redirect_hosts: RedirectHosts,
}

/// Why handling failed, and so what the worker does next (see [`HandleError::disposition`]).
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("{0}")]
    Invalid(DecodeError),
    #[error("{0}")]
    InvalidAttributes(DecodeError),
    #[error("{message}")]
    Rejected { code: String, message: String },
    #[error(transparent)]
    Transient(DownstreamError),
    /// Another worker holds the invite's lease until `.1`; look again in `.2`.
    #[error("invite {0} is being handled by another worker until {1}")]
    Busy(InviteId, OffsetDateTime, Duration),
    #[error("invite {0} kept changing during this write; will retry")]
    Contended(InviteId),
    #[error("{0}")]
    Corrupt(String),
}

impl HandleError {
    pub fn disposition(&self) -> Disposition {
        match self {
            HandleError::Invalid(e) => Disposition::DeadLetter {
                code: "invalid_event".into(),
                reason: e.to_string(),
            },
            HandleError::InvalidAttributes(e) => Disposition::DeadLetter {
                code: "invalid_attributes".into(),
                reason: e.to_string(),
            },
            HandleError::Rejected { code, message } => Disposition::DeadLetter {
                code: code.clone(),
                reason: message.clone(),
            },
            HandleError::Corrupt(m) => Disposition::DeadLetter {
                code: "corrupt_record".into(),
                reason: m.clone(),
            },
            HandleError::Transient(e) => Disposition::Retry {
                reason: e.to_string(),
                after: None,
                downstream: Some(e.service),
            },
            HandleError::Busy(_, _, wait) => Disposition::Retry {
                reason: self.to_string(),
                after: Some(*wait),
                downstream: None,
            },
            HandleError::Contended(_) => Disposition::Retry {
                reason: self.to_string(),
                after: None,
                downstream: None,
            },
        }
    }

    fn from_downstream(e: DownstreamError) -> Self {
        match e.rejection_code() {
            Some(code) => HandleError::Rejected {
                code: code.to_string(),
                message: e.to_string(),
            },
            None => HandleError::Transient(e),
        }
    }
}

impl From<DownstreamError> for HandleError {
    fn from(e: DownstreamError) -> Self {
        HandleError::from_downstream(e)
    }
}

impl From<StoreError> for HandleError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => HandleError::Transient(DownstreamError::new(
                crate::error::Service::DynamoDb,
                "PutItem",
                crate::error::ErrorKind::Unavailable,
                "unexpected version conflict",
            )),
            StoreError::Corrupt { key, reason } => {
                HandleError::Corrupt(format!("stored invite {key} cannot be read: {reason}"))
            }
            StoreError::Downstream(d) => HandleError::from_downstream(d),
        }
    }
}

/// The result of handling an event that needs no retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    /// A short code: `sent`, `redelivered`, `duplicate_request`, `already_registered`...
    pub outcome: &'static str,
    pub invite_id: Option<InviteId>,
    pub status: Option<InviteStatus>,
    /// Whether this handling changed the invite's status (or re-sent it): `false` for notes,
    /// refusals and no-ops, whose `outcome` may otherwise read like a transition (`expired`).
    pub changed: bool,
}

/// What the event asks, once decoded, in terms the engine understands.
#[derive(Clone, Copy)]
struct Request<'a> {
    event_id: Option<&'a str>,
    event_type: &'static str,
    email: Option<&'a EmailAddress>,
    details: Option<&'a InviteDetails>,
    expires_in_days: Option<u32>,
    reason: Option<&'a str>,
    occurred_at: Option<OffsetDateTime>,
    /// The pool profile, when the event's check already read it (saves a second read).
    profile: Option<&'a PoolProfile>,
    /// Set when an operator replayed the message (`dlq replay`).
    replay: Option<&'a Replay>,
}

pub struct InviteService {
    store: Arc<dyn InviteStore>,
    directory: Arc<dyn Directory>,
    mailer: Arc<dyn Mailer>,
    composer: Arc<dyn Composer>,
    clock: Arc<dyn Clock>,
    config: ServiceConfig,
    publisher: Option<Arc<dyn Publisher>>,
}

impl InviteService {
    pub fn new(
        store: Arc<dyn InviteStore>,
        directory: Arc<dyn Directory>,
        mailer: Arc<dyn Mailer>,
        composer: Arc<dyn Composer>,
        clock: Arc<dyn Clock>,
        config: ServiceConfig,
    ) -> Self {
        Self {
            store,
            directory,
            mailer,
            composer,
            clock,
            config,
            publisher: None,
        }
    }

    /// Publishes lifecycle events (through the record's outbox) to `publisher`.
    pub fn with_publisher(mut self, publisher: Arc<dyn Publisher>) -> Self {
        self.publisher = Some(publisher);
        self
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn InviteStore> {
        &self.store
    }

    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Decodes and handles one message body that was not replayed.
    pub async fn handle_body(&self, body: &str) -> Disposition {
        self.handle_delivery(body, None).await
    }

    /// Decodes and handles one message body; what the worker calls. `replay` is the lineage of a
    /// copy sent back by `dlq replay` (from its message attributes), `None` for any other message.
    pub async fn handle_delivery(&self, body: &str, replay: Option<&Replay>) -> Disposition {
        let result = match decode(body) {
            Ok(event) => self.handle_replayed_event(&event, replay).await,
            Err(e) => Err(HandleError::Invalid(e)),
        };
        match result {
            Ok(h) => Disposition::Ack { outcome: h.outcome },
            Err(e) => e.disposition(),
        }
    }

    pub fn invite_id_for(&self, target: &InviteRef) -> InviteId {
        match target {
            InviteRef::Email(e) => InviteId::for_email(&self.config.user_pool_id, e),
            InviteRef::Id(id) => *id,
        }
    }

    /// The invite an event is about, for log fields (the same id the engine keys it by).
    pub fn invite_id_of(&self, event: &InboundEvent) -> InviteId {
        match &event.body {
            EventBody::InviteRequested(req) => {
                InviteId::for_email(&self.config.user_pool_id, &req.email)
            }
            EventBody::InviteResend { target, .. } | EventBody::InviteRevoke { target, .. } => {
                self.invite_id_for(target)
            }
            EventBody::RegistrationCompleted { email, .. } => {
                InviteId::for_email(&self.config.user_pool_id, email)
            }
        }
    }

    /// Applies one decoded event. Every line logged meanwhile is in an `event` span carrying
    /// `event_id`, `event_type` and `invite_id`; both ids are also recorded in the caller's
    /// span when it declares them (the worker's per-message span does).
    pub async fn handle_event(&self, event: &InboundEvent) -> Result<Handled, HandleError> {
        self.handle_replayed_event(event, None).await
    }

    /// [`InviteService::handle_event`] for an event an operator may have replayed.
    pub async fn handle_replayed_event(
        &self,
        event: &InboundEvent,
        replay: Option<&Replay>,
    ) -> Result<Handled, HandleError> {
        let invite_id = self.invite_id_of(event);
        let current = tracing::Span::current();
        current.record("event_id", event.id.as_str());
        current.record("invite_id", tracing::field::display(invite_id));
        let span = tracing::info_span!(
            "event",
            event_id = %event.id,
            event_type = event.body.type_name(),
            invite_id = %invite_id,
        );
        self.apply_event(event, replay).instrument(span).await
    }

    async fn apply_event(
        &self,
        event: &InboundEvent,
        replay: Option<&Replay>,
    ) -> Result<Handled, HandleError> {
        let base = Request {
            event_id: Some(event.id.as_str()),
            event_type: event.body.type_name(),
            email: None,
            details: None,
            expires_in_days: None,
            reason: None,
            occurred_at: event.occurred_at,
            profile: None,
            replay,
        };
        match &event.body {
            EventBody::InviteRequested(req) => {
                if let Some(url) = &req.details.redirect_url {
                    self.config
                        .redirect_hosts
                        .check(url)
                        .map_err(HandleError::Invalid)?;
                }
                let profile = self.checked_profile(&req.details.attributes).await?;
                let id = InviteId::for_email(&self.config.user_pool_id, &req.email);
                let request = Request {
                    email: Some(&req.email),
                    details: Some(&req.details),
                    expires_in_days: req.expires_in_days,
                    profile: Some(&profile),
                    ..base
                };
                self.apply(id, Trigger::Requested, &request).await
            }
            EventBody::InviteResend {
                target,
                expires_in_days,
            } => {
                let request = Request {
                    expires_in_days: *expires_in_days,
                    ..base
                };
                self.apply(self.invite_id_for(target), Trigger::Resend, &request)
                    .await
            }
            EventBody::InviteRevoke { target, reason } => {
                let email = match target {
                    InviteRef::Email(e) => Some(e),
                    InviteRef::Id(_) => None,
                };
                let request = Request {
                    reason: reason.as_deref(),
                    email,
                    ..base
                };
                self.apply(self.invite_id_for(target), Trigger::Revoke, &request)
                    .await
            }
            EventBody::RegistrationCompleted { email, .. } => {
                let id = InviteId::for_email(&self.config.user_pool_id, email);
                match self.directory.get_user(email.as_str()).await? {
                    Some(u) if UserStanding::of(&u.status, u.enabled).is_accepted() => {
                        self.apply(id, Trigger::Accepted, &base).await
                    }
                    _ => {
                        warn!(invite_id = %id, event_id = %event.id, "registration.completed for a user that is not confirmed in Cognito; ignored");
                        Ok(Handled {
                            outcome: "registration_not_confirmed",
                            invite_id: Some(id),
                            status: None,
                            changed: false,
                        })
                    }
                }
            }
        }
    }

    /// The pool profile, with `attributes` checked against it. A rejection is checked once more
    /// against a fresh read of the pool before it is final: an attribute added to the pool since
    /// the profile was cached is accepted at once.
    async fn checked_profile(
        &self,
        attributes: &std::collections::BTreeMap<String, String>,
    ) -> Result<PoolProfile, HandleError> {
        let profile = self.directory.pool_profile().await?;
        if profile.check_attributes(attributes).is_ok() {
            return Ok(profile);
        }
        let fresh = self.directory.refresh_pool_profile().await?;
        fresh
            .check_attributes(attributes)
            .map_err(HandleError::InvalidAttributes)?;
        Ok(fresh)
    }

    /// How long a message waits before looking again at an invite another worker holds. A young
    /// lease belongs to a worker that is most likely still busy with it (a duplicate delivery):
    /// look again soon. An old one belongs to a worker that was probably cut off: wait until it
    /// runs out, so a stale lease does not use up the message's attempts.
    fn busy_wait(&self, now: OffsetDateTime, until: OffsetDateTime) -> Duration {
        let lease =
            time::Duration::try_from(self.config.lease).unwrap_or(time::Duration::minutes(2));
        let remaining =
            Duration::try_from(until - now).unwrap_or(Duration::ZERO) + Duration::from_secs(1);
        let age = now - (until - lease);
        if age < lease / 2 {
            remaining.min(Duration::from_secs(YOUNG_LEASE_RETRY_SECONDS))
        } else {
            remaining.min(Duration::from_secs(MAX_BUSY_WAIT_SECONDS))
        }
    }

    /// Applies an internal trigger (cleanup, reconcile): no event id, nothing to deduplicate.
    pub async fn apply_internal(
        &self,
        id: InviteId,
        trigger: Trigger,
        event_type: &'static str,
    ) -> Result<Handled, HandleError> {
        let request = Request {
            event_id: None,
            event_type,
            email: None,
            details: None,
            expires_in_days: None,
            reason: None,
            occurred_at: None,
            profile: None,
            replay: None,
        };
        self.apply(id, trigger, &request).await
    }

    async fn apply(
        &self,
        id: InviteId,
        asked: Trigger,
        req: &Request<'_>,
    ) -> Result<Handled, HandleError> {
        let token = uuid::Uuid::new_v4().to_string();
        for _ in 0..MAX_CONFLICT_RETRIES {
            let now = self.clock.now();
            let current = self.store.load(&id).await?;
            let replayed = is_replay_of_seen(current.as_ref(), &asked, req);
            let trigger = if replayed {
                Trigger::Replayed
            } else {
                asked.clone()
            };
            if let (Some(rec), Some(event_id)) = (&current, req.event_id) {
                // A pending invite whose work was cut short (a crash between the claim and the
                // final write) is resumed by the redelivery of the event that opened it.
                let unfinished = rec.status == InviteStatus::Pending
                    && matches!(asked, Trigger::Requested | Trigger::Resend);
                // A replay is a repeat only if this very replay was already applied.
                let repeat = match req.replay {
                    Some(replay) if replayed => rec.has_seen_replay(event_id, replay),
                    _ => rec.has_seen(event_id),
                };
                if repeat && !unfinished {
                    return Ok(Handled {
                        outcome: "redelivered",
                        invite_id: Some(id),
                        status: Some(rec.status),
                        changed: false,
                    });
                }
            }
            if let Some(until) = current
                .as_ref()
                .and_then(|r| r.lease_held_by_other(now, &token))
            {
                return Err(HandleError::Busy(id, until, self.busy_wait(now, until)));
            }
            let outcome = if is_stale(current.as_ref(), &trigger, req.occurred_at) {
                Outcome::Note {
                    reason: "stale_event",
                }
            } else if let Some(reason) = moot(current.as_ref(), &trigger, now) {
                Outcome::Note { reason }
            } else {
                decide(current.as_ref().map(|r| r.status), &trigger)
            };
            // Only requests, revokes and re-opening resends order the invite: a resend of an open
            // invite must not make an older revoke look stale (the revoke would be lost).
            let unordered;
            let req = if matches!(trigger, Trigger::Resend)
                && !matches!(
                    outcome,
                    Outcome::Transition {
                        new_generation: true,
                        ..
                    }
                ) {
                unordered = Request {
                    occurred_at: None,
                    ..*req
                };
                &unordered
            } else {
                req
            };
            let step = match outcome {
                Outcome::Note { reason } | Outcome::Refused { reason } => {
                    self.note(id, current, req, reason, now).await
                }
                Outcome::Transition {
                    to,
                    new_generation,
                    effects,
                } => {
                    self.work(
                        id,
                        current,
                        req,
                        &trigger,
                        to,
                        new_generation,
                        &effects,
                        &token,
                        now,
                    )
                    .await
                }
                Outcome::Resume { effects } => {
                    self.work(
                        id,
                        current,
                        req,
                        &trigger,
                        InviteStatus::Sent,
                        false,
                        &effects,
                        &token,
                        now,
                    )
                    .await
                }
            };
            match step {
                Err(Step::Conflict) => continue,
                Err(Step::Failed(e)) => return Err(e),
                Ok(h) => return Ok(h),
            }
        }
        Err(HandleError::Contended(id))
    }

    /// Records an event that changes nothing.
    async fn note(
        &self,
        id: InviteId,
        current: Option<Invite>,
        req: &Request<'_>,
        reason: &'static str,
        now: OffsetDateTime,
    ) -> Result<Handled, Step> {
        let Some(mut rec) = current else {
            info!(
                invite_id = %id,
                event_id = req.event_id,
                event_type = req.event_type,
                outcome = reason,
                "no invite for this event"
            );
            return Ok(Handled {
                outcome: reason,
                invite_id: None,
                status: None,
                changed: false,
            });
        };
        if req.event_id.is_some() {
            rec.push_history(history(
                now,
                Some(rec.status),
                rec.status,
                req,
                Some(reason.to_string()),
                rec.generation,
            ));
            stamp(&mut rec, req.occurred_at);
            bump(&mut rec, now);
            self.save(&rec).await?;
        }
        info!(invite_id = %rec.invite_id, event_id = req.event_id, status = %rec.status, outcome = reason, "event recorded; status unchanged");
        Ok(Handled {
            outcome: reason,
            invite_id: Some(rec.invite_id),
            status: Some(rec.status),
            changed: false,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn work(
        &self,
        id: InviteId,
        current: Option<Invite>,
        req: &Request<'_>,
        trigger: &Trigger,
        to: InviteStatus,
        new_generation: bool,
        effects: &[Effect],
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Handled, Step> {
        let opening = effects.contains(&Effect::ProvisionUser);
        if current.is_none() && req.email.is_none() {
            return self.note(id, None, req, "unknown_invite", now).await;
        }
        if effects.is_empty() {
            return self.transition_only(id, current, req, to, now).await;
        }
        let mut rec = match (current, new_generation) {
            (None, true) => self.new_record(id, req, now)?,
            (Some(prev), true) => self.reopen(prev, req, now),
            (Some(rec), false) => rec,
            (None, false) => {
                return Err(Step::Failed(HandleError::Corrupt(format!(
                    "no record for invite {id}"
                ))))
            }
        };
        if new_generation {
            let from = if rec.version == 0 {
                None
            } else {
                Some(rec.status)
            };
            rec.status = InviteStatus::Pending;
            rec.push_history(history(
                now,
                from,
                InviteStatus::Pending,
                req,
                None,
                rec.generation,
            ));
        }
        if *trigger == Trigger::Resend && rec.status == InviteStatus::Sent {
            rec.expires_at = now
                + days(
                    req.expires_in_days
                        .unwrap_or(self.config.default_expiry_days),
                );
        }
        // A lease still on the record belongs to an attempt that was cut off (or could not give
        // back a user it had disabled): its guarded Cognito operation may have left the user on
        // hold, so the hold is lifted before anything else (see `crate::adapters::guarded`).
        let interrupted = rec.lease.is_some();
        // Claim the record before any side effect.
        rec.lease = Some(Lease {
            token: token.to_string(),
            until: now
                + time::Duration::try_from(self.config.lease).unwrap_or(time::Duration::minutes(2)),
        });
        bump(&mut rec, now);
        self.save(&rec).await?;

        let from = rec.status;
        let target = if opening { InviteStatus::Sent } else { to };
        let result: Result<Finish, HandleError> = async {
            if interrupted {
                self.directory.lift_hold(&rec.username).await?;
            }
            self.run_effects(&rec, trigger, target, effects, req.profile)
                .await
        }
        .await;
        match result {
            Ok(finish) => self.finish(rec, from, finish, req, now).await,
            Err(e) => {
                if held(&e) {
                    // A user this attempt disabled could not be re-enabled: the lease stays, so
                    // the next attempt finds it stale and lifts the hold first.
                    return Err(Step::Failed(e));
                }
                if let (true, Some(code)) = (opening, rejection(&e)) {
                    // A permanent failure while opening: the invite ends `failed` (and its unused
                    // user is removed), and the event goes to the DLQ for an operator.
                    if let Err(removal) = self.directory.delete_if_never_used(&rec.username).await {
                        if left_on_hold(&removal) {
                            return Err(Step::Failed(removal.into()));
                        }
                    }
                    let finish = Finish {
                        to: InviteStatus::Failed,
                        reason: Some(code),
                        invitation_sent: false,
                        reminder_sent: false,
                        sub: None,
                    };
                    self.finish(rec, from, finish, req, self.clock.now())
                        .await?;
                } else {
                    self.release(rec).await;
                }
                Err(Step::Failed(e))
            }
        }
    }

    fn new_record(
        &self,
        id: InviteId,
        req: &Request<'_>,
        now: OffsetDateTime,
    ) -> Result<Invite, Step> {
        let Some(email) = req.email else {
            return Err(Step::Failed(HandleError::Corrupt(format!(
                "no email to open invite {id} with"
            ))));
        };
        let details = req.details.cloned().unwrap_or_default();
        Ok(Invite {
            invite_id: id,
            user_pool_id: self.config.user_pool_id.clone(),
            email: email.clone(),
            username: email.as_str().to_string(),
            status: InviteStatus::Pending,
            reason: None,
            generation: 1,
            opened_by_event: req.event_id.unwrap_or_default().to_string(),
            created_at: now,
            updated_at: now,
            expires_at: now
                + days(
                    req.expires_in_days
                        .unwrap_or(self.config.default_expiry_days),
                ),
            sent_at: None,
            accepted_at: None,
            send_count: 0,
            user_sub: None,
            details,
            history: vec![],
            version: 0,
            lease: None,
            outbox: vec![],
            reminded_generation: None,
            last_occurred_at: None,
        })
    }

    fn reopen(&self, mut rec: Invite, req: &Request<'_>, now: OffsetDateTime) -> Invite {
        rec.generation += 1;
        rec.opened_by_event = req.event_id.unwrap_or_default().to_string();
        rec.reason = None;
        rec.sent_at = None;
        rec.accepted_at = None;
        rec.send_count = 0;
        rec.user_sub = None;
        rec.expires_at = now
            + days(
                req.expires_in_days
                    .unwrap_or(self.config.default_expiry_days),
            );
        if let Some(details) = req.details {
            rec.details = details.clone();
        }
        rec
    }

    async fn run_effects(
        &self,
        rec: &Invite,
        trigger: &Trigger,
        target: InviteStatus,
        effects: &[Effect],
        profile: Option<&PoolProfile>,
    ) -> Result<Finish, HandleError> {
        let mut finish = Finish {
            to: target,
            reason: None,
            invitation_sent: false,
            reminder_sent: false,
            sub: None,
        };
        let mut password: Option<TemporaryPassword> = None;
        for effect in effects {
            match effect {
                Effect::ProvisionUser => match self.provision(rec, profile).await? {
                    Provisioned::Ready { password: p, sub } => {
                        password = Some(p);
                        finish.sub = sub;
                    }
                    Provisioned::Unusable(reason) => return Ok(Finish::failed(reason)),
                },
                Effect::RotatePassword => match self.rotate(rec, profile).await? {
                    Ok(p) => password = Some(p),
                    Err(kept) => {
                        return self
                            .found(rec, Effect::RotatePassword, trigger, &kept)
                            .await
                    }
                },
                Effect::SendInvitation => {
                    let pw = password
                        .as_ref()
                        .ok_or_else(|| HandleError::Corrupt("no password to send".into()))?;
                    self.send(MailKind::Invitation, rec, Some(pw)).await?;
                    finish.invitation_sent = true;
                }
                Effect::DeleteUnusedUser => {
                    if let Removal::Kept(kept) =
                        self.directory.delete_if_never_used(&rec.username).await?
                    {
                        // A user who registered is never deleted: at expiry, the person
                        // accepted after all. Any other user is kept as found.
                        let what = on_found_user(Effect::DeleteUnusedUser, trigger, &kept);
                        if what == FoundUser::Accept {
                            return self.accept_found(rec).await;
                        }
                    }
                }
                Effect::AddToGroups => {
                    for group in &rec.details.groups {
                        self.directory
                            .add_user_to_group(&rec.username, group)
                            .await?;
                    }
                }
                Effect::SendWelcome => {
                    self.send(MailKind::Welcome, rec, None).await?;
                }
                Effect::SendReminder => {
                    let pw = password
                        .as_ref()
                        .ok_or_else(|| HandleError::Corrupt("no password to send".into()))?;
                    self.send(MailKind::Reminder, rec, Some(pw)).await?;
                    finish.reminder_sent = true;
                }
            }
        }
        Ok(finish)
    }

    /// The person completed registration although nobody reported it (found while rotating a
    /// password or deleting an unused user): the invite is accepted with the same effects as a
    /// reported acceptance, so the groups are never missing.
    async fn accept_found(&self, rec: &Invite) -> Result<Finish, HandleError> {
        for group in &rec.details.groups {
            self.directory
                .add_user_to_group(&rec.username, group)
                .await?;
        }
        self.send(MailKind::Welcome, rec, None).await?;
        Ok(Finish {
            to: InviteStatus::Accepted,
            reason: Some("found_confirmed".into()),
            invitation_sent: false,
            reminder_sent: false,
            sub: None,
        })
    }

    /// [`InviteService::provision_once`]; if Cognito rejects the password, once more with the
    /// policy read afresh (the pool's policy may have changed since the profile was cached).
    async fn provision(
        &self,
        rec: &Invite,
        profile: Option<&PoolProfile>,
    ) -> Result<Provisioned, HandleError> {
        match self.provision_once(rec, profile).await {
            Err(HandleError::Rejected { code, .. }) if code == "invalid_password" => {
                let fresh = self.directory.refresh_pool_profile().await?;
                self.provision_once(rec, Some(&fresh)).await
            }
            other => other,
        }
    }

    /// What the invite does when an effect finds a user it may not use (see `on_found_user`).
    async fn found(
        &self,
        rec: &Invite,
        effect: Effect,
        trigger: &Trigger,
        standing: &UserStanding,
    ) -> Result<Finish, HandleError> {
        match on_found_user(effect, trigger, standing) {
            FoundUser::Accept => self.accept_found(rec).await,
            FoundUser::Fail(reason) => {
                warn!(invite_id = %rec.invite_id, reason = %reason, "the invite's Cognito user cannot be used; the invite fails and the user is left as it is");
                Ok(Finish::failed(reason))
            }
            FoundUser::Proceed | FoundUser::Keep => Err(HandleError::Corrupt(format!(
                "a usable user reported as unusable ({standing:?})"
            ))),
        }
    }

    /// Creates the user with a fresh temporary password, or gives an existing never-used user a
    /// fresh one. Any other user is never touched.
    async fn provision_once(
        &self,
        rec: &Invite,
        profile: Option<&PoolProfile>,
    ) -> Result<Provisioned, HandleError> {
        let fetched;
        let profile = match profile {
            Some(p) => p,
            None => {
                fetched = self.directory.pool_profile().await?;
                &fetched
            }
        };
        let password = generate(&profile.password_policy);
        let user = NewUser {
            username: &rec.username,
            email: &rec.email,
            attributes: &rec.details.attributes,
            temporary_password: &password,
        };
        match self.directory.create_user(&user).await? {
            CreateOutcome::Created { sub } => Ok(Provisioned::Ready { password, sub }),
            CreateOutcome::AlreadyExists => match self
                .directory
                .rotate_if_never_used(&rec.username, &password)
                .await?
            {
                Rotation::Rotated { sub } => Ok(Provisioned::Ready { password, sub }),
                Rotation::Kept(kept) => {
                    match on_found_user(Effect::ProvisionUser, &Trigger::Requested, &kept) {
                        FoundUser::Fail(reason) => Ok(Provisioned::Unusable(reason)),
                        _ => Ok(Provisioned::Unusable(kept.reason())),
                    }
                }
                Rotation::Missing => Err(HandleError::Transient(DownstreamError::new(
                    crate::error::Service::Cognito,
                    "AdminGetUser",
                    crate::error::ErrorKind::Unavailable,
                    "user reported as existing, then not found; will retry",
                ))),
            },
        }
    }

    /// A fresh temporary password for an existing never-used user (re-creating a missing one);
    /// `Err(standing)` for a user the invite may not give a password to.
    async fn rotate(
        &self,
        rec: &Invite,
        profile: Option<&PoolProfile>,
    ) -> Result<Result<TemporaryPassword, UserStanding>, HandleError> {
        let fetched;
        let profile = match profile {
            Some(p) => p,
            None => {
                fetched = self.directory.pool_profile().await?;
                &fetched
            }
        };
        let password = generate(&profile.password_policy);
        match self
            .directory
            .rotate_if_never_used(&rec.username, &password)
            .await?
        {
            Rotation::Rotated { .. } => Ok(Ok(password)),
            Rotation::Kept(kept) => Ok(Err(kept)),
            Rotation::Missing => match self.provision(rec, Some(profile)).await? {
                Provisioned::Ready { password, .. } => Ok(Ok(password)),
                Provisioned::Unusable(_) => Err(HandleError::Transient(DownstreamError::new(
                    crate::error::Service::Cognito,
                    "AdminCreateUser",
                    crate::error::ErrorKind::Unavailable,
                    "user reported missing, then existing; will retry",
                ))),
            },
        }
    }

    async fn send(
        &self,
        kind: MailKind,
        rec: &Invite,
        password: Option<&TemporaryPassword>,
    ) -> Result<(), HandleError> {
        let mail = self
            .composer
            .compose(kind, rec, password, self.clock.now())
            .map_err(|m| HandleError::Rejected {
                code: "template_error".into(),
                message: m,
            })?;
        let message_id = self.mailer.send(&mail).await?;
        info!(invite_id = %rec.invite_id, kind = kind.as_str(), mail_message_id = %message_id, "email sent");
        Ok(())
    }

    async fn finish(
        &self,
        mut rec: Invite,
        from: InviteStatus,
        finish: Finish,
        req: &Request<'_>,
        now: OffsetDateTime,
    ) -> Result<Handled, Step> {
        let reason = finish
            .reason
            .clone()
            .or_else(|| req.reason.map(str::to_string));
        rec.status = finish.to;
        rec.reason = if finish.to.is_open() {
            None
        } else {
            reason.clone()
        };
        rec.lease = None;
        if finish.invitation_sent {
            rec.send_count += 1;
            rec.sent_at = Some(now);
        }
        if finish.sub.is_some() {
            rec.user_sub = finish.sub;
        }
        if finish.reminder_sent {
            rec.reminded_generation = Some(rec.generation);
        }
        if finish.to == InviteStatus::Accepted {
            rec.accepted_at = Some(now);
        }
        rec.push_history(history(
            now,
            Some(from),
            finish.to,
            req,
            reason,
            rec.generation,
        ));
        stamp(&mut rec, req.occurred_at);
        bump(&mut rec, now);
        if !finish.reminder_sent {
            self.queue_publication(&mut rec, finish.to, now);
        }
        self.save(&rec).await.map_err(|s| match s {
            Step::Conflict => Step::Failed(HandleError::Contended(rec.invite_id)),
            other => other,
        })?;
        self.flush_outbox(rec.invite_id).await;
        let outcome = match (from, finish.to) {
            _ if finish.reminder_sent => "reminded",
            (InviteStatus::Sent, InviteStatus::Sent) => "resent",
            (_, to) => to.as_str(),
        };
        info!(invite_id = %rec.invite_id, event_id = req.event_id, from = %from, to = %finish.to, generation = rec.generation, "invite transition");
        Ok(Handled {
            outcome,
            invite_id: Some(rec.invite_id),
            status: Some(finish.to),
            changed: true,
        })
    }

    /// A transition without side effects (a revoke that arrives before its request leaves a
    /// `revoked` tombstone): one conditional write.
    async fn transition_only(
        &self,
        id: InviteId,
        current: Option<Invite>,
        req: &Request<'_>,
        to: InviteStatus,
        now: OffsetDateTime,
    ) -> Result<Handled, Step> {
        let mut rec = match current {
            Some(rec) => rec,
            None => {
                let mut rec = self.new_record(id, req, now)?;
                rec.generation = 0;
                rec
            }
        };
        let from = if rec.version == 0 {
            None
        } else {
            Some(rec.status)
        };
        rec.status = to;
        rec.reason = req.reason.map(str::to_string);
        rec.push_history(history(
            now,
            from,
            to,
            req,
            rec.reason.clone(),
            rec.generation,
        ));
        stamp(&mut rec, req.occurred_at);
        bump(&mut rec, now);
        self.queue_publication(&mut rec, to, now);
        self.save(&rec).await?;
        self.flush_outbox(rec.invite_id).await;
        info!(invite_id = %rec.invite_id, event_id = req.event_id, to = %to, "invite transition without side effects");
        Ok(Handled {
            outcome: to.as_str(),
            invite_id: Some(rec.invite_id),
            status: Some(to),
            changed: true,
        })
    }

    /// Adds the lifecycle event for a transition to `to` to the record's outbox (written in the
    /// same conditional write as the transition, so a crash cannot lose it).
    fn queue_publication(&self, rec: &mut Invite, to: InviteStatus, now: OffsetDateTime) {
        if self.publisher.is_none() || to == InviteStatus::Pending {
            return;
        }
        rec.outbox.push(lifecycle_event(rec, to, now));
    }

    /// Publishes what the record's outbox holds and removes it; failures stay for the relay.
    pub async fn flush_outbox(&self, id: InviteId) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        for _ in 0..MAX_CONFLICT_RETRIES {
            let Ok(Some(mut rec)) = self.store.load(&id).await else {
                return;
            };
            if rec.outbox.is_empty() {
                return;
            }
            if rec
                .lease
                .as_ref()
                .is_some_and(|l| l.until > self.clock.now())
            {
                // Work is in flight: its final write would lose the race against ours, and it
                // flushes the outbox itself when it finishes.
                return;
            }
            let mut published = Vec::new();
            for event in &rec.outbox {
                match publisher.publish(event).await {
                    Ok(()) => published.push(event.event_id.clone()),
                    Err(e) => {
                        warn!(invite_id = %id, event_type = %event.event_type, error = %e, "lifecycle event not published yet; the relay will retry");
                        break;
                    }
                }
            }
            if published.is_empty() {
                return;
            }
            rec.outbox.retain(|e| !published.contains(&e.event_id));
            rec.version += 1;
            match self.store.save(&rec).await {
                Ok(()) => return,
                Err(StoreError::Conflict) => continue,
                Err(e) => {
                    warn!(invite_id = %id, error = %e, "could not clear the outbox; events may be published twice");
                    return;
                }
            }
        }
    }

    /// Publishes every outbox left behind by a crash or an outage; returns how many invites it
    /// looked at.
    pub async fn relay_unpublished(&self, limit: usize) -> Result<usize, HandleError> {
        if self.publisher.is_none() {
            return Ok(0);
        }
        let ids = self.store.with_unpublished(limit).await?;
        for id in &ids {
            self.flush_outbox(*id).await;
        }
        Ok(ids.len())
    }

    /// Gives up the lease after a transient failure so the retry need not wait for it to expire.
    async fn release(&self, mut rec: Invite) {
        rec.lease = None;
        bump(&mut rec, self.clock.now());
        if let Err(e) = self.store.save(&rec).await {
            warn!(invite_id = %rec.invite_id, error = %e, "could not release the lease; it expires by itself");
        }
    }

    async fn save(&self, rec: &Invite) -> Result<(), Step> {
        match self.store.save(rec).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => Err(Step::Conflict),
            Err(e) => Err(Step::Failed(e.into())),
        }
    }
}

enum Step {
    Conflict,
    Failed(HandleError),
}

impl From<HandleError> for Step {
    fn from(e: HandleError) -> Self {
        Step::Failed(e)
    }
}

enum Provisioned {
    Ready {
        password: TemporaryPassword,
        sub: Option<String>,
    },
    /// The user exists and the invite may not use it; the reason code says why.
    Unusable(String),
}

struct Finish {
    to: InviteStatus,
    reason: Option<String>,
    invitation_sent: bool,
    reminder_sent: bool,
    sub: Option<String>,
}

impl Finish {
    /// The invite ends `failed` with `reason`, nothing sent.
    fn failed(reason: String) -> Self {
        Finish {
            to: InviteStatus::Failed,
            reason: Some(reason),
            invitation_sent: false,
            reminder_sent: false,
            sub: None,
        }
    }
}

/// Whether a guarded Cognito operation failed in a way that may leave the user disabled.
fn held(e: &HandleError) -> bool {
    matches!(e, HandleError::Transient(d) if left_on_hold(d))
}

fn rejection(e: &HandleError) -> Option<String> {
    match e {
        HandleError::Rejected { code, .. } => Some(code.clone()),
        _ => None,
    }
}

/// Whether an event is older than the newest one already applied (out-of-order delivery).
/// Acceptance is a fact read from Cognito, never stale.
fn is_stale(
    current: Option<&Invite>,
    trigger: &Trigger,
    occurred_at: Option<OffsetDateTime>,
) -> bool {
    let (Some(rec), Some(at)) = (current, occurred_at) else {
        return false;
    };
    matches!(
        trigger,
        Trigger::Requested | Trigger::Resend | Trigger::Revoke | Trigger::Replayed
    ) && rec.last_occurred_at.is_some_and(|last| at < last)
}

/// Whether `req` is an operator's replay (`dlq replay`) of a request or resend that the invite has
/// already seen: then it is decided as [`Trigger::Replayed`], which re-opens only a `failed`
/// invite. A forged replay attribute can do no more than a new event id could (a new request
/// re-opens a `failed` invite too); revokes and acceptances are never turned into replays.
fn is_replay_of_seen(current: Option<&Invite>, trigger: &Trigger, req: &Request<'_>) -> bool {
    match (current, req.event_id, req.replay) {
        (Some(rec), Some(event_id), Some(_)) => {
            matches!(trigger, Trigger::Requested | Trigger::Resend) && rec.has_seen(event_id)
        }
        _ => false,
    }
}

/// Whether an internal trigger no longer applies to the record as it is now (it changed since the
/// caller looked): an invite whose expiry was extended by a resend is not expired, and an invite
/// already reminded in this generation is not reminded again. Checked on the freshly loaded
/// record, inside the conditional-write loop, so two cleanups cannot both act on stale reads.
fn moot(current: Option<&Invite>, trigger: &Trigger, now: OffsetDateTime) -> Option<&'static str> {
    let rec = current?;
    match trigger {
        Trigger::ExpiryReached if rec.status.is_open() && rec.expires_at > now => {
            Some("not_expired")
        }
        Trigger::ReminderDue
            if rec.status == InviteStatus::Sent
                && rec.reminded_generation == Some(rec.generation) =>
        {
            Some("already_reminded")
        }
        _ => None,
    }
}

fn stamp(rec: &mut Invite, occurred_at: Option<OffsetDateTime>) {
    if let Some(at) = occurred_at {
        rec.last_occurred_at = Some(rec.last_occurred_at.map_or(at, |last| last.max(at)));
    }
}

/// The outbound lifecycle event for a transition (contract in docs/lifecycle-events.md). Its id
/// is derived from the invite and the record version, so a re-publication carries the same id.
pub fn lifecycle_event(rec: &Invite, to: InviteStatus, now: OffsetDateTime) -> PendingPublication {
    let event_type = format!("invite.{}", to.as_str());
    let name = format!("{}/{}/{}", rec.invite_id, rec.version, event_type);
    let event_id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string();
    let rfc = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    };
    let body = serde_json::json!({
        "version": 1,
        "type": event_type,
        "id": event_id,
        "occurred_at": rfc(now),
        "data": {
            "invite_id": rec.invite_id.to_string(),
            "email": rec.email.as_str(),
            "user_pool_id": rec.user_pool_id,
            "status": to.as_str(),
            "reason": rec.reason,
            "generation": rec.generation,
            "send_count": rec.send_count,
            "expires_at": rfc(rec.expires_at),
            "sent_at": rec.sent_at.and_then(rfc),
            "accepted_at": rec.accepted_at.and_then(rfc),
            "external_id": rec.details.external_id,
            "source": rec.details.source,
            "user_sub": rec.user_sub,
        }
    });
    PendingPublication {
        event_id,
        event_type,
        body,
    }
}

fn days(n: u32) -> time::Duration {
    time::Duration::days(i64::from(n))
}

fn bump(rec: &mut Invite, now: OffsetDateTime) {
    rec.version += 1;
    rec.updated_at = now;
}

fn history(
    now: OffsetDateTime,
    from: Option<InviteStatus>,
    to: InviteStatus,
    req: &Request<'_>,
    reason: Option<String>,
    generation: u32,
) -> HistoryEntry {
    HistoryEntry {
        at: now,
        from,
        to,
        event_id: req.event_id.map(str::to_string),
        event_type: req.event_type.to_string(),
        reason,
        generation,
        replay: req.replay.cloned(),
    }
}
