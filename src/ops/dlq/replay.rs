//! `dlq replay`: moves matching dead letters back to the configured queue (or `--to-queue`). For
//! each batch it sends the copies first and deletes the dead letters only after SQS accepted the
//! copies: a crash in
//! between leaves the dead letter in place (it reappears when its hold ends) and, at worst, a
//! second copy is sent by the next replay — an event the worker has already handled is a no-op
//! (its id is in the invite's history), so the duplicate changes nothing downstream.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::Retryable;
use time::OffsetDateTime;

use crate::adapters::sqs::MAX_BATCH;
use crate::error::DownstreamError;
use crate::ops::dlq::filter::Filters;
use crate::ops::dlq::lineage::{claimed_source, replay_copy, same_queue, ReplayCopy};
use crate::ops::dlq::scan::{Released, Scan, ScanOptions};
use crate::ops::dlq::view::DeadLetterView;
use crate::ops::send::{default_backoff, send_all};
use crate::ports::Queues;
use crate::ratelimit::TokenBucket;

/// A refused or failed DLQ command.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The command refuses to run as asked (a replay to the DLQ itself, a purge without its
    /// safety flag or a filter).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Downstream(#[from] DownstreamError),
}

/// What to replay and how.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub filters: Filters,
    /// Replay at most this many (matching) dead letters.
    pub max: Option<usize>,
    /// Messages per second sent back; `None` is unlimited.
    pub rate_per_second: Option<f64>,
    /// Only say what would be replayed.
    pub dry_run: bool,
    /// The configured `queue.url`: where every dead letter goes unless `to_queue` names
    /// another. A dead letter's `invite_worker.source_queue` attribute is only reported, never
    /// followed: anyone who can write to the DLQ can forge it.
    pub configured_queue: String,
    /// `--to-queue`: the operator sends the dead letters here instead.
    pub to_queue: Option<String>,
    pub scan: ScanOptions,
}

impl ReplayOptions {
    /// Where the copies go: `to_queue`, else the configured queue. Refused when that is the DLQ
    /// itself (a replay would move each dead letter back where it is, for ever) or empty.
    pub fn destination(&self, dlq_url: &str) -> Result<&str, DlqError> {
        let destination = self.to_queue.as_deref().unwrap_or(&self.configured_queue);
        if destination.trim().is_empty() {
            return Err(DlqError::Refused(
                "no destination: queue.url is not set and --to-queue was not given".into(),
            ));
        }
        if same_queue(destination, dlq_url) {
            return Err(DlqError::Refused(format!(
                "the destination {destination} is the dead-letter queue itself; replay to the source queue (queue.url or --to-queue)"
            )));
        }
        Ok(destination)
    }

    /// Scan settings for a replay (or purge) at `rate`: messages are held for five minutes plus
    /// twice the time a whole batch takes at that rate, so that the ones left alone (not
    /// matching) stay out of the way of later receives even on a long run. After a crash they
    /// reappear when the hold ends.
    pub fn scan_for_rate(rate_per_second: Option<f64>) -> ScanOptions {
        let batch_seconds = match rate_per_second {
            Some(r) if r.is_finite() && r > 0.0 => (MAX_BATCH as f64 / r).ceil() as u64,
            _ => 0,
        };
        ScanOptions {
            wait: Duration::from_secs(1),
            hold: Duration::from_secs((300 + 2 * batch_seconds).min(43_200)),
        }
    }
}

/// What became of one matching dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Sent to `destination` and deleted from the DLQ.
    Replayed { destination: String },
    /// `--dry-run`: would be sent to `destination`.
    WouldReplay { destination: String },
    /// Not sent (it stays on the DLQ): SQS's reason.
    SendFailed(String),
    /// Sent, but the DLQ copy could not be deleted: a later replay sends it again (harmless, but
    /// worth knowing).
    NotDeleted(String),
}

