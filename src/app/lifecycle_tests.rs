//! The whole invite lifecycle over in-memory fakes: every transition after the first invitation
//! (resend, revoke, acceptance, expiry, reminder), out-of-order delivery as a table, the outbox of
//! lifecycle events, and the cleanup and reconcile passes in `crate::lifecycle`.

use std::time::Duration;

use serde_json::json;
use time::macros::datetime;
use time::OffsetDateTime;

use crate::domain::state::Trigger;
use crate::domain::{EmailAddress, Invite, InviteId, InviteStatus, Lease};
use crate::error::{Disposition, ErrorKind};
use crate::lifecycle::cleanup::{cleanup, CleanupOptions, CleanupReport};
use crate::lifecycle::reconcile::{reconcile, ReconcileOptions};
use crate::lifecycle::Outcome;
use crate::ports::{InviteStore, UserStatus};

use super::test_world::{world_with, World, POOL, START};

pub(super) fn world() -> World {
    world_with(true)
}

fn at(t: Option<OffsetDateTime>) -> serde_json::Value {
    match t {
        Some(t) => json!(t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()),
        None => serde_json::Value::Null,
    }
}

fn envelope(
    kind: &str,
    id: &str,
    occurred: Option<OffsetDateTime>,
    data: serde_json::Value,
) -> String {
    let mut e = json!({"version": 1, "type": kind, "id": id, "data": data});
    if occurred.is_some() {
        e["occurred_at"] = at(occurred);
    }
    e.to_string()
}

pub(super) fn request(id: &str, email: &str, occurred: Option<OffsetDateTime>) -> String {
    envelope(
        "invite.requested",
        id,
        occurred,
        json!({
            "email": email,
            "attributes": {"given_name": "Jane", "family_name": "Doe"},
            "groups": ["employees"]
        }),
    )
}

pub(super) fn resend(id: &str, email: &str, occurred: Option<OffsetDateTime>) -> String {
    envelope("invite.resend", id, occurred, json!({"email": email}))
}

pub(super) fn revoke(id: &str, email: &str, occurred: Option<OffsetDateTime>) -> String {
    envelope("invite.revoke", id, occurred, json!({"email": email}))
}

pub(super) fn completed(id: &str, email: &str, occurred: Option<OffsetDateTime>) -> String {
    envelope(
        "registration.completed",
        id,
        occurred,
        json!({"email": email}),
    )
}

pub(super) fn invite_id(email: &str) -> InviteId {
    InviteId::for_email(POOL, &EmailAddress::parse(email).unwrap())
}

fn outcome(d: Disposition) -> String {
    match d {
        Disposition::Ack { outcome } => outcome.to_string(),
        other => format!("{other:?}"),
    }
}

/// The password in the newest mail to `email` that carries one.
fn newest_password(w: &World, email: &str) -> Option<String> {
    w.mailer.sent_to(email).iter().rev().find_map(|m| {
        m.text
            .lines()
            .find_map(|l| l.strip_prefix("Temporary password: "))
            .filter(|p| !p.is_empty())
            .map(str::to_string)
    })
}

/// What the person does: signs in with the newest emailed password and sets their own.
fn person_registers(w: &World, email: &str) -> bool {
    match newest_password(w, email) {
        Some(pw) => w
            .dir
            .complete_registration(email, &pw, "Chosen-by-Jane-42!")
            .is_ok(),
        None => false,
    }
}

/// The kinds of mail sent to `email`, in order (`invite`, `welcome`, `reminder`).
pub(super) fn mail_kinds(w: &World, email: &str) -> Vec<String> {
    w.mailer
        .sent_to(email)
        .iter()
        .map(|m| m.subject.split(' ').next().unwrap_or_default().to_string())
        .collect()
}

fn user_state(w: &World, email: &str) -> Option<UserStatus> {
    w.dir.user(email).map(|u| u.info.status)
}

pub(super) fn record(w: &World, email: &str) -> Invite {
    w.store.get(&invite_id(email)).expect("a record")
}

pub(super) async fn send(w: &World, body: &str) -> String {
    outcome(w.service.handle_body(body).await)
}

/// A sent invite for `email`.
pub(super) async fn invited(w: &World, email: &str) {
    assert_eq!(
        send(
            w,
            &request(&format!("req-{}", email.replace('@', "-at-")), email, None)
        )
        .await,
        "sent"
    );
}

pub(super) fn options() -> CleanupOptions {
    CleanupOptions {
        dry_run: false,
        limit: 1000,
        reminder_days: 0,
    }
}

