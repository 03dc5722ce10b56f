//! The outbox: lifecycle events are added to the invite record in the same conditional write as
//! the transition that causes them (so a crash cannot lose one), published right after, and
//! removed once published. What a crash or an outage leaves behind, the relay publishes later.

use std::sync::Arc;

use time::OffsetDateTime;
use tracing::warn;

use crate::domain::invite::{Invite, InviteId, InviteStatus};
use crate::domain::record::{fact_event, lifecycle_event};
use crate::ports::{Clock, InviteStore, Publisher, StoreError};

/// The records' outboxes and where their events go.
pub struct Outbox {
    store: Arc<dyn InviteStore>,
    publisher: Arc<dyn Publisher>,
    clock: Arc<dyn Clock>,
    /// How often a lost race (a version conflict) is retried within one flush.
    max_conflict_retries: usize,
}

impl Outbox {
    pub fn new(
        store: Arc<dyn InviteStore>,
        publisher: Arc<dyn Publisher>,
        clock: Arc<dyn Clock>,
        max_conflict_retries: usize,
    ) -> Self {
        Self {
            store,
            publisher,
            clock,
            max_conflict_retries,
        }
    }

    /// Adds the lifecycle event for a transition to `to` to the record's outbox (nothing for
    /// `pending`, which is not published).
    pub fn queue(&self, rec: &mut Invite, to: InviteStatus, now: OffsetDateTime) {
        if to != InviteStatus::Pending {
            rec.outbox.push(lifecycle_event(rec, to, now));
        }
    }

    /// Adds the lifecycle event of a fact the record now keeps (`invite.delivered`,
    /// `invite.complained`): the status did not change.
    pub fn queue_fact(&self, rec: &mut Invite, event_type: &str, now: OffsetDateTime) {
        rec.outbox.push(fact_event(rec, event_type, now));
    }

    /// Publishes what the record's outbox holds and removes it; failures stay for the relay.
    pub async fn flush(&self, id: InviteId) {
        for _ in 0..self.max_conflict_retries {
            let Ok(Some(mut rec)) = self.store.load(&id).await else {
                return;
            };
            if rec.outbox.is_empty() {
                return;
            }
            if rec
                .lease
                .as_ref()
                .is_some_and(|l| l.until > self.clock.now())
            {
                // Work is in flight: its final write would lose the race against ours, and it
                // flushes the outbox itself when it finishes.
                return;
            }
            let mut published = Vec::new();
            for event in &rec.outbox {
                match self.publisher.publish(event).await {
                    Ok(()) => published.push(event.event_id.clone()),
                    Err(e) => {
                        warn!(invite_id = %id, event_type = %event.event_type, error = %e, "lifecycle event not published yet; the relay will retry");
                        break;
                    }
                }
            }
            if published.is_empty() {
                return;
            }
            rec.outbox.retain(|e| !published.contains(&e.event_id));
            rec.version += 1;
            match self.store.save(&rec).await {
                Ok(()) => return,
                Err(StoreError::Conflict) => continue,
                Err(e) => {
                    warn!(invite_id = %id, error = %e, "could not clear the outbox; events may be published twice");
                    return;
                }
            }
        }
    }

    /// Publishes up to `limit` outboxes left behind by a crash or an outage; returns how many
    /// invites it looked at.
    pub async fn relay(&self, limit: usize) -> Result<usize, StoreError> {
        let ids = self.store.with_unpublished(limit).await?;
        for id in &ids {
            self.flush(*id).await;
        }
        Ok(ids.len())
    }
}
