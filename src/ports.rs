//! One small trait per external system, in domain terms. Adapters in `crate::adapters` implement
//! them on the AWS SDKs and lettre; `crate::adapters::memory` has in-memory fakes for tests and
//! the benchmark.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::domain::{EmailAddress, Invite, InviteId, InviteStatus, PoolProfile, TemporaryPassword};
use crate::error::DownstreamError;

// ---------------------------------------------------------------------------------------------
// The invite store (DynamoDB)

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The conditional write lost a race: reload and decide again.
    #[error("the invite changed underneath this write (version conflict)")]
    Conflict,
    #[error("stored invite {key} cannot be read: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Downstream(#[from] DownstreamError),
}

/// A page of results and the opaque cursor for the next one.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[async_trait]
pub trait InviteStore: Send + Sync {
    async fn load(&self, id: &InviteId) -> Result<Option<Invite>, StoreError>;

    /// Writes `invite` if the stored version is `invite.version - 1` (or, for version 1, if no
    /// record exists). Any other stored version is a [`StoreError::Conflict`].
    async fn save(&self, invite: &Invite) -> Result<(), StoreError>;

    /// Open invites whose `expires_at <= now`, oldest first, read through the sparse index.
    async fn open_expired(
        &self,
        now: OffsetDateTime,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<InviteId>, StoreError>;

    /// Invites with a status, most recently updated first.
    async fn list_by_status(
        &self,
        status: InviteStatus,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<Invite>, StoreError>;

    /// Invites with lifecycle events not yet published (the outbox), read through a sparse index.
    async fn with_unpublished(&self, limit: usize) -> Result<Vec<InviteId>, StoreError>;
}

// ---------------------------------------------------------------------------------------------
// The directory (Cognito)

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserStatus {
    /// Created by an admin, temporary password not yet changed: never used.
    ForceChangePassword,
    Confirmed,
    /// Anything else Cognito reports (`RESET_REQUIRED`, `UNCONFIRMED`, `EXTERNAL_PROVIDER`...).
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub status: UserStatus,
    pub enabled: bool,
    pub sub: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: &'a EmailAddress,
    pub attributes: &'a BTreeMap<String, String>,
    pub temporary_password: &'a TemporaryPassword,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created { sub: Option<String> },
    AlreadyExists,
}

#[async_trait]
pub trait Directory: Send + Sync {
    /// The pool's schema and password policy (adapters cache it).
    async fn pool_profile(&self) -> Result<PoolProfile, DownstreamError>;
    /// `AdminCreateUser` with `MessageAction=SUPPRESS` and `email_verified=true`.
    async fn create_user(&self, user: &NewUser<'_>) -> Result<CreateOutcome, DownstreamError>;
    async fn get_user(&self, username: &str) -> Result<Option<UserInfo>, DownstreamError>;
    /// `AdminSetUserPassword` with `Permanent=false`.
    async fn set_temporary_password(
        &self,
        username: &str,
        password: &TemporaryPassword,
    ) -> Result<(), DownstreamError>;
    /// `AdminDeleteUser`; a user that does not exist counts as deleted.
    async fn delete_user(&self, username: &str) -> Result<(), DownstreamError>;
    /// `AdminAddUserToGroup`; a missing group is a permanent error with code `group_not_found`.
    async fn add_user_to_group(&self, username: &str, group: &str) -> Result<(), DownstreamError>;
}

// ---------------------------------------------------------------------------------------------
// The mailer (SES v2 or SMTP)

/// A rendered email, ready for a transport. `Debug` shows neither body: they carry the password.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// `Name <address>` or a bare address.
    pub from: String,
    pub reply_to: Option<String>,
    pub to: EmailAddress,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Extra headers for tracing a mail back to its invite (`X-Invite-Id`).
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends `mail`; returns the transport's message id.
    async fn send(&self, mail: &OutgoingMail) -> Result<String, DownstreamError>;
}

// ---------------------------------------------------------------------------------------------
// The queue (SQS)

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
    /// `MessageGroupId` on FIFO queues.
    pub group_id: Option<String>,
    pub sent_at: Option<OffsetDateTime>,
    /// String message attributes, as sent.
    pub attributes: BTreeMap<String, String>,
}

/// Why a message goes to the dead-letter queue; becomes message attributes there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub reason_code: String,
    pub reason: String,
    pub attempts: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchFailure {
    /// Index into the slice that was passed in.
    pub index: usize,
    pub code: String,
    pub message: String,
    /// SQS says whether the failure was the sender's fault.
    pub sender_fault: bool,
}

#[async_trait]
pub trait Queue: Send + Sync {
    async fn receive(&self, max: u8, wait: Duration) -> Result<Vec<QueueMessage>, DownstreamError>;
    /// Deletes up to 10 messages in one call; returns the entries that failed.
    async fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, DownstreamError>;
    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), DownstreamError>;
    /// Sends a copy of `message` to the dead-letter queue with the reason as message attributes.
    /// The caller deletes the original afterwards.
    async fn dead_letter(
        &self,
        message: &QueueMessage,
        why: &DeadLetter,
    ) -> Result<(), DownstreamError>;
    fn is_fifo(&self) -> bool;

    /// Messages still on the queue, visible or not (waiting out a retry delay), when the queue
    /// can say; `--until-idle` keeps polling while this is above zero.
    async fn messages_left(&self) -> Result<Option<u64>, DownstreamError> {
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------------
// Lifecycle events out (an SQS queue HR and CRM systems read)

#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes one lifecycle event. At least once: consumers deduplicate by the event's `id`.
    async fn publish(
        &self,
        event: &crate::domain::invite::PendingPublication,
    ) -> Result<(), DownstreamError>;
}

// ---------------------------------------------------------------------------------------------
// Fleet-wide rate budgets (a counter per one-second window, shared by every worker on the table)

#[async_trait]
pub trait RateBudget: Send + Sync {
    /// Adds `want` to the tickets handed out so far in `window` (a unix second) of `budget`, in one
    /// atomic step, and returns the count *before* this call: this caller holds tickets
    /// `before..before + want` of the window. Callers decide which of them are within the limit.
    async fn take(&self, budget: &str, window: u64, want: u32) -> Result<u64, DownstreamError>;
}

// ---------------------------------------------------------------------------------------------
// Time

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}
