//! Rate-limited decorators: each implements the same port as the adapter it wraps, waiting for
//! its limiter before every call, so the process (or, with a [`FleetLimiter`], the whole fleet)
//! stays under a service's quota however many messages are in flight.
//!
//! A throttled call is tried again through the limiter, up to [`THROTTLE_ATTEMPTS`] times in all,
//! and each throttling answer is reported to a fleet limiter (which slows this worker down).
//! The SDK clients must not retry throttling themselves ([`crate::adapters::no_throttle_retry`]):
//! such retries would bypass the budget and hide the signal.
//!
//! Inside a worker's handler a wait is bounded by the handler's wait deadline
//! ([`crate::ratelimit::wait_limit`]): a slot that would come later is not waited for; the call
//! fails, uncalled, with a transient error carrying the expected wait as `retry_after`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::config::{CognitoSettings, EmailSettings};
use crate::domain::{PoolProfile, TemporaryPassword};
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::ports::{
    CreateOutcome, Directory, Mailer, NewUser, OutgoingMail, RateBudget, Removal, Rotation,
    UserInfo,
};
use crate::ratelimit::fleet_budget::{FleetLimiter, Outcome, Permit};
use crate::ratelimit::wait_limit::{self, slots_to_time, Backlog};
use crate::ratelimit::TokenBucket;

/// Calls in all (the first and the retries) when the answer is a throttling error.
pub const THROTTLE_ATTEMPTS: u32 = 3;
/// The fleet budget of `AdminCreateUser` calls.
pub const BUDGET_COGNITO_CREATE: &str = "cognito-create";
/// The fleet budget of emails sent.
pub const BUDGET_EMAIL_SEND: &str = "email-send";

/// Calls at most made by `delete_if_never_used`: get, disable, get, delete or enable.
const DELETE_CALLS: u32 = 4;
/// Calls at most made by `rotate_if_never_used`: get, disable, get, set password, enable.
const ROTATE_CALLS: u32 = 5;
/// Calls at most made by `lift_hold`: get, enable.
const LIFT_CALLS: u32 = 2;

/// What a decorator waits for before a call: this process's token bucket, or a share of the
/// fleet's budget.
///
/// Inside a handler (a task with a wait deadline, [`wait_limit::with_wait_deadline`]) a call
/// whose slot would come after the deadline is not made: it fails at once, or when the deadline
/// comes, with a transient [`ErrorKind::Throttled`] error ("rate limit: next ... slot in N s")
/// that carries the expected wait as its `retry_after`.
#[derive(Debug)]
pub enum Limiter {
    Local(TokenBucket),
    Fleet(FleetLimiter),
}

impl From<TokenBucket> for Limiter {
    fn from(bucket: TokenBucket) -> Self {
        Limiter::Local(bucket)
    }
}

impl From<FleetLimiter> for Limiter {
    fn from(limiter: FleetLimiter) -> Self {
        Limiter::Fleet(limiter)
    }
}

impl Backlog for Limiter {
    fn name(&self) -> &str {
        match self {
            Limiter::Local(bucket) => Backlog::name(bucket),
            Limiter::Fleet(fleet) => Backlog::name(fleet),
        }
    }

    fn rate(&self) -> f64 {
        match self {
            Limiter::Local(bucket) => bucket.rate(),
            Limiter::Fleet(fleet) => fleet.own_rate(),
        }
    }

    fn waiting(&self) -> usize {
        match self {
            Limiter::Local(bucket) => Backlog::waiting(bucket),
            Limiter::Fleet(fleet) => Backlog::waiting(fleet),
        }
    }
}

/// How a call went, as a fleet limiter hears it: throttling slows this worker down.
fn outcome_of<T>(result: &Result<T, DownstreamError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(e) if e.is_throttle() => Outcome::Throttled,
        Err(_) => Outcome::Other,
    }
}

/// Where a limited call goes, for the error a limiter gives up with.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub service: Service,
    pub operation: &'static str,
}

