//! Crash safety, checked from the outside: the worker binary is killed with SIGKILL at random
//! moments while it works through a few hundred invites, restarted each time, then run until
//! idle. Afterwards every invite is `sent`, every address has exactly one Cognito user, the
//! newest emailed temporary password signs in, duplicate emails are bounded by the kills, and
//! nothing is left in flight or dead-lettered. Prints the figures (docs/reliability.md).
//!
//! Sizes: `RELIABILITY_INVITES` (default 120), `RELIABILITY_KILLS` (default 10),
//! `RELIABILITY_SIGNIN_SAMPLE` (default: all), `RELIABILITY_SEED` (default random, printed).
//! `scripts/reliability.sh` runs the large version.

mod reliability_support;
mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use invite_worker::config::Transport;
use invite_worker::domain::InviteStatus;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reliability_support::*;
use support::*;

/// How long a killed worker's claims last: short, so the test does not wait for long.
const LEASE_SECONDS: u64 = 10;
/// Below the lease (the configuration requires it) and above the longest rate-limit wait:
/// 64 handlers sharing 14 emails/s wait up to ~4.6 s for a token.
const HANDLER_TIMEOUT_SECONDS: u64 = 8;
/// The queue's visibility timeout: how soon a killed worker's messages come back.
const VISIBILITY_SECONDS: u64 = 10;

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_makes_nothing_twice() {
    require_stack();
    let count: usize = env_number("RELIABILITY_INVITES", 120);
    let kills: usize = env_number("RELIABILITY_KILLS", 10);
    let sample_size: usize = env_number("RELIABILITY_SIGNIN_SAMPLE", usize::MAX);
    let seed: u64 = env_number("RELIABILITY_SEED", rand::random::<u64>() % 1_000_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    eprintln!("crash test: {count} invites, {kills} kills, seed {seed}");

    let env = bootstrapped("crash", Transport::Ses).await;
    set_queue_visibility(&env, VISIBILITY_SECONDS).await;
    let (emails, bodies) = invites("crash", count);
    enqueue_batched(&env, &bodies).await;

    let log = env.dir.path().join("worker.log");
    let spec = WorkerSpec::new(&env, log.clone())
        .set("WORKER__LEASE_SECONDS", LEASE_SECONDS)
        .set("WORKER__HANDLER_TIMEOUT_SECONDS", HANDLER_TIMEOUT_SECONDS)
        .set("QUEUE__VISIBILITY_TIMEOUT_SECONDS", VISIBILITY_SECONDS)
        .set("QUEUE__RETRY_BASE_SECONDS", 1)
        .set("QUEUE__RETRY_MAX_SECONDS", 2)
        .set("QUEUE__WAIT_SECONDS", 1)
        .extra_env("RUST_LOG", "info");

    let started = Instant::now();
    let mut lifetimes = Vec::new();
    for _ in 0..kills {
        let mut worker = spec.spawn(&["run", "--json"]);
        let delay = Duration::from_millis(rng.random_range(300..=2000));
        std::thread::sleep(delay);
        worker.kill();
        lifetimes.push(delay.as_millis());
    }
    let kill_phase = started.elapsed();
    let sent_when_kills_ended = records(&env, &emails)
        .await
        .values()
        .flatten()
        .filter(|r| r.status == InviteStatus::Sent)
        .count();
    let (status, final_run) = spec.run_until_idle(Duration::from_secs(600));
    assert!(status.success(), "final run failed; log {}", log.display());
    let wall = started.elapsed();
    let kept = keep_log(&log, "reliability_crash");

    // From the outside.
    let records = records(&env, &emails).await;
    let not_sent: Vec<_> = records
        .iter()
        .filter(|(_, r)| r.as_ref().map(|r| r.status) != Some(InviteStatus::Sent))
        .map(|(e, r)| format!("{e}: {:?}", r.as_ref().map(|r| (r.status, &r.reason))))
        .collect();
    let users = users_by_email(&env).await;
    let ours: HashSet<&String> = emails.iter().collect();
    let wrong_users: Vec<_> = emails
        .iter()
        .filter(|e| users.get(*e).copied().unwrap_or(0) != 1)
        .map(|e| format!("{e}: {} users", users.get(e).copied().unwrap_or(0)))
        .collect();
    let strangers = users.keys().filter(|e| !ours.contains(e)).count();
    let mails = mails_by_recipient();
    let sent_mails: usize = emails
        .iter()
        .map(|e| mails.get(e).map_or(0, Vec::len))
        .sum();
    let without_mail = emails.iter().filter(|e| !mails.contains_key(*e)).count();
    let duplicates = sent_mails.saturating_sub(count - without_mail);
    let most = emails
        .iter()
        .map(|e| mails.get(e).map_or(0, Vec::len))
        .max()
        .unwrap_or(0);
    let recorded_sends: u32 = records.values().flatten().map(|r| r.send_count).sum();
    let mut sample = emails.clone();
    sample.shuffle(&mut rng);
    sample.truncate(sample_size.min(count));
    let sign_in_failures = verify_sign_ins(&env, &mails, &sample).await;
    let (visible, in_flight, delayed) = queue_counts(&env.settings.queue.url).await;
    let (dlq_visible, dlq_in_flight, _) = queue_counts(&env.settings.queue.dlq_url).await;
    let dead = dead_letters(&env.settings).await;
    let summary = run_summaries(&log);

    let mut f = Figures::new("crash safety (SIGKILL at random moments)");
    f.add("seed", seed);
    f.add("invites", count);
    f.add("kills (SIGKILL)", kills);
    f.add(
        "worker lifetimes before kill (ms)",
        format!("{lifetimes:?}"),
    );
    f.add("invites sent when the kills ended", sent_when_kills_ended);
    f.add(
        "invites sent",
        records
            .values()
            .flatten()
            .filter(|r| r.status == InviteStatus::Sent)
            .count(),
    );
    f.add("emails sent", sent_mails);
    f.add("duplicate emails", duplicates);
    f.add(
        "duplicate emails per kill",
        format!("{:.2}", duplicates as f64 / kills.max(1) as f64),
    );
    f.add("most emails to one address", most);
    f.add("recorded sends (send_count sum)", recorded_sends);
    f.add("Cognito users for these addresses", users.len() - strangers);
    f.add("addresses without exactly one user", wrong_users.len());
    f.add(
        "sign-ins verified (newest password)",
        format!("{}/{}", sample.len() - sign_in_failures.len(), sample.len()),
    );
    f.add("dead letters", dlq_visible + dlq_in_flight);
    f.add(
        "left on queue (visible/in flight/delayed)",
        format!("{visible}/{in_flight}/{delayed}"),
    );
    f.add(
        "messages received (final run)",
        summary.get("received").copied().unwrap_or(0),
    );
    f.add(
        "retries (final run)",
        summary.get("retried").copied().unwrap_or(0),
    );
    f.add(
        "kill phase / final run / wall time",
        format!(
            "{:.1} s / {:.1} s / {:.1} s",
            kill_phase.as_secs_f64(),
            final_run.as_secs_f64(),
            wall.as_secs_f64()
        ),
    );
    f.add("worker log", kept.display());
    f.print();

    assert!(not_sent.is_empty(), "not sent: {not_sent:?}");
    assert!(
        wrong_users.is_empty(),
        "addresses without exactly one user: {wrong_users:?}"
    );
    assert_eq!(without_mail, 0, "addresses that got no email");
    assert!(
        sign_in_failures.is_empty(),
        "newest emailed password did not sign in: {sign_in_failures:?}"
    );
    // A kill interrupts every invite whose email the service has accepted but whose `sent` is
    // not yet recorded: at most what the send rate limiter lets start within about a second
    // (its burst plus one second of its rate). Each invite gets at most one extra email per kill.
    let email = &env.settings.email;
    let per_kill = email.send_burst as usize + email.send_rate_per_second.ceil() as usize;
    assert!(
        duplicates <= kills * per_kill,
        "{duplicates} duplicate emails for {kills} kills (bound {per_kill} per kill)"
    );
    assert!(most <= 1 + kills, "an invite got {most} emails");
    assert_eq!(
        (visible, in_flight, delayed),
        (0, 0, 0),
        "messages left on the queue"
    );
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    assert_eq!(dlq_visible + dlq_in_flight, 0, "dead letters");
}