#[derive(Clone, Debug)]
pub struct ReplayEntry {
    pub view: DeadLetterView,
    pub outcome: ReplayOutcome,
    /// The `invite_worker.source_queue` of the dead letter when it names another queue than the
    /// destination (forged, or dead-lettered from another queue): reported, not followed.
    pub disagreeing_source: Option<String>,
    /// Original attributes that did not fit on the copy.
    pub dropped_attributes: Vec<String>,
}

/// The tally of a replay.
#[derive(Clone, Debug, Default)]
pub struct ReplaySummary {
    pub dry_run: bool,
    pub examined: usize,
    /// Matched the filters (and were within `--max`).
    pub matched: usize,
    pub replayed: usize,
    /// Did not match the filters (left on the DLQ).
    pub skipped: usize,
    /// Could not be sent.
    pub failed: usize,
    /// Sent but not deleted from the DLQ.
    pub not_deleted: usize,
    /// Matched, and claimed to come from another queue than the destination.
    pub disagreeing_sources: usize,
    pub entries: Vec<ReplayEntry>,
    pub released: Released,
}

impl ReplaySummary {
    /// Whether everything that matched was replayed cleanly.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.not_deleted == 0
    }
}

/// Moves matching dead letters on `dlq_url` back to the configured queue (or `to_queue`).
/// Refused, before anything is received, when that destination is the DLQ itself. Errors from
/// SQS that outlast the retries end the replay (with whatever was replayed so far already done);
/// every message still held is released before this returns.
pub async fn replay<Q: Queues + ?Sized>(
    queue: &Q,
    dlq_url: &str,
    options: &ReplayOptions,
) -> Result<ReplaySummary, DlqError> {
    let destination = options.destination(dlq_url)?;
    let bucket = options
        .rate_per_second
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|r| TokenBucket::new(r, 1));
    let mut scan = Scan::new(queue, dlq_url, options.scan);
    let mut summary = ReplaySummary {
        dry_run: options.dry_run,
        ..Default::default()
    };
    let result = replay_walk(
        queue,
        &mut scan,
        options,
        destination,
        bucket.as_ref(),
        &mut summary,
    )
    .await;
    summary.released = scan.release_all().await;
    result.map(|()| summary).map_err(DlqError::from)
}

