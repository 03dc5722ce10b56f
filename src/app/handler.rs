//! The invite service: applies one event to one invite. It **decodes** the event, loads the
//! record and **decides** with the pure state machine ([`crate::domain::state`]) and record rules
//! ([`crate::domain::record`]) what to do, **claims** the record with a lease (a conditional
//! write), **acts** ([`super::effects`]: Cognito, email), and **records** the outcome with another
//! conditional write, whose lifecycle event goes out through the outbox ([`super::outbox`]).
//! What a failure means for the message is [`HandleError::disposition`].
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

use super::compose::Composer;
use super::effects::Effects;
pub use super::handle_error::HandleError;
use super::outbox::Outbox;
use crate::domain::event::{decode, EventBody, InboundEvent, InviteRef};
use crate::domain::feedback::MailFeedback;
use crate::domain::record::{
    bump, expiry, feedback_not_for_now, held_by_complaint, history, is_replay_of_seen, is_stale,
    moot, new_record, record_finish, reopen, stamp, Cause, Finish, Opening,
};
use crate::domain::state::{decide, Effect, Outcome, Trigger};
use crate::domain::PoolProfile;
use crate::domain::RedirectHosts;
use crate::domain::{
    BounceDetail, EmailAddress, Invite, InviteDetails, InviteId, InviteStatus, Lease, Replay,
    UserStanding,
};
use crate::error::Disposition;
use crate::ports::{
    left_on_hold, Clock, Directory, InviteStore, Mailer, NoSuppressionList, Publisher, StoreError,
    SuppressionList,
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
pub(super) struct Request<'a> {
    pub(super) event_id: Option<&'a str>,
    pub(super) event_type: &'static str,
    pub(super) email: Option<&'a EmailAddress>,
    pub(super) details: Option<&'a InviteDetails>,
    pub(super) expires_in_days: Option<u32>,
    pub(super) reason: Option<&'a str>,
    pub(super) occurred_at: Option<OffsetDateTime>,
    /// The pool profile, when the event's check already read it (saves a second read).
    pub(super) profile: Option<&'a PoolProfile>,
    /// Set when an operator replayed the message (`dlq replay`).
    pub(super) replay: Option<&'a Replay>,
    /// Mail feedback: what SES said, and the generation of the email it is about.
    pub(super) feedback: Option<&'a MailFeedback>,
    /// What the invite keeps if it ends `undeliverable` (the bounce, the reject, the suppression).
    pub(super) bounce: Option<&'a BounceDetail>,
    /// Who did it, for an operator's command.
    pub(super) actor: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A request with nothing but its event id and type (internal triggers, feedback, operators).
    pub(super) fn bare(event_id: Option<&'a str>, event_type: &'static str) -> Self {
        Request {
            event_id,
            event_type,
            email: None,
            details: None,
            expires_in_days: None,
            reason: None,
            occurred_at: None,
            profile: None,
            replay: None,
            feedback: None,
            bounce: None,
            actor: None,
        }
    }

    /// The event behind this request, as the record's history remembers it.
    pub(super) fn cause(&self) -> Cause<'a> {
        Cause {
            event_id: self.event_id,
            event_type: self.event_type,
            replay: self.replay,
            actor: self.actor,
        }
    }
}

/// One attempt at applying a trigger to an invite (one turn of the conditional-write loop):
/// what every step of it needs to know.
pub(super) struct Attempt<'a> {
    pub(super) id: InviteId,
    pub(super) req: &'a Request<'a>,
    trigger: &'a Trigger,
    /// The lease token this handling claims the record with.
    token: &'a str,
    pub(super) now: OffsetDateTime,
}

/// What the state machine decided for the attempt: the status to reach, whether a new generation
/// opens, and the effects to run.
struct Plan<'a> {
    to: InviteStatus,
    new_generation: bool,
    effects: &'a [Effect],
}

