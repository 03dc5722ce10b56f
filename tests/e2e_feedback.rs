//! Delivery awareness end to end against the local stack: invitations go out through SES (moto),
//! then SES's sending events about them come back on the feedback queue the way AWS delivers
//! them (through the SNS topic bootstrap subscribed to the queue, so moto wraps them in an SNS
//! envelope; as raw message delivery; as EventBridge events) and the real binary, `run
//! --until-idle`, applies them. Checked from outside: statuses and history (`invites show`,
//! `invites list --status undeliverable`), the Cognito users, the lifecycle events HR reads, the
//! dead letters, and a fresh invite to the corrected address that signs in.
//!
//! moto does not publish sending events itself (no SES v2 event destinations), so the test
//! publishes the documents SES would: the shapes AWS documents for Bounce, Complaint, Delivery,
//! Reject and DeliveryDelay, tagged the way invite-worker tags its mail.

mod reliability_support;
mod support;

use invite_worker::config::Transport;
use invite_worker::domain::{EmailAddress, Invite, InviteId, InviteStatus};
use invite_worker::ports::InviteStore;
use invite_worker::wiring;
use reliability_support::FaultProxy;
use serde_json::{json, Value};
use support::*;

/// Bootstrapped with the lifecycle-events queue and this test's own feedback queue and topic.
async fn bootstrapped_with_feedback(tag: &str) -> Env {
    let env = bootstrapped_named(tag, Transport::Ses, |s| {
        s.events.outbound_queue_url = "create".into();
    })
    .await;
    assert!(
        env.settings.feedback.queue_url.starts_with("http"),
        "bootstrap recorded the feedback queue: {:?}",
        env.settings.feedback
    );
    env
}

/// Runs the real binary the way a scheduler or a container would: the bootstrap state file, the
/// test's table, from a directory that is not the checkout.
async fn binary(env: &Env, args: &[&str]) -> (bool, String, String) {
    binary_through(env, args, None).await
}

/// [`binary`], talking to AWS through `endpoint` (the fault proxy) when given.
async fn binary_through(
    env: &Env,
    args: &[&str],
    endpoint: Option<&str>,
) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_invite-worker"));
    if let Some(endpoint) = endpoint {
        cmd.env("AWS_ENDPOINT_URL", endpoint);
    }
    let out = cmd
        .args(args)
        .current_dir(env.dir.path())
        .env("INVITE_WORKER_STATE", &env.state_file)
        .env("INVITE_WORKER__TABLE__NAME", &env.settings.table.name)
        .env("INVITE_WORKER__EMAIL__TRANSPORT", "ses")
        .env("INVITE_WORKER__QUEUE__WAIT_SECONDS", "1")
        .env("INVITE_WORKER__WORKER__IDLE_POLLS", "2")
        .env("INVITE_WORKER__QUEUE__RETRY_BASE_SECONDS", "1")
        .env("INVITE_WORKER__QUEUE__RETRY_MAX_SECONDS", "2")
        .env_remove("INVITE_WORKER_ENV")
        .env_remove("INVITE_WORKER_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run invite-worker");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn run_until_idle(env: &Env) {
    let (ok, out, err) = binary(env, &["run", "--until-idle"]).await;
    assert!(ok, "run --until-idle failed:\n{out}\n{err}");
}

fn invite_id(env: &Env, email: &str) -> InviteId {
    InviteId::for_email(
        &env.settings.cognito.user_pool_id,
        &EmailAddress::parse(email).unwrap(),
    )
}

async fn record(env: &Env, email: &str) -> Invite {
    let c = components(env).await;
    c.store
        .load(&invite_id(env, email))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("a record for {email}"))
}

/// Whether Cognito has a user named `username`.
async fn user_exists(env: &Env, username: &str) -> bool {
    cognito_status(env, username).await.is_some()
}

// ---------------------------------------------------------------------------------------------
// SES event documents, as AWS documents them ("Examples of event data that Amazon SES publishes
// to Amazon SNS"), with invite-worker's message tags.

