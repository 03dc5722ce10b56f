//! The *act* step of handling an event: runs the state machine's effects on Cognito and the
//! mailer for an invite whose record the service has claimed, and says what came of them.
//! Every effect is safe to repeat (see [`crate::app::handler`]).

use std::borrow::Cow;
use std::sync::Arc;

use tracing::{info, warn};

use super::compose::{Composer, MailKind};
use super::handle_error::HandleError;
use crate::domain::password::generate;
use crate::domain::record::Finish;
use crate::domain::state::{on_found_user, Effect, FoundUser, Trigger};
use crate::domain::{Invite, InviteStatus, PoolProfile, TemporaryPassword, UserStanding};
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::ports::{Clock, CreateOutcome, Directory, Mailer, NewUser, Removal, Rotation};

/// The systems the effects act on.
pub(super) struct Effects {
    directory: Arc<dyn Directory>,
    mailer: Arc<dyn Mailer>,
    composer: Arc<dyn Composer>,
    clock: Arc<dyn Clock>,
}

impl Effects {
    pub(super) fn new(
        directory: Arc<dyn Directory>,
        mailer: Arc<dyn Mailer>,
        composer: Arc<dyn Composer>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            directory,
            mailer,
            composer,
            clock,
        }
    }

    /// Runs `effects` in order for the claimed `rec`, aiming at `target`.
    pub(super) async fn run(
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
                    self.send_password(MailKind::Invitation, rec, password.as_ref())
                        .await?;
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
                Effect::AddToGroups => self.add_to_groups(rec).await?,
                Effect::SendWelcome => {
                    self.send(MailKind::Welcome, rec, None).await?;
                }
                Effect::SendReminder => {
                    self.send_password(MailKind::Reminder, rec, password.as_ref())
                        .await?;
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
        self.add_to_groups(rec).await?;
        self.send(MailKind::Welcome, rec, None).await?;
        Ok(Finish {
            to: InviteStatus::Accepted,
            reason: Some("found_confirmed".into()),
            invitation_sent: false,
            reminder_sent: false,
            sub: None,
        })
    }

    /// [`Effects::provision_once`]; if Cognito rejects the password, once more with the
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
        let profile = self.profile_or_read(profile).await?;
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
                    Service::Cognito,
                    "AdminGetUser",
                    ErrorKind::Unavailable,
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
        let profile = self.profile_or_read(profile).await?;
        let password = generate(&profile.password_policy);
        match self
            .directory
            .rotate_if_never_used(&rec.username, &password)
            .await?
        {
            Rotation::Rotated { .. } => Ok(Ok(password)),
            Rotation::Kept(kept) => Ok(Err(kept)),
            Rotation::Missing => match self.provision(rec, Some(&*profile)).await? {
                Provisioned::Ready { password, .. } => Ok(Ok(password)),
                Provisioned::Unusable(_) => Err(HandleError::Transient(DownstreamError::new(
                    Service::Cognito,
                    "AdminCreateUser",
                    ErrorKind::Unavailable,
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

    async fn add_to_groups(&self, rec: &Invite) -> Result<(), HandleError> {
        for group in &rec.details.groups {
            self.directory
                .add_user_to_group(&rec.username, group)
                .await?;
        }
        Ok(())
    }

    /// Sends an email that carries the temporary password the effects before it set.
    async fn send_password(
        &self,
        kind: MailKind,
        rec: &Invite,
        password: Option<&TemporaryPassword>,
    ) -> Result<(), HandleError> {
        let password =
            password.ok_or_else(|| HandleError::Corrupt("no password to send".into()))?;
        self.send(kind, rec, Some(password)).await
    }

    /// The pool profile the event's check already read, or a fresh read.
    async fn profile_or_read<'p>(
        &self,
        profile: Option<&'p PoolProfile>,
    ) -> Result<Cow<'p, PoolProfile>, HandleError> {
        match profile {
            Some(p) => Ok(Cow::Borrowed(p)),
            None => Ok(Cow::Owned(self.directory.pool_profile().await?)),
        }
    }
}

pub(super) enum Provisioned {
    Ready {
        password: TemporaryPassword,
        sub: Option<String>,
    },
    /// The user exists and the invite may not use it; the reason code says why.
    Unusable(String),
}
