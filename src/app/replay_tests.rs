//! Replaying dead letters (`dlq replay`) after a permanent failure, over in-memory fakes: for every
//! permanent reason code the failed invite re-opens (new password, email, `sent`) and its history
//! says it was a replay; a plain redelivery, a second delivery of the same replay copy, and a
//! replay of an invite sent or accepted since change nothing. And the pool profile is read afresh
//! before a schema or policy rejection is final.

use std::time::Duration;

use serde_json::json;

use super::handler_tests::{ack, event, invite_id, mailed_password, request};
use super::test_world::{world_with, world_with_cached_profile, World};
use crate::domain::{Invite, InviteStatus, Replay};
use crate::error::{Disposition, ErrorKind};

const EMAIL: &str = "jane@example.com";

fn replay(number: u32) -> Replay {
    Replay {
        number,
        original_message_id: Some("first-msg".into()),
    }
}

/// Delivers `body` as the worker does: `replay` is the copy's replay number, if any.
async fn deliver(w: &World, body: &str, replay_number: Option<u32>) -> Disposition {
    w.service
        .handle_delivery(body, replay_number.map(replay).as_ref())
        .await
}

fn record(w: &World) -> Option<Invite> {
    w.store.get(&invite_id(EMAIL))
}

fn dead_letter_code(d: &Disposition) -> Option<&str> {
    match d {
        Disposition::DeadLetter { code, .. } => Some(code),
        _ => None,
    }
}

/// A request with an attribute the reference pool does not have yet.
fn request_with_team(id: &str) -> String {
    event(
        "invite.requested",
        id,
        json!({"email": EMAIL, "attributes": {"family_name": "Doe", "custom:team": "blue"}}),
    )
}

fn add_team_attribute(w: &World) {
    w.dir.change_pool(|p| {
        let mut spec = p.attributes["custom:test_attribute1"].clone();
        spec.name = "custom:team".into();
        p.attributes.insert(spec.name.clone(), spec);
    });
}

/// Makes the next handling of a request fail permanently for `reason`, as production would.
fn break_for(w: &World, reason: &str) {
    let rejected = |code: &str| ErrorKind::Rejected(code.into());
    match reason {
        "email_rejected" => w
            .mailer
            .faults
            .fail_next("SendEmail", 1, rejected("email_rejected")),
        "template_error" => w.composer.set_broken(true),
        // Twice: the first try and the one with the policy read afresh.
        "invalid_password" => {
            w.dir
                .faults
                .fail_next("AdminCreateUser", 2, rejected("invalid_password"))
        }
        "user_pool_not_found" => {
            w.dir
                .faults
                .fail_next("AdminCreateUser", 1, rejected("user_pool_not_found"))
        }
        "invalid_attributes" => {}
        other => panic!("no way to break for {other}"),
    }
}

/// What the operator fixes before replaying.
fn fix(w: &World, reason: &str) {
    match reason {
        "template_error" => w.composer.set_broken(false),
        "invalid_attributes" => add_team_attribute(w),
        _ => {}
    }
}

/// The story for one permanent reason: fail, dead-letter, fix, replay, sent.
async fn fail_fix_replay(reason: &str) {
    let w = world_with(false);
    let body = if reason == "invalid_attributes" {
        request_with_team("e1")
    } else {
        request("e1", EMAIL)
    };
    break_for(&w, reason);
    let d = deliver(&w, &body, None).await;
    assert_eq!(dead_letter_code(&d), Some(reason), "{reason}: {d:?}");
    match record(&w) {
        // Rejected before any record was written: the replay is a first delivery.
        None => assert_eq!(reason, "invalid_attributes"),
        Some(rec) => {
            assert_eq!(
                (rec.status, rec.reason.as_deref()),
                (InviteStatus::Failed, Some(reason))
            );
            assert!(
                w.dir.user(EMAIL).is_none(),
                "{reason}: the unused user is removed"
            );
            fix(&w, reason);
            // An SQS redelivery of the same message is still a no-op.
            assert_eq!(
                deliver(&w, &body, None).await,
                ack("redelivered"),
                "{reason}"
            );
            assert_eq!(record(&w).unwrap().status, InviteStatus::Failed);
        }
    }
    fix(&w, reason);
    let mails = w.mailer.count();

    assert_eq!(deliver(&w, &body, Some(1)).await, ack("sent"), "{reason}");
    let rec = record(&w).unwrap();
    assert_eq!(rec.status, InviteStatus::Sent, "{reason}");
    assert_eq!(w.mailer.count(), mails + 1, "{reason}: one invitation");
    let user = w.dir.user(EMAIL).expect("user created");
    assert_eq!(
        mailed_password(&w, EMAIL),
        user.password,
        "{reason}: the mailed password is the user's"
    );
    let last = rec.history.last().unwrap();
    assert_eq!(last.to, InviteStatus::Sent);
    assert_eq!(
        last.replay,
        Some(replay(1)),
        "{reason}: history shows the replay"
    );

    // The same replay copy delivered twice: the second is a no-op.
    assert_eq!(
        deliver(&w, &body, Some(1)).await,
        ack("redelivered"),
        "{reason}"
    );
    assert_eq!(w.mailer.count(), mails + 1);
    assert_eq!(w.dir.user(EMAIL).unwrap().password, user.password);
}

