//! Secrets stay secret, checked from the outside. The worker binary runs the whole flow with
//! debug logging for every crate (`RUST_LOG=debug`, JSON lines captured to a file): invites sent,
//! a resend (new temporary password), a poison message dead-lettered, lifecycle events to an
//! outbound queue, and /metrics when the build serves it. Then every temporary password that
//! was emailed is searched for in every log line, every DynamoDB item, every dead letter (body
//! and attributes), every outbound event, the metrics text and the `invites` CLI output: none
//! may contain one. Email addresses are masked in the logs by default: no full test address may
//! appear in a log line.
//!
//! `RELIABILITY_SECRETS_RUST_LOG` overrides the log filter (default `debug`).

mod reliability_support;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use invite_worker::config::Transport;
use invite_worker::wiring;
use reliability_support::*;
use support::*;

/// One place searched: its name, how many pieces of text, and the texts.
struct Haystack {
    name: &'static str,
    texts: Vec<String>,
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_temporary_password_leaks_and_addresses_are_masked_in_logs() {
    require_stack();
    let filter = std::env::var("RELIABILITY_SECRETS_RUST_LOG").unwrap_or_else(|_| "debug".into());
    let env = bootstrapped("secrets", Transport::Ses).await;
    let sdk = wiring::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let events_url = sqs
        .create_queue()
        .queue_name(unique("secrets-events"))
        .send()
        .await
        .expect("create the outbound events queue")
        .queue_url()
        .expect("queue url")
        .to_string();
    let metrics_at = format!("127.0.0.1:{}", free_port());

    let log = env.dir.path().join("worker.log");
    let spec = WorkerSpec::new(&env, log.clone())
        .set("WORKER__LEASE_SECONDS", 10)
        .set("WORKER__HANDLER_TIMEOUT_SECONDS", 8)
        .set("EVENTS__OUTBOUND_QUEUE_URL", &events_url)
        .set("HTTP__LISTEN", &metrics_at)
        .set("LOG__LEVEL", "debug")
        .extra_env("RUST_LOG", &filter);

    // Round one: invites and a poison message.
    let (emails, mut bodies) = invites("secret", 5);
    bodies.push(
        serde_json::json!({"version": 1, "type": "invite.requested", "id": unique("poison"),
                           "data": {"email": "not an address", "attributes": {"given_name": "X"}}})
        .to_string(),
    );
    enqueue_batched(&env, &bodies).await;
    let metrics = Arc::new(Mutex::new(Vec::<String>::new()));
    run_scraping_metrics(&spec, &metrics_at, &metrics);

    // Round two: a resend for two of them (each gets a new temporary password).
    let resends: Vec<String> = emails[..2]
        .iter()
        .map(|e| {
            serde_json::json!({"version": 1, "type": "invite.resend", "id": unique("resend"),
                               "data": {"email": e}})
            .to_string()
        })
        .collect();
    enqueue_batched(&env, &resends).await;
    run_scraping_metrics(&spec, &metrics_at, &metrics);
    let kept = keep_log(&log, "secrets");

    // Every temporary password that went out.
    let mails = mails_by_recipient();
    let mut passwords = Vec::new();
    for e in &emails {
        for raw in mails.get(e).into_iter().flatten() {
            passwords.push(password_in(raw));
        }
    }
    assert_eq!(
        passwords.len(),
        emails.len() + resends.len(),
        "one email per invite plus one per resend"
    );
    assert!(
        passwords.iter().all(|p| p.len() >= 8),
        "passwords too short to search for safely: {}",
        passwords.len()
    );

    // Everything the worker wrote or emitted, apart from the emails themselves.
    let log_lines: Vec<String> = std::fs::read_to_string(&log)
        .expect("worker log")
        .lines()
        .map(str::to_string)
        .collect();
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = ddb
            .scan()
            .table_name(&env.settings.table.name)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("Scan");
        items.extend(page.items().iter().map(|i| format!("{i:?}")));
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    let dead: Vec<String> = dead_letters(&env.settings)
        .await
        .into_iter()
        .map(|(body, attrs)| format!("{body}\n{attrs:?}"))
        .collect();
    let mut events = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&events_url)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .message_attribute_names("All")
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive outbound events");
        if out.messages().is_empty() {
            break;
        }
        events.extend(out.messages().iter().map(|m| format!("{m:?}")));
    }
    let metrics_text = metrics.lock().expect("metrics").clone();
    let mut cli = Vec::new();
    let list = spec
        .command(&["invites", "list", "--json"])
        .output()
        .expect("invites list");
    cli.push(String::from_utf8_lossy(&list.stdout).to_string());
    for e in &emails {
        let show = spec
            .command(&["invites", "show", e, "--json"])
            .output()
            .expect("invites show");
        cli.push(String::from_utf8_lossy(&show.stdout).to_string());
        cli.push(String::from_utf8_lossy(&show.stderr).to_string());
    }
    let config_check = spec
        .command(&["config", "check"])
        .output()
        .expect("config check");
    cli.push(String::from_utf8_lossy(&config_check.stdout).to_string());

    let haystacks = [
        Haystack {
            name: "log lines",
            texts: log_lines.clone(),
        },
        Haystack {
            name: "DynamoDB items",
            texts: items,
        },
        Haystack {
            name: "dead letters",
            texts: dead,
        },
        Haystack {
            name: "outbound events",
            texts: events,
        },
        Haystack {
            name: "metrics scrapes",
            texts: metrics_text.clone(),
        },
        Haystack {
            name: "CLI outputs",
            texts: cli,
        },
    ];
    // Each password as written, and as it would look inside base64 (any alignment),
    // quoted-printable or URL-encoded text.
    let needles: Vec<String> = passwords.iter().flat_map(|p| encoded_forms(p)).collect();
    // The search works: it finds each password in the email that carried it.
    for e in &emails {
        for raw in mails.get(e).into_iter().flatten() {
            let p = password_in(raw);
            assert!(
                encoded_forms(&p)
                    .iter()
                    .any(|form| raw.contains(form.as_str())),
                "the search does not find a password in its own email"
            );
        }
    }
    let mut leaks = Vec::new();
    let mut f = Figures::new("secrets");
    f.add("log filter", &filter);
    f.add(
        "temporary passwords searched for",
        format!("{} ({} forms)", passwords.len(), needles.len()),
    );
    for h in &haystacks {
        let bytes: usize = h.texts.iter().map(String::len).sum();
        f.add(h.name, format!("{} ({bytes} bytes)", h.texts.len()));
        for (i, text) in h.texts.iter().enumerate() {
            for form in &needles {
                if text.contains(form.as_str()) {
                    leaks.push(format!("{} #{i}: {}", h.name, excerpt(text, form)));
                }
            }
        }
    }
    let unmasked: Vec<String> = log_lines
        .iter()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            emails.iter().any(|e| lower.contains(e.as_str()))
        })
        .map(|l| l.chars().take(300).collect())
        .collect();
    let masked_lines = log_lines.iter().filter(|l| l.contains("***@")).count();
    f.add("log lines with a full test address", unmasked.len());
    f.add("log lines with a masked address", masked_lines);
    f.add(
        "metrics",
        if metrics_text.is_empty() {
            "n/a (no /metrics on this build)".to_string()
        } else {
            format!("{} scrapes", metrics_text.len())
        },
    );
    f.add("leaks", leaks.len());
    f.add("worker log", kept.display());
    f.print();

    assert!(leaks.is_empty(), "temporary passwords found: {leaks:#?}");
    assert!(
        unmasked.is_empty(),
        "full addresses in log lines: {unmasked:#?}"
    );
    assert!(
        !dead_letters(&env.settings).await.is_empty(),
        "the poison message should be dead-lettered"
    );
}

