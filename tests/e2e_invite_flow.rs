//! End to end against the local stack: an invite event on SQS becomes a Cognito user and an
//! email; the person signs in with the emailed temporary password, answers
//! NEW_PASSWORD_REQUIRED, and sees the invite's attributes. Redeliveries make nothing twice;
//! bad messages go to the DLQ with their reason while good neighbours succeed; both email
//! transports deliver.

mod support;

use invite_worker::config::Transport;
use invite_worker::domain::{EmailAddress, InviteId, InviteStatus};
use invite_worker::ports::InviteStore;
use support::*;

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_becomes_an_email_and_the_person_can_sign_in() {
    require_stack();
    let env = bootstrapped("e2e-ses", Transport::Ses).await;
    let c = components(&env).await;
    let email = recipient("jane");
    enqueue(&env, &[invite_event(&unique("evt"), &email)]).await;
    let summary = drain(&c).await;
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");

    let mails = ses_mails_to(&email);
    assert_eq!(mails.len(), 1, "one invitation email");
    let temporary = password_in(&mails[0]);
    let token = complete_registration(&env.settings, &email, &temporary)
        .await
        .expect("sign-in with the emailed password");
    let attrs = attributes_of(&token).await;
    assert_eq!(
        attrs.get("custom:test_attribute1").map(String::as_str),
        Some("blue")
    );
    assert_eq!(attrs.get("family_name").map(String::as_str), Some("Doe"));
    assert_eq!(attrs.get("given_name").map(String::as_str), Some("Jane"));
    assert_eq!(attrs.get("email").map(String::as_str), Some(email.as_str()));

    let id = InviteId::for_email(
        &env.settings.cognito.user_pool_id,
        &EmailAddress::parse(&email).unwrap(),
    );
    let rec = c.store.load(&id).await.unwrap().expect("record");
    assert_eq!(rec.status, InviteStatus::Sent);
    assert_eq!(rec.send_count, 1);
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_makes_no_second_user_or_email() {
    require_stack();
    let env = bootstrapped("e2e-dup", Transport::Ses).await;
    let c = components(&env).await;
    let email = recipient("dup");
    let event = invite_event(&unique("evt"), &email);
    enqueue(&env, std::slice::from_ref(&event)).await;
    drain(&c).await;
    // The same event again (an SQS redelivery, or the sender retrying), and a second request
    // with a new id for the same open invite.
    enqueue(&env, &[event, invite_event(&unique("evt"), &email)]).await;
    let summary = drain(&c).await;
    assert_eq!(summary.dead_lettered, 0);
    assert_eq!(ses_mails_to(&email).len(), 1, "still exactly one email");

    let idp =
        aws_sdk_cognitoidentityprovider::Client::new(&invite_worker::wiring::sdk_config().await);
    let users = idp
        .list_users()
        .user_pool_id(&env.settings.cognito.user_pool_id)
        .filter(format!("email = \"{email}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(users.users().len(), 1, "exactly one Cognito user");
    let id = InviteId::for_email(
        &env.settings.cognito.user_pool_id,
        &EmailAddress::parse(&email).unwrap(),
    );
    let rec = c.store.load(&id).await.unwrap().unwrap();
    assert!(
        rec.history
            .iter()
            .any(|h| h.reason.as_deref() == Some("duplicate_request")),
        "{:?}",
        rec.history
    );
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_dead_lettered_while_its_good_neighbour_succeeds() {
    require_stack();
    let env = bootstrapped("e2e-dlq", Transport::Ses).await;
    let c = components(&env).await;
    let good = recipient("good");
    let bad_attr = serde_json::json!({
        "version": 1, "type": "invite.requested", "id": unique("evt"),
        "data": {"email": recipient("nosurname"), "attributes": {"given_name": "Cher"}}
    })
    .to_string();
    enqueue(
        &env,
        &[
            "{\"version\": 1, \"type\": \"invite.requested\"".to_string(),
            bad_attr,
            invite_event(&unique("evt"), &good),
        ],
    )
    .await;
    let summary = drain(&c).await;
    assert_eq!(summary.dead_lettered, 2, "{summary:?}");
    assert_eq!(ses_mails_to(&good).len(), 1);

    let letters = dead_letters(&env.settings).await;
    assert_eq!(letters.len(), 2);
    let mut reasons: Vec<(String, String)> = letters
        .iter()
        .map(|(_, a)| {
            (
                a["invite_worker.reason_code"].clone(),
                a["invite_worker.reason"].clone(),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(reasons[0].0, "invalid_attributes");
    assert!(
        reasons[0].1.contains("data.attributes.family_name"),
        "{reasons:?}"
    );
    assert_eq!(reasons[1].0, "invalid_event");
    assert!(reasons[1].1.starts_with("body:"), "{reasons:?}");
    for (_, attrs) in &letters {
        assert!(attrs.contains_key("invite_worker.attempts"));
        assert!(attrs.contains_key("invite_worker.worker_version"));
    }
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smtp_transport_delivers_a_working_invitation() {
    require_stack();
    let env = bootstrapped("e2e-smtp", Transport::Smtp).await;
    let c = components(&env).await;
    let email = recipient("smtp");
    enqueue(&env, &[invite_event(&unique("evt"), &email)]).await;
    let summary = drain(&c).await;
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    let mails = smtp_mails_to(&email);
    assert_eq!(mails.len(), 1, "one mail through SMTP");
    assert!(ses_mails_to(&email).is_empty(), "nothing through SES");
    let token = complete_registration(&env.settings, &email, &password_in(&mails[0]))
        .await
        .expect("sign-in");
    assert_eq!(
        attributes_of(&token)
            .await
            .get("custom:test_attribute1")
            .map(String::as_str),
        Some("blue")
    );
}