fn outcomes_of(report: &CleanupReport) -> Vec<(String, Outcome)> {
    let mut v: Vec<_> = report
        .invites
        .iter()
        .map(|l| (l.email.clone(), l.outcome))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

// ---------------------------------------------------------------------------------------------
// Transitions

#[tokio::test]
async fn resend_issues_a_new_working_password_extends_expiry_and_publishes_sent_again() {
    let w = world();
    invited(&w, "jane@example.com").await;
    let first = newest_password(&w, "jane@example.com").unwrap();
    w.clock.advance(time::Duration::days(3));
    assert_eq!(
        send(&w, &resend("r1", "jane@example.com", None)).await,
        "resent"
    );
    let second = newest_password(&w, "jane@example.com").unwrap();
    assert_ne!(first, second);
    assert!(w
        .dir
        .complete_registration("jane@example.com", &first, "x-Passw0rd!!")
        .is_err());
    let rec = record(&w, "jane@example.com");
    assert_eq!(rec.expires_at, START + time::Duration::days(10));
    assert_eq!((rec.status, rec.send_count), (InviteStatus::Sent, 2));
    assert_eq!(w.publisher.types(), vec!["invite.sent", "invite.sent"]);
    let last = w.publisher.published().pop().unwrap();
    assert_eq!(last.body["data"]["send_count"], 2);
}

#[tokio::test]
async fn revoke_deletes_the_unused_user_and_publishes_revoked() {
    let w = world();
    invited(&w, "jane@example.com").await;
    assert_eq!(
        send(&w, &revoke("v1", "jane@example.com", None)).await,
        "revoked"
    );
    assert!(w.dir.user("jane@example.com").is_none());
    assert_eq!(w.publisher.types(), vec!["invite.sent", "invite.revoked"]);
}

#[tokio::test]
async fn revoke_leaves_a_registered_user_alone() {
    let w = world();
    invited(&w, "jane@example.com").await;
    assert!(person_registers(&w, "jane@example.com"));
    // Nobody reported the registration: the revoke finds the user confirmed and keeps it.
    assert_eq!(
        send(&w, &revoke("v1", "jane@example.com", None)).await,
        "revoked"
    );
    assert_eq!(
        user_state(&w, "jane@example.com"),
        Some(UserStatus::Confirmed)
    );
}

#[tokio::test]
async fn a_revoke_before_its_request_leaves_a_tombstone_and_the_late_request_is_stale() {
    let w = world();
    let t1 = datetime!(2026-11-26 09:00 UTC);
    let t2 = datetime!(2026-11-26 10:00 UTC);
    assert_eq!(
        send(&w, &revoke("v1", "jane@example.com", Some(t2))).await,
        "revoked"
    );
    let rec = record(&w, "jane@example.com");
    assert_eq!((rec.status, rec.generation), (InviteStatus::Revoked, 0));
    assert_eq!(
        send(&w, &request("e1", "jane@example.com", Some(t1))).await,
        "stale_event"
    );
    assert!(w.dir.user("jane@example.com").is_none());
    assert_eq!(w.mailer.count(), 0);
    // A request newer than the revoke re-opens the invite.
    let t3 = datetime!(2026-11-26 11:00 UTC);
    assert_eq!(
        send(&w, &request("e2", "jane@example.com", Some(t3))).await,
        "sent"
    );
    assert_eq!(record(&w, "jane@example.com").generation, 1);
}

#[tokio::test]
async fn acceptance_adds_groups_sends_the_welcome_and_publishes_accepted() {
    let w = world();
    invited(&w, "jane@example.com").await;
    assert!(person_registers(&w, "jane@example.com"));
    assert_eq!(
        send(&w, &completed("c1", "jane@example.com", None)).await,
        "accepted"
    );
    assert_eq!(
        w.dir.user("jane@example.com").unwrap().groups,
        vec!["employees"]
    );
    assert_eq!(
        mail_kinds(&w, "jane@example.com"),
        vec!["invite", "welcome"]
    );
    let rec = record(&w, "jane@example.com");
    assert_eq!(rec.accepted_at, Some(START));
    assert_eq!(w.publisher.types(), vec!["invite.sent", "invite.accepted"]);
}

#[tokio::test]
async fn a_resend_that_finds_the_person_registered_accepts_with_groups_and_welcome() {
    let w = world();
    invited(&w, "jane@example.com").await;
    assert!(person_registers(&w, "jane@example.com"));
    assert_eq!(
        send(&w, &resend("r1", "jane@example.com", None)).await,
        "accepted"
    );
    let rec = record(&w, "jane@example.com");
    assert_eq!(rec.reason.as_deref(), Some("found_confirmed"));
    assert_eq!(
        w.dir.user("jane@example.com").unwrap().groups,
        vec!["employees"],
        "an acceptance found on the way still adds the groups"
    );
    assert_eq!(
        mail_kinds(&w, "jane@example.com"),
        vec!["invite", "welcome"]
    );
    assert_eq!(
        user_state(&w, "jane@example.com"),
        Some(UserStatus::Confirmed),
        "the registered password is not rotated"
    );
}

#[tokio::test]
async fn an_expired_invite_reopens_on_resend_as_a_new_generation() {
    let w = world();
    invited(&w, "jane@example.com").await;
    w.clock.advance(time::Duration::days(8));
    let report = cleanup(&w.service, &options()).await;
    assert_eq!(report.summary.expired, 1);
    assert!(w.dir.user("jane@example.com").is_none());
    assert_eq!(
        send(&w, &resend("r1", "jane@example.com", None)).await,
        "sent"
    );
    let rec = record(&w, "jane@example.com");
    assert_eq!((rec.status, rec.generation), (InviteStatus::Sent, 2));
    assert_eq!(
        user_state(&w, "jane@example.com"),
        Some(UserStatus::ForceChangePassword)
    );
    assert_eq!(
        w.publisher.types(),
        vec!["invite.sent", "invite.expired", "invite.sent"]
    );
}

#[tokio::test]
async fn a_rejected_email_publishes_failed() {
    let w = world();
    w.mailer
        .faults
        .fail_next("SendEmail", 1, ErrorKind::Rejected("email_rejected".into()));
    w.service
        .handle_body(&request("e1", "jane@example.com", None))
        .await;
    assert_eq!(w.publisher.types(), vec!["invite.failed"]);
    let failed = &w.publisher.published()[0];
    assert_eq!(failed.body["data"]["reason"], "email_rejected");
}

#[tokio::test]
async fn internal_triggers_are_decided_again_on_the_fresh_record() {
    let w = world();
    invited(&w, "jane@example.com").await;
    let id = invite_id("jane@example.com");
    // Not expired (say a resend extended it after cleanup read the index): nothing happens.
    let h = w
        .service
        .apply_internal(id, Trigger::ExpiryReached, "cleanup")
        .await
        .unwrap();
    assert_eq!((h.outcome, h.changed), ("not_expired", false));
    assert_eq!(
        user_state(&w, "jane@example.com"),
        Some(UserStatus::ForceChangePassword)
    );
    // A reminder goes out once per generation, however often it is asked for.
    let h = w
        .service
        .apply_internal(id, Trigger::ReminderDue, "cleanup.reminder")
        .await
        .unwrap();
    assert_eq!((h.outcome, h.changed), ("reminded", true));
    let h = w
        .service
        .apply_internal(id, Trigger::ReminderDue, "cleanup.reminder")
        .await
        .unwrap();
    assert_eq!((h.outcome, h.changed), ("already_reminded", false));
    assert_eq!(
        mail_kinds(&w, "jane@example.com"),
        vec!["invite", "reminder"]
    );
}

// ---------------------------------------------------------------------------------------------
// Out-of-order delivery

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    /// `invite.requested`.
    R,
    /// `invite.resend`.
    S,
    /// `invite.revoke`.
    V,
    /// `registration.completed` after the person really completed registration (if they could:
    /// a never-used user with an emailed password exists).
    Cd,
    /// `registration.completed` while the person has not completed registration.
    Cn,
}