/// The `mail` object SES puts in every event about one email.
fn mail_object(email: &str, invite: &Invite, message_id: &str) -> Value {
    json!({
        "timestamp": "2026-11-27T19:00:00.000Z",
        "source": "Acme Cloud <no-reply@example.com>",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/example.com",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": [email],
        "headersTruncated": false,
        "headers": [
            {"name": "From", "value": "Acme Cloud <no-reply@example.com>"},
            {"name": "To", "value": email},
            {"name": "Subject", "value": "You're invited to Acme Cloud"},
            {"name": "X-Invite-Id", "value": invite.invite_id.to_string()}
        ],
        "commonHeaders": {
            "from": ["Acme Cloud <no-reply@example.com>"],
            "to": [email],
            "messageId": message_id,
            "subject": "You're invited to Acme Cloud"
        },
        "tags": {
            "ses:configuration-set": ["invite-worker"],
            "ses:source-ip": ["192.0.2.0"],
            "ses:from-domain": ["example.com"],
            "ses:caller-identity": ["invite-worker"],
            "invite_id": [invite.invite_id.to_string()],
            "invite_generation": [invite.generation.to_string()],
            "mail_kind": ["invite"]
        }
    })
}

fn permanent_bounce(email: &str, invite: &Invite, message_id: &str) -> Value {
    json!({
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{
                "emailAddress": email,
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown"
            }],
            "timestamp": "2026-11-27T19:00:01.000Z",
            "feedbackId": format!("0100018c-bounce-{message_id}"),
            "reportingMTA": "dsn; mta.example.com"
        },
        "mail": mail_object(email, invite, message_id)
    })
}

fn complaint(email: &str, invite: &Invite, message_id: &str) -> Value {
    json!({
        "eventType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": email}],
            "timestamp": "2026-11-27T19:00:02.000Z",
            "feedbackId": format!("0100018c-complaint-{message_id}"),
            "userAgent": "Mozilla/5.0",
            "complaintFeedbackType": "abuse",
            "arrivalDate": "2026-11-27T19:00:01.000Z"
        },
        "mail": mail_object(email, invite, message_id)
    })
}

fn delivery(email: &str, invite: &Invite, message_id: &str) -> Value {
    json!({
        "eventType": "Delivery",
        "delivery": {
            "timestamp": "2026-11-27T19:00:03.000Z",
            "processingTimeMillis": 546,
            "recipients": [email],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "mta-1a.example.com"
        },
        "mail": mail_object(email, invite, message_id)
    })
}

fn reject(email: &str, invite: &Invite, message_id: &str) -> Value {
    json!({
        "eventType": "Reject",
        "reject": {"reason": "Bad content"},
        "mail": mail_object(email, invite, message_id)
    })
}

fn delivery_delay(email: &str, invite: &Invite, message_id: &str) -> Value {
    json!({
        "eventType": "DeliveryDelay",
        "deliveryDelay": {
            "timestamp": "2026-11-27T19:00:04.000Z",
            "delayType": "TransientCommunicationFailure",
            "expirationTime": "2026-11-28T19:00:00.000Z",
            "delayedRecipients": [{
                "emailAddress": email,
                "status": "4.4.1",
                "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host"
            }]
        },
        "mail": mail_object(email, invite, message_id)
    })
}

/// An SES document as EventBridge delivers it to a queue.
fn eventbridge(detail_type: &str, detail: Value) -> Value {
    json!({
        "version": "0",
        "id": "c7e3a0f4-8a7b-4a7e-9f4e-3f1c2b1a0d9e",
        "detail-type": detail_type,
        "source": "aws.ses",
        "account": "123456789012",
        "time": "2026-11-27T19:00:03Z",
        "region": "us-east-1",
        "resources": ["arn:aws:ses:us-east-1:123456789012:configuration-set/invite-worker"],
        "detail": detail
    })
}

