//! Hostile and malformed input, end to end: every body in `tests/corpus/` goes through
//! [`InviteService::handle_body`] over the in-memory fakes, with the shipped templates rendering
//! real emails. `tests/corpus/expected.tsv` says what must happen to each: dead-lettered with a
//! reason code and a reason that starts with the offending field, or accepted (`ack`) with an
//! outcome, for input that is valid but hostile (markup in names) and for redeliveries.
//!
//! Between every few bad messages a good one is handled by the same service: bad input must not
//! disturb the messages around it. At the end, no bad message may have left a Cognito user, an
//! invite record or an email behind, and every good one must have been sent exactly once.
//!
//! A second test pushes the same messages through the real [`Worker`] loop on a `MemoryQueue`:
//! every bad message must end in the dead-letter queue on its first delivery, with its reason.
//!
//! The unit-level counterpart is `src/domain/event_tests.rs`; the corpus is documented in
//! `tests/corpus/README.md` and docs/reliability.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde_json::json;
use time::macros::datetime;

use invite_worker::adapters::memory::queue::MemoryQueue;
use invite_worker::adapters::memory::{ManualClock, MemoryDirectory, MemoryMailer, MemoryStore};
use invite_worker::app::handler::{InviteService, ServiceConfig};
use invite_worker::app::template_composer::TemplateComposer;
use invite_worker::config::{EmailSettings, SesSettings, SmtpSettings, Transport};
use invite_worker::domain::event::MAX_BODY_BYTES;
use invite_worker::domain::pool::{AttributeKind, AttributeSpec};
use invite_worker::domain::text::forbidden_char;
use invite_worker::domain::RedirectHosts;
use invite_worker::domain::{EmailAddress, InviteId, PasswordPolicy, PoolProfile};
use invite_worker::error::Disposition;
use invite_worker::mail::Templates;
use invite_worker::ports::{OutgoingMail, Queue};
use invite_worker::worker::{MessageHandler, Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

const POOL_ID: &str = "us-east-1_corpus";
/// A good message is handled after every this many corpus files.
const NEIGHBOUR_EVERY: usize = 4;
/// A dead-letter reason becomes an SQS message attribute and a log line: keep it short.
const MAX_REASON_CHARS: usize = 1024;

// ---------------------------------------------------------------------------------------------
// The world: the reference pool, the in-memory fakes, and a composer on the shipped templates.

fn spec(name: &str, required: bool, mutable: bool, max_length: Option<usize>) -> AttributeSpec {
    AttributeSpec {
        name: name.into(),
        kind: AttributeKind::String,
        required,
        mutable,
        developer_only: false,
        min_length: None,
        max_length,
        min_value: None,
        max_value: None,
    }
}

/// The reference deployment's pool schema: email (required, immutable), family_name (required),
/// given_name, custom:test_attribute1 (at most 256 characters).
fn reference_pool() -> PoolProfile {
    let attributes: BTreeMap<String, AttributeSpec> = [
        spec("email", true, false, None),
        spec("email_verified", false, true, None),
        spec("family_name", true, true, None),
        spec("given_name", false, true, None),
        spec("custom:test_attribute1", false, true, Some(256)),
    ]
    .into_iter()
    .map(|s| (s.name.clone(), s))
    .collect();
    PoolProfile {
        user_pool_id: POOL_ID.into(),
        attributes,
        password_policy: PasswordPolicy::default(),
    }
}

fn email_settings() -> EmailSettings {
    EmailSettings {
        transport: Transport::Smtp,
        from: "Acme Cloud <no-reply@example.com>".into(),
        reply_to: Some("Acme Support <support@example.com>".into()),
        app_name: "Acme Cloud".into(),
        sign_in_url: "https://app.example.com/sign-in".into(),
        redirect_hosts: vec![],
        templates_dir: "templates".into(),
        default_locale: "en".into(),
        send_rate_per_second: 14.0,
        send_burst: 14,
        ses: SesSettings::default(),
        smtp: SmtpSettings::default(),
    }
}

struct World {
    store: Arc<MemoryStore>,
    dir: Arc<MemoryDirectory>,
    mailer: Arc<MemoryMailer>,
    service: Arc<InviteService>,
}

fn world() -> World {
    let templates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let templates = match Templates::load(&templates_dir, "en") {
        Ok(t) => t,
        Err(e) => panic!("shipped templates: {e}"),
    };
    let store = Arc::new(MemoryStore::new());
    let dir = Arc::new(MemoryDirectory::new(reference_pool()));
    let mailer = Arc::new(MemoryMailer::new());
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-26 12:00 UTC)));
    let service = Arc::new(InviteService::new(
        store.clone(),
        dir.clone(),
        mailer.clone(),
        Arc::new(TemplateComposer::new(templates, &email_settings())),
        clock,
        ServiceConfig {
            user_pool_id: POOL_ID.into(),
            default_expiry_days: 7,
            lease: Duration::from_secs(120),
            redirect_hosts: RedirectHosts::only(&["app.example.com"]),
        },
    ));
    World {
        store,
        dir,
        mailer,
        service,
    }
}

