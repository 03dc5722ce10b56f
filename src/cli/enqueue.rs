//! `invite-worker enqueue FILE...`: sends whole events (one JSON file each) to the inbound queue.
//! Each file is decoded first, so a bad one is named and nothing invalid is sent (unless
//! `--no-validate`, for exercising the worker's dead-letter path).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Settings;
use crate::domain::event::{decode, EventBody};
use crate::wiring;

pub async fn enqueue(
    settings: Settings,
    files: Vec<PathBuf>,
    no_validate: bool,
) -> anyhow::Result<ExitCode> {
    wiring::require(&settings, true)?;
    let sdk = wiring::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let fifo = settings.queue_is_fifo();
    let mut failed = 0;
    for file in files {
        let body = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let (group, dedup) = match decode(&body) {
            Ok(e) => (group_id(&e.body), e.id),
            Err(err) if no_validate => {
                eprintln!(
                    "{}: invalid ({err}), sent anyway (--no-validate)",
                    file.display()
                );
                (
                    "invalid".to_string(),
                    format!(
                        "{:x}",
                        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
                            &body
                        ))
                    ),
                )
            }
            Err(err) => {
                eprintln!("{}: not sent: {err}", file.display());
                failed += 1;
                continue;
            }
        };
        let mut send = sqs
            .send_message()
            .queue_url(&settings.queue.url)
            .message_body(&body);
        if fifo {
            send = send.message_group_id(group).message_deduplication_id(dedup);
        }
        match send.send().await {
            Ok(out) => println!(
                "{}: sent as {}",
                file.display(),
                out.message_id().unwrap_or("?")
            ),
            Err(e) => {
                eprintln!(
                    "{}: not sent: {}",
                    file.display(),
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                );
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The FIFO message group for an event: the person's normalised email (or invite id), so that
/// one person's events stay in order and different people's run in parallel.
pub fn group_id(body: &EventBody) -> String {
    use crate::domain::event::InviteRef;
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
