//! Operating the service against the local stack: dead letters are listed with their reason,
//! replayed after the cause is fixed (a dry run moves nothing; a crash between send and delete
//! loses nothing and the duplicate is absorbed), and invites are enqueued in bulk from CSV (bad
//! rows named by line; sending the same file again changes nothing downstream).

mod support;

use std::time::Duration;

use invite_worker::adapters::sqs::SqsQueues;
use invite_worker::config::{Settings, Transport};
use invite_worker::domain::{EmailAddress, InviteId, InviteStatus};
use invite_worker::ops::dlq::{
    self, Filters, ListOptions, ReplayOptions, ReplayOutcome, Scan, ScanOptions,
};
use invite_worker::ops::enqueue::{self, EnqueueOptions, EnqueueReport, Format, RowStatus};
use invite_worker::ports::{InviteStore, Queue};
use invite_worker::wiring::{self, Components};
use support::*;

/// The user pool id of a pool that does not exist: the misconfiguration being fixed.
const MISSING_POOL: &str = "us-east-1_doesnotexist";

async fn ops() -> SqsQueues {
    wiring::queues(&wiring::sdk_config().await)
}

fn scan_options() -> ScanOptions {
    ScanOptions {
        wait: Duration::from_secs(1),
        hold: Duration::from_secs(30),
    }
}

fn replay_options(settings: &Settings, filters: &[&str], dry_run: bool) -> ReplayOptions {
    ReplayOptions {
        filters: Filters::parse(filters).unwrap(),
        max: None,
        rate_per_second: Some(50.0),
        dry_run,
        configured_queue: settings.queue.url.clone(),
        to_queue: None,
        scan: scan_options(),
    }
}

/// Components whose settings name a user pool that does not exist.
async fn misconfigured(env: &Env) -> Components {
    let mut settings = env.settings.clone();
    settings.cognito.user_pool_id = MISSING_POOL.into();
    wiring::build(settings, wiring::sdk_config().await)
        .await
        .expect("components with the wrong pool")
}

/// Sends one invite while the pool id is wrong and drains: it ends on the DLQ.
async fn dead_lettered_invite(env: &Env, email: &str, event_id: &str) {
    enqueue(env, &[invite_event(event_id, email)]).await;
    let summary = drain(&misconfigured(env).await).await;
    assert_eq!(summary.dead_lettered, 1, "{summary:?}");
}

async fn users_with_email(settings: &Settings, email: &str) -> usize {
    let idp = aws_sdk_cognitoidentityprovider::Client::new(&wiring::sdk_config().await);
    idp.list_users()
        .user_pool_id(&settings.cognito.user_pool_id)
        .filter(format!("email = \"{email}\""))
        .send()
        .await
        .expect("ListUsers")
        .users()
        .len()
}

async fn status_of(c: &Components, email: &str) -> Option<InviteStatus> {
    let id = InviteId::for_email(
        &c.settings.cognito.user_pool_id,
        &EmailAddress::parse(email).unwrap(),
    );
    c.store.load(&id).await.unwrap().map(|i| i.status)
}

/// How many emails moto's SES holds for each of `recipients`, from one snapshot. Like
/// `support::ses_mails_to`, but retried: moto builds `/moto-api/data.json` from every service's
/// state and answers 500 when another test changes that state while it serialises (e.g.
/// "CognitoIdpUser is not JSON serializable"), which happens on a busy shared server.
fn mails_for(recipients: &[&str]) -> Vec<usize> {
    for _ in 0..10 {
        let Ok(data) = serde_json::from_str::<serde_json::Value>(&moto_get("/moto-api/data.json"))
        else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let raws: Vec<&str> = data["ses"]["RawMessage"]
            .as_array()
            .map(|a| a.iter().filter_map(|m| m["raw_data"].as_str()).collect())
            .unwrap_or_default();
        return recipients
            .iter()
            .map(|to| {
                let wanted = format!("To: {to}");
                raws.iter()
                    .filter(|raw| raw.lines().any(|l| l.eq_ignore_ascii_case(&wanted)))
                    .count()
            })
            .collect();
    }
    panic!("moto's /moto-api/data.json kept failing");
}

