//! Cognito check-then-act races and user statuses, over the in-memory fakes: the person
//! registers between any two directory calls of an expiry, a revoke, a resend or a redelivered
//! request (injected with `MemoryDirectory::before_call`); an attempt that leaves a user disabled
//! is undone by the next one; and no user other than a `CONFIRMED`, enabled one gets groups or a
//! welcome email.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::lifecycle_tests::{
    completed, invited, mail_kinds, reconciling, record, request, resend, revoke, send, world,
};
use super::test_world::{World, START};
use crate::domain::{InviteStatus, Lease, UserStanding, UserStatus};
use crate::error::ErrorKind;
use crate::lifecycle::cleanup::{cleanup, CleanupOptions};
use crate::lifecycle::reconcile::reconcile;
use crate::ports::InviteStore;

const EMAIL: &str = "jane@example.com";
const CHOSEN: &str = "Chosen-by-Jane-42!";
/// More directory calls than any of the scenarios makes.
const MAX_CALLS: usize = 12;

fn cleanup_options() -> CleanupOptions {
    CleanupOptions {
        dry_run: false,
        limit: 1000,
        reminder_days: 0,
    }
}

/// Injects the person answering `NEW_PASSWORD_REQUIRED` (with the temporary password Cognito
/// holds for them at that moment) just before the `nth` directory call from now; the flag says
/// whether Cognito let them.
fn person_registers_before(w: &World, nth: usize) -> Arc<AtomicBool> {
    let registered = Arc::new(AtomicBool::new(false));
    let flag = registered.clone();
    w.dir.before_call(w.dir.calls().len() + nth, move |d| {
        if let Some(u) = d.user(EMAIL) {
            let ok = d.complete_registration(EMAIL, &u.password, CHOSEN).is_ok();
            flag.store(ok, Ordering::SeqCst);
        }
    });
    registered
}

/// The person's account is intact: registered, enabled, with the password they chose.
fn assert_account_intact(w: &World, context: &str) {
    let user = w
        .dir
        .user(EMAIL)
        .unwrap_or_else(|| panic!("{context}: the account was deleted"));
    assert_eq!(user.info.status, UserStatus::Confirmed, "{context}");
    assert!(
        user.info.enabled,
        "{context}: the account was left disabled"
    );
    assert_eq!(
        user.password, CHOSEN,
        "{context}: the chosen password was overwritten"
    );
}

/// The temporary password in the newest mail to the person.
fn mailed_password(w: &World) -> Option<String> {
    w.mailer.sent_to(EMAIL).iter().rev().find_map(|m| {
        m.text
            .lines()
            .find_map(|l| l.strip_prefix("Temporary password: "))
            .map(str::to_string)
    })
}

/// Runs `scenario` once with the person registering before each of its directory calls in
/// turn, and checks `outcome` (told whether the person got in); asserts both kinds of run
/// happened.
async fn at_every_call<F, Fut>(scenario: F, outcome: impl Fn(&World, bool, &str))
where
    F: Fn(World) -> Fut,
    Fut: std::future::Future<Output = World>,
{
    let (mut got_in, mut kept_out) = (0, 0);
    for nth in 1..=MAX_CALLS {
        let w = world();
        invited(&w, EMAIL).await;
        let before = w.dir.calls().len();
        let registered = person_registers_before(&w, nth);
        let w = scenario(w).await;
        let calls = w.dir.calls()[before..].join(",");
        let registered = registered.load(Ordering::SeqCst);
        let context = format!("person registering before call {nth} of [{calls}]");
        outcome(&w, registered, &context);
        if registered {
            got_in += 1;
        } else {
            kept_out += 1;
        }
    }
    assert!(got_in > 0 && kept_out > 0, "{got_in} {kept_out}");
}

#[tokio::test]
async fn cleanup_expiry_never_deletes_an_account_activated_during_it() {
    at_every_call(
        |w| async move {
            w.clock.advance(time::Duration::days(8));
            cleanup(&w.service, &cleanup_options()).await;
            w
        },
        |w, registered, context| {
            if registered {
                assert_account_intact(w, context);
                assert_eq!(record(w, EMAIL).status, InviteStatus::Accepted, "{context}");
            } else {
                assert!(w.dir.user(EMAIL).is_none(), "{context}: unused user kept");
                assert_eq!(record(w, EMAIL).status, InviteStatus::Expired, "{context}");
            }
        },
    )
    .await;
}

