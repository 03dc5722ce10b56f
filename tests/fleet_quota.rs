//! A fleet of worker processes sharing one account-wide quota, measured from the outside: N
//! `invite-worker run --until-idle` processes behind `scripts/fault_proxy.py`, which enforces a
//! quota on `AdminCreateUser` the way Cognito does (a token bucket shared by every caller,
//! `TooManyRequestsException` beyond it). Prints figures (docs/performance.md); not a timed test.
//!
//! - `shared`: 3 workers, each configured with the account's quota as `create_rate_per_second`.
//! - `competitor`: the same, with another consumer the workers cannot see taking 30 % of the
//!   quota through the proxy.
//! - `reserve`: the competitor again, with `cognito.reserve_rate_per_second` set to its share.
//! - `killed`: one of the three is killed (SIGKILL) mid-run; the fleet's rate per second around
//!   the kill shows how long its lease strands budget.
//!
//! Run: `cargo test --test fleet_quota -- --ignored --nocapture --test-threads 1`. Sizes:
//! `FLEET_WORKERS` (3), `FLEET_QUOTA` (8), `FLEET_SECONDS` (30: invites = quota × seconds).

mod reliability_support;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use invite_worker::config::Transport;
use invite_worker::domain::InviteStatus;
use reliability_support::*;
use serde_json::json;
use support::*;

struct Run {
    quota: f64,
    /// Allowed worker calls per whole second since the proxy started.
    per_second: BTreeMap<u64, u64>,
    allowed: u64,
    throttled: u64,
    competitor: (u64, u64),
    /// Seconds from the first to the last allowed `AdminCreateUser`.
    span: f64,
    update_items: u64,
    /// The 10th to 90th percentile of allowed worker calls: (seconds, worker calls, competitor calls).
    steady: (f64, u64, u64),
    wall: Duration,
    kill_at: Option<f64>,
}

impl Run {
    fn delivered(&self) -> f64 {
        self.allowed as f64 / self.span.max(1e-9)
    }
    fn throttled_share(&self) -> f64 {
        self.throttled as f64 / (self.allowed + self.throttled).max(1) as f64
    }
    fn competitor_rate(&self) -> f64 {
        self.competitor.0 as f64 / self.span.max(1e-9)
    }
    /// Worker calls per second between the 10th and 90th percentile (the backlog's ramps left out).
    fn steady(&self) -> f64 {
        self.steady.1 as f64 / self.steady.0.max(1e-9)
    }
    /// What the competitor left of the quota over the same interval.
    fn steady_left(&self) -> f64 {
        self.quota - self.steady.2 as f64 / self.steady.0.max(1e-9)
    }
}

