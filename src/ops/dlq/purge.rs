//! `dlq purge`: deletes the dead letters that match the filters, for good, walking the DLQ with
//! a [`Scan`] that leaves every other message where it was.

use crate::error::DownstreamError;
use crate::ops::dlq::filter::Filters;
use crate::ops::dlq::replay::{delete_dead_letters, DlqError};
use crate::ops::dlq::scan::{Released, Scan, ScanOptions};
use crate::ops::dlq::view::DeadLetterView;
use crate::ports::Queues;

/// What to purge.
#[derive(Clone, Debug)]
pub struct PurgeOptions {
    /// At least one is required.
    pub filters: Filters,
    pub max: Option<usize>,
    /// `--yes-delete-dead-letters`.
    pub confirmed: bool,
    pub scan: ScanOptions,
}

/// The tally of a purge.
#[derive(Clone, Debug, Default)]
pub struct PurgeSummary {
    pub examined: usize,
    pub skipped: usize,
    pub deleted: Vec<DeadLetterView>,
    pub failed: Vec<(DeadLetterView, String)>,
    pub released: Released,
}

/// Deletes the dead letters that match the filters, for good. Refuses without
/// `options.confirmed` and at least one filter.
pub async fn purge<Q: Queues + ?Sized>(
    queue: &Q,
    dlq_url: &str,
    options: &PurgeOptions,
) -> Result<PurgeSummary, DlqError> {
    if !options.confirmed {
        return Err(DlqError::Refused(
            "purge deletes dead letters for good; add --yes-delete-dead-letters to confirm".into(),
        ));
    }
    if options.filters.is_empty() {
        return Err(DlqError::Refused(
            "purge needs at least one --filter (e.g. --filter reason=invalid_event); to empty the whole DLQ use SQS's PurgeQueue".into(),
        ));
    }
    let mut scan = Scan::new(queue, dlq_url, options.scan);
    let mut summary = PurgeSummary::default();
    let result = purge_walk(queue, &mut scan, options, &mut summary).await;
    summary.released = scan.release_all().await;
    result.map(|()| summary).map_err(DlqError::from)
}

async fn purge_walk<Q: Queues + ?Sized>(
    queue: &Q,
    scan: &mut Scan<'_, Q>,
    options: &PurgeOptions,
    summary: &mut PurgeSummary,
) -> Result<(), DownstreamError> {
    let max = options.max.unwrap_or(usize::MAX);
    let done = |s: &PurgeSummary| s.deleted.len() + s.failed.len();
    loop {
        if done(summary) >= max {
            return Ok(());
        }
        let batch = scan.next(max - done(summary)).await?;
        if batch.is_empty() {
            return Ok(());
        }
        let mut matched = Vec::new();
        for m in batch {
            summary.examined += 1;
            let view = DeadLetterView::of(&m);
            if !options.filters.matches(&view) {
                summary.skipped += 1;
            } else if done(summary) + matched.len() < max {
                matched.push((view, m.receipt_handle));
            }
        }
        let handles: Vec<String> = matched.iter().map(|(_, h)| h.clone()).collect();
        let results = delete_dead_letters(queue, scan.url(), &handles).await;
        for ((view, _), result) in matched.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    scan.forget(&view.message_id);
                    summary.deleted.push(view);
                }
                Err(e) => summary.failed.push((view, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryQueues;
    use crate::ops::dlq::replay::tests::{dead_letter, invite, DLQ};

    #[tokio::test]
    async fn purge_refuses_without_the_flag_or_a_filter() {
        let q = MemoryQueues::new();
        dead_letter(&q, &invite("e-1", "a@example.com"), "invalid_event");
        let unconfirmed = PurgeOptions {
            filters: Filters::parse(&["reason=invalid_event"]).unwrap(),
            max: None,
            confirmed: false,
            scan: ScanOptions::default(),
        };
        let e = purge(&q, DLQ, &unconfirmed).await.unwrap_err();
        assert!(e.to_string().contains("--yes-delete-dead-letters"), "{e}");
        let unfiltered = PurgeOptions {
            filters: Filters::default(),
            confirmed: true,
            ..unconfirmed
        };
        let e = purge(&q, DLQ, &unfiltered).await.unwrap_err();
        assert!(e.to_string().contains("at least one --filter"), "{e}");
        assert_eq!(q.messages(DLQ).len(), 1);
    }

    #[tokio::test]
    async fn purge_deletes_only_what_matches() {
        let q = MemoryQueues::new();
        dead_letter(&q, &invite("e-1", "a@example.com"), "invalid_event");
        dead_letter(&q, &invite("e-2", "b@example.com"), "user_pool_not_found");
        dead_letter(&q, "garbage", "invalid_event");
        let s = purge(
            &q,
            DLQ,
            &PurgeOptions {
                filters: Filters::parse(&["reason=invalid_event"]).unwrap(),
                max: None,
                confirmed: true,
                scan: ScanOptions::default(),
            },
        )
        .await
        .unwrap();
        assert_eq!((s.deleted.len(), s.skipped, s.failed.len()), (2, 1, 0));
        assert_eq!(q.bodies(DLQ), [invite("e-2", "b@example.com")]);
        assert_eq!(q.visible_len(DLQ), 1);
    }
}
