//! [`Scan`]: walks a queue without consuming it. Each receive hides the messages it returns for a
//! short while (so the next receive returns others), messages seen before are skipped (SQS may
//! return a message again in a later receive), and at the end every message that was not
//! deleted is released: `ChangeMessageVisibility` to 0, visible again at once.
//!
//! If the process dies mid-scan nothing is lost either: the held messages come back by themselves
//! when their short visibility timeout ends.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::adapters::sqs::MAX_BATCH;
use crate::error::DownstreamError;
use crate::ports::{QueueMessage, Queues};

/// Receives in a row that return only messages already seen before the scan counts as done
/// (their hold ran out while the scan went on).
const STALE_RECEIVES: u32 = 2;

/// How a scan receives.
#[derive(Clone, Copy, Debug)]
pub struct ScanOptions {
    /// Long-poll wait per receive; an empty long poll ends the scan.
    pub wait: Duration,
    /// How long received messages stay hidden from other consumers (and from this scan's next
    /// receives) unless released first.
    pub hold: Duration,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(1),
            hold: Duration::from_secs(30),
        }
    }
}

/// What [`Scan::release_all`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Released {
    pub released: usize,
    /// Could not be released; they become visible when their hold ends.
    pub failed: usize,
}

/// A walk over one queue. Call [`Scan::release_all`] when done (also after an error).
pub struct Scan<'q, Q: Queues + ?Sized> {
    queue: &'q Q,
    url: String,
    options: ScanOptions,
    seen: HashSet<String>,
    /// Message id -> the latest receipt handle, for messages received and not deleted.
    held: BTreeMap<String, String>,
    stale: u32,
    done: bool,
}

impl<'q, Q: Queues + ?Sized> Scan<'q, Q> {
    pub fn new(queue: &'q Q, url: impl Into<String>, options: ScanOptions) -> Self {
        Self {
            queue,
            url: url.into(),
            options,
            seen: HashSet::new(),
            held: BTreeMap::new(),
            stale: 0,
            done: false,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Up to `want` (at most 10) messages not returned before; empty when the queue has no more.
    pub async fn next(&mut self, want: usize) -> Result<Vec<QueueMessage>, DownstreamError> {
        let max = want.clamp(1, MAX_BATCH) as u8;
        while !self.done {
            let (queue, url, options) = (self.queue, self.url.as_str(), self.options);
            let received = (|| async {
                queue
                    .at(url)
                    .receive_and_hold(max, options.wait, options.hold)
                    .await
            })
            .retry(receive_retries())
            .sleep(tokio::time::sleep)
            .when(DownstreamError::is_transient)
            .await?;
            if received.is_empty() {
                self.done = true;
                break;
            }
            let mut fresh = Vec::new();
            for m in received {
                self.held
                    .insert(m.message_id.clone(), m.receipt_handle.clone());
                if self.seen.insert(m.message_id.clone()) {
                    fresh.push(m);
                }
            }
            if !fresh.is_empty() {
                self.stale = 0;
                return Ok(fresh);
            }
            self.stale += 1;
            if self.stale >= STALE_RECEIVES {
                self.done = true;
            }
        }
        Ok(Vec::new())
    }

    /// The message was deleted: there is nothing to release.
    pub fn forget(&mut self, message_id: &str) {
        self.held.remove(message_id);
    }

    /// Messages received and not yet deleted or released.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Makes every held message visible again at once.
    pub async fn release_all(&mut self) -> Released {
        let mut report = Released::default();
        for (message_id, handle) in std::mem::take(&mut self.held) {
            match self
                .queue
                .at(&self.url)
                .change_visibility(&handle, Duration::ZERO)
                .await
            {
                Ok(()) => report.released += 1,
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(%message_id, error = %e, "could not release a message; it becomes visible when its hold ends");
                }
            }
        }
        report
    }
}

fn receive_retries() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(3)
        .with_jitter()
        .with_jitter_seed(rand::random())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryQueues;

    #[tokio::test]
    async fn a_scan_sees_each_message_once_and_leaves_them_all_visible() {
        let q = MemoryQueues::new();
        for i in 0..23 {
            q.put("dlq", &format!("m{i}"), &[]);
        }
        let mut scan = Scan::new(&q, "dlq", ScanOptions::default());
        let mut bodies = Vec::new();
        loop {
            let batch = scan.next(10).await.unwrap();
            if batch.is_empty() {
                break;
            }
            bodies.extend(batch.into_iter().map(|m| m.body));
        }
        assert_eq!(bodies.len(), 23);
        assert_eq!(q.visible_len("dlq"), 0, "held during the scan");
        assert_eq!(
            scan.release_all().await,
            Released {
                released: 23,
                failed: 0
            }
        );
        assert_eq!(q.visible_len("dlq"), 23, "nothing consumed");
    }

    #[tokio::test]
    async fn messages_that_come_back_are_not_returned_twice_and_end_the_scan() {
        let q = MemoryQueues::new();
        q.put("dlq", "a", &[]);
        q.put("dlq", "b", &[]);
        let mut scan = Scan::new(&q, "dlq", ScanOptions::default());
        assert_eq!(scan.next(10).await.unwrap().len(), 2);
        // Their hold ran out: the same messages come back.
        q.expire_holds("dlq");
        assert!(scan.next(10).await.unwrap().is_empty());
        // The newest receipt handles are the ones released.
        assert_eq!(scan.release_all().await.released, 2);
        assert_eq!(q.visible_len("dlq"), 2);
    }

    #[tokio::test]
    async fn forgotten_messages_are_not_released() {
        let q = MemoryQueues::new();
        q.put("dlq", "a", &[]);
        let mut scan = Scan::new(&q, "dlq", ScanOptions::default());
        let m = scan.next(1).await.unwrap().remove(0);
        scan.forget(&m.message_id);
        assert_eq!(scan.held(), 0);
        assert_eq!(scan.release_all().await.released, 0);
    }
}
