//! One small trait per external system, in domain terms. Adapters in `crate::adapters` implement
//! them on the AWS SDKs and lettre; `crate::adapters::memory` has in-memory fakes for tests and
//! the benchmark.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
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

pub use crate::domain::standing::{UserStanding, UserStatus};

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

/// What [`Directory::delete_if_never_used`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The never-used user is gone (or never existed).
    Deleted,
    /// The user was used or is not the invite's; it is left exactly as it was found.
    Kept(UserStanding),
}

/// The operation name of [`Directory::enable_user`]'s errors.
pub const ENABLE_OPERATION: &str = "AdminEnableUser";

/// Whether an error of a guarded operation may have left the user disabled (its re-enable
/// failed): the caller leaves its lease on the record, run out, so the next attempt calls
/// [`Directory::lift_hold`].
pub fn left_on_hold(err: &DownstreamError) -> bool {
    err.operation == ENABLE_OPERATION
}

/// What [`Directory::rotate_if_never_used`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The never-used user has the new temporary password and is enabled.
    Rotated { sub: Option<String> },
    /// The user was used or is not the invite's; it is left exactly as it was found.
    Kept(UserStanding),
    /// No such user.
    Missing,
}

#[async_trait]
pub trait Directory: Send + Sync {
    /// The pool's schema and password policy (`ProfileCachingDirectory` keeps it for a bounded
    /// age; the adapters themselves describe the pool on every call).
    async fn pool_profile(&self) -> Result<PoolProfile, DownstreamError>;
    /// The profile as the pool has it now, not older than a second: read before a schema or
    /// policy rejection is dead-lettered, in case the pool changed since it was cached. Only a
    /// cache has anything to refresh.
    async fn refresh_pool_profile(&self) -> Result<PoolProfile, DownstreamError> {
        self.pool_profile().await
    }
    /// `AdminCreateUser` with `MessageAction=SUPPRESS` and `email_verified=true`.
    async fn create_user(&self, user: &NewUser<'_>) -> Result<CreateOutcome, DownstreamError>;
    async fn get_user(&self, username: &str) -> Result<Option<UserInfo>, DownstreamError>;
    /// `AdminSetUserPassword` with `Permanent=false`. Unconditional: the invite flow calls
    /// [`Directory::rotate_if_never_used`] instead.
    async fn set_temporary_password(
        &self,
        username: &str,
        password: &TemporaryPassword,
    ) -> Result<(), DownstreamError>;
    /// `AdminDeleteUser`; a user that does not exist counts as deleted. Unconditional: the
    /// invite flow calls [`Directory::delete_if_never_used`] instead.
    async fn delete_user(&self, username: &str) -> Result<(), DownstreamError>;
    /// `AdminDisableUser`: nobody can sign in (nor answer `NEW_PASSWORD_REQUIRED`) until enabled.
    async fn disable_user(&self, username: &str) -> Result<(), DownstreamError>;
    /// `AdminEnableUser`.
    async fn enable_user(&self, username: &str) -> Result<(), DownstreamError>;

    /// Deletes the user if, and only if, it was never used (`FORCE_CHANGE_PASSWORD`), without
    /// a window in which the person could register and then lose the account: the user is
    /// disabled, checked again, then deleted or re-enabled (see `crate::adapters::guarded`).
    async fn delete_if_never_used(&self, username: &str) -> Result<Removal, DownstreamError> {
        crate::adapters::guarded::delete_if_never_used(self, username).await
    }
    /// Gives a never-used user a fresh temporary password (`Permanent=false`) and leaves it
    /// enabled; a user who registered meanwhile keeps the password they chose (disable, check
    /// again, set, enable).
    async fn rotate_if_never_used(
        &self,
        username: &str,
        password: &TemporaryPassword,
    ) -> Result<Rotation, DownstreamError> {
        crate::adapters::guarded::rotate_if_never_used(self, username, password).await
    }
    /// Re-enables a never-used or registered user that an interrupted guarded operation may
    /// have left disabled (called when a claim finds a stale lease).
    async fn lift_hold(&self, username: &str) -> Result<(), DownstreamError> {
        crate::adapters::guarded::lift_hold(self, username).await
    }
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
    /// Message tags (SES `EmailTags`): the invite id, its generation and the kind of mail
    /// ([`crate::domain::feedback`]), so SES's sending events lead back to the invite without a
    /// scan. SMTP has no tags; the headers carry the same.
    pub tags: Vec<(String, String)>,
}

#[cfg(test)]
impl OutgoingMail {
    /// Some mail, for tests where what it says does not matter.
    pub fn example() -> Self {
        Self {
            from: "Acme <no-reply@example.com>".into(),
            reply_to: None,
            to: EmailAddress::parse("ada@example.com").expect("a valid address"),
            subject: "Welcome".into(),
            text: "hi".into(),
            html: "<p>hi</p>".into(),
            headers: Vec::new(),
            tags: Vec::new(),
        }
    }
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

/// Why an address is on the account's suppression list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuppressionReason {
    Bounce,
    Complaint,
}

impl SuppressionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::Bounce => "BOUNCE",
            SuppressionReason::Complaint => "COMPLAINT",
        }
    }
}

