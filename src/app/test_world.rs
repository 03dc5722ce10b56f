//! The in-memory world the service tests run in: every port faked, a hand-moved clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;
use time::OffsetDateTime;

use super::compose::{Composer, MailKind, PlainComposer};
use super::handler::{InviteService, ServiceConfig};
use crate::adapters::memory::{
    ManualClock, MemoryDirectory, MemoryMailer, MemoryPublisher, MemoryStore, MemorySuppressionList,
};
use crate::adapters::profile_cache::ProfileCachingDirectory;
use crate::domain::pool::tests::reference_pool;
use crate::domain::RedirectHosts;
use crate::domain::{Invite, TemporaryPassword};
use crate::ports::{Directory, OutgoingMail};

pub const POOL: &str = "us-east-1_test";
pub const START: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

pub struct World {
    pub store: Arc<MemoryStore>,
    pub dir: Arc<MemoryDirectory>,
    pub mailer: Arc<MemoryMailer>,
    pub publisher: Arc<MemoryPublisher>,
    pub clock: Arc<ManualClock>,
    pub composer: Arc<BreakableComposer>,
    /// The account's suppression list the service reads before creating a user (empty).
    pub suppression: Arc<MemorySuppressionList>,
    pub service: InviteService,
}

/// [`PlainComposer`] with a switch that makes every render fail, like a broken template.
#[derive(Debug, Default)]
pub struct BreakableComposer {
    pub broken: AtomicBool,
}

impl BreakableComposer {
    pub fn set_broken(&self, broken: bool) {
        self.broken.store(broken, Ordering::SeqCst);
    }
}

impl Composer for BreakableComposer {
    fn compose(
        &self,
        kind: MailKind,
        invite: &Invite,
        password: Option<&TemporaryPassword>,
        now: OffsetDateTime,
    ) -> Result<OutgoingMail, String> {
        if self.broken.load(Ordering::SeqCst) {
            return Err("template invite/en.html.j2 line 3: undefined value".into());
        }
        PlainComposer.compose(kind, invite, password, now)
    }
}

/// A world whose service publishes lifecycle events to `publisher` when `publishing`.
pub fn world_with(publishing: bool) -> World {
    world_from(publishing, None, Duration::from_secs(120))
}

/// A world whose service claims invites with leases of `lease`.
pub fn world_with_lease(lease: Duration) -> World {
    world_from(false, None, lease)
}

/// A world whose service reads the pool profile through the production cache (on the world's
/// clock), kept for at most `max_age`.
pub fn world_with_cached_profile(max_age: Duration) -> World {
    world_from(false, Some(max_age), Duration::from_secs(120))
}

fn world_from(publishing: bool, profile_max_age: Option<Duration>, lease: Duration) -> World {
    let store = Arc::new(MemoryStore::new());
    let dir = Arc::new(MemoryDirectory::new(reference_pool()));
    let mailer = Arc::new(MemoryMailer::new());
    let publisher = Arc::new(MemoryPublisher::default());
    let clock = Arc::new(ManualClock::new(START));
    let composer = Arc::new(BreakableComposer::default());
    let suppression = Arc::new(MemorySuppressionList::new());
    let directory: Arc<dyn Directory> = match profile_max_age {
        Some(max_age) => Arc::new(ProfileCachingDirectory::new(
            dir.clone(),
            clock.clone(),
            max_age,
        )),
        None => dir.clone(),
    };
    let mut service = InviteService::new(
        store.clone(),
        directory,
        mailer.clone(),
        composer.clone(),
        clock.clone(),
        ServiceConfig {
            user_pool_id: POOL.into(),
            default_expiry_days: 7,
            lease,
            redirect_hosts: RedirectHosts::only(&["app.example.com"]),
        },
    )
    .with_suppression_list(suppression.clone());
    if publishing {
        service = service.with_publisher(publisher.clone());
    }
    World {
        store,
        dir,
        mailer,
        publisher,
        clock,
        composer,
        suppression,
        service,
    }
}