#[derive(Debug, PartialEq, Eq)]
struct Ending {
    outcomes: [String; 2],
    status: Option<InviteStatus>,
    user: Option<UserStatus>,
    mails: Vec<String>,
}

const EMAIL: &str = "jane@example.com";

/// Delivers `first` then `second`. Their `occurred_at` follows the delivery order when
/// `in_order`, else the reverse. Unless one of them is the request, the invite was requested
/// (and sent) before both.
async fn play(first: Ev, second: Ev, in_order: bool) -> Ending {
    let w = world();
    let t0 = datetime!(2026-11-26 08:00 UTC);
    let (t_first, t_second) = if in_order {
        (
            datetime!(2026-11-26 09:00 UTC),
            datetime!(2026-11-26 10:00 UTC),
        )
    } else {
        (
            datetime!(2026-11-26 10:00 UTC),
            datetime!(2026-11-26 09:00 UTC),
        )
    };
    if first != Ev::R && second != Ev::R {
        assert_eq!(send(&w, &request("base", EMAIL, Some(t0))).await, "sent");
    }
    let mut outcomes = Vec::new();
    for (n, (ev, t)) in [(first, t_first), (second, t_second)]
        .into_iter()
        .enumerate()
    {
        w.clock.advance(time::Duration::minutes(1));
        let id = format!("ev{n}");
        let body = match ev {
            Ev::R => request(&id, EMAIL, Some(t)),
            Ev::S => resend(&id, EMAIL, Some(t)),
            Ev::V => revoke(&id, EMAIL, Some(t)),
            Ev::Cd => {
                person_registers(&w, EMAIL);
                completed(&id, EMAIL, Some(t))
            }
            Ev::Cn => completed(&id, EMAIL, Some(t)),
        };
        outcomes.push(send(&w, &body).await);
    }
    Ending {
        outcomes: [outcomes[0].clone(), outcomes[1].clone()],
        status: w.store.get(&invite_id(EMAIL)).map(|r| r.status),
        user: user_state(&w, EMAIL),
        mails: mail_kinds(&w, EMAIL),
    }
}

/// (first delivered, second delivered, occurred in delivery order?, [outcome of first, outcome of
/// second], final status, Cognito user, mails sent).
type Row = (
    Ev,
    Ev,
    bool,
    [&'static str; 2],
    Option<InviteStatus>,
    Option<UserStatus>,
    &'static [&'static str],
);