// ---------------------------------------------------------------------------------------------
// The corpus and the messages generated around it.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    DeadLetter { code: String, field: String },
    Ack { outcome: String },
}

#[derive(Clone, Debug)]
struct Case {
    name: String,
    body: String,
    expect: Expect,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Reads `expected.tsv` and the files it names, in its order, and checks that every file in the
/// directory is listed (a corpus file without an expectation would silently test nothing).
fn corpus() -> Vec<Case> {
    let dir = corpus_dir();
    let tsv = std::fs::read_to_string(dir.join("expected.tsv")).expect("tests/corpus/expected.tsv");
    let mut cases = Vec::new();
    for (n, line) in tsv.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            cols.len(),
            4,
            "expected.tsv line {}: want file, disposition, code, field",
            n + 1
        );
        let (file, disposition, code, field) = (cols[0], cols[1], cols[2], cols[3]);
        let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let body = String::from_utf8(bytes)
            .unwrap_or_else(|_| panic!("{file}: an SQS body is always UTF-8; so must the file be"));
        let expect = match disposition {
            "dead_letter" => {
                assert!(
                    code == "invalid_event" || code == "invalid_attributes",
                    "{file}: unexpected code {code}"
                );
                Expect::DeadLetter {
                    code: code.into(),
                    field: field.into(),
                }
            }
            "ack" => Expect::Ack {
                outcome: code.into(),
            },
            other => panic!("{file}: unknown disposition {other:?}"),
        };
        cases.push(Case {
            name: file.into(),
            body,
            expect,
        });
    }
    let listed: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    for entry in std::fs::read_dir(&dir).expect("tests/corpus") {
        let name = entry.expect("dir entry").file_name();
        let name = name.to_string_lossy();
        if name == "expected.tsv" || name == "README.md" {
            continue;
        }
        assert!(
            listed.contains(&name.as_ref()),
            "tests/corpus/{name} has no line in expected.tsv"
        );
    }
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        listed.len(),
        "expected.tsv lists a file twice"
    );
    cases
}

fn invite_body(id: &str, email: &str, data: serde_json::Value) -> String {
    let mut d = json!({
        "email": email,
        "attributes": {"given_name": "Good", "family_name": "Neighbour"},
    });
    if let (Some(d), serde_json::Value::Object(extra)) = (d.as_object_mut(), data) {
        for (k, v) in extra {
            d.insert(k, v);
        }
    }
    json!({"version": 1, "type": "invite.requested", "id": id, "data": d}).to_string()
}

