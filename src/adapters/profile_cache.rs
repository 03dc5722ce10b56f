//! [`ProfileCachingDirectory`]: the pool profile (schema and password policy) kept for a bounded
//! age, `cognito.pool_profile_max_age_seconds`, in front of any [`Directory`].
//!
//! Without it every message would cost a `DescribeUserPool`; with a profile kept for the life of
//! the process, a custom attribute added to the pool (or a raised `MinimumLength`) would be
//! rejected until a restart. So: a profile older than the maximum age is read again on next use
//! (if that read fails for a transient reason, the old profile keeps serving and the next use
//! tries again), and [`Directory::refresh_pool_profile`] reads it again at once, for the handler
//! to call before it dead-letters a schema or policy rejection. Refreshes are at most one a
//! second ([`MIN_REFRESH_INTERVAL`]): a flood of bad messages cannot turn into a flood of
//! `DescribeUserPool` calls. Concurrent readers wait for one read instead of each making their
//! own.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::domain::{PoolProfile, TemporaryPassword};
use crate::error::DownstreamError;
use crate::ports::{Clock, CreateOutcome, Directory, NewUser, Removal, Rotation, UserInfo};

/// A refresh returns the cached profile if it is younger than this.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

struct Cached {
    profile: PoolProfile,
    read_at: OffsetDateTime,
}

/// A [`Directory`] that keeps `inner`'s pool profile for at most `max_age` (0: not at all).
pub struct ProfileCachingDirectory {
    inner: Arc<dyn Directory>,
    clock: Arc<dyn Clock>,
    max_age: time::Duration,
    cached: Mutex<Option<Cached>>,
}

impl ProfileCachingDirectory {
    pub fn new(inner: Arc<dyn Directory>, clock: Arc<dyn Clock>, max_age: Duration) -> Self {
        Self {
            inner,
            clock,
            max_age: to_time(max_age),
            cached: Mutex::new(None),
        }
    }

