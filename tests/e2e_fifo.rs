//! A FIFO queue: one person's events are handled in order (group = normalised email), different
//! people in parallel.

mod support;

use invite_worker::config::Transport;
use invite_worker::domain::{EmailAddress, InviteId, InviteStatus};
use invite_worker::ports::InviteStore;
use support::*;

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_one_person_are_handled_in_order_on_a_fifo_queue() {
    require_stack();
    let mut env = bootstrapped_named("fifo", Transport::Ses, |s| {
        s.queue.name = format!("{}.fifo", unique("fifo"))
    })
    .await;
    env.settings.worker.concurrency = 8;
    assert!(
        env.settings.queue.url.ends_with(".fifo"),
        "{}",
        env.settings.queue.url
    );
    let c = components(&env).await;
    let sqs = aws_sdk_sqs::Client::new(&invite_worker::wiring::sdk_config().await);
    let people: Vec<String> = (0..3).map(|i| recipient(&format!("fifo{i}"))).collect();
    for email in &people {
        // request, then revoke: in order they end revoked; out of order the revoke would find
        // nothing to revoke and the invite would end sent.
        for (kind, data) in [
            (
                "invite.requested",
                serde_json::json!({"email": email, "attributes": {"family_name": "Doe"}}),
            ),
            (
                "invite.revoke",
                serde_json::json!({"email": email, "reason": "changed plans"}),
            ),
        ] {
            let id = unique("evt");
            let body =
                serde_json::json!({"version": 1, "type": kind, "id": id, "data": data}).to_string();
            sqs.send_message()
                .queue_url(&env.settings.queue.url)
                .message_body(body)
                .message_group_id(email)
                .message_deduplication_id(id)
                .send()
                .await
                .unwrap();
        }
    }
    let summary = drain(&c).await;
    assert_eq!(summary.dead_lettered, 0, "{summary:?}");
    for email in &people {
        let id = InviteId::for_email(
            &env.settings.cognito.user_pool_id,
            &EmailAddress::parse(email).unwrap(),
        );
        let rec = c.store.load(&id).await.unwrap().expect("record");
        assert_eq!(
            rec.status,
            InviteStatus::Revoked,
            "{email}: {:?}",
            rec.history
        );
        assert_eq!(rec.reason.as_deref(), Some("changed plans"));
    }
}
