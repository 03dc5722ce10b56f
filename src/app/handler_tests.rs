//! The invite service over in-memory fakes: every path of the request flow, redelivery, crashes
//! between steps, permanent and transient failures, and the lifecycle events.

use serde_json::json;
use time::macros::datetime;

use super::test_world::{world_with, world_with_lease, World, POOL};
use crate::domain::{EmailAddress, InviteId, InviteStatus};
use crate::error::{Disposition, ErrorKind, Service};
use crate::ports::{Directory, UserStatus};

fn world() -> World {
    world_with(false)
}

pub(super) fn request(id: &str, email: &str) -> String {
    json!({
        "version": 1, "type": "invite.requested", "id": id,
        "data": {
            "email": email,
            "attributes": {"given_name": "Jane", "family_name": "Doe", "custom:test_attribute1": "blue"},
            "groups": ["employees"]
        }
    })
    .to_string()
}

pub(super) fn event(kind: &str, id: &str, data: serde_json::Value) -> String {
    json!({"version": 1, "type": kind, "id": id, "data": data}).to_string()
}

pub(super) fn invite_id(email: &str) -> InviteId {
    InviteId::for_email(POOL, &EmailAddress::parse(email).unwrap())
}

/// The password in the newest mail to `email`.
pub(super) fn mailed_password(w: &World, email: &str) -> String {
    let mail = w.mailer.sent_to(email).pop().expect("a mail");
    mail.text
        .lines()
        .find_map(|l| l.strip_prefix("Temporary password: "))
        .expect("password line")
        .to_string()
}

pub(super) fn ack(outcome: &'static str) -> Disposition {
    Disposition::Ack { outcome }
}

#[tokio::test]
async fn a_request_creates_the_user_and_sends_one_email() {
    let w = world();
    assert_eq!(
        w.service
            .handle_body(&request("e1", "Jane.Doe@Example.com"))
            .await,
        ack("sent")
    );
    let user = w.dir.user("jane.doe@example.com").expect("user created");
    assert_eq!(user.info.status, UserStatus::ForceChangePassword);
    assert_eq!(user.info.attributes["custom:test_attribute1"], "blue");
    assert_eq!(user.info.attributes["email_verified"], "true");
    assert_eq!(
        mailed_password(&w, "jane.doe@example.com"),
        user.password,
        "the mailed password is the user's"
    );
    let rec = w.store.get(&invite_id("jane.doe@example.com")).unwrap();
    assert_eq!(rec.status, InviteStatus::Sent);
    assert_eq!(rec.send_count, 1);
    assert!(rec.lease.is_none());
    let path: Vec<_> = rec.history.iter().map(|h| (h.from, h.to)).collect();
    assert_eq!(
        path,
        vec![
            (None, InviteStatus::Pending),
            (Some(InviteStatus::Pending), InviteStatus::Sent)
        ]
    );
    assert_eq!(rec.expires_at, datetime!(2026-12-03 12:00 UTC));
}

#[tokio::test]
async fn a_redelivered_event_is_a_no_op() {
    let w = world();
    w.service
        .handle_body(&request("e1", "jane@example.com"))
        .await;
    assert_eq!(
        w.service
            .handle_body(&request("e1", "jane@example.com"))
            .await,
        ack("redelivered")
    );
    assert_eq!(w.dir.created_count(), 1);
    assert_eq!(w.mailer.count(), 1);
}

#[tokio::test]
async fn a_second_request_for_an_open_invite_is_recorded_not_sent() {
    let w = world();
    w.service
        .handle_body(&request("e1", "jane@example.com"))
        .await;
    assert_eq!(
        w.service
            .handle_body(&request("e2", "jane@example.com"))
            .await,
        ack("duplicate_request")
    );
    assert_eq!(w.mailer.count(), 1);
    let rec = w.store.get(&invite_id("jane@example.com")).unwrap();
    assert_eq!(
        rec.history.last().unwrap().reason.as_deref(),
        Some("duplicate_request")
    );
    // ...and its redelivery is a no-op too.
    assert_eq!(
        w.service
            .handle_body(&request("e2", "jane@example.com"))
            .await,
        ack("redelivered")
    );
}