impl Limiter {
    /// Runs `call` under the limiter, again after a throttling answer (up to
    /// [`THROTTLE_ATTEMPTS`] calls), telling a fleet limiter how each call went.
    pub async fn run<T, F, Fut>(&self, what: Call, mut call: F) -> Result<T, DownstreamError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DownstreamError>>,
    {
        let mut attempt = 1;
        loop {
            let permit = self.admit(1, what).await?.pop().flatten();
            let result = call().await;
            let outcome = outcome_of(&result);
            if let (Limiter::Fleet(fleet), Some(permit)) = (self, permit) {
                fleet.record(permit, outcome);
            }
            if outcome == Outcome::Throttled && attempt < THROTTLE_ATTEMPTS {
                attempt += 1;
                continue;
            }
            return result;
        }
    }

    /// Runs `call`, a compound operation of up to `calls` calls that must run back to back,
    /// after taking all its tokens (or fleet permits) first: a wait between its check and its
    /// act would widen the window it exists to close. Not retried here: the operation handles
    /// its own failures.
    pub async fn run_whole<T, F, Fut>(
        &self,
        calls: u32,
        what: Call,
        call: F,
    ) -> Result<T, DownstreamError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, DownstreamError>>,
    {
        let permits = self.admit(calls, what).await?;
        let result = call().await;
        if let Limiter::Fleet(fleet) = self {
            let outcome = outcome_of(&result);
            for permit in permits.into_iter().flatten() {
                fleet.record(permit, outcome);
            }
        }
        result
    }

    /// Waits for `calls` tokens (or fleet permits), unless the task's wait deadline comes
    /// first: then, or at once if the expected wait already ends past it, it gives up. The
    /// deadline bounds waiting for others, not a handler slowed by its other calls: the next
    /// slot (one interval at the current rate) is always waited for.
    async fn admit(&self, calls: u32, what: Call) -> Result<Vec<Option<Permit>>, DownstreamError> {
        let Some(deadline) = wait_limit::wait_deadline() else {
            return Ok(self.take(calls).await);
        };
        let deadline = deadline.max(Instant::now() + slots_to_time(calls as usize, self.rate()));
        let expected = self.expected_wait(calls);
        if Instant::now() + expected > deadline {
            return Err(self.gave_up(what, expected));
        }
        match tokio::time::timeout_at(deadline, self.take(calls)).await {
            Ok(permits) => Ok(permits),
            Err(_) => Err(self.gave_up(what, self.expected_wait(calls))),
        }
    }

    async fn take(&self, calls: u32) -> Vec<Option<Permit>> {
        let mut permits = Vec::new();
        for _ in 0..calls {
            permits.push(match self {
                Limiter::Local(bucket) => {
                    bucket.acquire().await;
                    None
                }
                Limiter::Fleet(fleet) => Some(fleet.acquire().await),
            });
        }
        permits
    }

    /// How long `calls` more slots take behind the callers already waiting (the first slot
    /// counted as free: a caller that finds nobody waiting usually goes at once).
    fn expected_wait(&self, calls: u32) -> Duration {
        slots_to_time(self.waiting() + calls.max(1) as usize - 1, self.rate())
    }

    /// The error a call gets when its slot would come too late for its handler.
    fn gave_up(&self, what: Call, wait: Duration) -> DownstreamError {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let rate = self.rate();
        DownstreamError::new(
            what.service,
            what.operation,
            ErrorKind::Throttled,
            format!(
                "rate limit: next {} slot in {seconds} s (this worker's rate {rate:.2}/s), later than this handler may wait; not called, retry then",
                Backlog::name(self)
            ),
        )
        .with_retry_after(Duration::from_secs(seconds))
    }
}

/// A [`Directory`] behind two limiters: `create` for `create_user` (Cognito's account-wide
/// UserCreation category) and `read` for every other call.
#[derive(Debug)]
pub struct RateLimitedDirectory<D> {
    inner: D,
    create: Arc<Limiter>,
    read: Arc<Limiter>,
}

impl<D: Directory> RateLimitedDirectory<D> {
    pub fn new(inner: D, create: impl Into<Limiter>, read: impl Into<Limiter>) -> Self {
        Self {
            inner,
            create: Arc::new(create.into()),
            read: Arc::new(read.into()),
        }
    }

