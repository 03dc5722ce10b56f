//! Transient faults, an outage and SIGTERM, against the worker binary. The worker talks to the
//! local stack through `scripts/fault_proxy.py`; the test sets up and checks directly against
//! moto. Every scenario prints its figures (docs/reliability.md).
//!
//! - A: 20 % of Cognito and SES calls fail (throttling, 5xx, dropped connections, answers lost
//!   after the call took effect, slow answers) → every invite ends `sent`, nothing dead-lettered.
//! - B: Cognito is down for `RELIABILITY_OUTAGE_SECONDS` (default 30) while invites arrive, with
//!   the default retry settings (`queue.max_attempts` 10, base 5 s, cap 900 s) → nothing
//!   dead-lettered, work resumes by itself, all end `sent`.
//! - C: SIGTERM while invites are in flight (some held up longer than the grace period) → the
//!   process exits within `shutdown_grace_seconds` (plus a margin), and after a restart every
//!   invite is `sent`, nothing dead-lettered.
//!
//! Sizes: `RELIABILITY_FAULT_INVITES` (default 40), `RELIABILITY_OUTAGE_SECONDS` (default 30),
//! `RELIABILITY_SEED`.

mod reliability_support;
mod support;

use std::time::{Duration, Instant};

use invite_worker::config::Transport;
use invite_worker::domain::InviteStatus;
use reliability_support::*;
use serde_json::json;
use support::*;

const LEASE_SECONDS: u64 = 10;
const HANDLER_TIMEOUT_SECONDS: u64 = 8;

fn seed() -> u64 {
    env_number("RELIABILITY_SEED", rand::random::<u64>() % 1_000_000)
}

/// How many of `emails` are `sent` now.
async fn sent_count(env: &Env, emails: &[String]) -> usize {
    records(env, emails)
        .await
        .values()
        .flatten()
        .filter(|r| r.status == InviteStatus::Sent)
        .count()
}

/// The outcome checks every scenario ends with; returns figures to print.
struct Outcome {
    sent: usize,
    not_sent: Vec<String>,
    emails: usize,
    duplicates: usize,
    wrong_users: Vec<String>,
    sign_in_failures: Vec<String>,
    dead_letters: usize,
    left: (u64, u64, u64),
}

async fn outcome(env: &Env, emails: &[String]) -> Outcome {
    let records = records(env, emails).await;
    let not_sent: Vec<String> = records
        .iter()
        .filter(|(_, r)| r.as_ref().map(|r| r.status) != Some(InviteStatus::Sent))
        .map(|(e, r)| format!("{e}: {:?}", r.as_ref().map(|r| (r.status, &r.reason))))
        .collect();
    let users = users_by_email(env).await;
    let wrong_users = emails
        .iter()
        .filter(|e| users.get(*e).copied().unwrap_or(0) != 1)
        .map(|e| format!("{e}: {} users", users.get(e).copied().unwrap_or(0)))
        .collect();
    let mails = mails_by_recipient();
    let count: usize = emails
        .iter()
        .map(|e| mails.get(e).map_or(0, Vec::len))
        .sum();
    let sign_in_failures = verify_sign_ins(env, &mails, emails).await;
    let (dv, di, _) = queue_counts(&env.settings.queue.dlq_url).await;
    Outcome {
        sent: emails.len() - not_sent.len(),
        not_sent,
        emails: count,
        duplicates: count.saturating_sub(emails.len()),
        wrong_users,
        sign_in_failures,
        dead_letters: (dv + di) as usize,
        left: queue_counts(&env.settings.queue.url).await,
    }
}

impl Outcome {
    fn add_to(&self, f: &mut Figures, invites: usize) {
        f.add("invites sent", format!("{}/{invites}", self.sent));
        f.add(
            "emails sent (duplicates)",
            format!("{} ({})", self.emails, self.duplicates),
        );
        f.add(
            "sign-ins verified (newest password)",
            format!("{}/{invites}", invites - self.sign_in_failures.len()),
        );
        f.add("addresses without exactly one user", self.wrong_users.len());
        f.add("dead letters", self.dead_letters);
        f.add(
            "left on queue (visible/in flight/delayed)",
            format!("{}/{}/{}", self.left.0, self.left.1, self.left.2),
        );
    }

    fn assert_all_good(&self) {
        assert!(self.not_sent.is_empty(), "not sent: {:?}", self.not_sent);
        assert_eq!(self.dead_letters, 0, "dead letters");
        assert!(
            self.wrong_users.is_empty(),
            "addresses without exactly one user: {:?}",
            self.wrong_users
        );
        assert!(
            self.sign_in_failures.is_empty(),
            "newest emailed password did not sign in: {:?}",
            self.sign_in_failures
        );
        assert_eq!(self.left, (0, 0, 0), "messages left on the queue");
    }
}

