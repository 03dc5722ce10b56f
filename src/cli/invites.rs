//! `invite-worker invites show|list|clear-complaint`: the record, its status and its history,
//! for people (a table) and systems (`--json`); and the operator's clearing of a complaint.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::config::Settings;
use crate::domain::{EmailAddress, Invite, InviteId, InviteStatus};
use crate::ports::InviteStore;
use crate::setup::Need;
use crate::wiring;

#[derive(Subcommand, Debug)]
pub enum InvitesCommand {
    /// One invite with its history, by email address or invite id.
    Show {
        /// An email address or an invite id.
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// Invites by status, most recently updated first.
    List {
        /// pending, sent, accepted, revoked, expired, failed or undeliverable; all when omitted.
        #[arg(long)]
        status: Option<String>,
        /// At most this many per status.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Continue after a previous page (the `next` value it printed).
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Clear the complaint recorded for an invite (the recipient marked an email as spam), so
    /// that invitations and reminders may go to the address again. Recorded in its history.
    ClearComplaint {
        /// An email address or an invite id.
        target: String,
        /// Who clears it, for the history (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
}

pub async fn invites(settings: Settings, command: InvitesCommand) -> anyhow::Result<ExitCode> {
    if let InvitesCommand::ClearComplaint { target, by } = command {
        return clear_complaint(settings, &target, by).await;
    }
    wiring::require(&settings, false)?;
    let sdk = wiring::sdk_config().await;
    wiring::preflight(&settings, &sdk, &[Need::Table]).await?;
    let store = wiring::invite_store(&settings, &sdk);
    match command {
        InvitesCommand::Show { target, json } => {
            let id = resolve(&settings.cognito.user_pool_id, &target)?;
            match store.load(&id).await? {
                None => {
                    eprintln!("no invite for {target} (invite id {id})");
                    Ok(ExitCode::from(3))
                }
                Some(invite) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&public_view(&invite))?);
                    } else {
                        print!("{}", render_invite(&invite));
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        InvitesCommand::List {
            status,
            limit,
            cursor,
            json,
        } => {
            let statuses = match status {
                Some(s) => vec![InviteStatus::parse(&s)
                    .map_err(anyhow::Error::msg)
                    .context("--status")?],
                None => InviteStatus::ALL.to_vec(),
            };
            let mut all = Vec::new();
            let mut next = None;
            for status in statuses {
                let page = store.list_by_status(status, limit, cursor.clone()).await?;
                all.extend(page.items);
                if page.next.is_some() {
                    next = page.next;
                }
            }
            if json {
                let rows: Vec<_> = all.iter().map(public_view).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "invites": rows, "next": next })
                    )?
                );
            } else {
                print!("{}", render_table(&all));
                if let Some(n) = next {
                    println!("more: --cursor {n}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        InvitesCommand::ClearComplaint { .. } => unreachable!("handled above"),
    }
}

/// `invites clear-complaint`: exit 0 when cleared (or there was none), 3 without an invite.
async fn clear_complaint(
    settings: Settings,
    target: &str,
    by: Option<String>,
) -> anyhow::Result<ExitCode> {
    let id = resolve(&settings.cognito.user_pool_id, target)?;
    let actor = by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".into());
    let sdk = wiring::sdk_config().await;
    wiring::preflight(&settings, &sdk, &[Need::Table]).await?;
    let c = wiring::build(settings, sdk).await?;
    let handled = c
        .service
        .clear_complaint(id, &actor)
        .await
        .map_err(|e| anyhow::anyhow!("invite {id}: {e}"))?;
    match handled.outcome {
        "unknown_invite" => {
            eprintln!("no invite for {target} (invite id {id})");
            Ok(ExitCode::from(3))
        }
        "no_complaint" => {
            println!("invite {id}: no complaint to clear");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            println!("invite {id}: complaint cleared by {actor}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An email address or an invite id.
pub fn resolve(user_pool_id: &str, target: &str) -> anyhow::Result<InviteId> {
    if let Ok(id) = InviteId::parse(target) {
        return Ok(id);
    }
    let email = EmailAddress::parse(target).map_err(|r| {
        anyhow::anyhow!("{target:?} is neither an invite id nor an email address: {r}")
    })?;
    Ok(InviteId::for_email(user_pool_id, &email))
}

/// What `--json` prints: the record without internal bookkeeping (lease, outbox).
pub fn public_view(invite: &Invite) -> serde_json::Value {
    let mut v = serde_json::to_value(invite).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("lease");
        o.remove("outbox");
    }
    v
}

fn ts(t: time::OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn render_invite(i: &Invite) -> String {
    let mut out = String::new();
    out.push_str(&format!("invite      {}\n", i.invite_id));
    out.push_str(&format!("email       {}\n", i.email));
    out.push_str(&format!(
        "status      {}{}\n",
        i.status,
        i.reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    ));
    out.push_str(&format!("generation  {}\n", i.generation));
    out.push_str(&format!("created     {}\n", ts(i.created_at)));
    out.push_str(&format!("updated     {}\n", ts(i.updated_at)));
    out.push_str(&format!("expires     {}\n", ts(i.expires_at)));
    if let Some(s) = i.sent_at {
        out.push_str(&format!(
            "sent        {} ({} email{})\n",
            ts(s),
            i.send_count,
            if i.send_count == 1 { "" } else { "s" }
        ));
    }
    if let Some(a) = i.accepted_at {
        out.push_str(&format!("accepted    {}\n", ts(a)));
    }
    if let Some(d) = i.mail.delivered_at {
        out.push_str(&format!(
            "delivered   {} (the recipient's server accepted it)\n",
            ts(d)
        ));
    }
    if let Some(b) = &i.mail.bounce {
        let kind = [b.bounce_type.as_deref(), b.sub_type.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("/");
        out.push_str(&format!(
            "bounced     {}{}{}\n",
            ts(b.at),
            if kind.is_empty() {
                String::new()
            } else {
                format!(" {kind}")
            },
            b.diagnostic
                .as_ref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ));
    }
    if let Some(c) = &i.mail.complaint {
        out.push_str(&format!(
            "COMPLAINT   {}{}: no invitation or reminder goes to this address until `invites clear-complaint`\n",
            ts(c.at),
            c.feedback_type
                .as_ref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default()
        ));
    }
    if let Some(x) = &i.details.external_id {
        out.push_str(&format!("external id {x}\n"));
    }
    out.push_str("history\n");
    for h in &i.history {
        out.push_str(&format!(
            "  {}  {:>13} -> {:<13}  {:<22} {}{}{}\n",
            ts(h.at),
            h.from.map(|s| s.as_str()).unwrap_or("-"),
            h.to.as_str(),
            h.event_type,
            h.event_id.as_deref().unwrap_or("-"),
            h.reason
                .as_ref()
                .map(|r| format!("  ({r})"))
                .unwrap_or_default(),
            h.replay.as_ref().map(replay_note).unwrap_or_default()
        ));
        if let Some(actor) = &h.actor {
            out.push_str(&format!("      by {actor}\n"));
        }
    }
    out
}

/// How a history line says it came from `dlq replay`.
fn replay_note(r: &crate::domain::Replay) -> String {
    match &r.original_message_id {
        Some(id) => format!("  [replay {} of message {id}]", r.number),
        None => format!("  [replay {}]", r.number),
    }
}

pub fn render_table(invites: &[Invite]) -> String {
    let mut out = format!(
        "{:<36}  {:<13} {:>3}  {:<20}  {:<20}  {}\n",
        "EMAIL", "STATUS", "GEN", "UPDATED", "EXPIRES", "REASON"
    );
    for i in invites {
        out.push_str(&format!(
            "{:<36}  {:<13} {:>3}  {:<20}  {:<20}  {}\n",
            i.email.as_str(),
            i.status.as_str(),
            i.generation,
            ts(i.updated_at),
            ts(i.expires_at),
            i.reason.as_deref().unwrap_or("")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::domain::record::{expiry, new_record, Opening};
    use crate::domain::{BounceDetail, Complaint};

    fn invite() -> Invite {
        let email = EmailAddress::parse("jane@example.com").unwrap();
        let now = datetime!(2026-11-26 12:00 UTC);
        let opening = Opening {
            event_id: Some("r1"),
            details: None,
            expires_at: expiry(now, None, 7),
        };
        let id = InviteId::for_email("pool", &email);
        new_record(id, "pool", &email, &opening, now)
    }

    #[test]
    fn show_says_what_ses_said() {
        let mut i = invite();
        i.status = InviteStatus::Undeliverable;
        i.reason = Some("bounce_permanent".into());
        i.mail.delivered_at = None;
        i.mail.bounce = Some(BounceDetail {
            at: datetime!(2026-11-26 12:01 UTC),
            bounce_type: Some("Permanent".into()),
            sub_type: Some("NoEmail".into()),
            diagnostic: Some("550 5.1.1 user unknown".into()),
        });
        i.mail.complaint = Some(Complaint {
            at: datetime!(2026-11-26 12:02 UTC),
            feedback_type: Some("abuse".into()),
        });
        let text = render_invite(&i);
        assert!(
            text.contains("status      undeliverable (bounce_permanent)"),
            "{text}"
        );
        assert!(
            text.contains(
                "bounced     2026-11-26T12:01:00Z Permanent/NoEmail: 550 5.1.1 user unknown"
            ),
            "{text}"
        );
        assert!(
            text.contains("COMPLAINT   2026-11-26T12:02:00Z (abuse)"),
            "{text}"
        );
        let mut sent = invite();
        sent.status = InviteStatus::Sent;
        sent.mail.delivered_at = Some(datetime!(2026-11-26 12:00:30 UTC));
        assert!(render_invite(&sent).contains("delivered   2026-11-26T12:00:30Z"));
        let json = public_view(&i);
        assert_eq!(json["bounce"]["sub_type"], "NoEmail");
        assert_eq!(json["complaint"]["feedback_type"], "abuse");
        assert!(render_table(&[i]).contains("undeliverable"));
    }
}