    /// Its limiters (create, read), for the worker's back-pressure.
    pub fn limiters(&self) -> Vec<Arc<Limiter>> {
        vec![self.create.clone(), self.read.clone()]
    }

    /// From `[cognito]`: creates draw on the fleet's budget `cognito-create` of
    /// `create_rate_per_second - reserve_rate_per_second`; the other calls share this process's
    /// token bucket of `read_rate_per_second` (burst: one second's worth).
    pub fn from_settings(
        inner: D,
        settings: &CognitoSettings,
        budget: Arc<dyn RateBudget>,
    ) -> Self {
        let read_burst = settings
            .read_rate_per_second
            .ceil()
            .clamp(1.0, f64::from(u32::MAX)) as u32;
        Self::new(
            inner,
            FleetLimiter::new(BUDGET_COGNITO_CREATE, budget, settings.fleet_create_rate()),
            TokenBucket::new(settings.read_rate_per_second, read_burst).named("cognito-read"),
        )
    }

    /// The wrapped directory.
    pub fn inner(&self) -> &D {
        &self.inner
    }
}

fn cognito(operation: &'static str) -> Call {
    Call {
        service: Service::Cognito,
        operation,
    }
}

#[async_trait]
impl<D: Directory> Directory for RateLimitedDirectory<D> {
    async fn pool_profile(&self) -> Result<PoolProfile, DownstreamError> {
        self.read
            .run(cognito("pool_profile"), || self.inner.pool_profile())
            .await
    }

    async fn create_user(&self, user: &NewUser<'_>) -> Result<CreateOutcome, DownstreamError> {
        self.create
            .run(cognito("create_user"), || self.inner.create_user(user))
            .await
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserInfo>, DownstreamError> {
        self.read
            .run(cognito("get_user"), || self.inner.get_user(username))
            .await
    }

    async fn set_temporary_password(
        &self,
        username: &str,
        password: &TemporaryPassword,
    ) -> Result<(), DownstreamError> {
        self.read
            .run(cognito("set_temporary_password"), || {
                self.inner.set_temporary_password(username, password)
            })
            .await
    }

    async fn delete_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.read
            .run(cognito("delete_user"), || self.inner.delete_user(username))
            .await
    }

    async fn add_user_to_group(&self, username: &str, group: &str) -> Result<(), DownstreamError> {
        self.read
            .run(cognito("add_user_to_group"), || {
                self.inner.add_user_to_group(username, group)
            })
            .await
    }

    async fn disable_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.read
            .run(cognito("disable_user"), || {
                self.inner.disable_user(username)
            })
            .await
    }

    async fn enable_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.read
            .run(cognito("enable_user"), || self.inner.enable_user(username))
            .await
    }

    // The guarded operations take every token they may need first, so that their calls run back
    // to back: a wait for a token between the check and the act would widen the window they
    // exist to close.

    async fn delete_if_never_used(&self, username: &str) -> Result<Removal, DownstreamError> {
        self.read
            .run_whole(DELETE_CALLS, cognito("delete_if_never_used"), || {
                self.inner.delete_if_never_used(username)
            })
            .await
    }

    async fn rotate_if_never_used(
        &self,
        username: &str,
        password: &TemporaryPassword,
    ) -> Result<Rotation, DownstreamError> {
        self.read
            .run_whole(ROTATE_CALLS, cognito("rotate_if_never_used"), || {
                self.inner.rotate_if_never_used(username, password)
            })
            .await
    }

    async fn lift_hold(&self, username: &str) -> Result<(), DownstreamError> {
        self.read
            .run_whole(LIFT_CALLS, cognito("lift_hold"), || {
                self.inner.lift_hold(username)
            })
            .await
    }
}

/// A [`Mailer`] behind one limiter (SES's sending rate, or an SMTP relay's).
#[derive(Debug)]
pub struct RateLimitedMailer<M> {
    inner: M,
    limiter: Arc<Limiter>,
    service: Service,
}

impl<M: Mailer> RateLimitedMailer<M> {
    /// A mailer sending through SES (the service its errors name; see [`Self::on_service`]).
    pub fn new(inner: M, limiter: impl Into<Limiter>) -> Self {
        Self {
            inner,
            limiter: Arc::new(limiter.into()),
            service: Service::Ses,
        }
    }

