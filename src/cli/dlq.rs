//! `invite-worker dlq list|replay|purge`: arguments and printing; the logic is in
//! [`crate::ops::dlq`].

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use time::OffsetDateTime;

use crate::config::Settings;
use crate::ops::dlq::list::{queue_name, render_table, to_json};
use crate::ops::dlq::{
    self, DeadLetterView, DlqError, Filters, ListOptions, PurgeOptions, ReplayOptions,
    ReplayOutcome, ScanOptions,
};
use crate::setup::Need;
use crate::wiring;

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// Show dead letters (type, event id, masked email, reason, attempts, age, source queue)
    /// without consuming them.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        max: usize,
        /// Show email addresses in full instead of j***@example.com.
        #[arg(long)]
        show_emails: bool,
        /// Only these: KEY=VALUE[,VALUE] with KEY one of type, reason, event_id, email, source,
        /// message_id. Repeatable; all must match.
        #[arg(long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
    },
    /// Move dead letters back to the configured queue (after fixing the cause).
    Replay {
        /// Only these: KEY=VALUE[,VALUE], e.g. reason=user_pool_not_found. Repeatable.
        #[arg(long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// Replay at most this many.
        #[arg(long)]
        max: Option<usize>,
        /// Messages per second sent back (0: no limit).
        #[arg(long, value_name = "PER_SECOND", default_value_t = 10.0)]
        rate: f64,
        /// Only show what would be replayed.
        #[arg(long)]
        dry_run: bool,
        /// Show email addresses in full.
        #[arg(long)]
        show_emails: bool,
        /// Send the copies to this queue instead of the configured queue.url (never the DLQ).
        /// A dead letter's own source-queue attribute is only reported, never followed.
        #[arg(long, value_name = "URL")]
        to_queue: Option<String>,
    },
    /// Delete matching dead letters for good.
    Purge {
        /// Which ones (at least one): KEY=VALUE[,VALUE]. Repeatable.
        #[arg(long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// Delete at most this many.
        #[arg(long)]
        max: Option<usize>,
        /// Required: purging cannot be undone.
        #[arg(long)]
        yes_delete_dead_letters: bool,
        /// Show email addresses in full.
        #[arg(long)]
        show_emails: bool,
    },
}

pub async fn dlq(settings: Settings, command: DlqCommand) -> anyhow::Result<ExitCode> {
    if settings.queue.dlq_url.is_empty() {
        bail!("queue.dlq_url is not set: run `invite-worker bootstrap`, or set it in config/ or with INVITE_WORKER__QUEUE__DLQ_URL");
    }
    let sdk = wiring::sdk_config().await;
    wiring::preflight(&settings, &sdk, &[Need::DeadLetterQueue]).await?;
    let sqs = wiring::queues(&sdk);
    let dlq_url = settings.queue.dlq_url.as_str();
    match command {
        DlqCommand::List {
            json,
            max,
            show_emails,
            filters,
        } => {
            let options = ListOptions {
                max,
                filters: Filters::parse(&filters)?,
                scan: ScanOptions::default(),
            };
            let listing = dlq::list(&sqs, dlq_url, &options).await?;
            let now = OffsetDateTime::now_utc();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&to_json(&listing, now, show_emails))?
                );
            } else if listing.letters.is_empty() {
                println!("no dead letters on {}", queue_name(dlq_url));
            } else {
                print!("{}", render_table(&listing.letters, now, show_emails));
                if listing.truncated {
                    println!("(showing the first {max}; use --max for more)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay {
            filters,
            max,
            rate,
            dry_run,
            show_emails,
            to_queue,
        } => {
            if settings.queue.url.is_empty() && to_queue.is_none() {
                bail!("queue.url is not set (dead letters are replayed there; or name a queue with --to-queue)");
            }
            if !rate.is_finite() || rate < 0.0 {
                bail!("--rate must be a number of messages per second, 0 for no limit");
            }
            let rate_per_second = (rate > 0.0).then_some(rate);
            let options = ReplayOptions {
                filters: Filters::parse(&filters)?,
                max,
                rate_per_second,
                dry_run,
                configured_queue: settings.queue.url.clone(),
                to_queue,
                scan: ReplayOptions::scan_for_rate(rate_per_second),
            };
            let s = match dlq::replay(&sqs, dlq_url, &options).await {
                Ok(s) => s,
                Err(DlqError::Refused(why)) => {
                    eprintln!("refused: {why}");
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            };
            for e in &s.entries {
                let (verb, detail) = match &e.outcome {
                    ReplayOutcome::Replayed { destination } => {
                        ("replayed", format!("-> {}", queue_name(destination)))
                    }
                    ReplayOutcome::WouldReplay { destination } => {
                        ("would replay", format!("-> {}", queue_name(destination)))
                    }
                    ReplayOutcome::SendFailed(err) => ("NOT SENT", err.clone()),
                    ReplayOutcome::NotDeleted(err) => (
                        "sent, NOT DELETED from the DLQ",
                        format!("{err} (a later replay sends it again; harmless)"),
                    ),
                };
                println!("{verb}  {}  {detail}", describe(&e.view, show_emails));
                if let Some(source) = &e.disagreeing_source {
                    println!(
                        "  note: its source-queue attribute names {source}, not the destination (forged, or from another queue); sent to the destination"
                    );
                }
                if !e.dropped_attributes.is_empty() {
                    println!(
                        "  note: attributes dropped (SQS allows 10): {}",
                        e.dropped_attributes.join(", ")
                    );
                }
            }
            let mut summary = format!(
                "matched {}, replayed {}, skipped {}, failed {}",
                s.matched, s.replayed, s.skipped, s.failed
            );
            if s.not_deleted > 0 {
                summary.push_str(&format!(", not deleted {}", s.not_deleted));
            }
            if s.disagreeing_sources > 0 {
                summary.push_str(&format!(
                    ", {} claimed another source queue",
                    s.disagreeing_sources
                ));
            }
            if dry_run {
                summary.push_str(" (dry run: nothing moved)");
            }
            println!("{summary}");
            Ok(if s.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        DlqCommand::Purge {
            filters,
            max,
            yes_delete_dead_letters,
            show_emails,
        } => {
            let options = PurgeOptions {
                filters: Filters::parse(&filters)?,
                max,
                confirmed: yes_delete_dead_letters,
                scan: ReplayOptions::scan_for_rate(None),
            };
            let s = match dlq::purge(&sqs, dlq_url, &options).await {
                Ok(s) => s,
                Err(DlqError::Refused(why)) => {
                    eprintln!("refused: {why}");
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            };
            for v in &s.deleted {
                println!("deleted  {}", describe(v, show_emails));
            }
            for (v, err) in &s.failed {
                println!("NOT DELETED  {}  {err}", describe(v, show_emails));
            }
            println!(
                "deleted {}, failed {}, skipped {}",
                s.deleted.len(),
                s.failed.len(),
                s.skipped
            );
            Ok(if s.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// `<message id>  <type>  <event id>  <email>  <reason code>` on one line.
fn describe(v: &DeadLetterView, show_emails: bool) -> String {
    format!(
        "{}  {}  {}  {}  {}",
        v.message_id,
        v.event_type.as_deref().unwrap_or("-"),
        v.event_id.as_deref().unwrap_or("-"),
        v.email_for_display(show_emails),
        v.reason_code.as_deref().unwrap_or("-"),
    )
}