/// Every ordered pair of {request, resend, revoke, completed (done), completed (not done)},
/// with `occurred_at` in the delivery order and reversed. The same table is in
/// docs/lifecycle.md.
#[tokio::test]
#[rustfmt::skip]
async fn out_of_order_delivery_table() {
    use Ev::*;
    use InviteStatus::{Accepted, Revoked, Sent};
    const FCP: Option<UserStatus> = Some(UserStatus::ForceChangePassword);
    const CONF: Option<UserStatus> = Some(UserStatus::Confirmed);
    const NONE: Option<UserStatus> = None;
    let not = "registration_not_confirmed";
    // (first delivered, second delivered, occurred in delivery order?,
    //  [outcome of first, outcome of second], final status, Cognito user, mails sent)
    let table: Vec<Row> = vec![
        // -- with the request (nothing exists before) --
        (R,  S,  true,  ["sent", "resent"],                Some(Sent),     FCP,  &["invite", "invite"]),
        (R,  S,  false, ["sent", "stale_event"],           Some(Sent),     FCP,  &["invite"]),
        (S,  R,  true,  ["unknown_invite", "sent"],        Some(Sent),     FCP,  &["invite"]),
        (S,  R,  false, ["unknown_invite", "sent"],        Some(Sent),     FCP,  &["invite"]),
        (R,  V,  true,  ["sent", "revoked"],               Some(Revoked),  NONE, &["invite"]),
        (R,  V,  false, ["sent", "stale_event"],           Some(Sent),     FCP,  &["invite"]),
        (V,  R,  true,  ["revoked", "sent"],               Some(Sent),     FCP,  &["invite"]),
        (V,  R,  false, ["revoked", "stale_event"],        Some(Revoked),  NONE, &[]),
        (R,  Cd, true,  ["sent", "accepted"],              Some(Accepted), CONF, &["invite", "welcome"]),
        (R,  Cd, false, ["sent", "accepted"],              Some(Accepted), CONF, &["invite", "welcome"]),
        (Cd, R,  true,  [not, "sent"],                     Some(Sent),     FCP,  &["invite"]),
        (Cd, R,  false, [not, "sent"],                     Some(Sent),     FCP,  &["invite"]),
        (R,  Cn, true,  ["sent", not],                     Some(Sent),     FCP,  &["invite"]),
        (R,  Cn, false, ["sent", not],                     Some(Sent),     FCP,  &["invite"]),
        (Cn, R,  true,  [not, "sent"],                     Some(Sent),     FCP,  &["invite"]),
        (Cn, R,  false, [not, "sent"],                     Some(Sent),     FCP,  &["invite"]),
        // -- after the invite was requested and sent --
        (S,  V,  true,  ["resent", "revoked"],             Some(Revoked),  NONE, &["invite", "invite"]),
        (S,  V,  false, ["resent", "revoked"],             Some(Revoked),  NONE, &["invite", "invite"]),
        (V,  S,  true,  ["revoked", "revoked"],            Some(Revoked),  NONE, &["invite"]),
        (V,  S,  false, ["revoked", "stale_event"],        Some(Revoked),  NONE, &["invite"]),
        (S,  Cd, true,  ["resent", "accepted"],            Some(Accepted), CONF, &["invite", "invite", "welcome"]),
        (S,  Cd, false, ["resent", "accepted"],            Some(Accepted), CONF, &["invite", "invite", "welcome"]),
        (Cd, S,  true,  ["accepted", "already_accepted"],  Some(Accepted), CONF, &["invite", "welcome"]),
        (Cd, S,  false, ["accepted", "stale_event"],       Some(Accepted), CONF, &["invite", "welcome"]),
        (S,  Cn, true,  ["resent", not],                   Some(Sent),     FCP,  &["invite", "invite"]),
        (S,  Cn, false, ["resent", not],                   Some(Sent),     FCP,  &["invite", "invite"]),
        (Cn, S,  true,  [not, "resent"],                   Some(Sent),     FCP,  &["invite", "invite"]),
        (Cn, S,  false, [not, "resent"],                   Some(Sent),     FCP,  &["invite", "invite"]),
        (V,  Cd, true,  ["revoked", not],                  Some(Revoked),  NONE, &["invite"]),
        (V,  Cd, false, ["revoked", not],                  Some(Revoked),  NONE, &["invite"]),
        (Cd, V,  true,  ["accepted", "already_accepted"],  Some(Accepted), CONF, &["invite", "welcome"]),
        (Cd, V,  false, ["accepted", "stale_event"],       Some(Accepted), CONF, &["invite", "welcome"]),
        (V,  Cn, true,  ["revoked", not],                  Some(Revoked),  NONE, &["invite"]),
        (V,  Cn, false, ["revoked", not],                  Some(Revoked),  NONE, &["invite"]),
        (Cn, V,  true,  [not, "revoked"],                  Some(Revoked),  NONE, &["invite"]),
        (Cn, V,  false, [not, "revoked"],                  Some(Revoked),  NONE, &["invite"]),
        (Cd, Cn, true,  ["accepted", "already_accepted"],  Some(Accepted), CONF, &["invite", "welcome"]),
        (Cd, Cn, false, ["accepted", "already_accepted"],  Some(Accepted), CONF, &["invite", "welcome"]),
        (Cn, Cd, true,  [not, "accepted"],                 Some(Accepted), CONF, &["invite", "welcome"]),
        (Cn, Cd, false, [not, "accepted"],                 Some(Accepted), CONF, &["invite", "welcome"]),
    ];
    assert_eq!(table.len(), 40, "20 ordered pairs, two occurred_at orders each");
    let mut wrong = Vec::new();
    for (first, second, in_order, outcomes, status, user, mails) in table {
        let got = play(first, second, in_order).await;
        let want = Ending {
            outcomes: outcomes.map(str::to_string),
            status,
            user,
            mails: mails.iter().map(|s| s.to_string()).collect(),
        };
        if got != want {
            wrong.push(format!("{first:?} then {second:?} (in order: {in_order}):\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn the_final_status_does_not_depend_on_the_delivery_order() {
    // For each unordered pair of the sender's events and each order of occurrence, both delivery
    // orders end in the same status. (A real completion is left out: whether the person could
    // register depends on what was delivered before, not on the order of the messages.)
    use Ev::*;
    let events = [R, S, V, Cn];
    for (i, a) in events.iter().enumerate() {
        for b in &events[i + 1..] {
            // `a` occurred first in both: delivered a-then-b (in order) and b-then-a (reversed).
            let forward = play(*a, *b, true).await;
            let backward = play(*b, *a, false).await;
            assert_eq!(
                forward.status, backward.status,
                "{a:?} then {b:?}: {forward:?} vs {backward:?}"
            );
            let forward = play(*b, *a, true).await;
            let backward = play(*a, *b, false).await;
            assert_eq!(
                forward.status, backward.status,
                "{b:?} then {a:?}: {forward:?} vs {backward:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The outbox

#[tokio::test]
async fn without_a_publisher_nothing_is_queued() {
    let w = world_with(false);
    invited(&w, "jane@example.com").await;
    send(&w, &revoke("v1", "jane@example.com", None)).await;
    assert!(record(&w, "jane@example.com").outbox.is_empty());
    assert!(w.publisher.published().is_empty());
    assert_eq!(w.service.relay_unpublished(10).await.unwrap(), 0);
}

#[tokio::test]
async fn events_carry_their_contract_and_no_secret() {
    let w = world();
    invited(&w, "jane@example.com").await;
    let e = &w.publisher.published()[0];
    assert_eq!(e.body["version"], 1);
    assert_eq!(e.body["type"], "invite.sent");
    assert_eq!(e.body["id"], e.event_id.as_str());
    assert_eq!(e.body["occurred_at"], "2026-11-26T12:00:00Z");
    let data = &e.body["data"];
    assert_eq!(data["invite_id"], invite_id("jane@example.com").to_string());
    assert_eq!(data["email"], "jane@example.com");
    assert_eq!(data["status"], "sent");
    assert_eq!(data["generation"], 1);
    let password = newest_password(&w, "jane@example.com").unwrap();
    assert!(!e.body.to_string().contains(&password));
    assert!(
        record(&w, "jane@example.com").outbox.is_empty(),
        "published and removed"
    );
}

#[tokio::test]
async fn a_failed_publication_stays_in_the_outbox_until_the_relay_publishes_it() {
    let w = world();
    w.publisher
        .faults
        .fail_next("SendMessage", 1, ErrorKind::Unavailable);
    invited(&w, "jane@example.com").await;
    assert!(w.publisher.published().is_empty());
    let rec = record(&w, "jane@example.com");
    assert_eq!(rec.outbox.len(), 1, "kept for the relay");
    let pending_id = rec.outbox[0].event_id.clone();

    assert_eq!(w.service.relay_unpublished(10).await.unwrap(), 1);
    let published = w.publisher.published();
    assert_eq!(published.len(), 1);
    assert_eq!(
        published[0].event_id, pending_id,
        "the same id: consumers dedupe"
    );
    assert!(record(&w, "jane@example.com").outbox.is_empty());
    assert_eq!(w.service.relay_unpublished(10).await.unwrap(), 0);
}

#[tokio::test]
async fn the_relay_leaves_an_invite_alone_while_work_on_it_is_in_flight() {
    let w = world();
    w.publisher
        .faults
        .fail_next("SendMessage", 1, ErrorKind::Unavailable);
    invited(&w, "jane@example.com").await;
    let mut rec = record(&w, "jane@example.com");
    rec.lease = Some(Lease {
        token: "another-worker".into(),
        until: START + time::Duration::minutes(2),
    });
    rec.version += 1;
    w.store.save(&rec).await.unwrap();
    w.service.relay_unpublished(10).await.unwrap();
    assert!(w.publisher.published().is_empty());
    assert_eq!(
        record(&w, "jane@example.com").version,
        rec.version,
        "no write under a lease"
    );
    w.clock.advance(time::Duration::minutes(3));
    w.service.relay_unpublished(10).await.unwrap();
    assert_eq!(w.publisher.types(), vec!["invite.sent"]);
}

#[tokio::test]
async fn a_later_transition_publishes_what_an_earlier_one_left_behind_in_order() {
    let w = world();
    w.publisher
        .faults
        .fail_next("SendMessage", 1, ErrorKind::Throttled);
    invited(&w, "jane@example.com").await;
    send(&w, &revoke("v1", "jane@example.com", None)).await;
    assert_eq!(w.publisher.types(), vec!["invite.sent", "invite.revoked"]);
}

// ---------------------------------------------------------------------------------------------
// Cleanup

#[tokio::test]
async fn cleanup_expires_the_unaccepted_accepts_the_registered_and_a_second_run_does_nothing() {
    let w = world();
    for email in ["a@example.com", "b@example.com", "c@example.com"] {
        invited(&w, email).await;
    }
    // b registered but nobody reported it; c gets a resend later, so it is not due.
    assert!(person_registers(&w, "b@example.com"));
    w.clock.advance(time::Duration::days(5));
    send(&w, &resend("r-c", "c@example.com", None)).await;
    w.clock.advance(time::Duration::days(3));

    let report = cleanup(&w.service, &options()).await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(
        outcomes_of(&report),
        vec![
            ("a@example.com".to_string(), Outcome::Expired),
            ("b@example.com".to_string(), Outcome::Accepted),
        ]
    );
    assert_eq!(
        (
            report.summary.examined,
            report.summary.expired,
            report.summary.accepted
        ),
        (2, 1, 1)
    );
    assert_eq!(record(&w, "a@example.com").status, InviteStatus::Expired);
    assert!(
        w.dir.user("a@example.com").is_none(),
        "the unused user is deleted"
    );
    assert_eq!(record(&w, "b@example.com").status, InviteStatus::Accepted);
    assert_eq!(
        w.dir.user("b@example.com").unwrap().groups,
        vec!["employees"]
    );
    assert_eq!(
        mail_kinds(&w, "b@example.com"),
        vec!["invite", "welcome"],
        "cleanup sends the welcome, as a reported acceptance would"
    );
    assert_eq!(record(&w, "c@example.com").status, InviteStatus::Sent);
    assert!(w.dir.user("c@example.com").is_some());
    let history = &record(&w, "a@example.com").history;
    assert_eq!(history.last().unwrap().event_type, "cleanup");

    let before = serde_json::to_string(&w.store.all()).unwrap();
    let again = cleanup(&w.service, &options()).await;
    assert!(again.succeeded());
    assert_eq!(again.summary.examined, 0, "{again:?}");
    assert_eq!(serde_json::to_string(&w.store.all()).unwrap(), before);
}

#[tokio::test]
async fn a_dry_run_reports_what_would_happen_and_changes_nothing() {
    let w = world();
    invited(&w, "a@example.com").await;
    invited(&w, "b@example.com").await;
    invited(&w, "c@example.com").await;
    assert!(person_registers(&w, "b@example.com"));
    w.clock.advance(time::Duration::days(5));
    send(&w, &resend("r-c", "c@example.com", None)).await;
    w.clock.advance(time::Duration::days(3));
    w.publisher
        .faults
        .fail_next("SendMessage", 1, ErrorKind::Unavailable);
    send(&w, &revoke("v-c", "c@example.com", None)).await;
    // c is revoked with an unpublished event; a dry run does not relay it either.

    let store_before = serde_json::to_string(&w.store.all()).unwrap();
    let (mails, published, users) = (
        w.mailer.count(),
        w.publisher.published().len(),
        w.dir.user_count(),
    );
    let report = cleanup(
        &w.service,
        &CleanupOptions {
            dry_run: true,
            ..options()
        },
    )
    .await;
    assert!(report.dry_run && report.succeeded());
    assert_eq!(
        outcomes_of(&report),
        vec![
            ("a@example.com".to_string(), Outcome::WouldExpire),
            ("b@example.com".to_string(), Outcome::WouldAccept),
        ]
    );
    assert_eq!(serde_json::to_string(&w.store.all()).unwrap(), store_before);
    assert_eq!(
        (
            w.mailer.count(),
            w.publisher.published().len(),
            w.dir.user_count()
        ),
        (mails, published, users)
    );
}

#[tokio::test]
async fn cleanup_skips_an_invite_another_process_holds_and_takes_it_next_time() {
    let w = world();
    invited(&w, "jane@example.com").await;
    w.clock.advance(time::Duration::days(8));
    let mut rec = record(&w, "jane@example.com");
    rec.lease = Some(Lease {
        token: "the-other-cleanup".into(),
        until: w.clock_now() + time::Duration::minutes(2),
    });
    rec.version += 1;
    w.store.save(&rec).await.unwrap();

    let report = cleanup(&w.service, &options()).await;
    assert_eq!(report.summary.skipped_busy, 1, "{report:?}");
    assert!(report.succeeded(), "a busy invite is not a failure");
    assert_eq!(record(&w, "jane@example.com").status, InviteStatus::Sent);

    w.clock.advance(time::Duration::minutes(3));
    let report = cleanup(&w.service, &options()).await;
    assert_eq!(report.summary.expired, 1);
}

impl World {
    fn clock_now(&self) -> OffsetDateTime {
        use crate::ports::Clock;
        self.clock.now()
    }
}

#[tokio::test(start_paused = true)]
async fn two_cleanups_at_once_act_on_each_invite_once() {
    let w = world();
    let emails: Vec<String> = (0..8).map(|i| format!("p{i}@example.com")).collect();
    for e in &emails {
        invited(&w, e).await;
    }
    w.clock.advance(time::Duration::days(8));
    // Every call takes a while, so the two runs interleave at every step.
    w.store.faults.set_latency(Duration::from_millis(3));
    w.dir.faults.set_latency(Duration::from_millis(5));
    let opts = options();
    let (a, b) = tokio::join!(cleanup(&w.service, &opts), cleanup(&w.service, &opts));
    assert!(a.succeeded() && b.succeeded(), "{a:?}\n{b:?}");
    assert_eq!(
        a.summary.expired + b.summary.expired,
        emails.len(),
        "{a:?}\n{b:?}"
    );
    assert_eq!(a.summary.accepted + b.summary.accepted, 0);
    for e in &emails {
        let rec = record(&w, e);
        assert_eq!(rec.status, InviteStatus::Expired);
        let expirations = rec
            .history
            .iter()
            .filter(|h| h.to == InviteStatus::Expired && h.from != Some(InviteStatus::Expired))
            .count();
        assert_eq!(expirations, 1, "{e}");
    }
    // Two relays may publish one event twice (at least once); it keeps its id, so consumers
    // see one expiry per invite.
    let expired_events: std::collections::BTreeSet<String> = w
        .publisher
        .published()
        .into_iter()
        .filter(|e| e.event_type == "invite.expired")
        .map(|e| e.event_id)
        .collect();
    assert_eq!(expired_events.len(), emails.len());
}

#[tokio::test]
async fn cleanup_counts_failures_and_keeps_going() {
    let w = world();
    invited(&w, "a@example.com").await;
    invited(&w, "b@example.com").await;
    w.clock.advance(time::Duration::days(8));
    w.dir
        .faults
        .fail_next("AdminGetUser", 1, ErrorKind::Throttled);
    let report = cleanup(&w.service, &options()).await;
    assert_eq!(
        (
            report.summary.examined,
            report.summary.failed,
            report.summary.expired
        ),
        (2, 1, 1),
        "{report:?}"
    );
    assert!(!report.succeeded());
    let failed = report
        .invites
        .iter()
        .find(|l| l.outcome == Outcome::Failed)
        .unwrap();
    assert!(
        failed.detail.as_deref().unwrap().contains("cognito"),
        "{failed:?}"
    );
    // The next run finishes the job.
    let report = cleanup(&w.service, &options()).await;
    assert!(report.succeeded());
    assert_eq!(report.summary.expired, 1);
}

#[tokio::test]
async fn an_unreadable_index_fails_the_run() {
    let w = world();
    w.store.faults.fail_next("Query", 1, ErrorKind::Unavailable);
    let report = cleanup(&w.service, &options()).await;
    assert!(!report.succeeded());
    assert!(report.errors[0].contains("open-by-expiry"), "{report:?}");
}

#[tokio::test]
async fn cleanup_stops_at_the_limit_and_the_next_run_continues() {
    let w = world();
    for i in 0..5 {
        invited(&w, &format!("p{i}@example.com")).await;
    }
    w.clock.advance(time::Duration::days(8));
    let limited = CleanupOptions {
        limit: 3,
        ..options()
    };
    let first = cleanup(&w.service, &limited).await;
    assert_eq!((first.summary.expired, first.more), (3, true));
    let second = cleanup(&w.service, &limited).await;
    assert_eq!((second.summary.expired, second.more), (2, false));
}

#[tokio::test]
async fn cleanup_relays_events_left_in_outboxes() {
    let w = world();
    w.publisher
        .faults
        .fail_next("SendMessage", 1, ErrorKind::Unavailable);
    invited(&w, "jane@example.com").await;
    let report = cleanup(&w.service, &options()).await;
    assert_eq!(report.relayed, 1);
    assert_eq!(w.publisher.types(), vec!["invite.sent"]);
}

// ---------------------------------------------------------------------------------------------
// Reminders

fn reminding(days: u32) -> CleanupOptions {
    CleanupOptions {
        reminder_days: days,
        ..options()
    }
}

#[tokio::test]
async fn a_reminder_goes_out_once_per_generation_with_a_fresh_password() {
    let w = world();
    invited(&w, "jane@example.com").await;
    let first = newest_password(&w, "jane@example.com").unwrap();
    // Expires in 7 days; reminders 2 days before.
    w.clock.advance(time::Duration::days(4));
    let early = cleanup(&w.service, &reminding(2)).await;
    assert_eq!(
        early.summary.examined, 0,
        "not yet within 2 days: {early:?}"
    );

    w.clock.advance(time::Duration::days(2));
    let report = cleanup(&w.service, &reminding(2)).await;
    assert_eq!(report.summary.reminded, 1, "{report:?}");
    assert_eq!(
        mail_kinds(&w, "jane@example.com"),
        vec!["invite", "reminder"]
    );
    let second = newest_password(&w, "jane@example.com").unwrap();
    assert_ne!(first, second);
    assert_eq!(w.dir.user("jane@example.com").unwrap().password, second);
    let rec = record(&w, "jane@example.com");
    assert_eq!(rec.reminded_generation, Some(1));
    assert_eq!(rec.status, InviteStatus::Sent);
    assert_eq!(
        rec.expires_at,
        START + time::Duration::days(7),
        "a reminder does not extend"
    );
    assert_eq!(
        w.publisher.types(),
        vec!["invite.sent"],
        "a reminder is not a lifecycle event"
    );

    // Later runs in the window, and a resend that extends the expiry, send no second reminder.
    w.clock.advance(time::Duration::hours(12));
    assert_eq!(cleanup(&w.service, &reminding(2)).await.summary.reminded, 0);
    send(&w, &resend("r1", "jane@example.com", None)).await;
    w.clock.advance(time::Duration::days(6));
    assert_eq!(cleanup(&w.service, &reminding(2)).await.summary.reminded, 0);

    // A new generation gets its own reminder.
    w.clock.advance(time::Duration::days(2));
    assert_eq!(cleanup(&w.service, &reminding(2)).await.summary.expired, 1);
    send(&w, &request("e2", "jane@example.com", None)).await;
    assert_eq!(record(&w, "jane@example.com").generation, 2);
    w.clock.advance(time::Duration::days(6));
    assert_eq!(cleanup(&w.service, &reminding(2)).await.summary.reminded, 1);
}

#[tokio::test]
async fn reminders_are_off_by_default_and_a_dry_run_only_reports_them() {
    let w = world();
    invited(&w, "jane@example.com").await;
    w.clock.advance(time::Duration::days(6));
    assert_eq!(cleanup(&w.service, &options()).await.summary.examined, 0);
    let dry = cleanup(
        &w.service,
        &CleanupOptions {
            dry_run: true,
            ..reminding(2)
        },
    )
    .await;
    assert_eq!(dry.summary.would_remind, 1);
    assert_eq!(w.mailer.count(), 1);
    assert_eq!(record(&w, "jane@example.com").reminded_generation, None);
}

#[tokio::test(start_paused = true)]
async fn two_cleanups_at_once_send_one_reminder() {
    let w = world();
    invited(&w, "jane@example.com").await;
    w.clock.advance(time::Duration::days(6));
    w.store.faults.set_latency(Duration::from_millis(3));
    w.dir.faults.set_latency(Duration::from_millis(5));
    let opts = reminding(2);
    let (a, b) = tokio::join!(cleanup(&w.service, &opts), cleanup(&w.service, &opts));
    assert_eq!(a.summary.reminded + b.summary.reminded, 1, "{a:?}\n{b:?}");
    assert_eq!(
        mail_kinds(&w, "jane@example.com"),
        vec!["invite", "reminder"]
    );
}

#[tokio::test]
async fn a_reminder_that_finds_the_person_registered_records_the_acceptance() {
    let w = world();
    invited(&w, "jane@example.com").await;
    assert!(person_registers(&w, "jane@example.com"));
    w.clock.advance(time::Duration::days(6));
    let report = cleanup(&w.service, &reminding(2)).await;
    assert_eq!(report.summary.accepted, 1, "{report:?}");
    assert_eq!(
        mail_kinds(&w, "jane@example.com"),
        vec!["invite", "welcome"]
    );
    assert_eq!(
        w.dir.user("jane@example.com").unwrap().groups,
        vec!["employees"]
    );
}

// ---------------------------------------------------------------------------------------------
// Reconcile

pub(super) fn reconciling() -> ReconcileOptions {
    ReconcileOptions {
        limit: 1000,
        rate_per_second: 1000.0,
        dry_run: false,
    }
}

#[tokio::test]
async fn reconcile_records_acceptances_nobody_reported() {
    let w = world();
    for email in ["a@example.com", "b@example.com", "c@example.com"] {
        invited(&w, email).await;
    }
    assert!(person_registers(&w, "b@example.com"));

    let dry = reconcile(
        &w.service,
        &ReconcileOptions {
            dry_run: true,
            ..reconciling()
        },
    )
    .await;
    assert_eq!((dry.summary.would_accept, dry.summary.still_sent), (1, 2));
    assert_eq!(record(&w, "b@example.com").status, InviteStatus::Sent);

    let report = reconcile(&w.service, &reconciling()).await;
    assert!(report.succeeded());
    assert_eq!(
        (
            report.summary.examined,
            report.summary.accepted,
            report.summary.still_sent
        ),
        (3, 1, 2)
    );
    assert_eq!(report.invites.len(), 1, "only the changes are listed");
    assert_eq!(report.invites[0].email, "b@example.com");
    let rec = record(&w, "b@example.com");
    assert_eq!(rec.status, InviteStatus::Accepted);
    assert_eq!(rec.history.last().unwrap().event_type, "reconcile");
    assert_eq!(
        w.dir.user("b@example.com").unwrap().groups,
        vec!["employees"]
    );
    assert_eq!(mail_kinds(&w, "b@example.com"), vec!["invite", "welcome"]);
    assert!(w.publisher.types().contains(&"invite.accepted".to_string()));

    let again = reconcile(&w.service, &reconciling()).await;
    assert_eq!((again.summary.examined, again.summary.accepted), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn reconcile_keeps_to_its_rate() {
    let w = world();
    for i in 0..5 {
        invited(&w, &format!("p{i}@example.com")).await;
    }
    let start = tokio::time::Instant::now();
    let report = reconcile(
        &w.service,
        &ReconcileOptions {
            rate_per_second: 2.0,
            ..reconciling()
        },
    )
    .await;
    assert_eq!(report.summary.still_sent, 5);
    // One call at once, then one every half second.
    assert!(
        start.elapsed() >= Duration::from_millis(2000),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn reconcile_reports_failures_and_busy_invites() {
    let w = world();
    invited(&w, "a@example.com").await;
    invited(&w, "b@example.com").await;
    assert!(person_registers(&w, "a@example.com"));
    assert!(person_registers(&w, "b@example.com"));
    let mut rec = record(&w, "a@example.com");
    rec.lease = Some(Lease {
        token: "worker".into(),
        until: START + time::Duration::minutes(2),
    });
    rec.version += 1;
    w.store.save(&rec).await.unwrap();
    w.dir.faults.fail_nth(
        "AdminAddUserToGroup",
        1,
        ErrorKind::Rejected("group_not_found".into()),
    );
    let report = reconcile(&w.service, &reconciling()).await;
    assert_eq!(
        (report.summary.skipped_busy, report.summary.failed),
        (1, 1),
        "{report:?}"
    );
    assert!(!report.succeeded());
    assert_eq!(
        record(&w, "b@example.com").status,
        InviteStatus::Sent,
        "retried next run"
    );
}