/// Bodies too large to keep as files: over the 64 KiB limit, one byte over, and exactly at it
/// (valid, padded with JSON white space).
fn generated_cases() -> Vec<Case> {
    let over = {
        let pad = "x".repeat(70_000);
        invite_body(
            "generated-70000",
            "bad-generated-70000@corpus.example",
            json!({"metadata": {"pad": pad}}),
        )
    };
    assert!(over.len() > 70_000);
    let at_limit = |id: &str, email: &str, size: usize| {
        let mut body = invite_body(id, email, json!({}));
        let fill = size - body.len();
        body.insert_str(1, &" ".repeat(fill));
        assert_eq!(body.len(), size);
        body
    };
    vec![
        Case {
            name: "(generated) body of 70,000+ bytes".into(),
            body: over,
            expect: Expect::DeadLetter {
                code: "invalid_event".into(),
                field: "body".into(),
            },
        },
        Case {
            name: "(generated) body one byte over 64 KiB".into(),
            body: at_limit(
                "generated-over",
                "bad-generated-over@corpus.example",
                MAX_BODY_BYTES + 1,
            ),
            expect: Expect::DeadLetter {
                code: "invalid_event".into(),
                field: "body".into(),
            },
        },
        Case {
            name: "(generated) body of exactly 64 KiB".into(),
            body: at_limit(
                "generated-at-limit",
                "good-at-limit@corpus.example",
                MAX_BODY_BYTES,
            ),
            expect: Expect::Ack {
                outcome: "sent".into(),
            },
        },
    ]
}

