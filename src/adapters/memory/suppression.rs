//! [`MemorySuppressionList`]: the account's suppression list, in memory.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::faults::Faults;
use crate::domain::EmailAddress;
use crate::error::{DownstreamError, Service};
use crate::ports::{Suppressed, SuppressionList, SuppressionReason};

#[derive(Debug, Default)]
pub struct MemorySuppressionList {
    entries: Mutex<BTreeMap<String, Suppressed>>,
    /// Failures for `GetSuppressedDestination`.
    pub faults: Faults,
}

impl MemorySuppressionList {
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `email` on the list.
    pub fn suppress(&self, email: &str, reason: SuppressionReason) {
        let entry = Suppressed {
            reason,
            since: None,
        };
        self.lock().insert(email.to_ascii_lowercase(), entry);
    }

    /// Takes `email` off the list.
    pub fn remove(&self, email: &str) {
        self.lock().remove(&email.to_ascii_lowercase());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Suppressed>> {
        self.entries.lock().expect("suppression list lock")
    }
}

#[async_trait]
impl SuppressionList for MemorySuppressionList {
    async fn suppressed(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<Suppressed>, DownstreamError> {
        self.faults
            .before(Service::Ses, "GetSuppressedDestination")
            .await?;
        Ok(self
            .lock()
            .get(&email.as_str().to_ascii_lowercase())
            .cloned())
    }
}