/// An address SES will not send to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppressed {
    pub reason: SuppressionReason,
    /// When SES last put or confirmed it on the list.
    pub since: Option<OffsetDateTime>,
}

/// The account-level suppression list (SES v2 `GetSuppressedDestination`), read before an invite
/// creates its user: a suppressed address is `undeliverable` at once. Over SMTP there is no such
/// list ([`NoSuppressionList`]).
#[async_trait]
pub trait SuppressionList: Send + Sync {
    /// `Some` if `email` is on the list.
    async fn suppressed(&self, email: &EmailAddress)
        -> Result<Option<Suppressed>, DownstreamError>;
}

/// No suppression list (SMTP, or `email.ses.check_suppression_list = false`): nothing is suppressed.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSuppressionList;

#[async_trait]
impl SuppressionList for NoSuppressionList {
    async fn suppressed(
        &self,
        _email: &EmailAddress,
    ) -> Result<Option<Suppressed>, DownstreamError> {
        Ok(None)
    }
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

/// Amazon SQS's limits, defined once for the queue port: the SQS adapter, the in-memory fakes,
/// the worker and the operator tools keep within them.
pub mod queue_limits {
    /// Most messages one receive returns, and most entries in one batch call (send, delete).
    pub const MAX_BATCH: usize = 10;
    /// Largest message body, and largest `SendMessageBatch` (all entries together): 256 KiB.
    pub const MAX_BATCH_BYTES: usize = 256 * 1024;
    /// Most message attributes on one message.
    pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;
    /// Longest FIFO `MessageDeduplicationId` or `MessageGroupId`, in characters.
    pub const MAX_FIFO_ID_CHARS: usize = 128;
    /// Longest visibility timeout (12 hours).
    pub const MAX_VISIBILITY_SECONDS: u64 = 43_200;
    /// Longest long-poll wait.
    pub const MAX_WAIT_SECONDS: u64 = 20;
}

/// A message to send with [`Queue::send_messages`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The caller's own reference for this entry (an event id, a line number). It is not sent:
    /// entries travel with their position as the batch entry id, and failures come back by
    /// index, so `entries[failure.index].id` names the one that failed.
    pub id: String,
    pub body: String,
    /// `MessageGroupId`, required on FIFO queues.
    pub group_id: Option<String>,
    /// `MessageDeduplicationId`, for FIFO queues without content-based deduplication.
    pub dedup_id: Option<String>,
    /// String message attributes (at most 10).
    pub attributes: BTreeMap<String, String>,
}

#[async_trait]
pub trait Queue: Send + Sync {
    async fn receive(&self, max: u8, wait: Duration) -> Result<Vec<QueueMessage>, DownstreamError>;
    /// Receives up to `max` (1 to 10) messages, long-polling up to `wait`, and keeps them
    /// invisible to other consumers for `hold` instead of the queue's visibility timeout.
    async fn receive_and_hold(
        &self,
        max: u8,
        wait: Duration,
        hold: Duration,
    ) -> Result<Vec<QueueMessage>, DownstreamError>;
    /// Sends messages (any number; batched by the implementation); returns the entries that
    /// failed, by index into `entries`.
    async fn send_messages(
        &self,
        entries: Vec<OutgoingMessage>,
    ) -> Result<Vec<BatchFailure>, DownstreamError>;
    /// Deletes messages (any number; batched by the implementation); returns the entries that
    /// failed, by index into `receipt_handles`.
    async fn delete_messages(
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

/// The queue at a URL, for the operator tools, which work on any queue (the inbound queue, its
/// DLQ, the queue a dead letter came from). Built by [`crate::wiring::queues`].
pub trait Queues: Send + Sync {
    fn at(&self, queue_url: &str) -> Arc<dyn Queue>;
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
