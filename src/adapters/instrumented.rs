//! Instrumented decorators: each implements the same port as the adapter it wraps, times every
//! call, classifies its result ([`CallResult`]) and reports it to the [`Observer`], which counts
//! it for `/metrics` and feeds the service's circuit breaker. The `operation` label is the port
//! method (`create_user`, `send`, `save`...), a fixed set.
//!
//! The store decorator also counts invite status changes (`invite_transitions_total`): it
//! remembers the status of each invite it loaded or saved, and a save whose version follows
//! the remembered one with another status is a transition.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::domain::{Invite, InviteId, InviteStatus, PoolProfile, TemporaryPassword};
use crate::error::{DownstreamError, Service};
use crate::observe::{CallResult, Observer};
use crate::ports::{
    CreateOutcome, Directory, InviteStore, Mailer, NewUser, OutgoingMail, Page, StoreError,
    UserInfo,
};

/// Invites whose last status the store decorator remembers; past this it starts over (a miss
/// only means one transition is not counted).
const REMEMBERED_INVITES: usize = 50_000;

/// Times `call` and reports it as `operation` on `service`.
async fn observed<T, E>(
    observer: &Observer,
    service: Service,
    operation: &'static str,
    classify: impl FnOnce(&Result<T, E>) -> CallResult,
    feeds_circuit_on_success: bool,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = call.await;
    let class = classify(&result);
    observer.record_call(
        service,
        operation,
        class,
        started.elapsed(),
        feeds_circuit_on_success || result.is_err(),
    );
    result
}

fn downstream<T>(result: &Result<T, DownstreamError>) -> CallResult {
    match result {
        Ok(_) => CallResult::Ok,
        Err(e) => CallResult::of_error(e),
    }
}

fn store<T>(result: &Result<T, StoreError>) -> CallResult {
    match result {
        Ok(_) => CallResult::Ok,
        Err(StoreError::Conflict) => CallResult::Conflict,
        Err(StoreError::Corrupt { .. }) => CallResult::Corrupt,
        Err(StoreError::Downstream(e)) => CallResult::of_error(e),
    }
}

// ---------------------------------------------------------------------------------------------

/// A [`Directory`] (Cognito) that reports every call.
#[derive(Debug)]
pub struct InstrumentedDirectory<D> {
    inner: D,
    observer: Arc<Observer>,
}

impl<D: Directory> InstrumentedDirectory<D> {
    pub fn new(inner: D, observer: Arc<Observer>) -> Self {
        Self { inner, observer }
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }

    async fn observe<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, DownstreamError>>,
    ) -> Result<T, DownstreamError> {
        observed(
            &self.observer,
            Service::Cognito,
            operation,
            downstream,
            true,
            call,
        )
        .await
    }
}

#[async_trait]
impl<D: Directory> Directory for InstrumentedDirectory<D> {
    async fn pool_profile(&self) -> Result<PoolProfile, DownstreamError> {
        // The profile is cached in front of this (`ProfileCachingDirectory`) and read again
        // only now and then: a success says little about Cognito's health (a failure does).
        observed(
            &self.observer,
            Service::Cognito,
            "pool_profile",
            downstream,
            false,
            self.inner.pool_profile(),
        )
        .await
    }

    async fn create_user(&self, user: &NewUser<'_>) -> Result<CreateOutcome, DownstreamError> {
        self.observe("create_user", self.inner.create_user(user))
            .await
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserInfo>, DownstreamError> {
        self.observe("get_user", self.inner.get_user(username))
            .await
    }

    async fn set_temporary_password(
        &self,
        username: &str,
        password: &TemporaryPassword,
    ) -> Result<(), DownstreamError> {
        self.observe(
            "set_temporary_password",
            self.inner.set_temporary_password(username, password),
        )
        .await
    }

    async fn delete_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.observe("delete_user", self.inner.delete_user(username))
            .await
    }

    async fn add_user_to_group(&self, username: &str, group: &str) -> Result<(), DownstreamError> {
        self.observe(
            "add_user_to_group",
            self.inner.add_user_to_group(username, group),
        )
        .await
    }

