//! The feedback handler over a scripted [`FeedbackTarget`]: what it does with ignorable,
//! unusable and usable messages, how a target's failure maps to a disposition, and what it
//! counts.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::*;
use crate::app::handle_error::HandleError;
use crate::app::handler::Handled;
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::observe::CircuitPolicy;

const BOUNCE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ses-events/bounce-permanent.sns.json"
));
const COMPLAINT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ses-events/complaint.raw.json"
));
const SUBSCRIPTION: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ses-events/subscription-confirmation.json"
));

/// Records every feedback it is given; answers with the scripted results in order, then
/// `Ok(recorded)`.
#[derive(Default)]
struct FakeTarget {
    calls: Mutex<Vec<MailFeedback>>,
    script: Mutex<VecDeque<Result<Handled, HandleError>>>,
}

impl FakeTarget {
    fn answering(results: Vec<Result<Handled, HandleError>>) -> Arc<Self> {
        Arc::new(Self {
            calls: Mutex::default(),
            script: Mutex::new(results.into()),
        })
    }

    fn calls(&self) -> Vec<MailFeedback> {
        self.calls.lock().unwrap().clone()
    }
}

fn handled(outcome: &'static str) -> Handled {
    Handled {
        outcome,
        invite_id: None,
        status: None,
        changed: true,
    }
}

#[async_trait]
impl FeedbackTarget for FakeTarget {
    async fn apply_feedback(&self, feedback: &MailFeedback) -> Result<Handled, HandleError> {
        self.calls.lock().unwrap().push(feedback.clone());
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Ok(handled("recorded")))
    }
}

fn handler(target: &Arc<FakeTarget>) -> (FeedbackHandler<FakeTarget>, Arc<Observer>) {
    let observer = Arc::new(Observer::new(CircuitPolicy::default(), &[]));
    (
        FeedbackHandler::new(target.clone(), observer.clone()),
        observer,
    )
}

fn message(body: &str) -> QueueMessage {
    QueueMessage {
        message_id: "m-1".into(),
        receipt_handle: "r-1".into(),
        body: body.into(),
        receive_count: 1,
        group_id: None,
        sent_at: None,
        attributes: Default::default(),
    }
}

#[tokio::test]
async fn an_ignorable_message_is_acked_without_reaching_the_target() {
    let target = FakeTarget::answering(vec![]);
    let (handler, observer) = handler(&target);
    assert_eq!(
        handler.handle(&message(SUBSCRIPTION)).await,
        Disposition::Ack { outcome: IGNORED }
    );
    assert!(target.calls().is_empty());
    assert!(observer.downstream().feedback().is_empty());
}

#[tokio::test]
async fn garbage_is_dead_lettered_naming_the_field() {
    let target = FakeTarget::answering(vec![]);
    let (handler, observer) = handler(&target);
    let body = BOUNCE.replace("7f0c6a1e-5b2d-4c8e-9a41-3d2f6b8c1e01", "inv-42");
    assert_eq!(
        handler.handle(&message(&body)).await,
        Disposition::DeadLetter {
            code: "invalid_feedback".into(),
            reason: "mail.tags.invite_id: is not a UUID".into(),
        }
    );
    assert_eq!(
        handler.handle(&message("{")).await,
        Disposition::DeadLetter {
            code: "invalid_feedback".into(),
            reason: "body: is not valid JSON (EOF while parsing an object at line 1 column 1)"
                .into(),
        }
    );
    assert!(target.calls().is_empty());
    assert!(observer.downstream().feedback().is_empty());
}

#[tokio::test]
async fn a_feedback_reaches_the_target_and_is_counted() {
    let target = FakeTarget::answering(vec![Ok(handled("undeliverable"))]);
    let (handler, observer) = handler(&target);
    assert_eq!(
        handler.handle(&message(BOUNCE)).await,
        Disposition::Ack {
            outcome: "undeliverable"
        }
    );
    let calls = target.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].invite_id.to_string(),
        "7f0c6a1e-5b2d-4c8e-9a41-3d2f6b8c1e01"
    );
    assert!(calls[0].kind.is_undeliverable());
    assert_eq!(
        observer.downstream().feedback(),
        [(("Bounce", "Permanent", "General"), 1)].into()
    );

    assert_eq!(
        handler.handle(&message(COMPLAINT)).await,
        Disposition::Ack {
            outcome: "recorded"
        }
    );
    assert_eq!(
        observer
            .downstream()
            .feedback()
            .get(&("Complaint", "", "abuse")),
        Some(&1)
    );
}