    /// The cached profile if it is younger than `fresh_for`, else a new read. With
    /// `stale_on_outage`, a transient failure of that read serves the old profile.
    async fn read(
        &self,
        fresh_for: time::Duration,
        stale_on_outage: bool,
    ) -> Result<PoolProfile, DownstreamError> {
        let mut slot = self.cached.lock().await;
        if let Some(c) = slot.as_ref() {
            if self.clock.now() - c.read_at < fresh_for {
                return Ok(c.profile.clone());
            }
        }
        match self.inner.pool_profile().await {
            Ok(profile) => {
                *slot = Some(Cached {
                    profile: profile.clone(),
                    read_at: self.clock.now(),
                });
                Ok(profile)
            }
            Err(e) if stale_on_outage && e.is_transient() => match slot.as_ref() {
                Some(c) => {
                    tracing::warn!(error = %e, "could not read the user pool again; using the profile read before");
                    Ok(c.profile.clone())
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

#[async_trait]
impl Directory for ProfileCachingDirectory {
    async fn pool_profile(&self) -> Result<PoolProfile, DownstreamError> {
        self.read(self.max_age, true).await
    }

    async fn refresh_pool_profile(&self) -> Result<PoolProfile, DownstreamError> {
        let fresh_for = self.max_age.min(to_time(MIN_REFRESH_INTERVAL));
        self.read(fresh_for, false).await
    }

    async fn create_user(&self, user: &NewUser<'_>) -> Result<CreateOutcome, DownstreamError> {
        self.inner.create_user(user).await
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserInfo>, DownstreamError> {
        self.inner.get_user(username).await
    }

    async fn set_temporary_password(
        &self,
        username: &str,
        password: &TemporaryPassword,
    ) -> Result<(), DownstreamError> {
        self.inner.set_temporary_password(username, password).await
    }

    async fn delete_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.inner.delete_user(username).await
    }

    async fn disable_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.inner.disable_user(username).await
    }

    async fn enable_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.inner.enable_user(username).await
    }

    // The guarded operations go to the inner directory whole: the rate limiter below takes all
    // their tokens before the first call (the default bodies here would wait between calls).
    async fn delete_if_never_used(&self, username: &str) -> Result<Removal, DownstreamError> {
        self.inner.delete_if_never_used(username).await
    }

    async fn rotate_if_never_used(
        &self,
        username: &str,
        password: &TemporaryPassword,
    ) -> Result<Rotation, DownstreamError> {
        self.inner.rotate_if_never_used(username, password).await
    }

    async fn lift_hold(&self, username: &str) -> Result<(), DownstreamError> {
        self.inner.lift_hold(username).await
    }

    async fn add_user_to_group(&self, username: &str, group: &str) -> Result<(), DownstreamError> {
        self.inner.add_user_to_group(username, group).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{ManualClock, MemoryDirectory};
    use crate::domain::pool::tests::reference_pool;
    use crate::error::ErrorKind;
    use time::macros::datetime;

    const MAX_AGE: Duration = Duration::from_secs(60);

    fn cached() -> (
        Arc<MemoryDirectory>,
        Arc<ManualClock>,
        ProfileCachingDirectory,
    ) {
        let dir = Arc::new(MemoryDirectory::new(reference_pool()));
        let clock = Arc::new(ManualClock::new(datetime!(2026-11-27 10:00 UTC)));
        let cache = ProfileCachingDirectory::new(dir.clone(), clock.clone(), MAX_AGE);
        (dir, clock, cache)
    }

    fn add_attribute(dir: &MemoryDirectory, name: &str) {
        dir.change_pool(|p| {
            let mut spec = p.attributes["custom:test_attribute1"].clone();
            spec.name = name.into();
            p.attributes.insert(name.into(), spec);
        });
    }

    #[tokio::test]
    async fn a_change_to_the_pool_is_seen_once_the_profile_is_older_than_its_max_age() {
        let (dir, clock, cache) = cached();
        let before = cache.pool_profile().await.unwrap();
        add_attribute(&dir, "custom:team");
        clock.advance(time::Duration::seconds(59));
        assert_eq!(cache.pool_profile().await.unwrap(), before, "still cached");
        clock.advance(time::Duration::seconds(1));
        let after = cache.pool_profile().await.unwrap();
        assert!(after.attributes.contains_key("custom:team"));
    }

    #[tokio::test]
    async fn a_refresh_reads_the_pool_again_at_once_but_at_most_once_a_second() {
        let (dir, clock, cache) = cached();
        cache.pool_profile().await.unwrap();
        dir.change_pool(|p| p.password_policy.min_length = 24);
        assert_eq!(
            cache
                .refresh_pool_profile()
                .await
                .unwrap()
                .password_policy
                .min_length,
            reference_pool().password_policy.min_length,
            "read less than a second ago: not read again"
        );
        clock.advance(time::Duration::seconds(1));
        assert_eq!(
            cache
                .refresh_pool_profile()
                .await
                .unwrap()
                .password_policy
                .min_length,
            24
        );
        assert_eq!(
            cache
                .pool_profile()
                .await
                .unwrap()
                .password_policy
                .min_length,
            24
        );
    }

    #[tokio::test]
    async fn an_outage_serves_the_old_profile_but_fails_a_refresh() {
        let (dir, clock, cache) = cached();
        let before = cache.pool_profile().await.unwrap();
        clock.advance(time::Duration::minutes(5));
        dir.faults
            .fail_next("DescribeUserPool", 2, ErrorKind::Unavailable);
        assert_eq!(cache.pool_profile().await.unwrap(), before);
        let err = cache.refresh_pool_profile().await.unwrap_err();
        assert!(
            err.is_transient(),
            "{err}: the message is retried, not dead-lettered"
        );
        // A missing pool is not an outage.
        dir.faults.fail_next(
            "DescribeUserPool",
            1,
            ErrorKind::Rejected("user_pool_not_found".into()),
        );
        let err = cache.pool_profile().await.unwrap_err();
        assert_eq!(err.rejection_code(), Some("user_pool_not_found"));
        assert_eq!(cache.pool_profile().await.unwrap(), before, "read again");
    }

    #[tokio::test]
    async fn a_max_age_of_zero_reads_the_pool_every_time() {
        let dir = Arc::new(MemoryDirectory::new(reference_pool()));
        let clock = Arc::new(ManualClock::new(datetime!(2026-11-27 10:00 UTC)));
        let cache = ProfileCachingDirectory::new(dir.clone(), clock, Duration::ZERO);
        cache.pool_profile().await.unwrap();
        add_attribute(&dir, "custom:team");
        assert!(cache
            .pool_profile()
            .await
            .unwrap()
            .attributes
            .contains_key("custom:team"));
    }
    /// The decorators in the order wiring stacks them (cache over limiter over directory): a
    /// guarded operation passes the cache whole, so the limiter takes all its tokens first and
    /// its calls run back to back. Through the trait's default body at the cache, each call
    /// would wait for its own token, widening the window the operation exists to close.
    #[tokio::test(start_paused = true)]
    async fn a_guarded_operation_passes_the_cache_whole_and_its_calls_run_back_to_back() {
        use crate::adapters::limited::RateLimitedDirectory;
        use crate::ports::Removal;
        use crate::ratelimit::token_bucket::TokenBucket;
        use std::collections::BTreeMap;

        let limited = Arc::new(RateLimitedDirectory::new(
            MemoryDirectory::new(reference_pool()),
            TokenBucket::new(100.0, 100),
            TokenBucket::new(1.0, 1),
        ));
        let dir = limited.inner();
        let email = crate::domain::EmailAddress::parse("new@example.com").unwrap();
        let attributes = BTreeMap::from([("family_name".to_string(), "Doe".to_string())]);
        let password = crate::domain::password::generate(&reference_pool().password_policy);
        dir.create_user(&NewUser {
            username: email.as_str(),
            email: &email,
            attributes: &attributes,
            temporary_password: &password,
        })
        .await
        .unwrap();
        let times = Arc::new(std::sync::Mutex::new(Vec::new()));
        for nth in 2..=5 {
            let times = times.clone();
            dir.before_call(nth, move |_| {
                times.lock().unwrap().push(tokio::time::Instant::now());
            });
        }
        let clock = Arc::new(ManualClock::new(datetime!(2026-11-27 10:00 UTC)));
        let cache = ProfileCachingDirectory::new(limited.clone(), clock, MAX_AGE);

        let removal = cache.delete_if_never_used(email.as_str()).await.unwrap();

        assert_eq!(removal, Removal::Deleted);
        assert_eq!(
            dir.calls()[1..],
            [
                "AdminGetUser",
                "AdminDisableUser",
                "AdminGetUser",
                "AdminDeleteUser"
            ]
        );
        let times = times.lock().unwrap();
        assert_eq!(times.len(), 4);
        assert!(
            times.iter().all(|t| *t == times[0]),
            "the guarded calls waited for tokens between them: {times:?}"
        );
    }
}
