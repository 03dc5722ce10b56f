//! `invite-worker enqueue`: invites in bulk. Every item is read ([`input`], [`csv_rows`]),
//! checked with the worker's own decoder and given a deterministic event id ([`prepare`]); only the
//! valid ones are sent, with `SendMessageBatch` and retries ([`crate::ops::send`]); each row's
//! fate can be written to a results file ([`results`]).

pub mod csv_rows;
pub mod input;
pub mod item;
pub mod prepare;
pub mod results;

use std::collections::HashMap;
use std::fmt;

use backon::ExponentialBuilder;

use crate::adapters::sqs::dead_letter::fifo_id;
use crate::domain::event::EventBody;
use crate::ops::send::send_all;
use crate::ports::{OutgoingMessage, Queues};

pub use input::{parse, read_file, Format, SingleInvite};
pub use item::{InputError, Item, Origin};
pub use prepare::{event_id_for, prepare, Prepared};

/// The FIFO message group for an event: the person's normalised email (or invite id), so that
/// one person's events stay in order and different people's run in parallel; its SHA-256 in hex
/// when that is longer than SQS's 128 characters ([`fifo_id`]). The one rule for `enqueue` and
/// `dlq replay`, and for producers (docs/event-contract.md, "FIFO queues").
pub fn group_id(body: &EventBody) -> String {
    fifo_id(&body.target().to_string())
}

/// How to enqueue.
#[derive(Clone, Debug)]
pub struct EnqueueOptions {
    /// Validate only.
    pub dry_run: bool,
    /// Send items that fail validation too (to exercise the worker's dead-letter path).
    pub no_validate: bool,
    /// Retries for entries SQS did not accept.
    pub backoff: ExponentialBuilder,
}

impl Default for EnqueueOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            no_validate: false,
            backoff: crate::ops::send::default_backoff(),
        }
    }
}

/// What became of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowStatus {
    /// Accepted by SQS.
    Sent,
    /// Valid; not sent (`--dry-run`).
    Valid,
    /// Refused by validation; not sent.
    Invalid,
    /// Valid, but SQS did not accept it (after the retries).
    Failed,
}

impl RowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RowStatus::Sent => "sent",
            RowStatus::Valid => "valid",
            RowStatus::Invalid => "invalid",
            RowStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for RowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowResult {
    pub origin: Origin,
    pub email: Option<String>,
    pub event_id: Option<String>,
    pub status: RowStatus,
    /// Why it is invalid or failed, or a note (an address repeated in the file).
    pub message: String,
}

/// The results of one `enqueue`, row by row, in input order.
#[derive(Clone, Debug, Default)]
pub struct EnqueueReport {
    pub rows: Vec<RowResult>,
    pub dry_run: bool,
}

impl EnqueueReport {
    pub fn count(&self, status: RowStatus) -> usize {
        self.rows.iter().filter(|r| r.status == status).count()
    }

    /// Whether every row was valid and (unless a dry run) sent.
    pub fn all_good(&self) -> bool {
        self.rows
            .iter()
            .all(|r| matches!(r.status, RowStatus::Sent | RowStatus::Valid))
    }

    /// `line 7: data.email: has no @` for every invalid or failed row (and notes), in order.
    pub fn problems(&self) -> Vec<String> {
        let with_file = self.spans_files();
        self.rows
            .iter()
            .filter(|r| !r.message.is_empty())
            .map(|r| {
                let what = match r.status {
                    RowStatus::Failed => format!("not sent: {}", r.message),
                    _ => r.message.clone(),
                };
                format!("{}: {what}", r.origin.label(with_file))
            })
            .collect()
    }

    /// `12 rows: 9 sent, 2 invalid, 1 failed`.
    pub fn summary(&self) -> String {
        let n = self.rows.len();
        let mut parts = Vec::new();
        if self.dry_run {
            parts.push(format!("{} valid", self.count(RowStatus::Valid)));
        } else {
            parts.push(format!("{} sent", self.count(RowStatus::Sent)));
        }
        parts.push(format!("{} invalid", self.count(RowStatus::Invalid)));
        if !self.dry_run {
            parts.push(format!("{} failed", self.count(RowStatus::Failed)));
        }
        format!(
            "{n} row{}: {}{}",
            if n == 1 { "" } else { "s" },
            parts.join(", "),
            if self.dry_run {
                " (dry run: nothing sent)"
            } else {
                ""
            }
        )
    }

