//! The outbox relay inside `invite-worker run`: every transition publishes its lifecycle event
//! right after its write, and whatever a publishing outage left in an outbox is published by this
//! loop (and by each cleanup run).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::app::handler::InviteService;

/// How often `run` looks for unpublished lifecycle events.
pub const RELAY_INTERVAL: Duration = Duration::from_secs(60);
/// Invites one relay pass looks at.
pub const RELAY_BATCH: usize = 100;

/// Relays unpublished lifecycle events every `every` (the first pass right away) until `stop`.
pub async fn relay_periodically(
    service: Arc<InviteService>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let pass = tokio::select! {
            _ = stop.cancelled() => return,
            pass = service.relay_unpublished(RELAY_BATCH) => pass,
        };
        match pass {
            Ok(0) => {}
            Ok(n) => info!(invites = n, "relayed lifecycle events left in outboxes"),
            Err(e) => {
                warn!(error = %e, "could not look for unpublished lifecycle events; will retry")
            }
        }
    }
}