/// A good invite, each one at a different edge of what is valid. Returns the body and the
/// normalised address the email must go to.
fn neighbour(i: usize) -> (String, String) {
    let id = format!("neighbour-{i:03}");
    let plain = format!("good-{i:03}@example.com");
    match i % 12 {
        0 => (invite_body(&id, &plain, json!({})), plain),
        1 => {
            // The longest local part: 64 characters.
            let local = format!("good-{i:03}-{}", "x".repeat(64 - 9));
            assert_eq!(local.len(), 64);
            let email = format!("{local}@example.com");
            (invite_body(&id, &email, json!({})), email)
        }
        2 => {
            // The longest address: 254 characters.
            let local = format!("good-{i:03}");
            let last = 254 - local.len() - 1 - 3 * 64;
            let domain = format!(
                "{}.{}.{}.{}",
                "a".repeat(63),
                "b".repeat(63),
                "c".repeat(63),
                "d".repeat(last)
            );
            let email = format!("{local}@{domain}");
            assert_eq!(email.len(), 254);
            (invite_body(&id, &email, json!({})), email)
        }
        3 => (
            invite_body(&id, &format!("Good-{i:03}@Example.COM"), json!({})),
            format!("good-{i:03}@example.com"),
        ),
        4 => {
            let email = format!("good-{i:03}+o'brien@example.co.uk");
            (invite_body(&id, &email, json!({})), email)
        }
        5 => {
            let email = format!("good-{i:03}@xn--bcher-kva.example");
            (invite_body(&id, &email, json!({})), email)
        }
        6 => (
            invite_body(
                &id,
                &plain,
                json!({
                    "groups": ["employees", "contractors"],
                    "locale": "de_AT",
                    "expires_in_days": 90,
                    "invited_by": "Priya from HR",
                    "external_id": "HR-4711",
                    "redirect_url": "https://app.example.com/welcome?team=platform&lang=de",
                    "metadata": {"department": "Engineering", "nested": {"level": [1, 2, 3]}},
                }),
            ),
            plain,
        ),
        7 => (
            invite_body(
                &id,
                &plain,
                json!({"attributes": {
                    "given_name": "g".repeat(2048),
                    "family_name": "Neighbour",
                    "custom:test_attribute1": "t".repeat(256),
                }}),
            ),
            plain,
        ),
        8 => (
            invite_body(
                &id,
                &plain,
                json!({"attributes": {"given_name": "Zoë Łukasz 山田 🎉", "family_name": "O'Brien-Ñúñez"}}),
            ),
            plain,
        ),
        9 => {
            let mut v: serde_json::Value = serde_json::from_str(&invite_body(
                &id,
                &plain,
                json!({"external_id": "e".repeat(256), "invited_by": "p".repeat(256)}),
            ))
            .expect("json");
            v["source"] = json!("workday");
            v["occurred_at"] = json!("2026-11-26T11:59:59.123+01:00");
            (v.to_string(), plain)
        }
        10 => (
            invite_body(
                &id,
                &plain,
                json!({"attributes": {"given_name": "   ", "family_name": "Neighbour"}}),
            ),
            plain,
        ),
        _ => (
            invite_body(
                &id,
                &plain,
                json!({"attributes": {"family_name": "Neighbour"}}),
            ),
            plain,
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Checks

/// `reason` names `field`: it starts with it, followed by `": "` (or by a sub-field).
fn names_field(reason: &str, field: &str) -> bool {
    reason.strip_prefix(field).is_some_and(|rest| {
        rest.starts_with(": ") || (rest.starts_with(['.', '[']) && rest.contains(": "))
    })
}

/// The normalised `data.email` of a body, when it has one that parses.
fn address_in(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let email = EmailAddress::parse(v["data"]["email"].as_str()?).ok()?;
    Some(email.as_str().to_owned())
}

fn is_bad_address(address: &str) -> bool {
    address.starts_with("bad")
}

/// Checks one sent mail: a one-line subject without control characters, no raw `<script` in the
/// HTML, and a MIME message whose headers are only the ones we set.
fn check_mail(mail: &OutgoingMail, failures: &mut Vec<String>) {
    let to = mail.to.as_str();
    if mail.subject.chars().any(forbidden_char) || mail.subject.contains(['\u{2028}', '\u{2029}']) {
        failures.push(format!(
            "mail to {to}: subject has a control or separator character: {:?}",
            mail.subject
        ));
    }
    if mail.html.to_ascii_lowercase().contains("<script") {
        failures.push(format!("mail to {to}: a raw <script reached the HTML"));
    }
    match invite_worker::mail::message::build(mail) {
        Ok(message) => {
            let raw = String::from_utf8_lossy(&message.formatted()).to_string();
            let (head, _) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
            for line in head.split("\r\n") {
                let lower = line.to_ascii_lowercase();
                if lower.starts_with("bcc:") || lower.starts_with("x-evil:") {
                    failures.push(format!("mail to {to}: injected header line {line:?}"));
                }
            }
        }
        Err(e) => failures.push(format!("mail to {to}: cannot be built: {e}")),
    }
}

#[derive(Default)]
struct Tally {
    invalid_event: usize,
    invalid_attributes: usize,
    accepted: usize,
    neighbours: usize,
    panics: usize,
    longest_reason: usize,
}

#[tokio::test]
async fn every_corpus_message_is_dead_lettered_with_a_reason_and_good_neighbours_are_sent() {
    let w = world();
    let mut cases = corpus();
    cases.extend(generated_cases());
    let mut failures: Vec<String> = Vec::new();
    let mut tally = Tally::default();
    let mut neighbours: Vec<String> = Vec::new();
    let mut expected_sends: Vec<String> = Vec::new();
    let mut bad_addresses: Vec<String> = Vec::new();
    // HOSTILE_INPUT_VERBOSE=1 prints each file's disposition (run with --nocapture).
    let verbose = std::env::var_os("HOSTILE_INPUT_VERBOSE").is_some();

    for (n, case) in cases.iter().enumerate() {
        if n % NEIGHBOUR_EVERY == 0 {
            let (body, email) = neighbour(neighbours.len());
            match w.service.handle_body(&body).await {
                Disposition::Ack { outcome: "sent" } => {}
                other => failures.push(format!("good neighbour {email}: {other:?}")),
            }
            neighbours.push(email.clone());
            expected_sends.push(email);
        }
        let handled = AssertUnwindSafe(w.service.handle_body(&case.body))
            .catch_unwind()
            .await;
        let disposition = match handled {
            Ok(d) => d,
            Err(_) => {
                tally.panics += 1;
                failures.push(format!("{}: PANICKED", case.name));
                continue;
            }
        };
        if verbose {
            println!("{:<52} {disposition:?}", case.name);
        }
        match (&case.expect, &disposition) {
            (Expect::DeadLetter { code, field }, Disposition::DeadLetter { code: got, reason }) => {
                tally.longest_reason = tally.longest_reason.max(reason.chars().count());
                if got != code {
                    failures.push(format!("{}: code {got}, want {code} ({reason})", case.name));
                }
                if !names_field(reason, field) {
                    failures.push(format!(
                        "{}: reason does not name {field:?}: {reason:?}",
                        case.name
                    ));
                }
                if reason.chars().any(forbidden_char) {
                    failures.push(format!(
                        "{}: reason carries a control character: {reason:?}",
                        case.name
                    ));
                }
                if reason.chars().count() > MAX_REASON_CHARS {
                    failures.push(format!(
                        "{}: reason is {} characters long",
                        case.name,
                        reason.chars().count()
                    ));
                }
                match got.as_str() {
                    "invalid_event" => tally.invalid_event += 1,
                    _ => tally.invalid_attributes += 1,
                }
                if let Some(email) = address_in(&case.body) {
                    bad_addresses.push(email);
                }
            }
            (Expect::Ack { outcome }, Disposition::Ack { outcome: got }) => {
                if got != outcome {
                    failures.push(format!("{}: outcome {got}, want {outcome}", case.name));
                }
                if *got == "sent" {
                    tally.accepted += 1;
                    if let Some(email) = address_in(&case.body) {
                        expected_sends.push(email);
                    }
                }
            }
            (want, got) => failures.push(format!("{}: got {got:?}, want {want:?}", case.name)),
        }
    }
    tally.neighbours = neighbours.len();

    // Nothing of a bad message reached Cognito, the store or the mailer.
    for email in &bad_addresses {
        if w.dir.user(email).is_some() {
            failures.push(format!("a bad message created the Cognito user {email}"));
        }
    }
    let sent = w.mailer.sent();
    for mail in &sent {
        if is_bad_address(mail.to.as_str()) {
            failures.push(format!("a bad message sent mail to {}", mail.to.as_str()));
        }
        check_mail(mail, &mut failures);
    }
    for invite in w.store.all() {
        if is_bad_address(invite.email.as_str()) {
            failures.push(format!(
                "a bad message left an invite record for {}",
                invite.email.as_str()
            ));
        }
        if w.dir.user(&invite.username).is_none() {
            failures.push(format!("invite {} has no Cognito user", invite.email));
        }
    }
    let mut sent_to: Vec<String> = sent.iter().map(|m| m.to.as_str().to_owned()).collect();
    sent_to.sort();
    let mut want = expected_sends.clone();
    want.sort();
    if sent_to != want {
        failures.push(format!(
            "mails went to {sent_to:?}; expected exactly one to each of {want:?}"
        ));
    }
    if w.dir.user_count() != want.len() || w.dir.created_count() as usize != want.len() {
        failures.push(format!(
            "{} Cognito users ({} created); expected {}, one per good invite",
            w.dir.user_count(),
            w.dir.created_count(),
            want.len()
        ));
    }
    for email in &neighbours {
        if w.mailer.sent_to(email).len() != 1 || w.dir.user(email).is_none() {
            failures.push(format!("good neighbour {email} was not sent exactly once"));
        }
    }

    check_hostile_but_valid(&w, &mut failures);

    let dead = tally.invalid_event + tally.invalid_attributes;
    println!(
        "hostile input: {dead} bad messages dead-lettered with a reason \
         ({} invalid_event, {} invalid_attributes; longest reason {} characters), \
         {} good neighbours sent, {} hostile-but-valid invites sent with escaped HTML, {} panics",
        tally.invalid_event,
        tally.invalid_attributes,
        tally.longest_reason,
        tally.neighbours,
        tally.accepted,
        tally.panics
    );
    if !failures.is_empty() {
        let mut report = format!("{} problems:\n", failures.len());
        for f in &failures {
            let _ = writeln!(report, "  - {f}");
        }
        panic!("{report}");
    }
    assert!(dead >= 60, "the corpus has at least 60 bad messages");
}

fn mail_to<'a>(sent: &'a [OutgoingMail], email: &str) -> Option<&'a OutgoingMail> {
    sent.iter().find(|m| m.to.as_str() == email)
}

/// Markup and template syntax in names is data: stored and given to Cognito as sent, escaped in
/// the HTML email, never interpreted.
fn check_hostile_but_valid(w: &World, failures: &mut Vec<String>) {
    let sent = w.mailer.sent();
    let record = |email: &str| {
        let address = EmailAddress::parse(email).expect("corpus address");
        w.store.get(&InviteId::for_email(POOL_ID, &address))
    };

    let given = "<script>alert('given')</script>";
    let email = "hostile-201@corpus.example";
    match (mail_to(&sent, email), record(email), w.dir.user(email)) {
        (Some(mail), Some(rec), Some(user)) => {
            if rec.details.attributes.get("given_name").map(String::as_str) != Some(given)
                || user.info.attributes.get("given_name").map(String::as_str) != Some(given)
            {
                failures.push(format!("{email}: given_name was not stored as sent"));
            }
            if !mail
                .html
                .contains("&lt;script&gt;alert(&#x27;given&#x27;)&lt;/script&gt;")
            {
                failures.push(format!("{email}: the greeting is not HTML-escaped"));
            }
        }
        _ => failures.push(format!("{email}: no record, user or mail")),
    }

    let email = "hostile-203@corpus.example";
    match mail_to(&sent, email) {
        Some(mail) => {
            if !mail.html.contains("&lt;img src=x onerror=alert(1)&gt;") {
                failures.push(format!("{email}: invited_by is not HTML-escaped"));
            }
            if !mail.subject.starts_with("<img src=x onerror=alert(1)>") {
                failures.push(format!(
                    "{email}: the subject (plain text) should carry invited_by as sent: {:?}",
                    mail.subject
                ));
            }
        }
        None => failures.push(format!("{email}: no mail")),
    }

    let email = "hostile-205@corpus.example";
    match mail_to(&sent, email) {
        Some(mail) => {
            if !mail
                .html
                .contains("https://app.example.com/%22%3E%3Cscript%3E")
            {
                failures.push(format!(
                    "{email}: the redirect URL is not percent-encoded in the link"
                ));
            }
        }
        None => failures.push(format!("{email}: no mail")),
    }

    let email = "hostile-206@corpus.example";
    match mail_to(&sent, email) {
        Some(mail) => {
            if !mail.html.contains("{{ temporary_password }}")
                || !mail.text.contains("{{ temporary_password }}")
            {
                failures.push(format!(
                    "{email}: template syntax in a name must be shown as text, not evaluated"
                ));
            }
        }
        None => failures.push(format!("{email}: no mail")),
    }

    let email = "hostile-207@corpus.example";
    match mail_to(&sent, email) {
        Some(mail) => {
            if mail.subject.contains(['\u{2028}', '\u{2029}', '\r', '\n']) {
                failures.push(format!(
                    "{email}: a line separator survived in the subject: {:?}",
                    mail.subject
                ));
            }
        }
        None => failures.push(format!("{email}: no mail")),
    }

    // The duplicate: one user, one mail, three events in the record's history.
    let email = "duplicate@corpus.example";
    if w.mailer.sent_to(email).len() != 1 {
        failures.push(format!(
            "{email}: {} mails for one invite sent twice and requested again",
            w.mailer.sent_to(email).len()
        ));
    }
    match record(email) {
        Some(rec) => {
            if !rec.has_seen("corpus-duplicate") || !rec.has_seen("corpus-duplicate-2") {
                failures.push(format!("{email}: the history misses an event"));
            }
        }
        None => failures.push(format!("{email}: no invite record")),
    }
}

/// The same messages through the real worker loop: bad ones dead-lettered on their first
/// delivery with the reason the handler gave, good ones acked and mailed once, nothing left.
#[tokio::test(start_paused = true)]
async fn the_worker_dead_letters_every_corpus_message_and_sends_the_good_ones() {
    let w = world();
    let queue = Arc::new(MemoryQueue::standard());
    let mut cases = corpus();
    cases.extend(generated_cases());
    let mut neighbours: Vec<String> = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        if n % NEIGHBOUR_EVERY == 0 {
            let (body, email) = neighbour(neighbours.len());
            queue.push(body);
            neighbours.push(email);
        }
        queue.push(case.body.clone());
    }
    let pushed = queue.len();
    // Some latency, so that handlings interleave: the duplicates race for the same invite.
    w.store.faults.set_latency(Duration::from_millis(5));
    w.dir.faults.set_latency(Duration::from_millis(20));
    w.mailer.faults.set_latency(Duration::from_millis(20));

    let handler: Arc<dyn MessageHandler> = w.service.clone();
    let options = WorkerOptions {
        concurrency: 8,
        wait: Duration::from_secs(1),
        until_idle: Some(3),
        ..WorkerOptions::default()
    };
    let worker = Worker::new(queue.clone() as Arc<dyn Queue>, handler, options);
    let summary = worker.run(CancellationToken::new()).await;

    let mut failures: Vec<String> = Vec::new();
    if summary.handler_panics != 0
        || summary.handler_timeouts != 0
        || summary.dead_letter_failures != 0
    {
        failures.push(format!("worker trouble: {summary:?}"));
    }
    if !queue.is_empty() || queue.in_flight_len() != 0 {
        failures.push(format!(
            "{} messages left on the queue ({} in flight)",
            queue.len(),
            queue.in_flight_len()
        ));
    }

    let dead = queue.dead_letters();
    let mut dead_by_body: BTreeMap<&str, Vec<&invite_worker::ports::DeadLetter>> = BTreeMap::new();
    for (message, why) in &dead {
        dead_by_body
            .entry(message.body.as_str())
            .or_default()
            .push(why);
    }
    let mut bad = 0usize;
    let mut expected_sends = neighbours.clone();
    for case in &cases {
        let entries = dead_by_body.remove(case.body.as_str()).unwrap_or_default();
        match &case.expect {
            Expect::DeadLetter { code, field } => {
                bad += 1;
                match entries.as_slice() {
                    [why] => {
                        if &why.reason_code != code || !names_field(&why.reason, field) {
                            failures.push(format!(
                                "{}: dead-lettered as {} {:?}; want {code} naming {field}",
                                case.name, why.reason_code, why.reason
                            ));
                        }
                        if why.attempts != 1 {
                            failures.push(format!(
                                "{}: dead-lettered after {} deliveries; bad input is never retried",
                                case.name, why.attempts
                            ));
                        }
                    }
                    other => failures.push(format!(
                        "{}: {} dead-letter entries, want 1",
                        case.name,
                        other.len()
                    )),
                }
            }
            Expect::Ack { outcome } => {
                if !entries.is_empty() {
                    failures.push(format!("{}: dead-lettered, want {outcome}", case.name));
                }
                if outcome == "sent" {
                    if let Some(email) = address_in(&case.body) {
                        expected_sends.push(email);
                    }
                }
            }
        }
    }
    for (body, entries) in dead_by_body {
        failures.push(format!(
            "a good message was dead-lettered ({:?}): {}",
            entries.first().map(|e| &e.reason),
            body.chars().take(120).collect::<String>()
        ));
    }

    let mut sent_to: Vec<String> = w
        .mailer
        .sent()
        .iter()
        .map(|m| m.to.as_str().to_owned())
        .collect();
    sent_to.sort();
    expected_sends.sort();
    if sent_to != expected_sends {
        failures.push(format!(
            "mails went to {sent_to:?}; expected exactly one to each of {expected_sends:?}"
        ));
    }
    if w.dir.user_count() != expected_sends.len() {
        failures.push(format!(
            "{} Cognito users; expected {}",
            w.dir.user_count(),
            expected_sends.len()
        ));
    }
    let acked = pushed - bad;
    if summary.acked as usize != acked || summary.dead_lettered as usize != bad {
        failures.push(format!(
            "worker acked {} and dead-lettered {}; want {acked} and {bad}",
            summary.acked, summary.dead_lettered
        ));
    }

    println!(
        "hostile input through the worker: {pushed} messages, {} dead-lettered on first delivery, \
         {} acked ({} retried while a duplicate held the invite), {} panics",
        summary.dead_lettered, summary.acked, summary.retried, summary.handler_panics
    );
    if !failures.is_empty() {
        let mut report = format!("{} problems:\n", failures.len());
        for f in &failures {
            let _ = writeln!(report, "  - {f}");
        }
        panic!("{report}");
    }
}
