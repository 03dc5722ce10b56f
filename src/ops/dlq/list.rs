//! `dlq list`: the dead letters, described, without consuming any.

use serde_json::json;
use time::OffsetDateTime;

use crate::error::DownstreamError;
use crate::ops::dlq::filter::Filters;
use crate::ops::dlq::scan::{Released, Scan, ScanOptions};
use crate::ops::dlq::view::DeadLetterView;
use crate::ports::Queues;

/// What to list.
#[derive(Clone, Debug)]
pub struct ListOptions {
    /// At most this many.
    pub max: usize,
    pub filters: Filters,
    pub scan: ScanOptions,
}

impl Default for ListOptions {
    fn default() -> Self {
        Self {
            max: 100,
            filters: Filters::default(),
            scan: ScanOptions::default(),
        }
    }
}

/// The dead letters found.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub letters: Vec<DeadLetterView>,
    /// Stopped at `max`: there may be more.
    pub truncated: bool,
    /// Messages looked at (matching the filters or not).
    pub examined: usize,
    pub released: Released,
}

/// Lists the dead letters on `dlq_url` that match the filters. Every message received is
/// released again before this returns, also on error.
pub async fn list<Q: Queues + ?Sized>(
    queue: &Q,
    dlq_url: &str,
    options: &ListOptions,
) -> Result<Listing, DownstreamError> {
    let mut scan = Scan::new(queue, dlq_url, options.scan);
    let mut listing = Listing::default();
    let result = walk(&mut scan, options, &mut listing).await;
    listing.released = scan.release_all().await;
    result.map(|()| listing)
}

async fn walk<Q: Queues + ?Sized>(
    scan: &mut Scan<'_, Q>,
    options: &ListOptions,
    listing: &mut Listing,
) -> Result<(), DownstreamError> {
    loop {
        let remaining = options.max.saturating_sub(listing.letters.len());
        if remaining == 0 {
            listing.truncated = true;
            return Ok(());
        }
        let batch = scan.next(remaining).await?;
        if batch.is_empty() {
            return Ok(());
        }
        for m in batch {
            listing.examined += 1;
            let view = DeadLetterView::of(&m);
            if !options.filters.matches(&view) {
                continue;
            }
            if listing.letters.len() == options.max {
                listing.truncated = true;
                continue;
            }
            listing.letters.push(view);
        }
    }
}

