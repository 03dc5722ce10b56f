//! [`MemoryRateBudget`]: the fleet's shared window counters in memory (one map, many workers).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::DownstreamError;
use crate::ports::RateBudget;

/// Counters per (budget, window); share one `Arc<MemoryRateBudget>` between limiters to play a
/// fleet. `fail_next` makes the next calls fail as unavailable.
#[derive(Debug, Default)]
pub struct MemoryRateBudget {
    counts: Mutex<HashMap<(String, u64), u64>>,
    calls: Mutex<u64>,
    failures: Mutex<u32>,
}

impl MemoryRateBudget {
    /// Tickets handed out in `window` of `budget` so far (asked for, including those past the limit).
    pub fn count(&self, budget: &str, window: u64) -> u64 {
        let counts = self.counts.lock().expect("budget lock");
        counts
            .get(&(budget.to_string(), window))
            .copied()
            .unwrap_or(0)
    }

    /// `take` calls answered so far (the coordination cost).
    pub fn calls(&self) -> u64 {
        *self.calls.lock().expect("budget lock")
    }

    /// The next `n` calls fail with an unavailable error.
    pub fn fail_next(&self, n: u32) {
        *self.failures.lock().expect("budget lock") = n;
    }
}

#[async_trait]
impl RateBudget for MemoryRateBudget {
    async fn take(&self, budget: &str, window: u64, want: u32) -> Result<u64, DownstreamError> {
        *self.calls.lock().expect("budget lock") += 1;
        {
            let mut failures = self.failures.lock().expect("budget lock");
            if *failures > 0 {
                *failures -= 1;
                return Err(DownstreamError::new(
                    crate::error::Service::DynamoDb,
                    "UpdateItem",
                    crate::error::ErrorKind::Unavailable,
                    "injected failure",
                ));
            }
        }
        let mut counts = self.counts.lock().expect("budget lock");
        let count = counts.entry((budget.to_string(), window)).or_insert(0);
        let before = *count;
        *count += u64::from(want);
        Ok(before)
    }
}