/// Runs `run --until-idle` while a thread scrapes /metrics; keeps the run's last scrape (its
/// counters have grown the most).
fn run_scraping_metrics(spec: &WorkerSpec<'_>, hostport: &str, into: &Arc<Mutex<Vec<String>>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let (stop, into, hostport) = (stop.clone(), into.clone(), hostport.to_string());
        std::thread::spawn(move || {
            let mut last = None;
            while !stop.load(Ordering::Relaxed) {
                if let Some(text) = get_text(&hostport, "/metrics") {
                    last = Some(text);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            into.lock().expect("metrics").extend(last);
        })
    };
    let (status, _) = spec.run_until_idle(Duration::from_secs(180));
    stop.store(true, Ordering::Relaxed);
    let _ = scraper.join();
    assert!(
        status.success(),
        "worker failed; log {}",
        spec.log.display()
    );
}

/// The text around a found secret, with the secret itself blanked.
fn excerpt(text: &str, secret: &str) -> String {
    let at = text.find(secret).unwrap_or(0);
    let start = text[..at]
        .char_indices()
        .rev()
        .nth(80)
        .map_or(0, |(i, _)| i);
    let end = (at + secret.len() + 80).min(text.len());
    let end = (end..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..end].replace(secret, "<PASSWORD>")
}

/// `secret` as written, inside base64 text (three alignments), quoted-printable (`=` as `=3D`)
/// and URL encoding. Each form is at least 12 characters, so a chance match is out of reach.
fn encoded_forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string()];
    let bytes = secret.as_bytes();
    for skip in 0..3 {
        let rest = &bytes[skip.min(bytes.len())..];
        let whole = rest.len() / 3 * 3;
        if whole >= 9 {
            forms.push(base64(&rest[..whole]));
        }
    }
    forms.push(secret.replace('=', "=3D"));
    let url: String = secret
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    forms.push(url);
    forms.sort();
    forms.dedup();
    forms
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn encoded_forms_find_a_password_inside_base64_at_any_offset() {
    let secret = "Ab3#kQ9=zz~Pq2+w";
    for prefix in ["", "x", "xy"] {
        let encoded = base64(format!("{prefix}Temporary password: {secret}\r\n").as_bytes());
        assert!(
            encoded_forms(secret)
                .iter()
                .any(|f| encoded.contains(f.as_str())),
            "prefix {prefix:?}"
        );
    }
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"Ma"), "TWE=");
}
