//! Rate-limited decorators: each implements the same port as the adapter it wraps, waiting for
//! a token before every call, so the whole process stays under a service's quota however many
//! messages are in flight.

use async_trait::async_trait;

use crate::config::{CognitoSettings, EmailSettings};
use crate::domain::{PoolProfile, TemporaryPassword};
use crate::error::DownstreamError;
use crate::ports::{
    CreateOutcome, Directory, Mailer, NewUser, OutgoingMail, Removal, Rotation, UserInfo,
};
use crate::worker::ratelimit::TokenBucket;

/// Calls at most made by `delete_if_never_used`: get, disable, get, delete or enable.
const DELETE_CALLS: u32 = 4;
/// Calls at most made by `rotate_if_never_used`: get, disable, get, set password, enable.
const ROTATE_CALLS: u32 = 5;
/// Calls at most made by `lift_hold`: get, enable.
const LIFT_CALLS: u32 = 2;

/// Takes `n` tokens from `bucket`, waiting for each.
async fn acquire_many(bucket: &TokenBucket, n: u32) {
    for _ in 0..n {
        bucket.acquire().await;
    }
}

/// A [`Directory`] behind two token buckets: `create` for `create_user` (Cognito's account-wide
/// UserCreation category) and `read` for every other call.
#[derive(Debug)]
pub struct RateLimitedDirectory<D> {
    inner: D,
    create: TokenBucket,
    read: TokenBucket,
}

impl<D: Directory> RateLimitedDirectory<D> {
    pub fn new(inner: D, create: TokenBucket, read: TokenBucket) -> Self {
        Self {
            inner,
            create,
            read,
        }
    }

    /// Buckets from `[cognito]`: the read bucket's burst is one second's worth of its rate.
    pub fn from_settings(inner: D, settings: &CognitoSettings) -> Self {
        let read_burst = settings
            .read_rate_per_second
            .ceil()
            .clamp(1.0, f64::from(u32::MAX)) as u32;
        Self::new(
            inner,
            TokenBucket::new(settings.create_rate_per_second, settings.create_burst),
            TokenBucket::new(settings.read_rate_per_second, read_burst),
        )
    }

    /// The wrapped directory.
    pub fn inner(&self) -> &D {
        &self.inner
    }
}

#[async_trait]
impl<D: Directory> Directory for RateLimitedDirectory<D> {
    async fn pool_profile(&self) -> Result<PoolProfile, DownstreamError> {
        self.read.acquire().await;
        self.inner.pool_profile().await
    }

    async fn create_user(&self, user: &NewUser<'_>) -> Result<CreateOutcome, DownstreamError> {
        self.create.acquire().await;
        self.inner.create_user(user).await
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserInfo>, DownstreamError> {
        self.read.acquire().await;
        self.inner.get_user(username).await
    }

    async fn set_temporary_password(
        &self,
        username: &str,
        password: &TemporaryPassword,
    ) -> Result<(), DownstreamError> {
        self.read.acquire().await;
        self.inner.set_temporary_password(username, password).await
    }

    async fn delete_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.read.acquire().await;
        self.inner.delete_user(username).await
    }

    async fn add_user_to_group(&self, username: &str, group: &str) -> Result<(), DownstreamError> {
        self.read.acquire().await;
        self.inner.add_user_to_group(username, group).await
    }

    async fn disable_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.read.acquire().await;
        self.inner.disable_user(username).await
    }

    async fn enable_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.read.acquire().await;
        self.inner.enable_user(username).await
    }

    // The guarded operations take every token they may need first, so that their calls run back
    // to back: a wait for a token between the check and the act would widen the window they
    // exist to close.

    async fn delete_if_never_used(&self, username: &str) -> Result<Removal, DownstreamError> {
        acquire_many(&self.read, DELETE_CALLS).await;
        self.inner.delete_if_never_used(username).await
    }

    async fn rotate_if_never_used(
        &self,
        username: &str,
        password: &TemporaryPassword,
    ) -> Result<Rotation, DownstreamError> {
        acquire_many(&self.read, ROTATE_CALLS).await;
        self.inner.rotate_if_never_used(username, password).await
    }

    async fn lift_hold(&self, username: &str) -> Result<(), DownstreamError> {
        acquire_many(&self.read, LIFT_CALLS).await;
        self.inner.lift_hold(username).await
    }
}

/// A [`Mailer`] behind one token bucket (SES's sending rate, or an SMTP relay's).
#[derive(Debug)]
pub struct RateLimitedMailer<M> {
    inner: M,
    bucket: TokenBucket,
}

impl<M: Mailer> RateLimitedMailer<M> {
    pub fn new(inner: M, bucket: TokenBucket) -> Self {
        Self { inner, bucket }
    }

    /// The bucket from `[email]` `send_rate_per_second` and `send_burst`.
    pub fn from_settings(inner: M, settings: &EmailSettings) -> Self {
        Self::new(
            inner,
            TokenBucket::new(settings.send_rate_per_second, settings.send_burst),
        )
    }

    /// The wrapped mailer.
    pub fn inner(&self) -> &M {
        &self.inner
    }
}

#[async_trait]
impl<M: Mailer> Mailer for RateLimitedMailer<M> {
    async fn send(&self, mail: &OutgoingMail) -> Result<String, DownstreamError> {
        self.bucket.acquire().await;
        self.inner.send(mail).await
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
        let mail = OutgoingMail {
            from: "Acme <no-reply@example.com>".into(),
            reply_to: None,
            to: EmailAddress::parse("ada@example.com").unwrap(),
            subject: "Welcome".into(),
            text: "hi".into(),
            html: "<p>hi</p>".into(),
            headers: Vec::new(),
        };
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
        let mail = OutgoingMail {
            from: "no-reply@example.com".into(),
            reply_to: None,
            to: EmailAddress::parse("bob@example.com").unwrap(),
            subject: "s".into(),
            text: "t".into(),
            html: "h".into(),
            headers: Vec::new(),
        };
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
}