/// Injected faults by kind for one service, e.g. `throttle 5, error5xx 4, drop 3`.
fn faults_of(stats: &serde_json::Value, service: &str) -> String {
    let kinds = ["throttle", "error5xx", "slow", "drop", "drop_after", "down"];
    let parts: Vec<String> = kinds
        .iter()
        .map(|k| (k, stat(stats, service, k)))
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    format!(
        "{} calls, {} faults ({})",
        stat(stats, service, "calls"),
        kinds.iter().map(|k| stat(stats, service, k)).sum::<u64>(),
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    )
}

fn summary_line(log: &std::path::Path) -> String {
    let s = run_summaries(log);
    format!(
        "received {}, acked {}, retried {}, dead-lettered {}, released {}, handler timeouts {}",
        s.get("received").unwrap_or(&0),
        s.get("acked").unwrap_or(&0),
        s.get("retried").unwrap_or(&0),
        s.get("dead_lettered").unwrap_or(&0),
        s.get("released").unwrap_or(&0),
        s.get("handler_timeouts").unwrap_or(&0),
    )
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_of_cognito_and_ses_calls_failing_loses_nothing() {
    require_stack();
    let count: usize = env_number("RELIABILITY_FAULT_INVITES", 40);
    let seed = seed();
    let env = bootstrapped("faultsa", Transport::Ses).await;
    let proxy = FaultProxy::start(seed);
    let mix = json!({"throttle": 0.07, "error5xx": 0.06, "drop": 0.03, "drop_after": 0.02,
                     "slow": 0.02, "slow_seconds": 1.5});
    proxy.set(json!({"seed": seed, "services": {"cognito": mix, "ses": mix}}));
    let (emails, bodies) = invites("fa", count);
    enqueue_batched(&env, &bodies).await;

    let log = env.dir.path().join("worker.log");
    let spec = WorkerSpec::new(&env, log.clone())
        .endpoint(&proxy.url())
        .set("WORKER__LEASE_SECONDS", LEASE_SECONDS)
        .set("WORKER__HANDLER_TIMEOUT_SECONDS", HANDLER_TIMEOUT_SECONDS)
        .set("QUEUE__RETRY_BASE_SECONDS", 1)
        .set("QUEUE__RETRY_MAX_SECONDS", 2)
        .extra_env("RUST_LOG", "info");
    let started = Instant::now();
    let (status, _) = spec.run_until_idle(Duration::from_secs(300));
    let wall = started.elapsed();
    let stats = proxy.stats();
    let kept = keep_log(&log, "reliability_faults_a");
    assert!(status.success(), "worker failed; log {}", kept.display());
    let out = outcome(&env, &emails).await;

    let mut f = Figures::new("A: 20% of Cognito and SES calls failing");
    f.add("seed", seed);
    f.add("invites", count);
    f.add("Cognito (through the proxy)", faults_of(&stats, "cognito"));
    f.add("SES (through the proxy)", faults_of(&stats, "ses"));
    f.add(
        "Cognito operations",
        stats["services"]["cognito"]["ops"].to_string(),
    );
    f.add("worker", summary_line(&log));
    out.add_to(&mut f, count);
    f.add("wall time", format!("{:.1} s", wall.as_secs_f64()));
    f.add("worker log", kept.display());
    f.print();
    out.assert_all_good();
    let mut injected = 0;
    for service in ["cognito", "ses"] {
        for kind in ["throttle", "error5xx", "drop", "drop_after", "slow"] {
            injected += stat(&stats, service, kind);
        }
    }
    assert!(injected > 0, "the proxy injected no faults: {stats}");
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cognito_down_for_a_while_dead_letters_nothing_and_work_resumes() {
    require_stack();
    let count: usize = env_number("RELIABILITY_FAULT_INVITES", 40);
    let outage = Duration::from_secs(env_number("RELIABILITY_OUTAGE_SECONDS", 30));
    let seed = seed();
    let env = bootstrapped("faultsb", Transport::Ses).await;
    let proxy = FaultProxy::start(seed);
    let (emails, bodies) = invites("fb", count);
    let metrics_at = format!("127.0.0.1:{}", free_port());

    let log = env.dir.path().join("worker.log");
    // The configuration's defaults for retries: this scenario shows they survive an outage.
    let spec = WorkerSpec::new(&env, log.clone())
        .endpoint(&proxy.url())
        .set("WORKER__LEASE_SECONDS", LEASE_SECONDS)
        .set("WORKER__HANDLER_TIMEOUT_SECONDS", HANDLER_TIMEOUT_SECONDS)
        .set(
            "QUEUE__MAX_ATTEMPTS",
            env_number("RELIABILITY_MAX_ATTEMPTS", 8u32),
        )
        .set(
            "QUEUE__RETRY_BASE_SECONDS",
            env_number("RELIABILITY_RETRY_BASE_SECONDS", 5u64),
        )
        .set(
            "QUEUE__RETRY_MAX_SECONDS",
            env_number("RELIABILITY_RETRY_MAX_SECONDS", 900u64),
        )
        .set("HTTP__LISTEN", &metrics_at)
        .extra_env("RUST_LOG", "info");
    let started = Instant::now();
    let mut worker = spec.spawn(&["run", "--until-idle", "--json"]);

    // A quarter before the outage, handled normally.
    let before = count / 4;
    enqueue_batched(&env, &bodies[..before]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent_count(&env, &emails[..before]).await < before {
        assert!(
            Instant::now() < deadline,
            "invites before the outage not sent"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let receives_before = proxy.stats()["services"]["sqs"]["ops"]["ReceiveMessage"]
        .as_u64()
        .unwrap_or(0);

    // The outage; the rest arrive during its first half.
    proxy.set(json!({"services": {"cognito": {"down": true}}}));
    let outage_started = Instant::now();
    let rest = &bodies[before..];
    let waves = 5;
    let mut circuit_seen: Option<f64> = None;
    let mut metrics_available = false;
    for (i, chunk) in rest.chunks(rest.len().div_ceil(waves).max(1)).enumerate() {
        enqueue_batched(&env, chunk).await;
        let until = outage_started + outage.mul_f64((i + 1) as f64 / (2 * waves) as f64);
        while Instant::now() < until {
            observe_circuit(&metrics_at, &mut metrics_available, &mut circuit_seen);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    while outage_started.elapsed() < outage {
        observe_circuit(&metrics_at, &mut metrics_available, &mut circuit_seen);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let during = proxy.stats();
    let receives_during = during["services"]["sqs"]["ops"]["ReceiveMessage"]
        .as_u64()
        .unwrap_or(0)
        - receives_before;
    let sent_during = sent_count(&env, &emails[before..]).await;
    proxy.set(json!({"services": {}}));
    let recovered = Instant::now();

    // No restart: the same process picks the work up again.
    let mut all_sent_after = None;
    let limit = Instant::now() + Duration::from_secs(600);
    let exit = loop {
        if all_sent_after.is_none() && sent_count(&env, &emails).await == count {
            all_sent_after = Some(recovered.elapsed());
        }
        if let Some(status) = worker.wait_for(Duration::from_secs(2)) {
            break status;
        }
        assert!(
            Instant::now() < limit,
            "worker still running 10 minutes after the outage; log {}",
            log.display()
        );
    };
    assert!(exit.success(), "worker failed; log {}", log.display());
    let wall = started.elapsed();
    let stats = proxy.stats();
    let kept = keep_log(&log, "reliability_faults_b");
    let out = outcome(&env, &emails).await;

    let mut f = Figures::new("B: Cognito down, invites arriving");
    f.add("seed", seed);
    f.add(
        "invites (before / during outage)",
        format!("{before} / {}", count - before),
    );
    f.add("outage", format!("{} s", outage.as_secs()));
    f.add("Cognito (through the proxy)", faults_of(&stats, "cognito"));
    f.add("invites sent during the outage", sent_during);
    f.add(
        "SQS receives before / during outage",
        format!(
            "{receives_before} in {:.0} s / {receives_during} in {} s",
            (outage_started - started).as_secs_f64(),
            outage.as_secs()
        ),
    );
    f.add(
        "circuit open seen on /metrics",
        match (metrics_available, circuit_seen) {
            (false, _) => "n/a (no /metrics on this build)".to_string(),
            (true, None) => "n/a (/metrics has no invite_worker_circuit_open)".to_string(),
            (true, Some(v)) => format!("max {v}"),
        },
    );
    f.add(
        "all sent after recovery",
        all_sent_after.map_or("not all".to_string(), |d| {
            format!("{:.1} s", d.as_secs_f64())
        }),
    );
    f.add("worker", summary_line(&log));
    out.add_to(&mut f, count);
    f.add("wall time", format!("{:.1} s", wall.as_secs_f64()));
    f.add("worker log", kept.display());
    f.print();
    out.assert_all_good();
    assert!(
        stat(&stats, "cognito", "down") > 0,
        "the outage was not felt"
    );
    if let Some(v) = circuit_seen {
        assert!(v >= 1.0, "the circuit never opened during the outage");
    }
}

/// Reads `invite_worker_circuit_open` from the worker's /metrics, if it serves one.
fn observe_circuit(hostport: &str, available: &mut bool, seen: &mut Option<f64>) {
    let Some(text) = get_text(hostport, "/metrics") else {
        return;
    };
    *available = true;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(rest) = line.strip_prefix("invite_worker_circuit_open") {
            if let Some(v) = rest
                .split_whitespace()
                .last()
                .and_then(|v| v.parse::<f64>().ok())
            {
                *seen = Some(seen.map_or(v, |s: f64| s.max(v)));
            }
        }
    }
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_in_time_and_loses_nothing() {
    require_stack();
    let count: usize = env_number("RELIABILITY_FAULT_INVITES", 40);
    let grace = 5u64;
    let seed = seed();
    let env = bootstrapped("faultsc", Transport::Ses).await;
    let proxy = FaultProxy::start(seed);
    // A third of Cognito calls take longer than the grace period (but less than the handler
    // timeout): those handlers are cut off by the shutdown, not by their timeout.
    proxy.set(json!({"seed": seed, "services": {
        "cognito": {"slow": 0.3, "slow_seconds": 12.0}
    }}));
    let (emails, bodies) = invites("fc", count);
    enqueue_batched(&env, &bodies).await;

    let log = env.dir.path().join("worker.log");
    let lease: u64 = env_number("RELIABILITY_SIGTERM_LEASE_SECONDS", 20);
    let spec = WorkerSpec::new(&env, log.clone())
        .endpoint(&proxy.url())
        .set("WORKER__LEASE_SECONDS", lease)
        .set("WORKER__HANDLER_TIMEOUT_SECONDS", lease.min(45) - 2)
        .set("WORKER__SHUTDOWN_GRACE_SECONDS", grace)
        .set("QUEUE__RETRY_BASE_SECONDS", 1)
        .set("QUEUE__RETRY_MAX_SECONDS", 2)
        .extra_env("RUST_LOG", "info");
    let started = Instant::now();
    let mut worker = spec.spawn(&["run", "--json"]);
    // Let it get going: some invites sent, others in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent_count(&env, &emails).await < count / 4 {
        assert!(Instant::now() < deadline, "nothing sent before SIGTERM");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sent_at_term = sent_count(&env, &emails).await;
    worker.terminate();
    let termed = Instant::now();
    let status = worker
        .wait_for(Duration::from_secs(grace + 30))
        .expect("worker did not exit after SIGTERM");
    let exit_after = termed.elapsed();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let stopped_summary = summary_line(&log);
    let shutdown = shutdown_lines(&log);

    // Restart, faults off, until idle.
    proxy.set(json!({"services": {}}));
    let restart = Instant::now();
    let (status, _) = spec.run_until_idle(Duration::from_secs(300));
    let restart_took = restart.elapsed();
    let wall = started.elapsed();
    let kept = keep_log(&log, "reliability_faults_c");
    assert!(status.success(), "restart failed; log {}", kept.display());
    let out = outcome(&env, &emails).await;

    let mut f = Figures::new("C: SIGTERM under load");
    f.add("seed", seed);
    f.add("invites", count);
    f.add("sent before SIGTERM", sent_at_term);
    f.add("shutdown_grace_seconds", grace);
    f.add(
        "exit after SIGTERM",
        format!("{:.2} s ({status})", exit_after.as_secs_f64()),
    );
    f.add("shutdown log", shutdown);
    f.add("first run", stopped_summary);
    f.add(
        "restart until idle",
        format!("{:.1} s", restart_took.as_secs_f64()),
    );
    out.add_to(&mut f, count);
    f.add("wall time", format!("{:.1} s", wall.as_secs_f64()));
    f.add("worker log", kept.display());
    f.print();
    assert!(
        exit_after <= Duration::from_secs(grace + 3),
        "exit took {exit_after:?} with a {grace} s grace"
    );
    out.assert_all_good();
}

/// What the worker said while stopping: in flight, abandoned.
fn shutdown_lines(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut parts = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = &v["fields"];
        match fields["message"].as_str() {
            Some("waiting for in-flight messages") => {
                parts.push(format!("in flight {}", fields["in_flight"]))
            }
            Some("shutdown grace elapsed; releasing unfinished messages") => {
                parts.push(format!("abandoned {}", fields["abandoned"]))
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        "nothing in flight".to_string()
    } else {
        parts.join(", ")
    }
}