#[tokio::test]
async fn a_failed_send_retries_and_the_retry_rotates_the_password() {
    let w = world();
    w.mailer
        .faults
        .fail_next("SendEmail", 1, ErrorKind::Throttled);
    let d = w
        .service
        .handle_body(&request("e1", "jane@example.com"))
        .await;
    assert!(
        matches!(
            d,
            Disposition::Retry {
                downstream: Some(Service::Ses),
                ..
            }
        ),
        "{d:?}"
    );
    let rec = w.store.get(&invite_id("jane@example.com")).unwrap();
    assert_eq!(rec.status, InviteStatus::Pending);
    assert!(rec.lease.is_none(), "the lease is released for the retry");
    let first_password = w.dir.user("jane@example.com").unwrap().password;

    assert_eq!(
        w.service
            .handle_body(&request("e1", "jane@example.com"))
            .await,
        ack("sent")
    );
    let user = w.dir.user("jane@example.com").unwrap();
    assert_ne!(
        user.password, first_password,
        "a retry rotates the password"
    );
    assert_eq!(mailed_password(&w, "jane@example.com"), user.password);
    assert_eq!(w.dir.created_count(), 1, "no second user");
    assert_eq!(w.mailer.count(), 1);
}

#[tokio::test]
async fn a_crash_after_sending_leaves_pending_and_the_redelivery_resumes_after_the_lease() {
    let w = world();
    // The crash: the email went out, then the final write never happened; the lease stays.
    w.store
        .faults
        .fail_nth("PutItem", 2, ErrorKind::Unavailable);
    let d = w
        .service
        .handle_body(&request("e1", "jane@example.com"))
        .await;
    assert!(matches!(d, Disposition::Retry { .. }), "{d:?}");
    let rec = w.store.get(&invite_id("jane@example.com")).unwrap();
    assert_eq!(rec.status, InviteStatus::Pending);
    assert!(rec.lease.is_some());
    assert_eq!(w.mailer.count(), 1);

    let d = w
        .service
        .handle_body(&request("e1", "jane@example.com"))
        .await;
    assert!(
        matches!(d, Disposition::Retry { after: Some(_), .. }),
        "busy while the lease holds: {d:?}"
    );
    w.clock.advance(time::Duration::minutes(3));
    assert_eq!(
        w.service
            .handle_body(&request("e1", "jane@example.com"))
            .await,
        ack("sent")
    );
    let user = w.dir.user("jane@example.com").unwrap();
    assert_eq!(
        mailed_password(&w, "jane@example.com"),
        user.password,
        "the newest email carries the working password"
    );
    assert_eq!(w.dir.created_count(), 1);
    assert_eq!(w.mailer.count(), 2, "one duplicate email for one crash");
    assert_eq!(
        w.service
            .handle_body(&request("e1", "jane@example.com"))
            .await,
        ack("redelivered")
    );
}

#[tokio::test]
async fn a_confirmed_user_is_never_touched_and_the_invite_fails_already_registered() {
    let w = world();
    w.service
        .handle_body(&request("e1", "jane@example.com"))
        .await;
    let w2 = world();
    w2.service
        .handle_body(&request("e1", "jane@example.com"))
        .await;
    let pw = mailed_password(&w2, "jane@example.com");
    w2.dir
        .complete_registration("jane@example.com", &pw, "N3w-Passw0rd!!")
        .unwrap();
    // Make the record closed (failed) so a new request opens a new generation.
    use crate::ports::InviteStore;
    let mut rec = w2.store.get(&invite_id("jane@example.com")).unwrap();
    rec.status = InviteStatus::Failed;
    rec.version += 1;
    w2.store.save(&rec).await.unwrap();
    assert_eq!(
        w2.service
            .handle_body(&request("e9", "jane@example.com"))
            .await,
        ack("failed")
    );
    let rec = w2.store.get(&invite_id("jane@example.com")).unwrap();
    assert_eq!(rec.reason.as_deref(), Some("already_registered"));
    assert_eq!(
        w2.dir.user("jane@example.com").unwrap().password,
        "N3w-Passw0rd!!"
    );
    assert_eq!(w2.mailer.count(), 1, "no email to a registered user");
}

