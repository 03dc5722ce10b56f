//! An in-memory [`InviteStore`] with the same conditional-write rule as the DynamoDB adapter.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::Faults;
use crate::domain::{Invite, InviteId, InviteStatus};
use crate::error::Service;
use crate::ports::{InviteStore, Page, StoreError};

#[derive(Debug, Default)]
pub struct MemoryStore {
    items: Mutex<HashMap<InviteId, Invite>>,
    pub faults: Faults,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn all(&self) -> Vec<Invite> {
        let mut v: Vec<Invite> = self
            .items
            .lock()
            .expect("store lock")
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.email.cmp(&b.email));
        v
    }

    pub fn get(&self, id: &InviteId) -> Option<Invite> {
        self.items.lock().expect("store lock").get(id).cloned()
    }
}

fn page_of<T: Clone>(all: Vec<T>, limit: usize, cursor: Option<String>) -> Page<T> {
    let start: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
    let items: Vec<T> = all.iter().skip(start).take(limit).cloned().collect();
    let next = (start + items.len() < all.len()).then(|| (start + items.len()).to_string());
    Page { items, next }
}

#[async_trait]
impl InviteStore for MemoryStore {
    async fn load(&self, id: &InviteId) -> Result<Option<Invite>, StoreError> {
        self.faults.before(Service::DynamoDb, "GetItem").await?;
        Ok(self.items.lock().expect("store lock").get(id).cloned())
    }

    async fn save(&self, invite: &Invite) -> Result<(), StoreError> {
        self.faults.before(Service::DynamoDb, "PutItem").await?;
        let mut items = self.items.lock().expect("store lock");
        let current = items.get(&invite.invite_id).map(|i| i.version);
        let ok = match current {
            None => invite.version == 1,
            Some(v) => invite.version == v + 1,
        };
        if !ok {
            return Err(StoreError::Conflict);
        }
        items.insert(invite.invite_id, invite.clone());
        Ok(())
    }

    async fn open_expired(
        &self,
        now: OffsetDateTime,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<InviteId>, StoreError> {
        self.faults.before(Service::DynamoDb, "Query").await?;
        let mut open: Vec<(OffsetDateTime, InviteId)> = self
            .items
            .lock()
            .expect("store lock")
            .values()
            .filter(|i| i.status.is_open() && i.expires_at <= now)
            .map(|i| (i.expires_at, i.invite_id))
            .collect();
        open.sort();
        Ok(page_of(
            open.into_iter().map(|(_, id)| id).collect(),
            limit,
            cursor,
        ))
    }

    async fn list_by_status(
        &self,
        status: InviteStatus,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<Invite>, StoreError> {
        self.faults.before(Service::DynamoDb, "Query").await?;
        let mut all: Vec<Invite> = self
            .items
            .lock()
            .expect("store lock")
            .values()
            .filter(|i| i.status == status)
            .cloned()
            .collect();
        all.sort_by(|a, b| {
            b.updated_at
                .cmp(&a.updated_at)
                .then(a.invite_id.cmp(&b.invite_id))
        });
        Ok(page_of(all, limit, cursor))
    }

    async fn with_unpublished(&self, limit: usize) -> Result<Vec<InviteId>, StoreError> {
        self.faults.before(Service::DynamoDb, "Query").await?;
        Ok(self
            .items
            .lock()
            .expect("store lock")
            .values()
            .filter(|i| !i.outbox.is_empty())
            .map(|i| i.invite_id)
            .take(limit)
            .collect())
    }
}
