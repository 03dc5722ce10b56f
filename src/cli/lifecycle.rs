//! `invite-worker cleanup` and `invite-worker reconcile`: one-shot runs for a scheduler. The work
//! is in `crate::lifecycle`; this file parses arguments, builds the service and prints the report
//! (a table for people, `--json` for systems). Exit status 0 only when everything went through.

use std::process::ExitCode;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::config::Settings;
use crate::lifecycle::cleanup::{cleanup as run_cleanup, CleanupOptions, CleanupReport};
use crate::lifecycle::reconcile::{reconcile as run_reconcile, ReconcileOptions, ReconcileReport};
use crate::lifecycle::{InviteLine, ShiftedClock, Tally};
use crate::ports::{Clock, SystemClock};
use crate::setup::Need;
use crate::wiring;

/// Exit status when some invite (or an index query) failed.
const SOME_FAILED: u8 = 1;

/// Parses `--now`.
pub fn parse_now(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("expected an RFC 3339 time like 2026-01-31T12:00:00Z ({e})"))
}

/// Parses `--rate`.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err("expected a number of calls per second greater than 0, like 5 or 0.5".into()),
    }
}

pub async fn cleanup(
    settings: Settings,
    dry_run: bool,
    now: Option<OffsetDateTime>,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let clock: Arc<dyn Clock> = match now {
        Some(at) => Arc::new(ShiftedClock::starting_at(at)),
        None => Arc::new(SystemClock),
    };
    let options = CleanupOptions {
        dry_run,
        limit,
        reminder_days: settings.invites.reminder_days_before_expiry,
    };
    let sdk = wiring::sdk_config().await;
    wiring::preflight(&settings, &sdk, &[Need::Table, Need::Pool]).await?;
    let c = wiring::build_with_clock(settings, sdk, clock).await?;
    let report = run_cleanup(&c.service, &options).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_cleanup(&report));
    }
    Ok(exit(report.succeeded()))
}

pub async fn reconcile(
    settings: Settings,
    limit: usize,
    json: bool,
    rate: Option<f64>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let options = ReconcileOptions {
        limit,
        rate_per_second: rate.unwrap_or(settings.cognito.read_rate_per_second),
        dry_run,
    };
    let sdk = wiring::sdk_config().await;
    wiring::preflight(&settings, &sdk, &[Need::Table, Need::Pool]).await?;
    let c = wiring::build(settings, sdk).await?;
    let report = run_reconcile(&c.service, &options).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_reconcile(&report));
    }
    Ok(exit(report.succeeded()))
}

fn exit(succeeded: bool) -> ExitCode {
    if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(SOME_FAILED)
    }
}

pub fn render_cleanup(r: &CleanupReport) -> String {
    let mut out = format!(
        "cleanup as of {}{}\n",
        r.now,
        if r.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    out.push_str(&render_lines(&r.invites));
    out.push_str(&render_tally(&r.summary));
    if !r.dry_run {
        out.push_str(&format!("relayed outboxes of {} invites\n", r.relayed));
    }
    out.push_str(&render_tail(r.more, &r.errors));
    out
}

pub fn render_reconcile(r: &ReconcileReport) -> String {
    let mut out = format!(
        "reconcile{}\n",
        if r.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    out.push_str(&render_lines(&r.invites));
    out.push_str(&render_tally(&r.summary));
    out.push_str(&render_tail(r.more, &r.errors));
    out
}

fn render_lines(lines: &[InviteLine]) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str(&format!(
            "  {:<36}  {:<8} {:<14} {}\n",
            l.email,
            name(&l.action),
            name(&l.outcome),
            l.detail.as_deref().unwrap_or("")
        ));
    }
    out
}

fn render_tally(t: &Tally) -> String {
    let mut parts = vec![format!("examined {}", t.examined)];
    for (label, n) in [
        ("expired", t.expired),
        ("accepted", t.accepted),
        ("reminded", t.reminded),
        ("would expire", t.would_expire),
        ("would accept", t.would_accept),
        ("would remind", t.would_remind),
        ("still sent", t.still_sent),
        ("skipped (busy)", t.skipped_busy),
        ("unchanged", t.unchanged),
        ("failed", t.failed),
    ] {
        if n > 0 || matches!(label, "failed" | "skipped (busy)") {
            parts.push(format!("{label} {n}"));
        }
    }
    format!("{}\n", parts.join(", "))
}

fn render_tail(more: bool, errors: &[String]) -> String {
    let mut out = String::new();
    for e in errors {
        out.push_str(&format!("error: {e}\n"));
    }
    if more {
        out.push_str("more invites are due: stopped at --limit; run again for the rest\n");
    }
    out
}

/// The snake_case name serde gives a unit variant.
fn name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InviteId;
    use crate::lifecycle::{Action, Outcome};

    #[test]
    fn now_and_rate_are_checked_with_clear_messages() {
        assert_eq!(
            parse_now("2026-12-01T00:00:00Z").unwrap(),
            time::macros::datetime!(2026-12-01 0:00 UTC)
        );
        assert!(parse_now("tomorrow").unwrap_err().contains("RFC 3339"));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0", "-1", "NaN", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cleanup_report_renders_lines_counts_and_errors() {
        let mut summary = Tally::default();
        summary.count(Outcome::Expired);
        summary.count(Outcome::Failed);
        let report = CleanupReport {
            now: "2026-12-01T00:00:00Z".into(),
            dry_run: false,
            summary,
            relayed: 2,
            more: true,
            invites: vec![InviteLine {
                invite_id: InviteId::parse("0f4e7f2a-8c8e-5d0b-b9a6-4d9f0b1f4c11").unwrap(),
                email: "jane@example.com".into(),
                action: Action::Expire,
                outcome: Outcome::Expired,
                detail: None,
            }],
            errors: vec!["reading the open-by-expiry index: boom".into()],
        };
        let text = render_cleanup(&report);
        assert!(text.contains("jane@example.com"), "{text}");
        assert!(text.contains("expire   expired"), "{text}");
        assert!(
            text.contains("examined 2, expired 1, skipped (busy) 0, failed 1"),
            "{text}"
        );
        assert!(text.contains("error: reading the open-by-expiry index"));
        assert!(text.contains("run again"));
        assert!(!report.succeeded());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["summary"]["expired"], 1);
        assert_eq!(json["invites"][0]["outcome"], "expired");
        assert_eq!(json["invites"][0]["action"], "expire");
    }
}