pub struct InviteService {
    store: Arc<dyn InviteStore>,
    directory: Arc<dyn Directory>,
    /// The *act* step: the effects on Cognito and the mailer.
    effects: Effects,
    pub(super) clock: Arc<dyn Clock>,
    config: ServiceConfig,
    pub(super) outbox: Option<Outbox>,
    /// Read before an invite creates its user (SES's account-level suppression list).
    pub(super) suppression: Arc<dyn SuppressionList>,
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
            effects: Effects::new(directory.clone(), mailer, composer, clock.clone()),
            store,
            directory,
            clock,
            config,
            outbox: None,
            suppression: Arc::new(NoSuppressionList),
        }
    }

    /// Checks `list` before an invite (or a new generation of it) creates its user: a suppressed
    /// address ends `undeliverable` at once (docs/lifecycle.md, "Delivery awareness").
    pub fn with_suppression_list(mut self, list: Arc<dyn SuppressionList>) -> Self {
        self.suppression = list;
        self
    }

    /// Publishes lifecycle events (through the record's outbox) to `publisher`.
    pub fn with_publisher(mut self, publisher: Arc<dyn Publisher>) -> Self {
        self.outbox = Some(Outbox::new(
            self.store.clone(),
            publisher,
            self.clock.clone(),
            MAX_CONFLICT_RETRIES,
        ));
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
        self.invite_id_for(&event.body.target())
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
            occurred_at: event.occurred_at,
            replay,
            ..Request::bare(Some(event.id.as_str()), event.body.type_name())
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
                let request = Request {
                    reason: reason.as_deref(),
                    email: target.email(),
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
        let young = Duration::from_secs(YOUNG_LEASE_RETRY_SECONDS);
        if age < lease / 2 && remaining > young * 2 {
            young
        } else if age < lease / 2 {
            // Looking again after `young` would come back just before the lease ends and spend
            // one more attempt: wait it out instead.
            remaining
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
        self.apply(id, trigger, &Request::bare(None, event_type))
            .await
    }

    /// Applies `asked` to invite `id` in the conditional-write loop: every event, internal
    /// trigger, piece of mail feedback and operator command goes through here.
    pub(super) async fn apply(
        &self,
        id: InviteId,
        asked: Trigger,
        req: &Request<'_>,
    ) -> Result<Handled, HandleError> {
        let token = uuid::Uuid::new_v4().to_string();
        for _ in 0..MAX_CONFLICT_RETRIES {
            let now = self.clock.now();
            let current = self.store.load(&id).await?;
            let replayed = is_replay_of_seen(current.as_ref(), &asked, &req.cause());
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
            } else if let Some(reason) = feedback_not_for_now(
                current.as_ref(),
                &trigger,
                req.feedback.and_then(|f| f.generation),
            ) {
                Outcome::Note { reason }
            } else {
                decide(current.as_ref().map(|r| r.status), &trigger)
            };
            let outcome = held_by_complaint(current.as_ref(), &trigger, outcome);
            // Before a user is created: an address on the suppression list never gets one.
            let suppressed = self.suppressed(id, &outcome, current.as_ref(), req).await?;
            let closing;
            let (outcome, req) = match &suppressed {
                Some((closed, reason, detail)) => {
                    closing = Request {
                        reason: Some(reason),
                        bounce: Some(detail),
                        ..*req
                    };
                    (closed.clone(), &closing)
                }
                None => (outcome, req),
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
            let attempt = Attempt {
                id,
                req,
                trigger: &trigger,
                token: &token,
                now,
            };
            let step = match outcome {
                Outcome::Note { reason } | Outcome::Refused { reason } => {
                    self.note(&attempt, current, reason).await
                }
                Outcome::Remember(fact) => self.remember(&attempt, current, fact).await,
                Outcome::Transition {
                    to,
                    new_generation,
                    effects,
                } => {
                    let plan = Plan {
                        to,
                        new_generation,
                        effects: &effects,
                    };
                    self.work(&attempt, current, plan).await
                }
                Outcome::Resume { effects } => {
                    let plan = Plan {
                        to: InviteStatus::Sent,
                        new_generation: false,
                        effects: &effects,
                    };
                    self.work(&attempt, current, plan).await
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
    pub(super) async fn note(
        &self,
        at: &Attempt<'_>,
        current: Option<Invite>,
        reason: &'static str,
    ) -> Result<Handled, Step> {
        let (req, now) = (at.req, at.now);
        let Some(mut rec) = current else {
            info!(
                invite_id = %at.id,
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
                &req.cause(),
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

    /// Claims the record (a conditional write with a lease), runs the plan's effects, and writes
    /// the outcome.
    async fn work(
        &self,
        at: &Attempt<'_>,
        current: Option<Invite>,
        plan: Plan<'_>,
    ) -> Result<Handled, Step> {
        let (req, trigger, now) = (at.req, at.trigger, at.now);
        let opening = plan.effects.contains(&Effect::ProvisionUser);
        if current.is_none() && req.email.is_none() {
            return self.note(at, None, "unknown_invite").await;
        }
        if plan.effects.is_empty() && plan.new_generation && plan.to == InviteStatus::Undeliverable
        {
            // A suppressed address: the generation opens and closes in one write, nothing done.
            let rec = self.open_generation(at, current, true)?;
            let finish = Finish {
                to: plan.to,
                reason: None,
                invitation_sent: false,
                reminder_sent: false,
                sub: None,
            };
            return self
                .finish(rec, InviteStatus::Pending, finish, req, now)
                .await;
        }
        if plan.effects.is_empty() {
            return self.transition_only(at, current, plan.to).await;
        }
        let mut rec = self.open_generation(at, current, plan.new_generation)?;
        if *trigger == Trigger::Resend && rec.status == InviteStatus::Sent {
            rec.expires_at = self.expiry(req, now);
        }
        // A lease still on the record belongs to an attempt that was cut off (or could not give
        // back a user it had disabled): its guarded Cognito operation may have left the user on
        // hold, so the hold is lifted before anything else (see `crate::adapters::guarded`).
        let interrupted = rec.lease.is_some();
        // Claim the record before any side effect.
        rec.lease = Some(Lease {
            token: at.token.to_string(),
            until: now
                + time::Duration::try_from(self.config.lease).unwrap_or(time::Duration::minutes(2)),
        });
        bump(&mut rec, now);
        self.save(&rec).await?;

        let from = rec.status;
        let target = if opening { InviteStatus::Sent } else { plan.to };
        let result: Result<Finish, HandleError> = async {
            if interrupted {
                self.directory.lift_hold(&rec.username).await?;
            }
            self.effects
                .run(&rec, trigger, target, plan.effects, req.profile)
                .await
        }
        .await;
        match result {
            Ok(finish) => self.finish(rec, from, finish, req, now).await,
            Err(e) => {
                if e.leaves_user_on_hold() {
                    // A user this attempt disabled could not be re-enabled: the lease stays on
                    // the record as a marker, already run out, so the next attempt (this
                    // message's retry or any other event) claims at once and lifts the hold
                    // first. A live lease here would make every retry wait it out, each wait
                    // spending one of the message's attempts.
                    self.release(rec, true).await;
                    return Err(Step::Failed(e));
                }
                if let (true, Some(code)) = (opening, e.rejection_code()) {
                    // A permanent failure while opening: the invite ends `failed` (and its unused
                    // user is removed), and the event goes to the DLQ for an operator.
                    if let Err(removal) = self.directory.delete_if_never_used(&rec.username).await {
                        if left_on_hold(&removal) {
                            return Err(Step::Failed(removal.into()));
                        }
                    }
                    let finish = Finish::failed(code);
                    self.finish(rec, from, finish, req, self.clock.now())
                        .await?;
                } else {
                    self.release(rec, false).await;
                }
                Err(Step::Failed(e))
            }
        }
    }

    /// The record the attempt works on: a new or re-opened generation (`pending`, with its
    /// history line) or the current record as it is.
    fn open_generation(
        &self,
        at: &Attempt<'_>,
        current: Option<Invite>,
        new_generation: bool,
    ) -> Result<Invite, Step> {
        let (id, req, now) = (at.id, at.req, at.now);
        let mut rec = match (current, new_generation) {
            (None, true) => self.new_record(id, req, now)?,
            (Some(prev), true) => reopen(prev, &self.opening(req, now)),
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
                &req.cause(),
                None,
                rec.generation,
            ));
        }
        Ok(rec)
    }

    /// When an invite opened or resent by `req` at `now` expires.
    fn expiry(&self, req: &Request<'_>, now: OffsetDateTime) -> OffsetDateTime {
        expiry(now, req.expires_in_days, self.config.default_expiry_days)
    }

    /// What `req` brings to a new generation of an invite.
    fn opening<'r>(&self, req: &Request<'r>, now: OffsetDateTime) -> Opening<'r> {
        Opening {
            event_id: req.event_id,
            details: req.details,
            expires_at: self.expiry(req, now),
        }
    }

    /// The first generation of invite `id`, opened by `req` (which must name the email).
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
        let opening = self.opening(req, now);
        Ok(new_record(
            id,
            &self.config.user_pool_id,
            email,
            &opening,
            now,
        ))
    }

    async fn finish(
        &self,
        mut rec: Invite,
        from: InviteStatus,
        finish: Finish,
        req: &Request<'_>,
        now: OffsetDateTime,
    ) -> Result<Handled, Step> {
        let (to, reminder_sent) = (finish.to, finish.reminder_sent);
        record_finish(&mut rec, from, finish, &req.cause(), req.reason, now);
        if to == InviteStatus::Undeliverable {
            rec.mail.bounce = req.bounce.cloned();
        }
        stamp(&mut rec, req.occurred_at);
        bump(&mut rec, now);
        if !reminder_sent {
            self.queue_publication(&mut rec, to, now);
        }
        self.save(&rec).await.map_err(|s| match s {
            Step::Conflict => Step::Failed(HandleError::Contended(rec.invite_id)),
            other => other,
        })?;
        self.flush_outbox(rec.invite_id).await;
        let outcome = match (from, to) {
            _ if reminder_sent => "reminded",
            (InviteStatus::Sent, InviteStatus::Sent) => "resent",
            (_, to) => to.as_str(),
        };
        info!(invite_id = %rec.invite_id, event_id = req.event_id, from = %from, to = %to, generation = rec.generation, "invite transition");
        Ok(Handled {
            outcome,
            invite_id: Some(rec.invite_id),
            status: Some(to),
            changed: true,
        })
    }

    /// A transition without side effects (a revoke that arrives before its request leaves a
    /// `revoked` tombstone): one conditional write.
    async fn transition_only(
        &self,
        at: &Attempt<'_>,
        current: Option<Invite>,
        to: InviteStatus,
    ) -> Result<Handled, Step> {
        let (req, now) = (at.req, at.now);
        let mut rec = match current {
            Some(rec) => rec,
            None => {
                let mut rec = self.new_record(at.id, req, now)?;
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
            &req.cause(),
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

    /// Publishes what the record's outbox holds and removes it; failures stay for the relay.
    pub async fn flush_outbox(&self, id: InviteId) {
        if let Some(outbox) = &self.outbox {
            outbox.flush(id).await;
        }
    }

    /// Publishes every outbox left behind by a crash or an outage; returns how many invites it
    /// looked at.
    pub async fn relay_unpublished(&self, limit: usize) -> Result<usize, HandleError> {
        match &self.outbox {
            Some(outbox) => Ok(outbox.relay(limit).await?),
            None => Ok(0),
        }
    }

    /// Adds the lifecycle event for a transition to `to` to the record's outbox (written in the
    /// same conditional write as the transition, so a crash cannot lose it).
    fn queue_publication(&self, rec: &mut Invite, to: InviteStatus, now: OffsetDateTime) {
        if let Some(outbox) = &self.outbox {
            outbox.queue(rec, to, now);
        }
    }

    /// Gives up the lease after a transient failure so the retry need not wait for it to expire.
    /// With `user_on_hold` (a user this attempt disabled could not be re-enabled) the lease stays
    /// on the record, run out: nobody waits for it, and the next claim sees that the last attempt
    /// was interrupted and lifts the hold on its user first.
    async fn release(&self, mut rec: Invite, user_on_hold: bool) {
        let now = self.clock.now();
        match rec.lease.as_mut() {
            Some(lease) if user_on_hold => lease.until = now,
            _ => rec.lease = None,
        }
        bump(&mut rec, now);
        if let Err(e) = self.store.save(&rec).await {
            warn!(invite_id = %rec.invite_id, error = %e, "could not release the lease; it expires by itself");
        }
    }

    pub(super) async fn save(&self, rec: &Invite) -> Result<(), Step> {
        match self.store.save(rec).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => Err(Step::Conflict),
            Err(e) => Err(Step::Failed(e.into())),
        }
    }
}

pub(super) enum Step {
    Conflict,
    Failed(HandleError),
}

impl From<HandleError> for Step {
    fn from(e: HandleError) -> Self {
        Step::Failed(e)
    }
}