/// Publishes `doc` to the feedback topic: moto delivers it to the subscribed queue in an SNS
/// envelope, as AWS does.
async fn publish_to_topic(env: &Env, doc: &Value) {
    let sdk = wiring::sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let topic = topic_arn(env, &sns).await;
    sns.publish()
        .topic_arn(topic)
        .message(doc.to_string())
        .send()
        .await
        .expect("SNS Publish");
}

async fn topic_arn(env: &Env, sns: &aws_sdk_sns::Client) -> String {
    let topics = sns.list_topics().send().await.expect("ListTopics");
    topics
        .topics()
        .iter()
        .filter_map(|t| t.topic_arn())
        .find(|arn| arn.ends_with(&format!(":{}", env.settings.feedback.name)))
        .unwrap_or_else(|| panic!("no topic named {}", env.settings.feedback.name))
        .to_string()
}

/// Sends `body` to the feedback queue as is (raw message delivery, EventBridge, or garbage).
async fn send_raw(env: &Env, body: &str) {
    let sqs = aws_sdk_sqs::Client::new(&wiring::sdk_config().await);
    sqs.send_message()
        .queue_url(&env.settings.feedback.queue_url)
        .message_body(body)
        .send()
        .await
        .expect("send to the feedback queue");
}

async fn feedback_dead_letters(
    env: &Env,
) -> Vec<(String, std::collections::HashMap<String, String>)> {
    let mut settings = env.settings.clone();
    settings.queue.dlq_url = env.settings.feedback.dlq_url.clone();
    dead_letters(&settings).await
}