#[tokio::test]
async fn revoke_never_deletes_an_account_activated_during_it() {
    at_every_call(
        |w| async move {
            assert_eq!(send(&w, &revoke("v1", EMAIL, None)).await, "revoked");
            w
        },
        |w, registered, context| {
            assert_eq!(record(w, EMAIL).status, InviteStatus::Revoked, "{context}");
            if registered {
                assert_account_intact(w, context);
            } else {
                assert!(w.dir.user(EMAIL).is_none(), "{context}: unused user kept");
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_bounce_never_deletes_an_account_activated_during_it() {
    use crate::domain::feedback::{BounceType, FeedbackKind, MailFeedback};
    at_every_call(
        |w| async move {
            let bounce = MailFeedback {
                event_id: "ses:m1:Bounce:f1".into(),
                invite_id: super::lifecycle_tests::invite_id(EMAIL),
                generation: Some(1),
                ses_message_id: "m1".into(),
                occurred_at: START,
                kind: FeedbackKind::Bounce {
                    bounce_type: BounceType::Permanent,
                    sub_type: "General".into(),
                    diagnostic: None,
                },
            };
            w.service.apply_feedback(&bounce).await.expect("applied");
            w
        },
        |w, registered, context| {
            if registered {
                assert_account_intact(w, context);
                assert_eq!(record(w, EMAIL).status, InviteStatus::Accepted, "{context}");
            } else {
                assert!(w.dir.user(EMAIL).is_none(), "{context}: unused user kept");
                assert_eq!(
                    record(w, EMAIL).status,
                    InviteStatus::Undeliverable,
                    "{context}"
                );
            }
        },
    )
    .await;
}

/// After the rotation: either the person's own password, or an enabled never-used user whose
/// password is the one just mailed.
fn assert_rotated_or_untouched(w: &World, registered: bool, context: &str) {
    if registered {
        assert_account_intact(w, context);
        return;
    }
    let user = w.dir.user(EMAIL).expect("user");
    assert_eq!(
        user.info.status,
        UserStatus::ForceChangePassword,
        "{context}"
    );
    assert!(
        user.info.enabled,
        "{context}: the invitee was left disabled"
    );
    assert_eq!(
        Some(user.password),
        mailed_password(w),
        "{context}: the mailed password does not work"
    );
}

#[tokio::test]
async fn a_resend_never_overwrites_a_password_chosen_during_it() {
    at_every_call(
        |w| async move {
            send(&w, &resend("r1", EMAIL, None)).await;
            w
        },
        |w, registered, context| {
            assert_rotated_or_untouched(w, registered, context);
            let want = match registered {
                true => InviteStatus::Accepted,
                false => InviteStatus::Sent,
            };
            assert_eq!(record(w, EMAIL).status, want, "{context}");
        },
    )
    .await;
}

#[tokio::test]
async fn a_redelivered_request_never_overwrites_a_password_chosen_during_it() {
    at_every_call(
        |w| async move {
            // The first attempt sent the invitation, then crashed before its final write.
            let mut rec = record(&w, EMAIL);
            rec.status = InviteStatus::Pending;
            rec.lease = Some(Lease {
                token: "crashed".into(),
                until: START - time::Duration::minutes(1),
            });
            rec.version += 1;
            w.store.save(&rec).await.expect("save");
            send(&w, &request("req-jane-at-example.com", EMAIL, None)).await;
            w
        },
        |w, registered, context| {
            assert_rotated_or_untouched(w, registered, context);
            if !registered {
                assert_eq!(record(w, EMAIL).status, InviteStatus::Sent, "{context}");
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_user_left_disabled_by_a_failed_re_enable_is_re_enabled_by_the_next_attempt() {
    let w = world();
    invited(&w, EMAIL).await;
    // The revoke reads the user (1), the person registers, the revoke disables (2), reads
    // again (3), and cannot re-enable (4): the attempt fails and leaves its lease, run out, as
    // the mark of the hold.
    person_registers_before(&w, 2);
    w.dir
        .faults
        .fail_next("AdminEnableUser", 1, ErrorKind::Unavailable);
    let first = send(&w, &revoke("v1", EMAIL, None)).await;
    assert!(first.contains("Retry"), "{first}");
    let user = w.dir.user(EMAIL).expect("user");
    assert!(!user.info.enabled && user.info.status == UserStatus::Confirmed);
    let lease = record(&w, EMAIL).lease.expect("the lease marks the hold");
    assert!(
        lease.until <= crate::ports::Clock::now(w.clock.as_ref()),
        "the mark must not make the retry wait: {lease:?}"
    );

    // The retry, straight away (a live lease would make it wait and spend attempts), lifts
    // the hold, then keeps the registered user.
    assert_eq!(send(&w, &revoke("v1", EMAIL, None)).await, "revoked");
    assert_account_intact(&w, "after the redelivered revoke");
}

#[tokio::test]
async fn a_crash_while_a_registered_user_is_on_hold_is_undone_by_the_next_cleanup() {
    let w = world();
    invited(&w, EMAIL).await;
    let pw = mailed_password(&w).expect("mailed");
    w.dir
        .complete_registration(EMAIL, &pw, CHOSEN)
        .expect("registers");
    // A worker disabled the user (its first read said never used), then died.
    w.dir.set_status(EMAIL, UserStatus::Confirmed, false);
    let mut rec = record(&w, EMAIL);
    rec.lease = Some(Lease {
        token: "crashed".into(),
        until: START + time::Duration::minutes(1),
    });
    rec.version += 1;
    w.store.save(&rec).await.expect("save");

    w.clock.advance(time::Duration::days(8));
    cleanup(&w.service, &cleanup_options()).await;
    assert_account_intact(&w, "after cleanup");
    assert_eq!(record(&w, EMAIL).status, InviteStatus::Accepted);
}

// ---------------------------------------------------------------------------------------------
// User statuses: only CONFIRMED and enabled is an accepted invitee

fn not_accepted() -> Vec<(UserStatus, bool)> {
    let other = |s: &str| UserStatus::Other(s.into());
    vec![
        (UserStatus::Confirmed, false),
        (other("UNCONFIRMED"), true),
        (other("RESET_REQUIRED"), true),
        (other("EXTERNAL_PROVIDER"), true),
        (other("ARCHIVED"), true),
        (other("COMPROMISED"), true),
        (other("UNKNOWN"), true),
        (other("SOMETHING_NEW"), true),
    ]
}

/// The user is exactly as the test left it: not deleted, not re-enabled, in no group.
fn assert_untouched(w: &World, status: &UserStatus, enabled: bool, context: &str) {
    let user = w
        .dir
        .user(EMAIL)
        .unwrap_or_else(|| panic!("{context}: deleted"));
    assert_eq!(
        (&user.info.status, user.info.enabled),
        (status, enabled),
        "{context}"
    );
    assert!(
        user.groups.is_empty(),
        "{context}: joined {:?}",
        user.groups
    );
    assert_eq!(mail_kinds(w, EMAIL), ["invite"], "{context}: mailed");
}

#[tokio::test]
async fn no_status_but_confirmed_and_enabled_counts_as_accepted_on_events_and_reconcile() {
    for (status, enabled) in not_accepted() {
        let context = format!("{status:?} enabled={enabled}");
        let reason = UserStanding::of(&status, enabled).reason();
        let w = world();
        invited(&w, EMAIL).await;
        w.dir.set_status(EMAIL, status.clone(), enabled);

        let c = send(&w, &completed("c1", EMAIL, None)).await;
        assert_eq!(c, "registration_not_confirmed", "{context}");
        let report = reconcile(&w.service, &reconciling()).await;
        assert_eq!(report.summary.still_sent, 1, "{context}");
        assert_untouched(&w, &status, enabled, &context);

        // A resend cannot give this user a password: the invite fails, naming the status.
        assert_eq!(send(&w, &resend("r1", EMAIL, None)).await, "failed");
        let rec = record(&w, EMAIL);
        assert_eq!(
            (rec.status, rec.reason.as_deref()),
            (InviteStatus::Failed, Some(reason.as_str())),
            "{context}"
        );
        assert_untouched(&w, &status, enabled, &context);
    }
}

#[tokio::test]
async fn no_status_but_confirmed_and_enabled_counts_as_accepted_on_expiry_or_a_new_request() {
    for (status, enabled) in not_accepted() {
        let context = format!("{status:?} enabled={enabled}");
        let reason = UserStanding::of(&status, enabled).reason();
        let w = world();
        invited(&w, EMAIL).await;
        w.dir.set_status(EMAIL, status.clone(), enabled);

        w.clock.advance(time::Duration::days(8));
        cleanup(&w.service, &cleanup_options()).await;
        assert_eq!(record(&w, EMAIL).status, InviteStatus::Expired, "{context}");
        assert_untouched(&w, &status, enabled, &context);

        // A new request finds the user and may not use it.
        assert_eq!(send(&w, &request("q2", EMAIL, None)).await, "failed");
        let rec = record(&w, EMAIL);
        assert_eq!(rec.reason.as_deref(), Some(reason.as_str()), "{context}");
        assert_untouched(&w, &status, enabled, &context);
    }
}