#[tokio::test]
async fn a_downstream_outage_is_retried_and_counted_only_once_it_settles() {
    let outage = DownstreamError::new(
        Service::DynamoDb,
        "UpdateItem",
        ErrorKind::Unavailable,
        "503",
    );
    let target = FakeTarget::answering(vec![
        Err(HandleError::Transient(outage)),
        Ok(handled("undeliverable")),
    ]);
    let (handler, observer) = handler(&target);
    match handler.handle(&message(BOUNCE)).await {
        Disposition::Retry { downstream, .. } => assert_eq!(downstream, Some(Service::DynamoDb)),
        other => panic!("expected a retry, got {other:?}"),
    }
    assert!(observer.downstream().feedback().is_empty());
    assert_eq!(
        handler.handle(&message(BOUNCE)).await,
        Disposition::Ack {
            outcome: "undeliverable"
        }
    );
    assert_eq!(target.calls().len(), 2);
    assert_eq!(observer.downstream().feedback().values().sum::<u64>(), 1);
}

#[tokio::test]
async fn a_target_error_maps_like_an_invite_event_error() {
    let corrupt = HandleError::Corrupt("stored invite x cannot be read: bad".into());
    let expected = corrupt.disposition();
    let target = FakeTarget::answering(vec![Err(corrupt)]);
    let (handler, _) = handler(&target);
    assert_eq!(handler.handle(&message(BOUNCE)).await, expected);
}

#[test]
fn metric_labels_carry_only_known_codes() {
    use crate::domain::feedback::BounceType;
    let bounce = |sub: &str| FeedbackKind::Bounce {
        bounce_type: BounceType::Transient,
        sub_type: sub.into(),
        diagnostic: Some("jane@example.org".into()),
    };
    assert_eq!(
        metric_labels(&bounce("MailboxFull")),
        ("Bounce", "Transient", "MailboxFull")
    );
    assert_eq!(
        metric_labels(&bounce("jane@example.org")),
        ("Bounce", "Transient", "unrecognised")
    );
    assert_eq!(
        metric_labels(&FeedbackKind::Complaint {
            feedback_type: None
        }),
        ("Complaint", "", "")
    );
    assert_eq!(
        metric_labels(&FeedbackKind::DeliveryDelay {
            delay_type: "MailboxFull".into()
        }),
        ("DeliveryDelay", "", "")
    );
}

/// Every fixture and some garbage through the real worker loop on the in-memory queue: the
/// feedback reaches the target (an outage retried, not dead-lettered), the ignorable messages
/// are acked, only the garbage is dead-lettered, on its first delivery, and nothing is left.
#[tokio::test(start_paused = true)]
async fn through_the_worker_loop_only_garbage_is_dead_lettered() {
    use crate::adapters::memory::queue::MemoryQueue;
    use crate::feedback::parse_tests::FIXTURES;
    use crate::ports::Queue;
    use crate::worker::{Worker, WorkerOptions};
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    let outage = DownstreamError::new(
        Service::Cognito,
        "AdminDeleteUser",
        ErrorKind::Throttled,
        "slow down",
    );
    let target = FakeTarget::answering(vec![Err(HandleError::Transient(outage))]);
    let (handler, observer) = handler(&target);
    let queue = Arc::new(MemoryQueue::standard());
    for body in FIXTURES {
        queue.push(body.to_string());
    }
    let garbage = [
        "",
        "{",
        r#"{"Type":"Notification","Message":"{\"eventType\":\"Bounce\",\"mail\":{\"tags\":{\"invite_id\":[\"x\"]}}}"}"#,
        r#"{"detail-type":"Email Bounced","source":"aws.ses","detail":{"eventType":"Bounce"}}"#,
    ];
    for body in garbage {
        queue.push(body.to_string());
    }
    let options = WorkerOptions {
        concurrency: 4,
        wait: Duration::from_secs(1),
        until_idle: Some(3),
        ..WorkerOptions::default()
    };
    let worker = Worker::new(queue.clone() as Arc<dyn Queue>, Arc::new(handler), options);
    let summary = worker.run(CancellationToken::new()).await;

    assert_eq!(summary.handler_panics, 0, "{summary:?}");
    assert!(queue.is_empty() && queue.in_flight_len() == 0);
    let dead = queue.dead_letters();
    let mut dead_bodies: Vec<&str> = dead.iter().map(|(m, _)| m.body.as_str()).collect();
    dead_bodies.sort();
    let mut want = garbage.to_vec();
    want.sort();
    assert_eq!(dead_bodies, want);
    for (_, why) in &dead {
        assert_eq!(why.reason_code, INVALID_FEEDBACK);
        assert_eq!(why.attempts, 1);
    }
    // 15 of the fixtures are feedback; the first call met the outage and was tried again.
    assert_eq!(target.calls().len(), 16);
    assert_eq!(observer.downstream().feedback().values().sum::<u64>(), 15);
}
