//! Sending many messages to one queue: batches within SQS's limits (10 entries and 256 KiB per
//! `SendMessageBatch`), and a few retries (with backon) for the entries that failed transiently.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::ports::queue_limits::MAX_BATCH;
use crate::ports::{OutgoingMessage, Queues};

pub use crate::ports::queue_limits::MAX_BATCH_BYTES;

/// The retries for entries that failed transiently: four more tries over about ten seconds.
pub fn default_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(4)
        .with_jitter()
        .with_jitter_seed(rand::random())
}

/// What SQS counts towards the batch payload for one message.
fn payload_bytes(m: &OutgoingMessage) -> usize {
    m.body.len()
        + m.attributes
            .iter()
            .map(|(k, v)| k.len() + v.len() + "String".len())
            .sum::<usize>()
}

/// Splits `indices` into batches of at most 10 entries and [`MAX_BATCH_BYTES`]; an entry that is
/// too large on its own gets a batch of its own (and SQS's refusal).
fn batches(indices: &[usize], entries: &[OutgoingMessage]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for &i in indices {
        let size = payload_bytes(&entries[i]);
        if !current.is_empty() && (current.len() == MAX_BATCH || bytes + size > MAX_BATCH_BYTES) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += size;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Sends every entry to `queue_url`; the result for each, in order: `Ok` once SQS accepted it,
/// `Err` with SQS's reason if it refused it for good or still failed after the retries.
///
/// Retried: entries SQS reports as failed without the sender's fault, and whole calls that failed
/// transiently (throttling, 5xx, timeouts). A retried send after a timeout may duplicate a
/// message; everything this crate sends carries an event id, so duplicates are absorbed.
pub async fn send_all<Q: Queues + ?Sized>(
    queue: &Q,
    queue_url: &str,
    entries: &[OutgoingMessage],
    backoff: ExponentialBuilder,
) -> Vec<Result<(), String>> {
    let mut results: Vec<Result<(), String>> = vec![Ok(()); entries.len()];
    let mut pending: Vec<usize> = (0..entries.len()).collect();
    let mut delays = backoff.build();
    while !pending.is_empty() {
        let mut retry = Vec::new();
        for batch in batches(&pending, entries) {
            let messages: Vec<OutgoingMessage> =
                batch.iter().map(|&i| entries[i].clone()).collect();
            match queue.at(queue_url).send_messages(messages).await {
                Ok(failures) => {
                    for &i in &batch {
                        results[i] = Ok(());
                    }
                    for f in failures {
                        let Some(&i) = batch.get(f.index) else {
                            continue;
                        };
                        results[i] = Err(format!("{}: {}", f.code, f.message));
                        if !f.sender_fault {
                            retry.push(i);
                        }
                    }
                }
                Err(e) => {
                    for &i in &batch {
                        results[i] = Err(e.to_string());
                    }
                    if e.is_transient() {
                        retry.extend(batch.iter().copied());
                    }
                }
            }
        }
        if retry.is_empty() {
            break;
        }
        let Some(delay) = delays.next() else {
            break;
        };
        tracing::warn!(
            entries = retry.len(),
            delay_ms = delay.as_millis() as u64,
            "some messages were not accepted; retrying"
        );
        tokio::time::sleep(delay).await;
        retry.sort_unstable();
        pending = retry;
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryQueues;

    fn message(body: &str) -> OutgoingMessage {
        OutgoingMessage {
            id: body.to_string(),
            body: body.to_string(),
            ..Default::default()
        }
    }

    fn quick() -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(1))
            .with_max_delay(Duration::from_millis(2))
            .with_max_times(3)
    }

    #[test]
    fn batches_respect_count_and_size() {
        let small: Vec<OutgoingMessage> = (0..23).map(|i| message(&i.to_string())).collect();
        let idx: Vec<usize> = (0..23).collect();
        let sizes: Vec<usize> = batches(&idx, &small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 3]);

        let big = "x".repeat(100 * 1024);
        let large: Vec<OutgoingMessage> = (0..5).map(|_| message(&big)).collect();
        let sizes: Vec<usize> = batches(&(0..5).collect::<Vec<_>>(), &large)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [2, 2, 1]);
    }

    #[tokio::test]
    async fn transient_entry_failures_are_retried_and_sender_faults_are_not() {
        let q = MemoryQueues::new();
        q.fail_send_entries("q", 2, false);
        let entries: Vec<OutgoingMessage> = (0..5).map(|i| message(&format!("m{i}"))).collect();
        let results = send_all(&q, "q", &entries, quick()).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(q.bodies("q").len(), 5);

        let q = MemoryQueues::new();
        q.fail_send_entries("q", 1, true);
        let results = send_all(&q, "q", &entries, quick()).await;
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
        assert!(results[0]
            .as_ref()
            .unwrap_err()
            .contains("InvalidParameterValue"));
        assert_eq!(q.bodies("q").len(), 4);
    }

    #[tokio::test]
    async fn failures_that_outlast_the_retries_are_reported() {
        let q = MemoryQueues::new();
        q.fail_send_calls("q", 10);
        let entries = vec![message("a"), message("b")];
        let results = send_all(&q, "q", &entries, quick()).await;
        assert!(results.iter().all(Result::is_err));
        assert!(q.bodies("q").is_empty());
        assert_eq!(q.send_calls(), 4, "one try and three retries");
    }
}
