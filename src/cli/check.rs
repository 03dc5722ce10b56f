//! `invite-worker config check`: the effective configuration, secrets redacted, and whether each
//! resource it names can be reached with the current credentials.

use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Settings, Transport};
use crate::setup::{self, AwsTarget};
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
    let target = AwsTarget::of(&sdk);
    println!(
        "aws: region {}, endpoint {}",
        target.region.as_deref().unwrap_or("(none: set AWS_REGION)"),
        target.endpoint.as_deref().unwrap_or("(default)")
    );
    let mut r = Report { failures: 0 };
    println!("checks:");
    let needs = setup::needs_for_check(&settings);
    for finding in wiring::check_setup(&settings, &sdk, &needs).await {
        r.line(finding.need.label(), finding.result.map_err(|p| p.line));
        for warning in &finding.warnings {
            r.warn(warning);
        }
    }
    for warning in setup::feedback_warnings(&settings) {
        r.warn(&warning);
    }
    if let Transport::Smtp = settings.email.transport {
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
