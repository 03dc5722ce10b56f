//! `invite-worker config check`: the effective configuration, secrets redacted, and whether each
//! resource it names can be reached with the current credentials.

use std::process::ExitCode;
use std::time::Duration;

use aws_smithy_types::error::display::DisplayErrorContext;

use crate::config::{Settings, Transport};
use crate::wiring;

struct Report {
    failures: usize,
}

impl Report {
    fn line(&mut self, what: &str, result: Result<String, String>) {
        match result {
            Ok(detail) => println!("  ok    {what:<22} {detail}"),
            Err(e) => {
                self.failures += 1;
                println!("  FAIL  {what:<22} {e}");
            }
        }
    }

    fn warn(&self, text: &str) {
        println!("  warn  {text}");
    }
}

pub async fn check(settings: Settings) -> anyhow::Result<ExitCode> {
    println!(
        "effective configuration (secrets redacted):\n{}\n",
        settings.redacted_toml()
    );
    let sdk = wiring::sdk_config().await;
    println!(
        "aws: region {}, endpoint {}",
        sdk.region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "(none)".into()),
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "(default)".into())
    );
    let mut r = Report { failures: 0 };
    println!("checks:");
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    for (what, url) in [
        ("queue", &settings.queue.url),
        ("dead-letter queue", &settings.queue.dlq_url),
        ("outbound events", &settings.events.outbound_queue_url),
    ] {
        if url.is_empty() {
            if what != "outbound events" {
                r.line(what, Err("not configured (run bootstrap)".into()));
            }
            continue;
        }
        let res = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map(|o| {
                let n = o
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                    })
                    .cloned()
                    .unwrap_or_default();
                format!("{url} ({n} visible)")
            })
            .map_err(|e| DisplayErrorContext(e).to_string());
        r.line(what, res);
    }
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let res = ddb
        .describe_table()
        .table_name(&settings.table.name)
        .send()
        .await
        .map(|o| {
            format!(
                "{} ({:?})",
                settings.table.name,
                o.table().and_then(|t| t.table_status().cloned())
            )
        })
        .map_err(|e| DisplayErrorContext(e).to_string());
    r.line("table", res);

    let cognito = crate::adapters::cognito::CognitoDirectory::new(
        aws_sdk_cognitoidentityprovider::Client::new(&sdk),
        settings.cognito.user_pool_id.clone(),
    );
    use crate::ports::Directory;
    match cognito.pool_profile().await {
        Ok(p) => {
            r.line(
                "user pool",
                Ok(format!(
                    "{} ({} attributes, temporary passwords valid {} days)",
                    p.user_pool_id,
                    p.attributes.len(),
                    p.password_policy.temporary_password_validity_days
                )),
            );
            if settings.invites.default_expiry_days
                > p.password_policy.temporary_password_validity_days
            {
                r.warn(&format!(
                    "invites.default_expiry_days ({}) is longer than the pool's TemporaryPasswordValidityDays ({}): an invite would outlive its password (a resend issues a new one); raise the pool setting or lower the expiry",
                    settings.invites.default_expiry_days, p.password_policy.temporary_password_validity_days
                ));
            }
        }
        Err(e) => r.line("user pool", Err(e.to_string())),
    }

    match settings.email.transport {
        Transport::Ses => {
            let ses = aws_sdk_sesv2::Client::new(&sdk);
            let sender = sender_address(&settings.email.from);
            let res = ses
                .get_email_identity()
                .email_identity(&sender)
                .send()
                .await
                .map(|o| format!("{sender} (verified: {})", o.verified_for_sending_status()))
                .map_err(|e| DisplayErrorContext(e).to_string());
            r.line("ses sender identity", res);
        }
        Transport::Smtp => {
            let addr = format!("{}:{}", settings.email.smtp.host, settings.email.smtp.port);
            let res = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::TcpStream::connect(&addr),
            )
            .await
            .map_err(|_| format!("{addr}: timed out"))
            .and_then(|c| {
                c.map(|_| format!("{addr} accepts connections"))
                    .map_err(|e| format!("{addr}: {e}"))
            });
            r.line("smtp server", res);
        }
    }
    match crate::mail::templates::Templates::load(
        &settings.email.templates_dir,
        &settings.email.default_locale,
    ) {
        Ok(_) => r.line(
            "templates",
            Ok(format!(
                "{} load and render",
                crate::mail::templates::Templates::describe(&settings.email.templates_dir)
            )),
        ),
        Err(e) => r.line("templates", Err(e.to_string())),
    }
    if r.failures == 0 {
        println!("all checks passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} check(s) failed", r.failures);
        Ok(ExitCode::FAILURE)
    }
}

/// `Name <a@b>` -> `a@b`.
pub fn sender_address(from: &str) -> String {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => from[a + 1..b].trim().to_string(),
        _ => from.trim().to_string(),
    }
}