/// `reserve`: `cognito.reserve_rate_per_second` (the share left to the competitor).
async fn fleet_run(
    tag: &str,
    competitor_share: f64,
    kill_one: bool,
    reserve: f64,
) -> (Run, Figures) {
    let workers: usize = env_number("FLEET_WORKERS", 3);
    let quota: f64 = env_number("FLEET_QUOTA", 8.0);
    let seconds: f64 = env_number("FLEET_SECONDS", 30.0);
    let count = (quota * seconds) as usize;
    let env = bootstrapped(tag, Transport::Ses).await;
    set_queue_visibility(&env, 20).await;
    let (emails, bodies) = invites(tag, count);
    enqueue_batched(&env, &bodies).await;

    let proxy = FaultProxy::start(7);
    proxy.set(json!({
        "services": {},
        "serialize": ["dynamodb:UpdateItem"],
        "quotas": [{
            "name": "UserCreation", "service": "cognito", "operations": ["AdminCreateUser"],
            "rate": quota, "burst": quota, "competitor_rate": quota * competitor_share,
        }],
    }));
    let log = env.dir.path().join("workers.log");
    let spec = WorkerSpec::new(&env, log.clone())
        .endpoint(&proxy.url())
        .set("COGNITO__CREATE_RATE_PER_SECOND", quota)
        .set("COGNITO__RESERVE_RATE_PER_SECOND", reserve)
        .set("EMAIL__SEND_RATE_PER_SECOND", quota * 4.0)
        .set("WORKER__CONCURRENCY", 16)
        .set("WORKER__LEASE_SECONDS", 30)
        .set("WORKER__HANDLER_TIMEOUT_SECONDS", 25)
        .set("QUEUE__VISIBILITY_TIMEOUT_SECONDS", 20)
        .set("QUEUE__WAIT_SECONDS", 2)
        .set("WORKER__IDLE_POLLS", 3)
        .extra_env("RUST_LOG", "info");
    let started = Instant::now();
    let mut procs: Vec<WorkerProcess> = (0..workers)
        .map(|_| spec.spawn(&["run", "--until-idle"]))
        .collect();
    let mut kill_at = None;
    if kill_one {
        tokio::time::sleep(Duration::from_secs_f64(seconds / 3.0)).await;
        kill_at = Some(proxy.stats()["uptime_seconds"].as_f64().unwrap_or(0.0));
        procs[0].kill();
    }
    let limit = Duration::from_secs_f64(seconds * 4.0 + 120.0);
    for p in &mut procs[usize::from(kill_one)..] {
        assert!(
            p.wait_for(limit).is_some(),
            "worker still running; log {}",
            keep_log(&log, tag).display()
        );
    }
    if kill_one {
        // The killed worker's messages come back after the visibility timeout: finish them.
        spec.run_until_idle(Duration::from_secs(120));
    }
    let wall = started.elapsed();
    let stats = proxy.stats();
    let q = &stats["quotas"]["UserCreation"];
    let n = |k: &str| q[k].as_u64().unwrap_or(0);
    let times: Vec<f64> = q["allowed_at"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_f64())
        .collect();
    let span = match (times.first(), times.last()) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let competitor_times: Vec<f64> = q["competitor_at"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_f64())
        .collect();
    let steady = if times.len() >= 10 {
        let (lo, hi) = (times[times.len() / 10], times[times.len() * 9 / 10]);
        let within = |t: &&f64| **t >= lo && **t < hi;
        (
            hi - lo,
            times.iter().filter(within).count() as u64,
            competitor_times.iter().filter(within).count() as u64,
        )
    } else {
        (0.0, 0, 0)
    };
    let mut per_second = BTreeMap::new();
    for t in &times {
        *per_second.entry(*t as u64).or_insert(0) += 1;
    }
    let run = Run {
        quota,
        per_second,
        allowed: n("allowed"),
        throttled: n("throttled"),
        competitor: (n("competitor_allowed"), n("competitor_throttled")),
        span,
        update_items: stats["services"]["dynamodb"]["ops"]["UpdateItem"]
            .as_u64()
            .unwrap_or(0),
        steady,
        wall,
        kill_at,
    };

    // Outcome, checked against moto directly.
    let records = records(&env, &emails).await;
    let not_sent: Vec<&String> = records
        .iter()
        .filter(|(_, r)| r.as_ref().map(|r| r.status) != Some(InviteStatus::Sent))
        .map(|(e, _)| e)
        .collect();
    let mails = mails_by_recipient();
    // Exactly one email each; a worker killed between an email and its record costs that
    // invite one more (with a fresh password), as in the crash scenario (docs/reliability.md).
    let most = if kill_one { 2 } else { 1 };
    let not_once: Vec<&String> = emails
        .iter()
        .filter(|e| !(1..=most).contains(&mails.get(*e).map_or(0, Vec::len)))
        .collect();
    let twice = emails
        .iter()
        .filter(|e| mails.get(*e).map_or(0, Vec::len) == 2)
        .count();
    let (dv, di, _) = queue_counts(&env.settings.queue.dlq_url).await;

    let mut f = Figures::new(&format!("fleet quota: {tag}"));
    f.add("workers", workers);
    f.add("quota (AdminCreateUser/s)", quota);
    f.add("reserve_rate_per_second", reserve);
    f.add("invites", count);
    f.add("wall time", format!("{:.1} s", run.wall.as_secs_f64()));
    f.add("creates allowed", run.allowed);
    f.add("create span", format!("{:.1} s", run.span));
    f.add(
        "delivered",
        format!(
            "{:.2}/s = {:.1} % of the quota",
            run.delivered(),
            100.0 * run.delivered() / quota
        ),
    );
    f.add(
        "delivered, steady (10th-90th pct)",
        format!(
            "{:.2}/s = {:.1} % of the quota, {:.1} % of what the competitor left",
            run.steady(),
            100.0 * run.steady() / quota,
            100.0 * run.steady() / run.steady_left()
        ),
    );
    f.add(
        "throttled AdminCreateUser",
        format!("{} = {:.2} %", run.throttled, 100.0 * run.throttled_share()),
    );
    if competitor_share > 0.0 {
        let left = quota - run.competitor_rate();
        f.add(
            "competitor allowed/throttled",
            format!(
                "{}/{} ({:.2}/s)",
                run.competitor.0,
                run.competitor.1,
                run.competitor_rate()
            ),
        );
        f.add(
            "fleet's use of what is left",
            format!(
                "{:.2}/s of {:.2}/s = {:.1} %",
                run.delivered(),
                left,
                100.0 * run.delivered() / left
            ),
        );
    }
    f.add(
        "budget UpdateItem calls",
        format!(
            "{} = {:.2}/s over the create span (both budgets)",
            run.update_items,
            run.update_items as f64 / run.span.max(1e-9)
        ),
    );
    f.add(
        "allowed per second",
        match (run.per_second.keys().next(), run.per_second.keys().last()) {
            (Some(first), Some(last)) => (*first..=*last)
                .map(|s| run.per_second.get(&s).copied().unwrap_or(0).to_string())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        },
    );
    if let Some(k) = run.kill_at {
        f.add("killed at (proxy s)", format!("{k:.1}"));
    }
    f.add("invites not sent", not_sent.len());
    f.add("addresses mailed twice (kill)", twice);
    f.add(
        if kill_one {
            "addresses not mailed once or twice"
        } else {
            "addresses not mailed exactly once"
        },
        not_once.len(),
    );
    f.add("dead letters", dv + di);
    f.print();
    keep_log(&log, tag);
    assert!(not_sent.is_empty(), "not sent: {not_sent:?}");
    assert!(
        not_once.is_empty(),
        "not mailed once (twice at most after a kill): {not_once:?}"
    );
    assert_eq!(dv + di, 0, "dead letters");
    (run, f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (minutes, several processes): cargo test --test fleet_quota -- --ignored --nocapture --test-threads 1"]
async fn three_workers_share_one_quota() {
    require_stack();
    let (run, _) = fleet_run("fleet-shared", 0.0, false, 0.0).await;
    assert!(
        run.delivered() >= 0.95 * run.quota,
        "delivered {:.2}/s",
        run.delivered()
    );
    assert!(
        run.throttled_share() <= 0.01,
        "throttled {:.3}",
        run.throttled_share()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (minutes, several processes): cargo test --test fleet_quota -- --ignored --nocapture --test-threads 1"]
async fn three_workers_yield_to_an_unseen_competitor() {
    require_stack();
    let (run, _) = fleet_run("fleet-competitor", 0.3, false, 0.0).await;
    let left = run.quota - run.competitor_rate();
    assert!(
        run.delivered() >= 0.90 * left,
        "delivered {:.2}/s of {left:.2}/s",
        run.delivered()
    );
    assert!(
        run.throttled_share() <= 0.05,
        "throttled {:.3}",
        run.throttled_share()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (minutes, several processes): cargo test --test fleet_quota -- --ignored --nocapture --test-threads 1"]
async fn a_reserve_leaves_the_competitor_its_share() {
    require_stack();
    let quota: f64 = env_number("FLEET_QUOTA", 8.0);
    let (run, _) = fleet_run("fleet-reserve", 0.3, false, quota * 0.3).await;
    let competitor_throttled =
        run.competitor.1 as f64 / (run.competitor.0 + run.competitor.1).max(1) as f64;
    assert!(
        run.throttled_share() <= 0.05,
        "throttled {:.3}",
        run.throttled_share()
    );
    assert!(
        competitor_throttled <= 0.05,
        "competitor throttled {competitor_throttled:.3}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (minutes, several processes): cargo test --test fleet_quota -- --ignored --nocapture --test-threads 1"]
async fn a_killed_worker_strands_at_most_one_window() {
    require_stack();
    let (run, _) = fleet_run("fleet-killed", 0.0, true, 0.0).await;
    let kill = run.kill_at.expect("killed") as u64;
    // From the second after the kill's window on, the survivors get the whole quota (while the
    // backlog lasts).
    let after: Vec<u64> = (kill + 1..kill + 4)
        .map(|s| run.per_second.get(&s).copied().unwrap_or(0))
        .collect();
    eprintln!("allowed in the three seconds after the kill's: {after:?}");
    assert!(
        after.iter().all(|n| *n as f64 >= run.quota - 1.0),
        "{after:?}"
    );
}