#[tokio::test]
async fn a_replay_reopens_an_invite_that_failed_email_rejected() {
    fail_fix_replay("email_rejected").await;
}

#[tokio::test]
async fn a_replay_reopens_an_invite_that_failed_template_error() {
    fail_fix_replay("template_error").await;
}

#[tokio::test]
async fn a_replay_reopens_an_invite_that_failed_invalid_password() {
    fail_fix_replay("invalid_password").await;
}

#[tokio::test]
async fn a_replay_reopens_an_invite_that_failed_user_pool_not_found() {
    fail_fix_replay("user_pool_not_found").await;
}

#[tokio::test]
async fn a_replay_is_accepted_once_the_pool_has_the_attribute_invalid_attributes() {
    fail_fix_replay("invalid_attributes").await;
}

#[tokio::test]
async fn a_replay_after_retries_exhausted_resumes_and_is_marked_in_the_history() {
    let w = world_with(false);
    // An SES outage longer than the message's attempts: the worker dead-letters it
    // `retries_exhausted` after the last retry; the invite waits in `pending`.
    w.mailer
        .faults
        .fail_next("SendEmail", 3, ErrorKind::Unavailable);
    for _ in 0..3 {
        let d = deliver(&w, &request("e1", EMAIL), None).await;
        assert!(matches!(d, Disposition::Retry { .. }), "{d:?}");
    }
    assert_eq!(record(&w).unwrap().status, InviteStatus::Pending);
    assert_eq!(
        deliver(&w, &request("e1", EMAIL), Some(1)).await,
        ack("sent")
    );
    let rec = record(&w).unwrap();
    assert_eq!(rec.status, InviteStatus::Sent);
    assert_eq!(rec.history.last().unwrap().replay, Some(replay(1)));
    assert_eq!(
        mailed_password(&w, EMAIL),
        w.dir.user(EMAIL).unwrap().password
    );
    assert_eq!(
        deliver(&w, &request("e1", EMAIL), Some(1)).await,
        ack("redelivered")
    );
    assert_eq!(w.mailer.count(), 1);
}

#[tokio::test]
async fn a_replay_that_fails_again_goes_back_to_the_dlq_and_the_next_replay_reopens_again() {
    let w = world_with(false);
    let body = request("e1", EMAIL);
    w.mailer
        .faults
        .fail_next("SendEmail", 2, ErrorKind::Rejected("email_rejected".into()));
    deliver(&w, &body, None).await;
    let d = deliver(&w, &body, Some(1)).await;
    assert_eq!(dead_letter_code(&d), Some("email_rejected"), "{d:?}");
    let rec = record(&w).unwrap();
    assert_eq!((rec.status, rec.generation), (InviteStatus::Failed, 2));
    assert_eq!(deliver(&w, &body, Some(2)).await, ack("sent"));
    let rec = record(&w).unwrap();
    assert_eq!((rec.status, rec.generation), (InviteStatus::Sent, 3));
    assert_eq!(rec.history.last().unwrap().replay, Some(replay(2)));
}

#[tokio::test]
async fn a_replay_of_an_invite_sent_or_accepted_since_changes_nothing() {
    let w = world_with(false);
    let body = request("e1", EMAIL);
    // Sent on the first try; a copy with a (forged or stale) replay mark changes nothing.
    assert_eq!(deliver(&w, &body, None).await, ack("sent"));
    let password = w.dir.user(EMAIL).unwrap().password;
    assert_eq!(deliver(&w, &body, Some(1)).await, ack("already_sent"));
    assert_eq!(w.mailer.count(), 1);
    assert_eq!(w.dir.user(EMAIL).unwrap().password, password);
    let rec = record(&w).unwrap();
    assert_eq!((rec.status, rec.generation), (InviteStatus::Sent, 1));
    assert_eq!(
        rec.history.last().unwrap().reason.as_deref(),
        Some("already_sent")
    );
    assert_eq!(deliver(&w, &body, Some(1)).await, ack("redelivered"));

    // Accepted: a later replay leaves the person's account alone.
    w.dir
        .complete_registration(EMAIL, &password, "N3w-Passw0rd!!")
        .unwrap();
    let completed = event("registration.completed", "c1", json!({"email": EMAIL}));
    assert_eq!(deliver(&w, &completed, None).await, ack("accepted"));
    let mails = w.mailer.count();
    assert_eq!(deliver(&w, &body, Some(2)).await, ack("already_accepted"));
    assert_eq!(record(&w).unwrap().status, InviteStatus::Accepted);
    assert_eq!(w.dir.user(EMAIL).unwrap().password, "N3w-Passw0rd!!");
    assert_eq!(w.mailer.count(), mails);
}

