//! `invite-worker enqueue`: invites in bulk from CSV or JSON Lines, whole events from JSON files,
//! or one invite from flags. Arguments and printing only; the logic is in
//! [`crate::ops::enqueue`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::config::Settings;
use crate::ops::enqueue::results::write_results;
use crate::ops::enqueue::{self, prepare, read_file, EnqueueOptions, Format, Item, SingleInvite};
use crate::setup::Need;
use crate::wiring;

#[derive(clap::Args, Debug)]
pub struct EnqueueArgs {
    /// CSV files (header row: email, given_name, family_name, groups, ...), JSON Lines (of
    /// `data` objects or whole events), or JSON files (one whole event each).
    files: Vec<PathBuf>,
    /// Validate only; send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write one CSV line per row (line, email, event_id, status, message, file) to this file.
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
    /// auto (from the file name, then the content), csv, jsonl or json.
    #[arg(long, default_value_t = Format::Auto)]
    format: Format,
    /// Send events that fail validation too (to exercise the dead-letter path).
    #[arg(long)]
    no_validate: bool,
    /// Mixed into the derived event ids: the same rows with a new salt are new events (to
    /// invite people again whose earlier invites ended).
    #[arg(long, value_name = "TEXT")]
    id_salt: Option<String>,
    /// One invite from flags instead of files: the person's address.
    #[arg(long, conflicts_with = "files")]
    email: Option<String>,
    /// A Cognito attribute for --email (repeatable), e.g. given_name=Jane.
    #[arg(long = "attribute", value_name = "NAME=VALUE")]
    attributes: Vec<String>,
    /// A group for --email (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// The email's language for --email, e.g. en or pt-BR.
    #[arg(long)]
    locale: Option<String>,
    /// Days until the invite for --email expires (1 to 90).
    #[arg(long)]
    expires_in_days: Option<u64>,
    /// Who invites, shown in the email.
    #[arg(long)]
    invited_by: Option<String>,
    /// The sender's own id for the invite (e.g. HR-4711).
    #[arg(long)]
    external_id: Option<String>,
    /// The sign-in link in the email.
    #[arg(long)]
    redirect_url: Option<String>,
}

impl EnqueueArgs {
    /// Everything to send, in order; a file that cannot be read stops everything.
    fn items(&mut self) -> anyhow::Result<Vec<Item>> {
        if let Some(email) = self.email.take() {
            let single = SingleInvite {
                email,
                attributes: std::mem::take(&mut self.attributes),
                groups: std::mem::take(&mut self.groups),
                locale: self.locale.take(),
                expires_in_days: self.expires_in_days,
                invited_by: self.invited_by.take(),
                external_id: self.external_id.take(),
                redirect_url: self.redirect_url.take(),
            };
            return Ok(vec![single.into_item()?]);
        }
        let single_flags = !self.attributes.is_empty()
            || !self.groups.is_empty()
            || self.locale.is_some()
            || self.expires_in_days.is_some()
            || self.invited_by.is_some()
            || self.external_id.is_some()
            || self.redirect_url.is_some();
        if single_flags {
            bail!("--attribute, --group, --locale, --expires-in-days, --invited-by, --external-id and --redirect-url describe a single invite: use them with --email");
        }
        if self.files.is_empty() {
            bail!("nothing to enqueue: give FILE arguments or --email");
        }
        let mut items = Vec::new();
        for file in &self.files {
            items.extend(read_file(file, self.format)?);
        }
        Ok(items)
    }
}

pub async fn enqueue(settings: Settings, mut args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let items = args.items()?;
    if !args.dry_run && settings.queue.url.is_empty() {
        bail!("queue.url is not set: run `invite-worker bootstrap`, or set it in config/ or with INVITE_WORKER__QUEUE__URL");
    }
    let prepared = items
        .into_iter()
        .map(|i| prepare(i, args.id_salt.as_deref()))
        .collect();
    let options = EnqueueOptions {
        dry_run: args.dry_run,
        no_validate: args.no_validate,
        ..Default::default()
    };
    let plan = enqueue::plan(prepared, settings.queue_is_fifo(), &options);
    let report = if args.dry_run {
        plan.report
    } else {
        let sdk = wiring::sdk_config().await;
        wiring::preflight(&settings, &sdk, &[Need::Queue]).await?;
        let sqs = wiring::queues(&sdk);
        enqueue::send(&sqs, &settings.queue.url, plan, options.backoff).await
    };
    for line in report.problems() {
        eprintln!("{line}");
    }
    if let Some(path) = &args.results {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        write_results(&report, file).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", report.summary());
    Ok(if report.all_good() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