async fn replay_walk<Q: Queues + ?Sized>(
    queue: &Q,
    scan: &mut Scan<'_, Q>,
    options: &ReplayOptions,
    destination: &str,
    bucket: Option<&TokenBucket>,
    summary: &mut ReplaySummary,
) -> Result<(), DownstreamError> {
    let max = options.max.unwrap_or(usize::MAX);
    loop {
        if summary.matched >= max {
            return Ok(());
        }
        let batch = scan.next(max - summary.matched).await?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut copies: Vec<(DeadLetterView, ReplayCopy, Option<String>)> = Vec::new();
        for m in batch {
            summary.examined += 1;
            let view = DeadLetterView::of(&m);
            if !options.filters.matches(&view) {
                summary.skipped += 1;
                continue;
            }
            if summary.matched >= max {
                // Beyond --max: left alone (released at the end).
                continue;
            }
            summary.matched += 1;
            let disagreeing_source = claimed_source(&m)
                .filter(|source| !same_queue(source, destination))
                .map(str::to_string);
            if let Some(source) = &disagreeing_source {
                summary.disagreeing_sources += 1;
                tracing::warn!(message_id = %m.message_id, claimed_source = %source, destination, "dead letter claims another source queue; replaying to the destination");
            }
            let copy = replay_copy(&m, destination, OffsetDateTime::now_utc());
            if options.dry_run {
                summary.entries.push(ReplayEntry {
                    view,
                    outcome: ReplayOutcome::WouldReplay {
                        destination: copy.destination,
                    },
                    disagreeing_source,
                    dropped_attributes: copy.dropped_attributes,
                });
            } else {
                copies.push((view, copy, disagreeing_source));
            }
        }
        if copies.is_empty() {
            continue;
        }
        let just_copies: Vec<ReplayCopy> = copies.iter().map(|(_, c, _)| c.clone()).collect();
        let sent = send_copies(queue, &just_copies, bucket).await;
        // Delete only what SQS accepted.
        let accepted: Vec<usize> = (0..copies.len()).filter(|&i| sent[i].is_ok()).collect();
        let handles: Vec<String> = accepted
            .iter()
            .map(|&i| copies[i].1.receipt_handle.clone())
            .collect();
        let deleted = delete_dead_letters(queue, scan.url(), &handles).await;
        let mut delete_result: BTreeMap<usize, Result<(), String>> = BTreeMap::new();
        for (k, &i) in accepted.iter().enumerate() {
            delete_result.insert(i, deleted[k].clone());
        }
        for (i, (view, copy, disagreeing_source)) in copies.into_iter().enumerate() {
            let outcome = match (&sent[i], delete_result.remove(&i)) {
                (Err(e), _) => {
                    summary.failed += 1;
                    ReplayOutcome::SendFailed(e.clone())
                }
                (Ok(()), Some(Err(e))) => {
                    summary.not_deleted += 1;
                    ReplayOutcome::NotDeleted(e)
                }
                (Ok(()), _) => {
                    summary.replayed += 1;
                    scan.forget(&copy.dlq_message_id);
                    ReplayOutcome::Replayed {
                        destination: copy.destination.clone(),
                    }
                }
            };
            if let ReplayOutcome::SendFailed(e) | ReplayOutcome::NotDeleted(e) = &outcome {
                tracing::warn!(message_id = %copy.dlq_message_id, error = %e, "dead letter not replayed cleanly");
            }
            summary.entries.push(ReplayEntry {
                view,
                outcome,
                disagreeing_source,
                dropped_attributes: copy.dropped_attributes,
            });
        }
    }
}

/// The send step of a replay: sends each copy to its destination (at most `bucket`'s rate), with
/// retries; the result for each copy, in order. Deletes nothing.
pub async fn send_copies<Q: Queues + ?Sized>(
    queue: &Q,
    copies: &[ReplayCopy],
    bucket: Option<&TokenBucket>,
) -> Vec<Result<(), String>> {
    let mut results = vec![Ok(()); copies.len()];
    let mut by_destination: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, c) in copies.iter().enumerate() {
        by_destination.entry(&c.destination).or_default().push(i);
    }
    for (destination, indices) in by_destination {
        if let Some(bucket) = bucket {
            for _ in &indices {
                bucket.acquire().await;
            }
        }
        let messages: Vec<_> = indices.iter().map(|&i| copies[i].message.clone()).collect();
        let sent = send_all(queue, destination, &messages, default_backoff()).await;
        for (k, r) in sent.into_iter().enumerate() {
            results[indices[k]] = r;
        }
    }
    results
}

/// Deletes messages from the DLQ by receipt handle, retrying transient failures of whole calls;
/// the result for each, in order.
pub async fn delete_dead_letters<Q: Queues + ?Sized>(
    queue: &Q,
    dlq_url: &str,
    receipt_handles: &[String],
) -> Vec<Result<(), String>> {
    if receipt_handles.is_empty() {
        return Vec::new();
    }
    let deleted = (|| async { queue.at(dlq_url).delete_messages(receipt_handles).await })
        .retry(default_backoff())
        .sleep(tokio::time::sleep)
        .when(DownstreamError::is_transient)
        .await;
    match deleted {
        Ok(failures) => {
            let mut results = vec![Ok(()); receipt_handles.len()];
            for f in failures {
                if let Some(r) = results.get_mut(f.index) {
                    *r = Err(format!("{}: {}", f.code, f.message));
                }
            }
            results
        }
        Err(e) => vec![Err(e.to_string()); receipt_handles.len()],
    }
}

#[cfg(test)]
pub(super) mod tests;
