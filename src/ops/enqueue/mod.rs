//! `invite-worker enqueue`: invites in bulk. Every item is read ([`input`], [`csv_rows`]),
//! checked with the worker's own decoder and given a deterministic event id ([`rows`]); only the
//! valid ones are sent, with `SendMessageBatch` and retries ([`crate::ops::send`]); each row's
//! fate can be written to a results file ([`results`]).

pub mod csv_rows;
pub mod input;
pub mod results;
pub mod rows;

use std::collections::HashMap;
use std::fmt;

use backon::ExponentialBuilder;

use crate::adapters::sqs::OutgoingMessage;
use crate::domain::event::{EventBody, InviteRef};
use crate::ops::queue::OpsQueue;
use crate::ops::send::send_all;

pub use input::{parse, read_file, Format, InputError, Item, Origin, SingleInvite};
pub use rows::{event_id_for, prepare, Prepared};

/// The FIFO message group for an event: the person's normalised email (or invite id), so that
/// one person's events stay in order and different people's run in parallel.
pub fn group_id(body: &EventBody) -> String {
    match body {
        EventBody::InviteRequested(r) => r.email.as_str().to_string(),
        EventBody::InviteResend { target, .. } | EventBody::InviteRevoke { target, .. } => {
            match target {
                InviteRef::Email(e) => e.as_str().to_string(),
                InviteRef::Id(id) => id.to_string(),
            }
        }
        EventBody::RegistrationCompleted { email, .. } => email.as_str().to_string(),
    }
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

/// Notes for rows whose address already appeared in an earlier row: the worker records the
/// later one as a duplicate request (or, if identical, as a redelivery).
fn repeated_addresses(prepared: &[Prepared]) -> HashMap<usize, String> {
    let mut first: HashMap<&str, &Origin> = HashMap::new();
    let mut notes = HashMap::new();
    for (i, p) in prepared.iter().enumerate() {
        let Some(email) = p.email.as_deref().filter(|_| p.problem.is_none()) else {
            continue;
        };
        match first.get(email) {
            Some(earlier) => {
                notes.insert(
                    i,
                    format!(
                        "note: same address as {}; the worker treats it as a duplicate of that invite",
                        earlier.label(earlier.file != p.origin.file)
                    ),
                );
            }
            None => {
                first.insert(email, &p.origin);
            }
        }
    }
    notes
}

/// Sends the valid items (and with `no_validate` the invalid ones too) to `queue_url`; on a
/// FIFO queue with the address as group id and the event id as deduplication id.
pub async fn enqueue<Q: OpsQueue + ?Sized>(
    queue: &Q,
    queue_url: &str,
    prepared: Vec<Prepared>,
    options: &EnqueueOptions,
) -> EnqueueReport {
    let fifo = queue_url.ends_with(".fifo");
    let notes = repeated_addresses(&prepared);
    let mut rows: Vec<RowResult> = Vec::with_capacity(prepared.len());
    let mut outgoing: Vec<OutgoingMessage> = Vec::new();
    let mut outgoing_rows: Vec<usize> = Vec::new();
    for (i, p) in prepared.into_iter().enumerate() {
        let send = p.sendable() && (p.problem.is_none() || options.no_validate);
        let (status, message) = match (&p.problem, send, options.dry_run) {
            (Some(problem), true, _) => (
                if options.dry_run {
                    RowStatus::Valid
                } else {
                    RowStatus::Sent
                },
                format!("invalid, sent anyway (--no-validate): {problem}"),
            ),
            (Some(problem), false, _) => (RowStatus::Invalid, problem.clone()),
            (None, _, true) => (RowStatus::Valid, String::new()),
            (None, _, false) => (RowStatus::Sent, String::new()),
        };
        let message = match notes.get(&i) {
            Some(note) if message.is_empty() => note.clone(),
            _ => message,
        };
        if send && !options.dry_run {
            outgoing_rows.push(i);
            outgoing.push(OutgoingMessage {
                id: p.origin.label(true),
                body: p.body,
                group_id: fifo.then(|| p.group_id.clone()),
                dedup_id: fifo.then(|| p.dedup_id.clone()),
                attributes: Default::default(),
            });
        }
        rows.push(RowResult {
            origin: p.origin,
            email: p.email,
            event_id: p.event_id,
            status,
            message,
        });
    }
    if !outgoing.is_empty() {
        let results = send_all(queue, queue_url, &outgoing, options.backoff).await;
        for (k, result) in results.into_iter().enumerate() {
            if let Err(e) = result {
                let row = &mut rows[outgoing_rows[k]];
                row.status = RowStatus::Failed;
                row.message = e;
            }
        }
    }
    EnqueueReport {
        rows,
        dry_run: options.dry_run,
    }
}

#[cfg(test)]
mod tests;