#[tokio::test]
async fn bad_input_is_dead_lettered_with_the_field_named() {
    let w = world();
    let cases = [
        ("{not json", "invalid_event", "body"),
        (
            r#"{"version":2,"type":"invite.requested","id":"x","data":{}}"#,
            "invalid_event",
            "version",
        ),
        (
            r#"{"version":1,"type":"invite.requested","id":"x","data":{"email":"nope"}}"#,
            "invalid_event",
            "data.email",
        ),
    ];
    for (body, code, field) in cases {
        match w.service.handle_body(body).await {
            Disposition::DeadLetter { code: c, reason } => {
                assert_eq!(c, code);
                assert!(reason.starts_with(field), "{reason}");
            }
            other => panic!("{body}: {other:?}"),
        }
    }
    let body = event(
        "invite.requested",
        "x",
        json!({"email": "a@example.com", "attributes": {"family_name": "D", "favourite_colour": "red"}}),
    );
    match w.service.handle_body(&body).await {
        Disposition::DeadLetter { code, reason } => {
            assert_eq!(code, "invalid_attributes");
            assert!(
                reason.contains("data.attributes.favourite_colour"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.dir.user_count(), 0);
    assert!(w.store.all().is_empty());
}

#[tokio::test]
async fn a_rejected_email_fails_the_invite_removes_the_user_and_dead_letters() {
    let w = world();
    w.mailer
        .faults
        .fail_next("SendEmail", 1, ErrorKind::Rejected("email_rejected".into()));
    match w
        .service
        .handle_body(&request("e1", "jane@example.com"))
        .await
    {
        Disposition::DeadLetter { code, .. } => assert_eq!(code, "email_rejected"),
        other => panic!("{other:?}"),
    }
    let rec = w.store.get(&invite_id("jane@example.com")).unwrap();
    assert_eq!(
        (rec.status, rec.reason.as_deref()),
        (InviteStatus::Failed, Some("email_rejected"))
    );
    assert!(w.dir.user("jane@example.com").is_none());
    // A replay after the fix opens a new generation and succeeds.
    assert_eq!(
        w.service
            .handle_body(&request("e1-replay", "jane@example.com"))
            .await,
        ack("sent")
    );
    assert_eq!(
        w.store
            .get(&invite_id("jane@example.com"))
            .unwrap()
            .generation,
        2
    );
}

#[tokio::test]
async fn downstream_outages_retry_and_never_dead_letter() {
    let w = world();
    for (op, kind) in [
        ("DescribeUserPool", ErrorKind::Unavailable),
        ("AdminCreateUser", ErrorKind::Throttled),
        ("AdminCreateUser", ErrorKind::Timeout),
    ] {
        w.dir.faults.fail_next(op, 1, kind);
        let d = w
            .service
            .handle_body(&request("e1", "jane@example.com"))
            .await;
        assert!(
            matches!(
                d,
                Disposition::Retry {
                    downstream: Some(Service::Cognito),
                    ..
                }
            ),
            "{op}: {d:?}"
        );
    }
    w.store.faults.fail_next("GetItem", 1, ErrorKind::Throttled);
    assert!(matches!(
        w.service
            .handle_body(&request("e1", "jane@example.com"))
            .await,
        Disposition::Retry { .. }
    ));
    assert_eq!(
        w.service
            .handle_body(&request("e1", "jane@example.com"))
            .await,
        ack("sent")
    );
    assert_eq!(w.dir.created_count(), 1);
}

#[tokio::test]
async fn a_missing_user_pool_is_dead_lettered_with_its_reason() {
    let w = world();
    w.dir.faults.fail_next(
        "DescribeUserPool",
        1,
        ErrorKind::Rejected("user_pool_not_found".into()),
    );
    match w
        .service
        .handle_body(&request("e1", "jane@example.com"))
        .await
    {
        Disposition::DeadLetter { code, .. } => assert_eq!(code, "user_pool_not_found"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn resend_rotates_and_extends_revoke_deletes_unused_users() {
    let w = world();
    w.service
        .handle_body(&request("e1", "jane@example.com"))
        .await;
    let first = mailed_password(&w, "jane@example.com");
    w.clock.advance(time::Duration::days(2));
    let d = w
        .service
        .handle_body(&event(
            "invite.resend",
            "r1",
            json!({"email": "jane@example.com"}),
        ))
        .await;
    assert_eq!(d, ack("resent"));
    let second = mailed_password(&w, "jane@example.com");
    assert_ne!(first, second);
    assert_eq!(w.dir.user("jane@example.com").unwrap().password, second);
    let rec = w.store.get(&invite_id("jane@example.com")).unwrap();
    assert_eq!(rec.expires_at, datetime!(2026-12-05 12:00 UTC));
    assert_eq!(rec.send_count, 2);

    let d = w
        .service
        .handle_body(&event(
            "invite.revoke",
            "v1",
            json!({"email": "jane@example.com", "reason": "offer withdrawn"}),
        ))
        .await;
    assert_eq!(d, ack("revoked"));
    assert!(w.dir.user("jane@example.com").is_none());
    let rec = w.store.get(&invite_id("jane@example.com")).unwrap();
    assert_eq!(rec.reason.as_deref(), Some("offer withdrawn"));
    let d = w
        .service
        .handle_body(&event(
            "invite.resend",
            "r2",
            json!({"email": "jane@example.com"}),
        ))
        .await;
    assert_eq!(d, ack("revoked"), "a resend of a revoked invite is refused");
}

#[tokio::test]
async fn registration_completed_accepts_adds_groups_and_welcomes() {
    let w = world();
    w.service
        .handle_body(&request("e1", "jane@example.com"))
        .await;
    let completed = event(
        "registration.completed",
        "c1",
        json!({"email": "jane@example.com"}),
    );
    assert_eq!(
        w.service.handle_body(&completed).await,
        ack("registration_not_confirmed")
    );
    let pw = mailed_password(&w, "jane@example.com");
    w.dir
        .complete_registration("jane@example.com", &pw, "N3w-Passw0rd!!")
        .unwrap();
    assert_eq!(
        w.service
            .handle_body(&event(
                "registration.completed",
                "c2",
                json!({"email": "jane@example.com"})
            ))
            .await,
        ack("accepted")
    );
    assert_eq!(
        w.dir.user("jane@example.com").unwrap().groups,
        vec!["employees".to_string()]
    );
    assert_eq!(w.mailer.count(), 2, "invitation and welcome");
    let d = w
        .service
        .handle_body(&event(
            "invite.revoke",
            "v1",
            json!({"email": "jane@example.com"}),
        ))
        .await;
    assert_eq!(d, ack("already_accepted"));
    assert!(
        w.dir.user("jane@example.com").is_some(),
        "a confirmed user is never deleted"
    );
}

#[tokio::test]
async fn temporary_passwords_never_reach_the_store() {
    let w = world();
    for i in 0..5 {
        w.service
            .handle_body(&request(&format!("e{i}"), &format!("p{i}@example.com")))
            .await;
        w.service
            .handle_body(&event(
                "invite.resend",
                &format!("r{i}"),
                json!({"email": format!("p{i}@example.com")}),
            ))
            .await;
    }
    let stored = serde_json::to_string(&w.store.all()).unwrap();
    let mut checked = 0;
    for mail in w.mailer.sent() {
        let pw = mail
            .text
            .lines()
            .find_map(|l| l.strip_prefix("Temporary password: "))
            .unwrap();
        assert!(!stored.contains(pw));
        checked += 1;
    }
    assert_eq!(checked, 10);
    let _ = w.dir.pool_profile().await;
}

#[tokio::test]
async fn a_busy_invite_is_retried_soon_while_the_lease_is_young_and_at_its_end_when_old() {
    let w = world();
    w.store
        .faults
        .fail_nth("PutItem", 2, ErrorKind::Unavailable);
    w.service
        .handle_body(&request("e1", "jane@example.com"))
        .await;
    let after = |d: Disposition| match d {
        Disposition::Retry { after, .. } => after,
        other => panic!("{other:?}"),
    };
    // A lease taken just now: most likely a live duplicate; look again in a few seconds.
    let d = w
        .service
        .handle_body(&request("e1", "jane@example.com"))
        .await;
    assert_eq!(after(d), Some(std::time::Duration::from_secs(5)));
    // 100 s into a 120 s lease: its holder was probably cut off; wait for the lease to end.
    w.clock.advance(time::Duration::seconds(100));
    let d = w
        .service
        .handle_body(&request("e1", "jane@example.com"))
        .await;
    assert_eq!(after(d), Some(std::time::Duration::from_secs(21)));
}

#[tokio::test]
async fn a_young_lease_close_to_its_end_is_waited_out_not_looked_at_just_before() {
    // Seen in CI: a 10 s lease, 4.3 s old, looked at again after 5 s, came back 0.3 s before
    // it ended and spent one more of the message's attempts.
    let w = world_with_lease(std::time::Duration::from_secs(10));
    w.store
        .faults
        .fail_nth("PutItem", 2, ErrorKind::Unavailable);
    w.service
        .handle_body(&request("e1", "jane@example.com"))
        .await;
    w.clock.advance(time::Duration::milliseconds(4300));
    let d = w
        .service
        .handle_body(&request("e1", "jane@example.com"))
        .await;
    match d {
        Disposition::Retry { after, .. } => {
            let after = after.expect("a delay");
            assert!(after >= std::time::Duration::from_millis(5700), "{after:?}");
        }
        other => panic!("{other:?}"),
    }
}