    /// The same mailer, naming `service` (SES or SMTP) in the errors its limiter gives up with.
    pub fn on_service(mut self, service: Service) -> Self {
        self.service = service;
        self
    }

    /// Its limiter, for the worker's back-pressure.
    pub fn limiters(&self) -> Vec<Arc<Limiter>> {
        vec![self.limiter.clone()]
    }

    /// From `[email]`: sends draw on the fleet's budget `email-send` of `send_rate_per_second`.
    pub fn from_settings(inner: M, settings: &EmailSettings, budget: Arc<dyn RateBudget>) -> Self {
        let service = match settings.transport {
            crate::config::Transport::Ses => Service::Ses,
            crate::config::Transport::Smtp => Service::Smtp,
        };
        Self::new(
            inner,
            FleetLimiter::new(BUDGET_EMAIL_SEND, budget, settings.send_rate_per_second),
        )
        .on_service(service)
    }

    /// The wrapped mailer.
    pub fn inner(&self) -> &M {
        &self.inner
    }
}

/// A mailer behind rate limiters it can name (for the worker's back-pressure), whatever its
/// transport.
pub trait LimitedMailer: Send + Sync {
    fn limiters(&self) -> Vec<Arc<Limiter>>;
    /// The same mailer as the port.
    fn into_mailer(self: Arc<Self>) -> Arc<dyn Mailer>;
}

impl<M: Mailer + 'static> LimitedMailer for RateLimitedMailer<M> {
    fn limiters(&self) -> Vec<Arc<Limiter>> {
        RateLimitedMailer::limiters(self)
    }

    fn into_mailer(self: Arc<Self>) -> Arc<dyn Mailer> {
        self
    }
}