/// Shortens `s` to `max` characters, with `…` when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The queue's name from its URL.
pub fn queue_name(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

/// A table for people: one dead letter per line, the reason last (shortened).
pub fn render_table(letters: &[DeadLetterView], now: OffsetDateTime, show_emails: bool) -> String {
    let mut out = format!(
        "{:<5} {:<22} {:<38} {:<30} {:<22} {:>3} {:<24} {}\n",
        "AGE", "TYPE", "EVENT ID", "EMAIL", "REASON CODE", "TRY", "SOURCE", "REASON"
    );
    for v in letters {
        out.push_str(&format!(
            "{:<5} {:<22} {:<38} {:<30} {:<22} {:>3} {:<24} {}\n",
            v.age(now),
            cut(v.event_type.as_deref().unwrap_or("-"), 22),
            cut(v.event_id.as_deref().unwrap_or("-"), 38),
            cut(&v.email_for_display(show_emails), 30),
            cut(v.reason_code.as_deref().unwrap_or("-"), 22),
            v.attempts.map(|a| a.to_string()).unwrap_or("-".into()),
            cut(v.source_queue.as_deref().map(queue_name).unwrap_or("-"), 24),
            cut(v.reason.as_deref().unwrap_or("-"), 120),
        ));
    }
    out
}

/// The listing for systems (`--json`); emails masked unless `show_emails`.
pub fn to_json(listing: &Listing, now: OffsetDateTime, show_emails: bool) -> serde_json::Value {
    let letters: Vec<serde_json::Value> = listing
        .letters
        .iter()
        .map(|v| {
            let mut value = serde_json::to_value(v).unwrap_or_default();
            if let Some(o) = value.as_object_mut() {
                o.insert(
                    "email".into(),
                    match &v.email {
                        Some(_) => json!(v.email_for_display(show_emails)),
                        None => serde_json::Value::Null,
                    },
                );
                o.insert(
                    "age_seconds".into(),
                    json!(v.dead_lettered_at.map(|t| (now - t).whole_seconds().max(0))),
                );
            }
            value
        })
        .collect();
    json!({
        "dead_letters": letters,
        "count": listing.letters.len(),
        "examined": listing.examined,
        "truncated": listing.truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryQueues;
    use crate::adapters::sqs::{ATTR_ATTEMPTS, ATTR_REASON, ATTR_REASON_CODE, ATTR_SOURCE_QUEUE};

    fn invite(id: &str, email: &str) -> String {
        format!(
            r#"{{"version":1,"type":"invite.requested","id":"{id}","data":{{"email":"{email}"}}}}"#
        )
    }

    fn fill(q: &MemoryQueues) {
        q.put(
            "dlq",
            &invite("e-1", "jane@example.com"),
            &[
                (ATTR_REASON_CODE, "user_pool_not_found"),
                (ATTR_REASON, "cognito DescribeUserPool: pool does not exist"),
                (ATTR_ATTEMPTS, "1"),
                (ATTR_SOURCE_QUEUE, "https://sqs.example/123/invite-events"),
            ],
        );
        q.put(
            "dlq",
            "{\"type\": \"invite.requested\"",
            &[(ATTR_REASON_CODE, "invalid_event"), (ATTR_ATTEMPTS, "1")],
        );
        q.put("dlq", &invite("e-3", "max@example.com"), &[]);
    }

    #[tokio::test]
    async fn lists_everything_and_consumes_nothing() {
        let q = MemoryQueues::new();
        fill(&q);
        let listing = list(&q, "dlq", &ListOptions::default()).await.unwrap();
        assert_eq!(listing.letters.len(), 3);
        assert!(!listing.truncated);
        assert_eq!(listing.released.released, 3);
        assert_eq!(q.visible_len("dlq"), 3);

        let table = render_table(&listing.letters, OffsetDateTime::now_utc(), false);
        assert!(table.contains("j***@example.com"), "{table}");
        assert!(!table.contains("jane@example.com"), "{table}");
        assert!(table.contains("user_pool_not_found"));
        assert!(table.contains("invite-events"));
        assert!(table.contains("5m"), "age from SentTimestamp:\n{table}");
        let shown = render_table(&listing.letters, OffsetDateTime::now_utc(), true);
        assert!(shown.contains("jane@example.com"));
    }

    #[tokio::test]
    async fn max_and_filters_limit_the_listing() {
        let q = MemoryQueues::new();
        fill(&q);
        let options = ListOptions {
            max: 1,
            ..Default::default()
        };
        let listing = list(&q, "dlq", &options).await.unwrap();
        assert_eq!(listing.letters.len(), 1);
        assert!(listing.truncated);
        assert_eq!(q.visible_len("dlq"), 3);

        let options = ListOptions {
            filters: Filters::parse(&["reason=invalid_event"]).unwrap(),
            ..Default::default()
        };
        let listing = list(&q, "dlq", &options).await.unwrap();
        assert_eq!(listing.letters.len(), 1);
        assert_eq!(listing.examined, 3);
        let json = to_json(&listing, OffsetDateTime::now_utc(), false);
        assert_eq!(json["dead_letters"][0]["reason_code"], "invalid_event");
        assert_eq!(json["dead_letters"][0]["email"], serde_json::Value::Null);
        assert_eq!(
            json["dead_letters"][0]["event_type"],
            serde_json::Value::Null
        );
    }

    #[tokio::test]
    async fn json_masks_emails_unless_asked() {
        let q = MemoryQueues::new();
        fill(&q);
        let listing = list(&q, "dlq", &ListOptions::default()).await.unwrap();
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            to_json(&listing, now, false)["dead_letters"][0]["email"],
            "j***@example.com"
        );
        assert_eq!(
            to_json(&listing, now, true)["dead_letters"][0]["email"],
            "jane@example.com"
        );
    }
}