    async fn disable_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.observe("disable_user", self.inner.disable_user(username))
            .await
    }

    async fn enable_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.observe("enable_user", self.inner.enable_user(username))
            .await
    }
    // The guarded operations run their default bodies over the calls above, so each Cognito
    // call in them is timed and counted on its own.
}

// ---------------------------------------------------------------------------------------------

/// A [`Mailer`] (SES or SMTP, named by `service`) that reports every send.
#[derive(Debug)]
pub struct InstrumentedMailer<M> {
    inner: M,
    service: Service,
    observer: Arc<Observer>,
}

impl<M: Mailer> InstrumentedMailer<M> {
    pub fn new(inner: M, service: Service, observer: Arc<Observer>) -> Self {
        Self {
            inner,
            service,
            observer,
        }
    }

    pub fn inner(&self) -> &M {
        &self.inner
    }
}

#[async_trait]
impl<M: Mailer> Mailer for InstrumentedMailer<M> {
    async fn send(&self, mail: &OutgoingMail) -> Result<String, DownstreamError> {
        observed(
            &self.observer,
            self.service,
            "send",
            downstream,
            true,
            self.inner.send(mail),
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------------

/// An [`InviteStore`] (DynamoDB) that reports every call and counts status changes.
pub struct InstrumentedStore {
    inner: Arc<dyn InviteStore>,
    observer: Arc<Observer>,
    /// The last (version, status) seen per invite.
    seen: Mutex<HashMap<InviteId, (u64, InviteStatus)>>,
}

impl std::fmt::Debug for InstrumentedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstrumentedStore").finish_non_exhaustive()
    }
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn InviteStore>, observer: Arc<Observer>) -> Self {
        Self {
            inner,
            observer,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<InviteId, (u64, InviteStatus)>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, invite: &Invite) {
        let mut seen = self.seen();
        if seen.len() >= REMEMBERED_INVITES && !seen.contains_key(&invite.invite_id) {
            seen.clear();
        }
        seen.insert(invite.invite_id, (invite.version, invite.status));
    }

    /// After a successful save: a new record, or a status other than the one of the version
    /// this one follows, is a transition.
    fn count_transition(&self, invite: &Invite) {
        let before = self.seen().get(&invite.invite_id).copied();
        let changed = match before {
            None => invite.version == 1,
            Some((version, status)) => version + 1 == invite.version && status != invite.status,
        };
        if changed {
            self.observer.record_transition(invite.status.as_str());
        }
        self.remember(invite);
    }
}

#[async_trait]
impl InviteStore for InstrumentedStore {
    async fn load(&self, id: &InviteId) -> Result<Option<Invite>, StoreError> {
        let loaded = observed(
            &self.observer,
            Service::DynamoDb,
            "load",
            store,
            true,
            self.inner.load(id),
        )
        .await;
        if let Ok(Some(invite)) = &loaded {
            self.remember(invite);
        }
        loaded
    }

    async fn save(&self, invite: &Invite) -> Result<(), StoreError> {
        let saved = observed(
            &self.observer,
            Service::DynamoDb,
            "save",
            store,
            true,
            self.inner.save(invite),
        )
        .await;
        if saved.is_ok() {
            self.count_transition(invite);
        }
        saved
    }

