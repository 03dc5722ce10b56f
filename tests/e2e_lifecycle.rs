//! The invite lifecycle end to end against the local stack: resend, revoke, reported and
//! unreported acceptance (`reconcile`), expiry (`cleanup --now`, `--dry-run`), and the lifecycle
//! events on the outbound queue. `cleanup` and `reconcile` run as the real binary, configured
//! the way an operator's scheduler would configure it (config dir, bootstrap state file,
//! environment).

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_sdk_cognitoidentityprovider::types::AuthFlowType;
use invite_worker::config::Transport;
use invite_worker::domain::{EmailAddress, InviteId, InviteStatus};
use invite_worker::ports::InviteStore;
use invite_worker::wiring::{self, Components};
use serde_json::{json, Value};
use support::*;

/// `support::bootstrapped` with `events.outbound_queue_url = "create"`: bootstrap also creates
/// the lifecycle-events queue and records its URL.
async fn bootstrapped_with_events(tag: &str) -> Env {
    let env = bootstrapped_named(tag, Transport::Ses, |s| {
        s.events.outbound_queue_url = "create".into();
    })
    .await;
    assert!(
        env.settings.events.outbound_queue_url.starts_with("http"),
        "bootstrap recorded the events queue: {:?}",
        env.settings.events.outbound_queue_url
    );
    env
}

fn event(kind: &str, data: Value) -> String {
    json!({"version": 1, "type": kind, "id": unique("evt"), "data": data}).to_string()
}

fn invite_id(env: &Env, email: &str) -> InviteId {
    InviteId::for_email(
        &env.settings.cognito.user_pool_id,
        &EmailAddress::parse(email).unwrap(),
    )
}

async fn status_of(env: &Env, c: &Components, email: &str) -> InviteStatus {
    c.store
        .load(&invite_id(env, email))
        .await
        .unwrap()
        .expect("a record")
        .status
}

fn idp(sdk: &aws_config::SdkConfig) -> aws_sdk_cognitoidentityprovider::Client {
    aws_sdk_cognitoidentityprovider::Client::new(sdk)
}

async fn groups_of(env: &Env, username: &str) -> Vec<String> {
    let sdk = wiring::sdk_config().await;
    let out = idp(&sdk)
        .admin_list_groups_for_user()
        .user_pool_id(&env.settings.cognito.user_pool_id)
        .username(username)
        .send()
        .await
        .expect("AdminListGroupsForUser");
    let mut groups: Vec<String> = out
        .groups()
        .iter()
        .filter_map(|g| g.group_name().map(str::to_string))
        .collect();
    groups.sort();
    groups
}

/// Whether `password` still signs `username` in.
async fn password_works(env: &Env, username: &str, password: &str) -> bool {
    let sdk = wiring::sdk_config().await;
    idp(&sdk)
        .initiate_auth()
        .client_id(&env.settings.cognito.client_id)
        .auth_flow(AuthFlowType::UserPasswordAuth)
        .auth_parameters("USERNAME", username)
        .auth_parameters("PASSWORD", password)
        .send()
        .await
        .is_ok()
}