    fn spans_files(&self) -> bool {
        self.rows
            .first()
            .is_some_and(|first| self.rows.iter().any(|r| r.origin.file != first.origin.file))
    }
}

/// Notes for invites whose address already appeared in an earlier invite of this run: the
/// worker handles an identical event once, and records a different one for the same address as
/// a duplicate request.
fn repeated_addresses(prepared: &[Prepared]) -> HashMap<usize, String> {
    let mut first: HashMap<&str, &Prepared> = HashMap::new();
    let mut notes = HashMap::new();
    for (i, p) in prepared.iter().enumerate() {
        if p.event_type != Some("invite.requested") {
            continue;
        }
        let Some(email) = p.email.as_deref() else {
            continue;
        };
        let Some(earlier) = first.get(email) else {
            first.insert(email, p);
            continue;
        };
        let at = earlier.origin.label(earlier.origin.file != p.origin.file);
        let note = if earlier.event_id == p.event_id {
            format!("note: the same event as {at}; the worker handles it once")
        } else {
            format!(
                "note: same address as {at}; the worker records this one as a duplicate request"
            )
        };
        notes.insert(i, note);
    }
    notes
}

/// The rows' results before sending, and the messages to send.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Every row, with `Sent` standing for "to be sent" until [`send`] says otherwise.
    pub report: EnqueueReport,
    pub outgoing: Vec<OutgoingMessage>,
    /// For each outgoing message, its row in `report.rows`.
    pub outgoing_rows: Vec<usize>,
}

/// Decides what to send: the valid items (and with `no_validate` the invalid ones too); on a
/// FIFO queue (`fifo`) with the address as group id and the event id as deduplication id.
/// Nothing is sent on a dry run, and nothing needs a queue.
pub fn plan(prepared: Vec<Prepared>, fifo: bool, options: &EnqueueOptions) -> Plan {
    let notes = repeated_addresses(&prepared);
    let mut plan = Plan {
        report: EnqueueReport {
            rows: Vec::with_capacity(prepared.len()),
            dry_run: options.dry_run,
        },
        ..Default::default()
    };
    for (i, p) in prepared.into_iter().enumerate() {
        let send = p.sendable() && (p.problem.is_none() || options.no_validate);
        let ready = if options.dry_run {
            RowStatus::Valid
        } else {
            RowStatus::Sent
        };
        let (status, message) = match (&p.problem, send) {
            (Some(problem), true) => (
                ready,
                format!("invalid, sent anyway (--no-validate): {problem}"),
            ),
            (Some(problem), false) => (RowStatus::Invalid, problem.clone()),
            (None, _) => (ready, notes.get(&i).cloned().unwrap_or_default()),
        };
        if send && !options.dry_run {
            plan.outgoing_rows.push(i);
            plan.outgoing.push(OutgoingMessage {
                id: p.origin.label(true),
                body: p.body,
                group_id: fifo.then(|| p.group_id.clone()),
                dedup_id: fifo.then(|| p.dedup_id.clone()),
                attributes: Default::default(),
            });
        }
        plan.report.rows.push(RowResult {
            origin: p.origin,
            email: p.email,
            event_id: p.event_id,
            status,
            message,
        });
    }
    plan
}

/// Sends what `plan` decided; rows SQS did not accept (after the retries) become `Failed`.
pub async fn send<Q: Queues + ?Sized>(
    queue: &Q,
    queue_url: &str,
    plan: Plan,
    backoff: ExponentialBuilder,
) -> EnqueueReport {
    let mut report = plan.report;
    if plan.outgoing.is_empty() {
        return report;
    }
    let results = send_all(queue, queue_url, &plan.outgoing, backoff).await;
    for (k, result) in results.into_iter().enumerate() {
        if let Err(e) = result {
            let row = &mut report.rows[plan.outgoing_rows[k]];
            row.status = RowStatus::Failed;
            row.message = e;
        }
    }
    report
}

/// [`plan`] and [`send`] to `queue_url` (FIFO when it ends in `.fifo`).
pub async fn enqueue<Q: Queues + ?Sized>(
    queue: &Q,
    queue_url: &str,
    prepared: Vec<Prepared>,
    options: &EnqueueOptions,
) -> EnqueueReport {
    let plan = plan(prepared, queue_url.ends_with(".fifo"), options);
    send(queue, queue_url, plan, options.backoff).await
}

#[cfg(test)]
mod tests;