fn mails_to(to: &str) -> usize {
    mails_for(&[to])[0]
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_then_replayed_after_the_fix_and_the_invite_is_sent() {
    require_stack();
    let env = bootstrapped("ops-replay", Transport::Ses).await;
    let c = components(&env).await;
    let q = ops().await;
    let (email, event_id) = (recipient("replay"), unique("evt"));
    dead_lettered_invite(&env, &email, &event_id).await;

    // Listed with its reason, without being consumed.
    let listing = dlq::list(
        &q,
        &env.settings.queue.dlq_url,
        &ListOptions {
            scan: scan_options(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(listing.letters.len(), 1, "{listing:?}");
    let letter = &listing.letters[0];
    assert_eq!(letter.reason_code.as_deref(), Some("user_pool_not_found"));
    assert_eq!(letter.event_type.as_deref(), Some("invite.requested"));
    assert_eq!(letter.event_id.as_deref(), Some(event_id.as_str()));
    assert_eq!(letter.email.as_deref(), Some(email.as_str()));
    assert_eq!(letter.attempts, Some(1));
    assert_eq!(
        letter.source_queue.as_deref(),
        Some(env.settings.queue.url.as_str())
    );
    assert!(letter.dead_lettered_at.is_some());
    assert_eq!(dead_letters(&env.settings).await.len(), 1, "still there");

    // The CLI shows the same, masked.
    let (ok, out, err) = cli(&env.settings, &["dlq", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("user_pool_not_found"), "{out}");
    assert!(out.contains(&event_id), "{out}");
    assert!(!out.contains(&email), "masked by default:\n{out}");
    let (ok, out, err) = cli(&env.settings, &["dlq", "list", "--json", "--show-emails"]);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["dead_letters"][0]["email"], email.as_str());

    // A dry run moves nothing.
    let s = dlq::replay(
        &q,
        &env.settings.queue.dlq_url,
        &replay_options(&env.settings, &["reason=user_pool_not_found"], true),
    )
    .await
    .unwrap();
    assert_eq!((s.matched, s.replayed), (1, 0), "{s:?}");
    assert_eq!(dead_letters(&env.settings).await.len(), 1);
    assert_eq!(c.queue.messages_left().await.unwrap(), Some(0));

    // A filter that matches nothing replays nothing.
    let s = dlq::replay(
        &q,
        &env.settings.queue.dlq_url,
        &replay_options(&env.settings, &["reason=invalid_event"], false),
    )
    .await
    .unwrap();
    assert_eq!((s.matched, s.skipped), (0, 1));
    assert_eq!(dead_letters(&env.settings).await.len(), 1);

    // After the fix: replay what failed for that reason.
    let s = dlq::replay(
        &q,
        &env.settings.queue.dlq_url,
        &replay_options(&env.settings, &["reason=user_pool_not_found"], false),
    )
    .await
    .unwrap();
    assert!(s.ok(), "{s:?}");
    assert_eq!((s.matched, s.replayed), (1, 1));
    assert_eq!(
        s.entries[0].outcome,
        ReplayOutcome::Replayed {
            destination: env.settings.queue.url.clone()
        }
    );
    assert!(dead_letters(&env.settings).await.is_empty());

    let summary = drain(&c).await;
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    assert_eq!(status_of(&c, &email).await, Some(InviteStatus::Sent));
    assert_eq!(mails_to(&email), 1, "the invitation arrives");
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_send_and_delete_loses_nothing_and_the_duplicate_is_absorbed() {
    require_stack();
    let env = bootstrapped("ops-crash", Transport::Ses).await;
    let c = components(&env).await;
    let q = ops().await;
    let email = recipient("crash");
    dead_lettered_invite(&env, &email, &unique("evt")).await;

    // The send step of a replay, then the process dies before deleting the dead letter.
    let mut scan = Scan::new(&q, env.settings.queue.dlq_url.clone(), scan_options());
    let held = scan.next(10).await.unwrap();
    assert_eq!(held.len(), 1);
    let copy = dlq::replay_copy(
        &held[0],
        &env.settings.queue.url,
        time::OffsetDateTime::now_utc(),
    );
    let sent = dlq::send_copies(&q, &[copy], None).await;
    assert!(sent[0].is_ok(), "{sent:?}");
    // (Its hold would run out by itself; releasing saves the wait.)
    scan.release_all().await;
    assert_eq!(dead_letters(&env.settings).await.len(), 1, "nothing lost");

    // The operator runs the replay again: a second copy goes out and the dead letter goes.
    let s = dlq::replay(
        &q,
        &env.settings.queue.dlq_url,
        &replay_options(&env.settings, &[], false),
    )
    .await
    .unwrap();
    assert_eq!(s.replayed, 1, "{s:?}");
    assert!(dead_letters(&env.settings).await.is_empty());
    assert_eq!(c.queue.messages_left().await.unwrap(), Some(2));

    let summary = drain(&c).await;
    assert_eq!(summary.acked, 2, "both copies handled: {summary:?}");
    assert_eq!(summary.dead_lettered, 0);
    assert_eq!(status_of(&c, &email).await, Some(InviteStatus::Sent));
    assert_eq!(mails_to(&email), 1, "one email");
    assert_eq!(users_with_email(&env.settings, &email).await, 1, "one user");
}

fn ids(report: &EnqueueReport) -> Vec<Option<String>> {
    report.rows.iter().map(|r| r.event_id.clone()).collect()
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_csv_enqueues_only_good_rows_and_sending_it_again_changes_nothing() {
    require_stack();
    let env = bootstrapped("ops-bulk", Transport::Ses).await;
    let c = components(&env).await;
    let q = ops().await;
    let good: Vec<String> = (0..3).map(|i| recipient(&format!("bulk{i}"))).collect();
    let csv = format!(
        "email,given_name,family_name,custom:test_attribute1,groups,expires_in_days,invited_by\n\
         {},Ada,Lovelace,blue,employees,7,Priya (HR)\n\
         {},Alan,Turing,,employees;engineering,,Priya (HR)\n\
         not-an-address,No,Body,,,,\n\
         {},Grace,Hopper,green,,14,\n\
         late@example.com,Late,Comer,,,365,\n",
        good[0], good[1], good[2]
    );
    let path = env.dir.path().join("new-starters.csv");
    std::fs::write(&path, csv).unwrap();

    let prepared = |path: &std::path::Path| {
        enqueue::read_file(path, Format::Auto)
            .unwrap()
            .into_iter()
            .map(|i| enqueue::prepare(i, None))
            .collect::<Vec<_>>()
    };
    let first = enqueue::enqueue(
        &q,
        &env.settings.queue.url,
        prepared(&path),
        &EnqueueOptions::default(),
    )
    .await;
    assert_eq!(first.count(RowStatus::Sent), 3, "{first:?}");
    assert_eq!(first.count(RowStatus::Invalid), 2);
    assert_eq!(
        first.problems(),
        [
            "line 4: data.email: has no @",
            "line 6: data.expires_in_days: must be between 1 and 90",
        ]
    );
    assert_eq!(c.queue.messages_left().await.unwrap(), Some(3));

    let summary = drain(&c).await;
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    for email in &good {
        assert_eq!(status_of(&c, email).await, Some(InviteStatus::Sent));
    }
    let recipients: Vec<&str> = good.iter().map(String::as_str).collect();
    assert_eq!(mails_for(&recipients), [1, 1, 1], "one invitation each");

    // The same file again, through the CLI this time: identical event ids, nothing new.
    let results = env.dir.path().join("results.csv");
    let (ok, out, err) = cli(
        &env.settings,
        &[
            "enqueue",
            path.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
        ],
    );
    assert!(!ok, "bad rows make the exit status non-zero");
    assert!(out.contains("5 rows: 3 sent, 2 invalid, 0 failed"), "{out}");
    assert!(err.contains("line 4: data.email: has no @"), "{err}");
    let mut rows = csv::Reader::from_path(&results).unwrap();
    let second_ids: Vec<Option<String>> = rows
        .records()
        .map(|r| {
            let r = r.unwrap();
            Some(r[2].to_string()).filter(|s| !s.is_empty())
        })
        .collect();
    assert_eq!(second_ids, ids(&first), "the same event ids");
    assert_eq!(c.queue.messages_left().await.unwrap(), Some(3));

    let summary = drain(&c).await;
    assert_eq!(summary.acked, 3, "{summary:?}");
    assert_eq!(summary.dead_lettered, 0);
    assert_eq!(mails_for(&recipients), [1, 1, 1], "no second email");
    for email in &good {
        assert_eq!(users_with_email(&env.settings, email).await, 1);
    }
}

/// Like `support::bootstrapped`, on a FIFO queue pair.
async fn bootstrapped_fifo(tag: &str) -> Env {
    use invite_worker::config::ConfigSources;
    let dir = tempfile::tempdir().expect("tempdir");
    let state_file = dir.path().join("bootstrap.toml");
    let sources = ConfigSources::defaults_and_state(state_file.clone());
    let name = unique(tag);
    let tune = |s: &mut Settings| {
        s.queue.name = format!("{name}.fifo");
        s.table.name = format!("{name}-invites");
        s.cognito.user_pool_name = format!("{name}-pool");
        s.queue.wait_seconds = 1;
        s.queue.retry_base_seconds = 1;
        s.queue.retry_max_seconds = 2;
        s.worker.idle_polls = 2;
        s.email.transport = Transport::Ses;
    };
    let mut settings = Settings::load(&sources).expect("config/default.toml loads");
    tune(&mut settings);
    invite_worker::bootstrap::bootstrap(&settings, &wiring::sdk_config().await, &state_file)
        .await
        .expect("bootstrap");
    let mut loaded = Settings::load(&sources).expect("settings with bootstrap state");
    tune(&mut loaded);
    assert!(loaded.queue_is_fifo(), "{}", loaded.queue.url);
    Env {
        settings: loaded,
        state_file,
        dir,
    }
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_works_on_fifo_queues() {
    require_stack();
    let env = bootstrapped_fifo("ops-fifo").await;
    let c = components(&env).await;
    let q = ops().await;
    let email = recipient("fifo");
    let item = enqueue::SingleInvite {
        email: email.clone(),
        attributes: vec!["given_name=Fi".into(), "family_name=Fo".into()],
        ..Default::default()
    }
    .into_item()
    .unwrap();
    let report = enqueue::enqueue(
        &q,
        &env.settings.queue.url,
        vec![enqueue::prepare(item, None)],
        &EnqueueOptions::default(),
    )
    .await;
    assert!(report.all_good(), "{report:?}");
    let summary = drain(&misconfigured(&env).await).await;
    assert_eq!(summary.dead_lettered, 1, "{summary:?}");

    let listing = dlq::list(
        &q,
        &env.settings.queue.dlq_url,
        &ListOptions {
            scan: scan_options(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(listing.letters.len(), 1);
    assert_eq!(listing.letters[0].group_id.as_deref(), Some(email.as_str()));

    let s = dlq::replay(
        &q,
        &env.settings.queue.dlq_url,
        &replay_options(&env.settings, &["reason=user_pool_not_found"], false),
    )
    .await
    .unwrap();
    assert!(s.ok(), "{s:?}");
    assert_eq!(s.replayed, 1);
    let summary = drain(&c).await;
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    assert_eq!(status_of(&c, &email).await, Some(InviteStatus::Sent));
    assert_eq!(mails_to(&email), 1);
}