    async fn open_expired(
        &self,
        now: OffsetDateTime,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<InviteId>, StoreError> {
        observed(
            &self.observer,
            Service::DynamoDb,
            "open_expired",
            store,
            true,
            self.inner.open_expired(now, limit, cursor),
        )
        .await
    }

    async fn list_by_status(
        &self,
        status: InviteStatus,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<Invite>, StoreError> {
        observed(
            &self.observer,
            Service::DynamoDb,
            "list_by_status",
            store,
            true,
            self.inner.list_by_status(status, limit, cursor),
        )
        .await
    }

    async fn with_unpublished(&self, limit: usize) -> Result<Vec<InviteId>, StoreError> {
        observed(
            &self.observer,
            Service::DynamoDb,
            "with_unpublished",
            store,
            true,
            self.inner.with_unpublished(limit),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;
    use crate::adapters::memory::{MemoryDirectory, MemoryMailer, MemoryStore};
    use crate::domain::pool::tests::reference_pool;
    use crate::domain::EmailAddress;
    use crate::error::ErrorKind;
    use crate::observe::{CircuitPolicy, CircuitState};

    fn observer() -> Arc<Observer> {
        Arc::new(Observer::new(
            CircuitPolicy {
                failure_threshold: 3,
                open_for: Duration::from_secs(30),
                max_open_for: Duration::from_secs(300),
            },
            &[Service::Cognito, Service::Ses, Service::DynamoDb],
        ))
    }

    fn calls(o: &Observer, service: Service, op: &'static str, result: CallResult) -> u64 {
        o.downstream()
            .calls()
            .get(&(service, op, result))
            .copied()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn directory_calls_are_classified_and_feed_the_circuit() {
        let o = observer();
        let dir = InstrumentedDirectory::new(MemoryDirectory::new(reference_pool()), o.clone());
        dir.inner()
            .faults
            .fail_next("AdminGetUser", 1, ErrorKind::Throttled);
        dir.inner()
            .faults
            .fail_next("AdminGetUser", 1, ErrorKind::Timeout);
        dir.inner()
            .faults
            .fail_next("AdminGetUser", 1, ErrorKind::Rejected("nope".into()));
        dir.inner()
            .faults
            .fail_next("AdminGetUser", 2, ErrorKind::Unavailable);
        for _ in 0..6 {
            let _ = dir.get_user("ada@example.com").await;
        }
        assert_eq!(
            calls(&o, Service::Cognito, "get_user", CallResult::Throttled),
            1
        );
        assert_eq!(
            calls(&o, Service::Cognito, "get_user", CallResult::Timeout),
            1
        );
        assert_eq!(
            calls(&o, Service::Cognito, "get_user", CallResult::Rejected),
            1
        );
        assert_eq!(
            calls(&o, Service::Cognito, "get_user", CallResult::Unavailable),
            2
        );
        assert_eq!(calls(&o, Service::Cognito, "get_user", CallResult::Ok), 1);
        // Throttled, timeout, then a rejection (an answer) reset the count; two unavailable
        // are below the threshold, and the last success closed it anyway.
        assert_eq!(o.circuits().state(Service::Cognito), CircuitState::Closed);

        dir.inner()
            .faults
            .fail_next("AdminDeleteUser", 3, ErrorKind::Unavailable);
        for _ in 0..3 {
            assert!(dir.delete_user("ada@example.com").await.is_err());
        }
        assert!(matches!(
            o.circuits().state(Service::Cognito),
            CircuitState::Open { .. }
        ));
        assert_eq!(o.circuits().state(Service::Ses), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_pool_profile_does_not_close_a_circuit() {
        let o = observer();
        let dir = InstrumentedDirectory::new(MemoryDirectory::new(reference_pool()), o.clone());
        dir.inner()
            .faults
            .fail_next("AdminCreateUser", 3, ErrorKind::Unavailable);
        let email = EmailAddress::parse("ada@example.com").unwrap();
        let attributes = BTreeMap::new();
        let password = TemporaryPassword::from_known("Xx1!xxxxxxxx");
        let user = NewUser {
            username: "ada@example.com",
            email: &email,
            attributes: &attributes,
            temporary_password: &password,
        };
        for _ in 0..3 {
            dir.pool_profile().await.unwrap();
            assert!(dir.create_user(&user).await.is_err());
        }
        assert!(o.circuits().state(Service::Cognito).is_tripped());
        assert_eq!(
            calls(&o, Service::Cognito, "pool_profile", CallResult::Ok),
            3
        );
        assert_eq!(
            calls(&o, Service::Cognito, "create_user", CallResult::Unavailable),
            3
        );
    }

    #[tokio::test(start_paused = true)]
    async fn mail_sends_are_timed_per_service() {
        let o = observer();
        let mailer = InstrumentedMailer::new(MemoryMailer::new(), Service::Smtp, o.clone());
        mailer.inner().faults.set_latency(Duration::from_millis(40));
        mailer.send(&OutgoingMail::example()).await.unwrap();
        mailer
            .inner()
            .faults
            .fail_next("SendEmail", 1, ErrorKind::Throttled);
        assert!(mailer.send(&OutgoingMail::example()).await.is_err());
        assert_eq!(calls(&o, Service::Smtp, "send", CallResult::Ok), 1);
        assert_eq!(
            o.downstream()
                .calls_of(Service::Smtp, CallResult::Throttled),
            1
        );
        let text = crate::observe::metrics::render(&crate::observe::metrics::MetricsSources {
            stats: &crate::worker::WorkerStats::default(),
            downstream: o.downstream(),
            circuits: o.circuits(),
            version: "t",
            seconds_since_progress: 0.0,
        });
        assert!(
            text.contains(
                "invite_worker_downstream_call_duration_seconds_bucket{le=\"0.05\",service=\"smtp\",operation=\"send\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "invite_worker_downstream_call_duration_seconds_bucket{le=\"0.025\",service=\"smtp\",operation=\"send\"} 0\n"
            ),
            "{text}"
        );
    }

    fn invite(version: u64, status: InviteStatus) -> Invite {
        let email = EmailAddress::parse("ada@example.com").unwrap();
        let now = datetime!(2026-11-26 12:00 UTC);
        Invite {
            invite_id: InviteId::for_email("pool", &email),
            user_pool_id: "pool".into(),
            username: email.as_str().into(),
            email,
            status,
            reason: None,
            generation: 1,
            opened_by_event: "e1".into(),
            created_at: now,
            updated_at: now,
            expires_at: now + time::Duration::days(7),
            sent_at: None,
            accepted_at: None,
            send_count: 0,
            user_sub: None,
            details: Default::default(),
            history: vec![],
            version,
            lease: None,
            outbox: vec![],
            reminded_generation: None,
            last_occurred_at: None,
            mail: Default::default(),
        }
    }

    #[tokio::test]
    async fn store_counts_status_changes_and_conflicts() {
        let o = observer();
        let memory = Arc::new(MemoryStore::new());
        let s = InstrumentedStore::new(memory.clone(), o.clone());
        s.save(&invite(1, InviteStatus::Pending)).await.unwrap();
        s.save(&invite(2, InviteStatus::Sent)).await.unwrap();
        // Same status (an outbox flush, a released lease): no transition.
        s.save(&invite(3, InviteStatus::Sent)).await.unwrap();
        // A lost race: counted as a conflict, not a transition.
        assert!(matches!(
            s.save(&invite(3, InviteStatus::Accepted)).await,
            Err(StoreError::Conflict)
        ));
        let id = invite(1, InviteStatus::Sent).invite_id;
        // Another process moved it on; a fresh load teaches the decorator the new version.
        memory.save(&invite(4, InviteStatus::Sent)).await.unwrap();
        s.load(&id).await.unwrap();
        s.save(&invite(5, InviteStatus::Accepted)).await.unwrap();
        let transitions = o.downstream().transitions();
        assert_eq!(transitions.get("pending"), Some(&1));
        assert_eq!(transitions.get("sent"), Some(&1));
        assert_eq!(transitions.get("accepted"), Some(&1));
        assert_eq!(calls(&o, Service::DynamoDb, "save", CallResult::Ok), 4);
        assert_eq!(
            calls(&o, Service::DynamoDb, "save", CallResult::Conflict),
            1
        );
        assert_eq!(calls(&o, Service::DynamoDb, "load", CallResult::Ok), 1);
        assert_eq!(o.circuits().state(Service::DynamoDb), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn store_outages_open_the_dynamodb_circuit() {
        let o = observer();
        let memory = Arc::new(MemoryStore::new());
        memory
            .faults
            .fail_next("GetItem", 3, ErrorKind::Unavailable);
        let s = InstrumentedStore::new(memory, o.clone());
        let id = invite(1, InviteStatus::Sent).invite_id;
        for _ in 0..3 {
            assert!(s.load(&id).await.is_err());
        }
        assert!(o.circuits().state(Service::DynamoDb).is_tripped());
        assert_eq!(
            calls(&o, Service::DynamoDb, "load", CallResult::Unavailable),
            3
        );
    }
}