fn recipient_in(env_tag: &str, what: &str) -> String {
    recipient(&format!("{env_tag}-{what}"))
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_complaints_and_deliveries_reach_their_invites_and_a_corrected_address_goes_through(
) {
    require_stack();
    let env = bootstrapped_with_feedback("fb").await;
    let bounced = recipient_in("fb", "bounce");
    let rejected = recipient_in("fb", "reject");
    let complained = recipient_in("fb", "complain");
    let delivered = recipient_in("fb", "deliver");
    let delayed = recipient_in("fb", "delay");
    let all = [&bounced, &rejected, &complained, &delivered, &delayed];
    let bodies: Vec<String> = all
        .iter()
        .map(|e| invite_event(&unique("evt"), e))
        .collect();
    enqueue(&env, &bodies).await;
    run_until_idle(&env).await;
    for email in all {
        assert_eq!(
            record(&env, email).await.status,
            InviteStatus::Sent,
            "{email}"
        );
        assert!(user_exists(&env, email).await, "{email} has a user");
    }

    // SES reports back, each event the way one of its delivery paths carries it.
    let bounce_doc = permanent_bounce(&bounced, &record(&env, &bounced).await, "m-bounce");
    publish_to_topic(&env, &bounce_doc).await; // SNS envelope
    send_raw(&env, &bounce_doc.to_string()).await; // the same event again, raw: a duplicate
    publish_to_topic(
        &env,
        &reject(&rejected, &record(&env, &rejected).await, "m-reject"),
    )
    .await;
    send_raw(
        &env,
        &complaint(&complained, &record(&env, &complained).await, "m-complaint").to_string(),
    )
    .await;
    let delivery_doc = delivery(&delivered, &record(&env, &delivered).await, "m-delivery");
    send_raw(
        &env,
        &eventbridge("Email Delivered", delivery_doc).to_string(),
    )
    .await;
    publish_to_topic(
        &env,
        &delivery_delay(&delayed, &record(&env, &delayed).await, "m-delay"),
    )
    .await;
    // Legitimate events that change nothing: an invite this pool never had, a mail that
    // invite-worker did not send (no tags).
    let mut stranger = record(&env, &delivered).await;
    stranger.invite_id = InviteId::parse("00000000-0000-4000-8000-000000000001").unwrap();
    send_raw(
        &env,
        &permanent_bounce("nobody@example.com", &stranger, "m-unknown").to_string(),
    )
    .await;
    let mut untagged = delivery(&delivered, &record(&env, &delivered).await, "m-untagged");
    untagged["mail"]["tags"] = json!({"ses:configuration-set": ["invite-worker"]});
    untagged["mail"]["headers"] = json!([]);
    send_raw(&env, &untagged.to_string()).await;
    // And one that claims to be about an invite but cannot be read.
    send_raw(
        &env,
        r#"{"eventType":"Bounce","mail":{"messageId":"x","tags":{"invite_id":["not-a-uuid"]}}}"#,
    )
    .await;
    run_until_idle(&env).await;

    // A permanent bounce and a reject: undeliverable, the never-used user gone.
    for (email, reason_part) in [(&bounced, "bounce"), (&rejected, "reject")] {
        let rec = record(&env, email).await;
        assert_eq!(rec.status, InviteStatus::Undeliverable, "{email}: {rec:?}");
        assert!(
            rec.reason
                .as_deref()
                .unwrap_or_default()
                .contains(reason_part),
            "{email}: reason {:?}",
            rec.reason
        );
        assert!(!user_exists(&env, email).await, "{email}'s user is deleted");
    }
    let (ok, shown, err) = binary(&env, &["invites", "show", &bounced]).await;
    assert!(ok, "{err}");
    assert!(
        shown.contains("undeliverable") && shown.contains("Permanent"),
        "invites show names the status and the bounce type:\n{shown}"
    );
    assert!(
        shown.contains("550 5.1.1"),
        "invites show carries the diagnostic:\n{shown}"
    );
    let (ok, listed, err) = binary(&env, &["invites", "list", "--status", "undeliverable"]).await;
    assert!(ok, "{err}");
    assert!(
        listed.contains(&bounced) || listed.contains(&invite_id(&env, &bounced).to_string()),
        "{listed}"
    );
    // A delivery: recorded, still `sent`.
    let rec = record(&env, &delivered).await;
    assert_eq!(rec.status, InviteStatus::Sent);
    assert!(
        rec.mail.delivered_at.is_some(),
        "delivered_at is set: {rec:?}"
    );
    let (_, shown, _) = binary(&env, &["invites", "show", &delivered]).await;
    assert!(shown.contains("delivered"), "{shown}");
    // A delay: history only.
    let rec = record(&env, &delayed).await;
    assert_eq!(rec.status, InviteStatus::Sent);
    assert!(rec.mail.delivered_at.is_none());
    assert!(
        rec.history
            .iter()
            .any(|h| h.event_type.contains("DeliveryDelay") || h.event_type.contains("delay")),
        "the delay is in the history: {:?}",
        rec.history
    );
    // A complaint: recorded; a resend to that address is refused and sends nothing.
    let rec = record(&env, &complained).await;
    assert!(rec.mail.complaint.is_some(), "complaint recorded: {rec:?}");
    let mails_before = ses_mails_to(&complained).len();
    let resend = json!({"version": 1, "type": "invite.resend", "id": unique("evt"),
                        "data": {"email": complained}})
    .to_string();
    enqueue(&env, &[resend]).await;
    run_until_idle(&env).await;
    assert_eq!(
        ses_mails_to(&complained).len(),
        mails_before,
        "no email to an address that complained"
    );
    // The operator clears it the way docs/operations.md says; the next resend goes out and its
    // password signs in.
    let (ok, out, err) = binary(
        &env,
        &["invites", "clear-complaint", &complained, "--by", "ops"],
    )
    .await;
    assert!(ok, "clear-complaint failed:\n{out}\n{err}");
    assert!(record(&env, &complained).await.mail.complaint.is_none());
    let resend = json!({"version": 1, "type": "invite.resend", "id": unique("evt"),
                        "data": {"email": complained}})
    .to_string();
    enqueue(&env, &[resend]).await;
    run_until_idle(&env).await;
    let mails = ses_mails_to(&complained);
    assert_eq!(
        mails.len(),
        mails_before + 1,
        "the resend after clearing went out"
    );
    complete_registration(
        &env.settings,
        &complained,
        &password_in(mails.last().unwrap()),
    )
    .await
    .expect("the resent password signs in");

    // HR hears about it.
    let mut seen = Vec::new();
    let events = lifecycle_events(&env, &mut seen).await;
    for email in [&bounced, &rejected] {
        let types = events.get(email.as_str()).cloned().unwrap_or_default();
        assert!(
            types.iter().any(|t| t == "invite.undeliverable"),
            "{email}: {types:?}"
        );
    }
    let undeliverable = seen
        .iter()
        .find(|e| e["type"] == "invite.undeliverable" && e["data"]["email"] == bounced.as_str())
        .expect("the bounced invite's event");
    assert_eq!(
        undeliverable["data"]["bounce_type"], "Permanent",
        "{undeliverable}"
    );
    let types = events.get(delivered.as_str()).cloned().unwrap_or_default();
    assert!(types.iter().any(|t| t == "invite.delivered"), "{types:?}");

    // Only the document that is not an SES event was dead-lettered, with the reason.
    let dead = feedback_dead_letters(&env).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        dead[0]
            .1
            .get("invite_worker.reason_code")
            .map(String::as_str),
        Some("invalid_feedback"),
        "{dead:?}"
    );
    let why = dead[0]
        .1
        .get("invite_worker.reason")
        .cloned()
        .unwrap_or_default();
    assert!(
        why.contains("invite_id"),
        "the reason names the field: {why}"
    );
    let invite_dead = dead_letters(&env.settings).await;
    assert!(
        invite_dead.is_empty(),
        "nothing on the invite DLQ: {invite_dead:?}"
    );

    // HR invites the corrected address at once: it goes through and the password signs in.
    let corrected = recipient_in("fb", "bounce-fixed");
    enqueue(&env, &[invite_event(&unique("evt"), &corrected)]).await;
    run_until_idle(&env).await;
    assert_eq!(record(&env, &corrected).await.status, InviteStatus::Sent);
    let mails = ses_mails_to(&corrected);
    assert_eq!(mails.len(), 1);
    complete_registration(&env.settings, &corrected, &password_in(&mails[0]))
        .await
        .expect("the corrected address signs in with the emailed password");
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_on_the_suppression_list_is_undeliverable_at_once_with_no_user_and_no_email() {
    require_stack();
    let env = bootstrapped_with_feedback("fs").await;
    let suppressed = recipient("fs-suppressed");
    let fine = recipient("fs-fine");
    // moto has no suppression list: the fault proxy answers GetSuppressedDestination for the
    // listed address the way SES does, and passes everything else to moto.
    let proxy = FaultProxy::start(7);
    proxy.set(json!({"services": {}, "suppressed": {suppressed.clone(): "BOUNCE"}}));
    let bodies = [
        invite_event(&unique("evt"), &suppressed),
        invite_event(&unique("evt"), &fine),
    ];
    enqueue(&env, &bodies).await;
    let (ok, out, err) = binary_through(&env, &["run", "--until-idle"], Some(&proxy.url())).await;
    assert!(ok, "run --until-idle failed:\n{out}\n{err}");

    let rec = record(&env, &suppressed).await;
    assert_eq!(rec.status, InviteStatus::Undeliverable, "{rec:?}");
    assert!(
        rec.reason
            .as_deref()
            .unwrap_or_default()
            .contains("suppressed"),
        "reason {:?}",
        rec.reason
    );
    assert!(!user_exists(&env, &suppressed).await, "no Cognito user");
    assert!(ses_mails_to(&suppressed).is_empty(), "no email");
    assert_eq!(record(&env, &fine).await.status, InviteStatus::Sent);
    assert_eq!(ses_mails_to(&fine).len(), 1);
    assert!(
        dead_letters(&env.settings).await.is_empty(),
        "nothing dead-lettered"
    );
    let mut seen = Vec::new();
    let events = lifecycle_events(&env, &mut seen).await;
    let types = events.get(suppressed.as_str()).cloned().unwrap_or_default();
    assert!(
        types.iter().any(|t| t == "invite.undeliverable"),
        "{types:?}"
    );
    assert_eq!(
        proxy.stats()["services"]["ses"]["suppressed"],
        1,
        "the list was asked"
    );
}
