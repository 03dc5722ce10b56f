//! `invite-worker invites show|list`: the record, its status and its history, for people
//! (a table) and systems (`--json`).

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
        /// pending, sent, accepted, revoked, expired or failed; all when omitted.
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
}

pub async fn invites(settings: Settings, command: InvitesCommand) -> anyhow::Result<ExitCode> {
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
    if let Some(x) = &i.details.external_id {
        out.push_str(&format!("external id {x}\n"));
    }
    out.push_str("history\n");
    for h in &i.history {
        out.push_str(&format!(
            "  {}  {:>8} -> {:<8}  {:<22} {}{}{}\n",
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
        "{:<36}  {:<9} {:>3}  {:<20}  {:<20}  {}\n",
        "EMAIL", "STATUS", "GEN", "UPDATED", "EXPIRES", "REASON"
    );
    for i in invites {
        out.push_str(&format!(
            "{:<36}  {:<9} {:>3}  {:<20}  {:<20}  {}\n",
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
