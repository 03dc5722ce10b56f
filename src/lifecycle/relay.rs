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

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::adapters::memory::{
        ManualClock, MemoryDirectory, MemoryMailer, MemoryPublisher, MemoryStore,
    };
    use crate::app::compose::PlainComposer;
    use crate::app::handler::ServiceConfig;
    use crate::domain::pool::tests::reference_pool;
    use crate::domain::RedirectHosts;
    use crate::error::ErrorKind;

    #[tokio::test(start_paused = true)]
    async fn the_loop_publishes_what_an_outage_left_behind_and_stops_when_told() {
        let store = Arc::new(MemoryStore::new());
        let publisher = Arc::new(MemoryPublisher::default());
        let service = Arc::new(
            InviteService::new(
                store.clone(),
                Arc::new(MemoryDirectory::new(reference_pool())),
                Arc::new(MemoryMailer::new()),
                Arc::new(PlainComposer),
                Arc::new(ManualClock::new(datetime!(2026-11-26 12:00 UTC))),
                ServiceConfig {
                    user_pool_id: "us-east-1_test".into(),
                    default_expiry_days: 7,
                    lease: Duration::from_secs(120),
                    redirect_hosts: RedirectHosts::only(&["app.example.com"]),
                },
            )
            .with_publisher(publisher.clone()),
        );
        // The outage lasts for the transition's own attempt and the relay's first pass.
        publisher
            .faults
            .fail_next("SendMessage", 2, ErrorKind::Unavailable);
        let body = serde_json::json!({
            "version": 1, "type": "invite.requested", "id": "e1",
            "data": {"email": "jane@example.com", "attributes": {"family_name": "Doe"}}
        })
        .to_string();
        service.handle_body(&body).await;
        assert!(publisher.published().is_empty());

        let stop = CancellationToken::new();
        let relay = tokio::spawn(relay_periodically(
            service.clone(),
            RELAY_INTERVAL,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            publisher.published().is_empty(),
            "first pass hit the outage"
        );
        tokio::time::sleep(RELAY_INTERVAL).await;
        assert_eq!(publisher.types(), vec!["invite.sent"]);
        assert!(store.all()[0].outbox.is_empty());

        stop.cancel();
        relay.await.expect("the loop ends");
    }
}
