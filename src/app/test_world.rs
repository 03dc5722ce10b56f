//! The in-memory world the service tests run in: every port faked, a hand-moved clock.

use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;
use time::OffsetDateTime;

use super::compose::PlainComposer;
use super::handler::{InviteService, ServiceConfig};
use crate::adapters::memory::{
    ManualClock, MemoryDirectory, MemoryMailer, MemoryPublisher, MemoryStore,
};
use crate::domain::pool::tests::reference_pool;
use crate::domain::RedirectHosts;

pub const POOL: &str = "us-east-1_test";
pub const START: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);

pub struct World {
    pub store: Arc<MemoryStore>,
    pub dir: Arc<MemoryDirectory>,
    pub mailer: Arc<MemoryMailer>,
    pub publisher: Arc<MemoryPublisher>,
    pub clock: Arc<ManualClock>,
    pub service: InviteService,
}

/// A world whose service publishes lifecycle events to `publisher` when `publishing`.
pub fn world_with(publishing: bool) -> World {
    let store = Arc::new(MemoryStore::new());
    let dir = Arc::new(MemoryDirectory::new(reference_pool()));
    let mailer = Arc::new(MemoryMailer::new());
    let publisher = Arc::new(MemoryPublisher::default());
    let clock = Arc::new(ManualClock::new(START));
    let mut service = InviteService::new(
        store.clone(),
        dir.clone(),
        mailer.clone(),
        Arc::new(PlainComposer),
        clock.clone(),
        ServiceConfig {
            user_pool_id: POOL.into(),
            default_expiry_days: 7,
            lease: Duration::from_secs(120),
            redirect_hosts: RedirectHosts::only(&["app.example.com"]),
        },
    );
    if publishing {
        service = service.with_publisher(publisher.clone());
    }
    World {
        store,
        dir,
        mailer,
        publisher,
        clock,
        service,
    }
}