/// Runs the real binary as a scheduler would: `invite-worker <args> --json`.
async fn cli(env: &Env, args: &[&str]) -> (i32, Value) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-worker"))
        .args(args)
        .arg("--json")
        .current_dir(&root)
        .env("INVITE_WORKER_CONFIG_DIR", root.join("config"))
        .env("INVITE_WORKER_STATE", &env.state_file)
        .env("INVITE_WORKER__TABLE__NAME", &env.settings.table.name)
        .env("INVITE_WORKER__EMAIL__TRANSPORT", "ses")
        .env_remove("INVITE_WORKER_ENV")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run invite-worker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}):\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn outcomes(report: &Value) -> BTreeMap<String, String> {
    report["invites"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    (
                        l["email"].as_str().unwrap_or_default().to_string(),
                        l["outcome"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn types(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_delivers_a_new_password_that_works_and_the_old_one_stops_working() {
    require_stack();
    let env = bootstrapped_with_events("lc-resend").await;
    let c = components(&env).await;
    let email = recipient("resend");
    enqueue(&env, &[invite_event(&unique("evt"), &email)]).await;
    drain(&c).await;
    let first = password_in(&ses_mails_to(&email)[0]);

    enqueue(&env, &[event("invite.resend", json!({"email": email}))]).await;
    let summary = drain(&c).await;
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    let mails = ses_mails_to(&email);
    assert_eq!(mails.len(), 2, "the invitation and the resend");
    let second = password_in(&mails[1]);
    assert_ne!(first, second);
    assert!(
        !password_works(&env, &email, &first).await,
        "the old temporary password no longer works"
    );
    complete_registration(&env.settings, &email, &second)
        .await
        .expect("the new temporary password works");
    let rec = c
        .store
        .load(&invite_id(&env, &email))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rec.status, rec.send_count), (InviteStatus::Sent, 2));

    let mut seen = Vec::new();
    let events = lifecycle_events(&env, &mut seen).await;
    assert_eq!(events[&email], types(&["invite.sent", "invite.sent"]));
    let last = seen.last().unwrap();
    assert_eq!(last["version"], 1);
    assert_eq!(last["data"]["send_count"], 2);
    assert!(!last.to_string().contains(&second), "no password in events");
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_deletes_an_unused_user_and_leaves_a_registered_one() {
    require_stack();
    let env = bootstrapped_with_events("lc-revoke").await;
    let c = components(&env).await;
    let unused = recipient("unused");
    let registered = recipient("registered");
    enqueue(
        &env,
        &[
            invite_event(&unique("evt"), &unused),
            invite_event(&unique("evt"), &registered),
        ],
    )
    .await;
    drain(&c).await;
    let pw = password_in(&ses_mails_to(&registered)[0]);
    complete_registration(&env.settings, &registered, &pw)
        .await
        .expect("sign-in");

    enqueue(
        &env,
        &[
            event(
                "invite.revoke",
                json!({"email": unused, "reason": "offer withdrawn"}),
            ),
            event("invite.revoke", json!({"email": registered})),
        ],
    )
    .await;
    let summary = drain(&c).await;
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    assert_eq!(cognito_status(&env, &unused).await, None, "deleted");
    assert_eq!(
        cognito_status(&env, &registered).await.as_deref(),
        Some("CONFIRMED"),
        "a user who completed registration is never deleted"
    );
    assert_eq!(status_of(&env, &c, &unused).await, InviteStatus::Revoked);
    assert_eq!(
        status_of(&env, &c, &registered).await,
        InviteStatus::Revoked
    );

    let events = lifecycle_events(&env, &mut Vec::new()).await;
    assert_eq!(events[&unused], types(&["invite.sent", "invite.revoked"]));
    assert_eq!(
        events[&registered],
        types(&["invite.sent", "invite.revoked"])
    );
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_completed_after_the_real_exchange_accepts_and_adds_the_groups() {
    require_stack();
    let env = bootstrapped_with_events("lc-accept").await;
    let c = components(&env).await;
    let email = recipient("accept");
    enqueue(&env, &[invite_event(&unique("evt"), &email)]).await;
    drain(&c).await;
    // Reported before the person registered: verified against Cognito and ignored.
    enqueue(
        &env,
        &[event("registration.completed", json!({"email": email}))],
    )
    .await;
    drain(&c).await;
    assert_eq!(status_of(&env, &c, &email).await, InviteStatus::Sent);
    assert!(groups_of(&env, &email).await.is_empty());

    let pw = password_in(&ses_mails_to(&email)[0]);
    complete_registration(&env.settings, &email, &pw)
        .await
        .expect("NEW_PASSWORD_REQUIRED exchange");
    enqueue(
        &env,
        &[event("registration.completed", json!({"email": email}))],
    )
    .await;
    let summary = drain(&c).await;
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    assert_eq!(status_of(&env, &c, &email).await, InviteStatus::Accepted);
    assert_eq!(groups_of(&env, &email).await, vec!["employees"]);
    assert_eq!(ses_mails_to(&email).len(), 2, "invitation and welcome");

    let events = lifecycle_events(&env, &mut Vec::new()).await;
    assert_eq!(events[&email], types(&["invite.sent", "invite.accepted"]));
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_finds_an_acceptance_nobody_reported() {
    require_stack();
    let env = bootstrapped_with_events("lc-reconcile").await;
    let c = components(&env).await;
    let quiet = recipient("quiet");
    let waiting = recipient("waiting");
    enqueue(
        &env,
        &[
            invite_event(&unique("evt"), &quiet),
            invite_event(&unique("evt"), &waiting),
        ],
    )
    .await;
    drain(&c).await;
    let pw = password_in(&ses_mails_to(&quiet)[0]);
    complete_registration(&env.settings, &quiet, &pw)
        .await
        .expect("sign-in");

    let (code, report) = cli(&env, &["reconcile", "--rate", "20"]).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["summary"]["examined"], 2, "{report}");
    assert_eq!(report["summary"]["accepted"], 1, "{report}");
    assert_eq!(report["summary"]["still_sent"], 1, "{report}");
    assert_eq!(outcomes(&report)[&quiet], "accepted");
    assert_eq!(status_of(&env, &c, &quiet).await, InviteStatus::Accepted);
    assert_eq!(status_of(&env, &c, &waiting).await, InviteStatus::Sent);
    assert_eq!(groups_of(&env, &quiet).await, vec!["employees"]);

    let (code, again) = cli(&env, &["reconcile"]).await;
    assert_eq!(code, 0);
    assert_eq!(again["summary"]["accepted"], 0, "{again}");

    let events = lifecycle_events(&env, &mut Vec::new()).await;
    assert_eq!(events[&quiet], types(&["invite.sent", "invite.accepted"]));
    assert_eq!(events[&waiting], types(&["invite.sent"]));
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_in_the_future_expires_only_the_unaccepted_and_a_second_run_changes_nothing() {
    require_stack();
    let env = bootstrapped_with_events("lc-cleanup").await;
    let c = components(&env).await;
    let unused = recipient("unused");
    let reported = recipient("reported");
    let unreported = recipient("unreported");
    enqueue(
        &env,
        &[
            invite_event(&unique("evt"), &unused),
            invite_event(&unique("evt"), &reported),
            invite_event(&unique("evt"), &unreported),
        ],
    )
    .await;
    drain(&c).await;
    for email in [&reported, &unreported] {
        let pw = password_in(&ses_mails_to(email)[0]);
        complete_registration(&env.settings, email, &pw)
            .await
            .expect("sign-in");
    }
    enqueue(
        &env,
        &[event("registration.completed", json!({"email": reported}))],
    )
    .await;
    drain(&c).await;
    assert_eq!(status_of(&env, &c, &reported).await, InviteStatus::Accepted);

    let future = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();

    // Dry run: the report, and no change anywhere.
    let (code, dry) = cli(&env, &["cleanup", "--dry-run", "--now", &future]).await;
    assert_eq!(code, 0, "{dry}");
    assert_eq!(dry["dry_run"], true);
    let planned = outcomes(&dry);
    assert_eq!(planned.len(), 2, "{dry}");
    assert_eq!(planned[&unused], "would_expire");
    assert_eq!(planned[&unreported], "would_accept");
    assert_eq!(status_of(&env, &c, &unused).await, InviteStatus::Sent);
    assert_eq!(status_of(&env, &c, &unreported).await, InviteStatus::Sent);
    assert_eq!(
        cognito_status(&env, &unused).await.as_deref(),
        Some("FORCE_CHANGE_PASSWORD")
    );

    // The real run.
    let (code, report) = cli(&env, &["cleanup", "--now", &future]).await;
    assert_eq!(code, 0, "{report}");
    let done = outcomes(&report);
    assert_eq!(done[&unused], "expired", "{report}");
    assert_eq!(done[&unreported], "accepted", "{report}");
    assert!(!done.contains_key(&reported));
    assert_eq!(report["summary"]["expired"], 1);
    assert_eq!(report["summary"]["accepted"], 1);
    assert_eq!(report["summary"]["failed"], 0);
    assert_eq!(status_of(&env, &c, &unused).await, InviteStatus::Expired);
    assert_eq!(
        status_of(&env, &c, &unreported).await,
        InviteStatus::Accepted
    );
    assert_eq!(status_of(&env, &c, &reported).await, InviteStatus::Accepted);
    assert_eq!(
        cognito_status(&env, &unused).await,
        None,
        "unused user deleted"
    );
    assert_eq!(
        cognito_status(&env, &unreported).await.as_deref(),
        Some("CONFIRMED")
    );
    assert_eq!(
        cognito_status(&env, &reported).await.as_deref(),
        Some("CONFIRMED")
    );
    assert_eq!(groups_of(&env, &unreported).await, vec!["employees"]);

    // A second run finds nothing to do.
    let (code, again) = cli(&env, &["cleanup", "--now", &future]).await;
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["summary"]["examined"], 0, "{again}");

    let events = lifecycle_events(&env, &mut Vec::new()).await;
    assert_eq!(events[&unused], types(&["invite.sent", "invite.expired"]));
    assert_eq!(
        events[&reported],
        types(&["invite.sent", "invite.accepted"])
    );
    assert_eq!(
        events[&unreported],
        types(&["invite.sent", "invite.accepted"])
    );
}

/// Only a `CONFIRMED`, enabled user is an accepted invitee: a registered user an admin disabled
/// and one whose password an admin reset (`RESET_REQUIRED`) get no groups and no welcome email
/// from reconcile or cleanup, and are kept as they are.
#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_not_confirmed_and_enabled_get_no_groups_and_no_welcome() {
    require_stack();
    let env = bootstrapped_with_events("lc-statuses").await;
    let c = components(&env).await;
    let disabled = recipient("disabled");
    let reset = recipient("reset");
    enqueue(
        &env,
        &[
            invite_event(&unique("evt"), &disabled),
            invite_event(&unique("evt"), &reset),
        ],
    )
    .await;
    drain(&c).await;
    for email in [&disabled, &reset] {
        let pw = password_in(&ses_mails_to(email)[0]);
        complete_registration(&env.settings, email, &pw)
            .await
            .expect("sign-in");
    }
    let sdk = wiring::sdk_config().await;
    let pool = &env.settings.cognito.user_pool_id;
    idp(&sdk)
        .admin_disable_user()
        .user_pool_id(pool)
        .username(&disabled)
        .send()
        .await
        .expect("AdminDisableUser");
    idp(&sdk)
        .admin_reset_user_password()
        .user_pool_id(pool)
        .username(&reset)
        .send()
        .await
        .expect("AdminResetUserPassword");
    assert_eq!(
        cognito_status(&env, &reset).await.as_deref(),
        Some("RESET_REQUIRED")
    );

    let (code, report) = cli(&env, &["reconcile", "--rate", "20"]).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["summary"]["accepted"], 0, "{report}");
    assert_eq!(report["summary"]["still_sent"], 2, "{report}");

    let future = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (code, report) = cli(&env, &["cleanup", "--now", &future]).await;
    assert_eq!(code, 0, "{report}");
    let done = outcomes(&report);
    for email in [&disabled, &reset] {
        assert_eq!(done[email], "expired", "{report}");
        assert_eq!(status_of(&env, &c, email).await, InviteStatus::Expired);
        assert!(groups_of(&env, email).await.is_empty(), "{email} joined");
        assert_eq!(ses_mails_to(email).len(), 1, "{email}: only the invitation");
    }
    assert_eq!(
        cognito_status(&env, &disabled).await.as_deref(),
        Some("CONFIRMED"),
        "kept"
    );
    assert_eq!(
        cognito_status(&env, &reset).await.as_deref(),
        Some("RESET_REQUIRED"),
        "kept"
    );
}