#[async_trait]
impl<M: Mailer> Mailer for RateLimitedMailer<M> {
    async fn send(&self, mail: &OutgoingMail) -> Result<String, DownstreamError> {
        let what = Call {
            service: self.service,
            operation: "send",
        };
        self.limiter.run(what, || self.inner.send(mail)).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::time::{Duration, Instant};

    use super::*;
    use crate::domain::EmailAddress;

    /// Counts calls; answers every one successfully.
    #[derive(Default)]
    struct Counting {
        calls: AtomicU32,
    }

    impl Counting {
        fn count(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
        fn tick(&self) {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl Directory for Counting {
        async fn pool_profile(&self) -> Result<PoolProfile, DownstreamError> {
            self.tick();
            Ok(crate::domain::pool::tests::reference_pool())
        }
        async fn create_user(&self, _user: &NewUser<'_>) -> Result<CreateOutcome, DownstreamError> {
            self.tick();
            Ok(CreateOutcome::Created { sub: None })
        }
        async fn get_user(&self, _username: &str) -> Result<Option<UserInfo>, DownstreamError> {
            self.tick();
            Ok(None)
        }
        async fn set_temporary_password(
            &self,
            _username: &str,
            _password: &TemporaryPassword,
        ) -> Result<(), DownstreamError> {
            self.tick();
            Ok(())
        }
        async fn delete_user(&self, _username: &str) -> Result<(), DownstreamError> {
            self.tick();
            Ok(())
        }
        async fn add_user_to_group(
            &self,
            _username: &str,
            _group: &str,
        ) -> Result<(), DownstreamError> {
            self.tick();
            Ok(())
        }
        async fn disable_user(&self, _username: &str) -> Result<(), DownstreamError> {
            self.tick();
            Ok(())
        }
        async fn enable_user(&self, _username: &str) -> Result<(), DownstreamError> {
            self.tick();
            Ok(())
        }
    }

    #[async_trait]
    impl Mailer for Counting {
        async fn send(&self, _mail: &OutgoingMail) -> Result<String, DownstreamError> {
            self.tick();
            Ok(format!("id-{}", self.count()))
        }
    }

    async fn create(directory: &RateLimitedDirectory<Counting>) {
        let email = EmailAddress::parse("ada@example.com").unwrap();
        let attributes = BTreeMap::new();
        let password = TemporaryPassword::from_known("Xx1!xxxxxxxx");
        let user = NewUser {
            username: "ada",
            email: &email,
            attributes: &attributes,
            temporary_password: &password,
        };
        directory.create_user(&user).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn create_user_is_limited_by_the_create_bucket() {
        let directory = RateLimitedDirectory::new(
            Counting::default(),
            TokenBucket::new(2.0, 2),
            TokenBucket::new(100.0, 100),
        );
        let start = Instant::now();
        for _ in 0..6 {
            create(&directory).await;
        }
        // Two from the burst, four at two per second.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(directory.inner().count(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_use_their_own_bucket() {
        let directory = RateLimitedDirectory::new(
            Counting::default(),
            TokenBucket::new(1.0, 1),
            TokenBucket::new(1.0, 3),
        );
        create(&directory).await;
        let start = Instant::now();
        // The create bucket is empty; reads still go through at once from their burst.
        directory.get_user("ada").await.unwrap();
        directory.add_user_to_group("ada", "staff").await.unwrap();
        directory.pool_profile().await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        // The fourth read waits for the read bucket.
        directory.delete_user("ada").await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        directory
            .set_temporary_password("ada", &TemporaryPassword::from_known("Yy2@yyyyyyyy"))
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(directory.inner().count(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn guarded_operations_take_all_their_tokens_before_the_first_call() {
        let directory = RateLimitedDirectory::new(
            Counting::default(),
            TokenBucket::new(100.0, 100),
            TokenBucket::new(1.0, 1),
        );
        let start = Instant::now();
        // The inner directory answers "no such user" at once: one call, after every token it
        // might have needed (one from the burst, three more at one per second).
        directory.delete_if_never_used("ada").await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(DELETE_CALLS as u64 - 1)
        );
        assert_eq!(directory.inner().count(), 1);
        let start = Instant::now();
        let password = TemporaryPassword::from_known("Yy2@yyyyyyyy");
        directory
            .rotate_if_never_used("ada", &password)
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(ROTATE_CALLS as u64));
        assert_eq!(directory.inner().count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn mailer_sends_at_the_configured_rate() {
        let mailer = RateLimitedMailer::new(Counting::default(), TokenBucket::new(4.0, 2));
        let mail = OutgoingMail::example();
        let start = Instant::now();
        for _ in 0..6 {
            mailer.send(&mail).await.unwrap();
        }
        // Two from the burst, four at four per second.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(mailer.inner().count(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_bucket() {
        let mailer = std::sync::Arc::new(RateLimitedMailer::new(
            Counting::default(),
            TokenBucket::new(10.0, 1),
        ));
        let mail = OutgoingMail::example();
        let start = Instant::now();
        let tasks: Vec<_> = (0..11)
            .map(|_| {
                let (mailer, mail) = (mailer.clone(), mail.clone());
                tokio::spawn(async move { mailer.send(&mail).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(990) && elapsed <= Duration::from_millis(1010),
            "{elapsed:?}"
        );
    }

    /// Answers the first `throttles` sends with a throttling error, then succeeds.
    struct Throttling {
        throttles: u32,
        calls: AtomicU32,
    }

    #[async_trait]
    impl Mailer for Throttling {
        async fn send(&self, _mail: &OutgoingMail) -> Result<String, DownstreamError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.throttles {
                return Err(DownstreamError::new(
                    crate::error::Service::Ses,
                    "SendEmail",
                    crate::error::ErrorKind::Throttled,
                    "Maximum sending rate exceeded",
                ));
            }
            Ok("id".into())
        }
    }

    fn fleet_mailer(throttles: u32) -> RateLimitedMailer<Throttling> {
        let budget = std::sync::Arc::new(crate::adapters::memory::MemoryRateBudget::default());
        let limiter = FleetLimiter::with_wall_clock(
            BUDGET_EMAIL_SEND,
            budget,
            4.0,
            crate::ratelimit::fleet_budget::tokio_wall_clock(1_000_000.0),
        );
        RateLimitedMailer::new(
            Throttling {
                throttles,
                calls: AtomicU32::new(0),
            },
            limiter,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_call_is_retried_through_the_limiter_and_slows_the_worker() {
        let mailer = fleet_mailer(1);
        mailer.send(&OutgoingMail::example()).await.unwrap();
        let Limiter::Fleet(fleet) = mailer.limiter.as_ref() else {
            unreachable!()
        };
        assert_eq!(mailer.inner().calls.load(Ordering::SeqCst), 2);
        assert!(fleet.own_rate() < 4.0, "{}", fleet.own_rate());
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_gives_up_after_three_calls() {
        let mailer = fleet_mailer(10);
        let err = mailer.send(&OutgoingMail::example()).await.unwrap_err();
        assert!(err.is_throttle());
        assert_eq!(
            mailer.inner().calls.load(Ordering::SeqCst),
            THROTTLE_ATTEMPTS
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_deadline_gives_up_before_the_call_and_says_when() {
        let mailer = std::sync::Arc::new(RateLimitedMailer::new(
            Counting::default(),
            TokenBucket::new(0.5, 1).named("email-send"),
        ));
        // Three callers without a deadline queue up behind the burst: 6 s of backlog.
        mailer.send(&OutgoingMail::example()).await.unwrap();
        let queued: Vec<_> = (0..3)
            .map(|_| {
                let mailer = mailer.clone();
                tokio::spawn(async move { mailer.send(&OutgoingMail::example()).await })
            })
            .collect();
        tokio::task::yield_now().await;
        let start = Instant::now();
        let deadline = start + Duration::from_secs(4);
        let err = wait_limit::with_wait_deadline(deadline, mailer.send(&OutgoingMail::example()))
            .await
            .unwrap_err();
        assert_eq!(start.elapsed(), Duration::ZERO, "gave up at once");
        assert!(err.is_transient() && err.is_throttle(), "{err}");
        assert_eq!(err.service, Service::Ses);
        assert_eq!(err.retry_after, Some(Duration::from_secs(6)));
        assert_eq!(
            err.to_string(),
            "ses send: rate limit: next email-send slot in 6 s (this worker's rate 0.50/s), later than this handler may wait; not called, retry then"
        );
        for q in queued {
            q.await.unwrap().unwrap();
        }
        assert_eq!(
            mailer.inner().count(),
            4,
            "the given-up send was never made"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_that_outlasts_its_estimate_gives_up_at_the_deadline() {
        let directory = std::sync::Arc::new(RateLimitedDirectory::new(
            Counting::default(),
            TokenBucket::new(0.25, 1),
            TokenBucket::new(100.0, 100),
        ));
        create(&directory).await;
        // One caller ahead: its token comes in 4 s, ours is expected in 4 s too (the estimate
        // counts the next slot as free) but really comes in 8 s.
        let ahead = {
            let directory = directory.clone();
            tokio::spawn(async move { create(&directory).await })
        };
        tokio::task::yield_now().await;
        let start = Instant::now();
        let email = EmailAddress::parse("bob@example.com").unwrap();
        let attributes = BTreeMap::new();
        let password = TemporaryPassword::from_known("Xx1!xxxxxxxx");
        let user = NewUser {
            username: "bob",
            email: &email,
            attributes: &attributes,
            temporary_password: &password,
        };
        let deadline = start + Duration::from_secs(5);
        let err = wait_limit::with_wait_deadline(deadline, directory.create_user(&user))
            .await
            .unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(
            (err.service, err.operation),
            (Service::Cognito, "create_user")
        );
        assert!(err.retry_after.is_some_and(|d| d >= Duration::from_secs(1)));
        ahead.await.unwrap();
        assert_eq!(directory.inner().count(), 2);
        // Without a deadline (operator tools, lifecycle jobs) it waits its turn.
        create(&directory).await;
        assert_eq!(directory.inner().count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_past_its_deadline_still_takes_the_next_free_slot() {
        let mailer = RateLimitedMailer::new(Counting::default(), TokenBucket::new(2.0, 1));
        mailer.send(&OutgoingMail::example()).await.unwrap();
        // Slowed by its other calls, the handler is past its wait deadline; nobody is waiting,
        // and the next slot (0.5 s away) is not waiting for others: it goes.
        let start = Instant::now();
        let deadline = start - Duration::from_secs(1);
        wait_limit::with_wait_deadline(deadline, mailer.send(&OutgoingMail::example()))
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(500));
    }
}