#[tokio::test]
async fn a_replayed_revoke_never_reopens_and_a_replayed_request_older_than_a_revoke_is_stale() {
    let w = world_with(false);
    let at = |t: &str| {
        json!({"version": 1, "type": "invite.requested", "id": "e1", "occurred_at": t,
               "data": {"email": EMAIL, "attributes": {"family_name": "Doe"}}})
        .to_string()
    };
    let body = at("2026-11-26T10:00:00Z");
    w.mailer
        .faults
        .fail_next("SendEmail", 1, ErrorKind::Rejected("email_rejected".into()));
    deliver(&w, &body, None).await;
    let revoke = json!({"version": 1, "type": "invite.revoke", "id": "v1",
                        "occurred_at": "2026-11-26T11:00:00Z", "data": {"email": EMAIL}})
    .to_string();
    assert_eq!(deliver(&w, &revoke, None).await, ack("failed"));
    // A revoke marked as a replay is still the revoke: no re-open.
    assert_eq!(deliver(&w, &revoke, Some(1)).await, ack("redelivered"));
    // The request happened before the revoke: replaying it does not undo the revoke.
    assert_eq!(deliver(&w, &body, Some(1)).await, ack("stale_event"));
    let rec = record(&w).unwrap();
    assert_eq!(rec.status, InviteStatus::Failed);
    assert!(w.dir.user(EMAIL).is_none());
    assert_eq!(w.mailer.count(), 0);
}

#[tokio::test]
async fn a_replayed_resend_reopens_an_invite_it_failed() {
    let w = world_with(false);
    w.mailer
        .faults
        .fail_next("SendEmail", 2, ErrorKind::Rejected("email_rejected".into()));
    deliver(&w, &request("e1", EMAIL), None).await;
    // The resend re-opens the failed invite and fails again: dead-lettered.
    let resend = event("invite.resend", "r1", json!({"email": EMAIL}));
    let d = deliver(&w, &resend, None).await;
    assert_eq!(dead_letter_code(&d), Some("email_rejected"));
    assert_eq!(deliver(&w, &resend, None).await, ack("redelivered"));
    assert_eq!(deliver(&w, &resend, Some(1)).await, ack("sent"));
    assert_eq!(record(&w).unwrap().generation, 3);
}

// ---------------------------------------------------------------------------------------------
// The pool profile: bounded age, and read afresh before a rejection is final

#[tokio::test]
async fn an_attribute_added_to_the_pool_a_minute_ago_is_accepted_by_a_running_worker() {
    // Kept for ten minutes: only the fresh read before a rejection can see the new attribute.
    let w = world_with_cached_profile(Duration::from_secs(600));
    assert_eq!(
        deliver(&w, &request("e0", "early@example.com"), None).await,
        ack("sent")
    );
    let d = deliver(&w, &request_with_team("e1"), None).await;
    assert_eq!(dead_letter_code(&d), Some("invalid_attributes"), "{d:?}");
    add_team_attribute(&w);
    w.clock.advance(time::Duration::minutes(1));
    assert_eq!(
        deliver(&w, &request_with_team("e1"), Some(1)).await,
        ack("sent")
    );
    assert_eq!(
        w.dir.user(EMAIL).unwrap().info.attributes["custom:team"],
        "blue"
    );
}

#[tokio::test]
async fn a_raised_minimum_length_is_read_again_before_the_password_is_rejected() {
    let w = world_with_cached_profile(Duration::from_secs(600));
    deliver(&w, &request("e0", "early@example.com"), None).await;
    w.dir.change_pool(|p| p.password_policy.min_length = 24);
    w.clock.advance(time::Duration::seconds(5));
    assert_eq!(deliver(&w, &request("e1", EMAIL), None).await, ack("sent"));
    let password = w.dir.user(EMAIL).unwrap().password;
    assert!(password.len() >= 24, "{}", password.len());
    assert_eq!(mailed_password(&w, EMAIL), password);
}

#[tokio::test]
async fn the_worker_hands_a_replayed_copys_lineage_from_its_message_attributes_to_the_service() {
    use crate::adapters::sqs::ATTR_ORIGINAL_MESSAGE_ID;
    use crate::ops::dlq::ATTR_REPLAY_COUNT;
    use crate::ports::QueueMessage;
    use crate::worker::MessageHandler;

    let w = world_with(false);
    w.mailer
        .faults
        .fail_next("SendEmail", 1, ErrorKind::Rejected("email_rejected".into()));
    let message = |id: &str, attributes: &[(&str, &str)]| QueueMessage {
        message_id: id.into(),
        receipt_handle: format!("rh-{id}"),
        body: request("e1", EMAIL),
        receive_count: 1,
        group_id: None,
        sent_at: None,
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let d = w.service.handle(&message("m1", &[])).await;
    assert_eq!(dead_letter_code(&d), Some("email_rejected"));
    assert_eq!(
        w.service.handle(&message("m1", &[])).await,
        ack("redelivered")
    );
    let copy = message(
        "m2",
        &[(ATTR_REPLAY_COUNT, "1"), (ATTR_ORIGINAL_MESSAGE_ID, "m1")],
    );
    assert_eq!(w.service.handle(&copy).await, ack("sent"));
    assert_eq!(
        record(&w).unwrap().history.last().unwrap().replay,
        Some(Replay {
            number: 1,
            original_message_id: Some("m1".into())
        })
    );
}
