//! An in-memory [`Publisher`] that keeps every lifecycle event.

use std::sync::Mutex;

use async_trait::async_trait;

use super::Faults;
use crate::domain::invite::PendingPublication;
use crate::error::{DownstreamError, Service};
use crate::ports::Publisher;

#[derive(Debug, Default)]
pub struct MemoryPublisher {
    published: Mutex<Vec<PendingPublication>>,
    pub faults: Faults,
}

impl MemoryPublisher {
    pub fn published(&self) -> Vec<PendingPublication> {
        self.published.lock().expect("publisher lock").clone()
    }

    pub fn types(&self) -> Vec<String> {
        self.published().into_iter().map(|p| p.event_type).collect()
    }
}

#[async_trait]
impl Publisher for MemoryPublisher {
    async fn publish(&self, event: &PendingPublication) -> Result<(), DownstreamError> {
        self.faults.before(Service::Sqs, "SendMessage").await?;
        self.published
            .lock()
            .expect("publisher lock")
            .push(event.clone());
        Ok(())
    }
}
