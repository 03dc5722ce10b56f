//! Replay after a permanent failure, end to end on the local stack, the way docs/operations.md
//! tells an operator: the SMTP relay refuses mail (550) for a while, the invites end `failed` and
//! dead-lettered `email_rejected`; the relay is fixed; `invite-worker dlq replay` sends them
//! back; the running worker re-opens them, `invites show` says it was a replay, and the newly
//! emailed temporary passwords sign in. And a custom attribute added to the pool while the
//! worker runs is accepted on replay, without a restart.

mod support;

use aws_sdk_cognitoidentityprovider::types::{AttributeDataType, SchemaAttributeType};
use invite_worker::config::Transport;
use invite_worker::domain::{EmailAddress, Invite, InviteId, InviteStatus};
use invite_worker::ports::InviteStore;
use invite_worker::wiring::{self, Components};
use support::*;

async fn invite(c: &Components, email: &str) -> Invite {
    let id = InviteId::for_email(
        &c.settings.cognito.user_pool_id,
        &EmailAddress::parse(email).unwrap(),
    );
    c.store.load(&id).await.unwrap().expect("an invite record")
}

async fn dead_letter_reasons(env: &Env) -> Vec<String> {
    let mut reasons: Vec<String> = dead_letters(&env.settings)
        .await
        .into_iter()
        .map(|(_, attrs)| {
            attrs
                .get("invite_worker.reason_code")
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    reasons.sort();
    reasons
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_failed_by_a_refusing_relay_are_sent_after_the_fix_and_a_replay() {
    assert!(stack_available(), "needs the local stack: scripts/test.sh");
    let sink = SmtpSink::start();
    let env = bootstrapped_named("replay-smtp", Transport::Smtp, |s| {
        s.email.smtp.port = sink.port;
    })
    .await;
    // The worker runs all along: one set of components, as one process.
    let c = components(&env).await;
    let domain = format!("{}.example.com", unique("relay"));
    let emails: Vec<String> = (1..=3).map(|i| format!("p{i}@{domain}")).collect();

    // The relay refuses the domain: every invitation fails for good.
    sink.reject(&domain);
    let events: Vec<String> = emails
        .iter()
        .map(|e| invite_event(&unique("evt"), e))
        .collect();
    enqueue(&env, &events).await;
    let summary = drain(&c).await;
    assert_eq!(summary.dead_lettered, 3, "{summary:?}");
    for email in &emails {
        let rec = invite(&c, email).await;
        assert_eq!(
            (rec.status, rec.reason.as_deref()),
            (InviteStatus::Failed, Some("email_rejected")),
            "{email}"
        );
    }
    assert_eq!(dead_letter_reasons(&env).await, ["email_rejected"; 3]);

    // The relay is fixed; the operator replays what failed for that reason.
    sink.accept(&domain);
    let (ok, out, err) = cli(
        &env.settings,
        &["dlq", "replay", "--filter", "reason=email_rejected"],
    );
    assert!(ok, "dlq replay failed: {err}\n{out}");
    assert!(out.contains("replayed 3"), "{out}");

    let summary = drain(&c).await;
    assert_eq!(
        (summary.acked, summary.dead_lettered),
        (3, 0),
        "{summary:?}"
    );
    assert!(dead_letters(&env.settings).await.is_empty());
    for email in &emails {
        let rec = invite(&c, email).await;
        assert_eq!(rec.status, InviteStatus::Sent, "{email}");
        assert_eq!(rec.generation, 2, "{email}: re-opened");
        let last = rec.history.last().unwrap();
        assert_eq!(
            last.replay.as_ref().map(|r| r.number),
            Some(1),
            "{email}: {:?}",
            rec.history
        );

        let (ok, shown, err) = cli(&env.settings, &["invites", "show", email]);
        assert!(ok, "invites show: {err}");
        assert!(shown.contains("[replay 1 of message "), "{shown}");

        // The newly emailed temporary password signs in.
        let mails = sink.mails_to(email);
        assert_eq!(mails.len(), 1, "{email}: one invitation arrived");
        let password = password_in(&mails[0]);
        complete_registration(&env.settings, email, &password)
            .await
            .unwrap_or_else(|e| panic!("{email} cannot sign in: {e}"));
    }

    // The same dead letters delivered again (a duplicate copy) change nothing.
    let summary = drain(&c).await;
    assert_eq!(summary.received, 0, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attribute_added_to_the_pool_while_the_worker_runs_is_accepted_on_replay() {
    assert!(stack_available(), "needs the local stack: scripts/test.sh");
    let env = bootstrapped("replay-attr", Transport::Ses).await;
    let c = components(&env).await;
    let pool = env.settings.cognito.user_pool_id.clone();

    // The worker has read the pool's profile already (a first invite).
    enqueue(&env, &[invite_event(&unique("evt"), &recipient("first"))]).await;
    assert_eq!(drain(&c).await.acked, 1);

    let email = recipient("team");
    let body = serde_json::json!({
        "version": 1, "type": "invite.requested", "id": unique("evt"),
        "data": {"email": email, "attributes": {"given_name": "Jane", "family_name": "Doe", "custom:team": "blue"}}
    })
    .to_string();
    enqueue(&env, &[body]).await;
    assert_eq!(drain(&c).await.dead_lettered, 1);
    assert_eq!(dead_letter_reasons(&env).await, ["invalid_attributes"]);

    // The administrator adds the attribute; the operator replays. The worker is not restarted.
    let idp = aws_sdk_cognitoidentityprovider::Client::new(&wiring::sdk_config().await);
    idp.add_custom_attributes()
        .user_pool_id(&pool)
        .custom_attributes(
            SchemaAttributeType::builder()
                .name("team")
                .attribute_data_type(AttributeDataType::String)
                .mutable(true)
                .build(),
        )
        .send()
        .await
        .expect("AddCustomAttributes");
    let (ok, out, err) = cli(
        &env.settings,
        &["dlq", "replay", "--filter", "reason=invalid_attributes"],
    );
    assert!(ok, "dlq replay failed: {err}\n{out}");
    assert!(out.contains("replayed 1"), "{out}");

    let summary = drain(&c).await;
    assert_eq!(
        (summary.acked, summary.dead_lettered),
        (1, 0),
        "{summary:?}"
    );
    assert_eq!(invite(&c, &email).await.status, InviteStatus::Sent);
    let user = idp
        .admin_get_user()
        .user_pool_id(&pool)
        .username(&email)
        .send()
        .await
        .expect("AdminGetUser");
    let team = user
        .user_attributes()
        .iter()
        .find(|a| a.name() == "custom:team")
        .and_then(|a| a.value());
    assert_eq!(team, Some("blue"));
}
