//! Where SES's sending events arrive: the SNS topic `<feedback.name>`, the queue `<feedback.name>`
//! subscribed to it (with a queue policy that lets the topic send, and SNS's envelope kept:
//! `RawMessageDelivery` off), and its dead-letter queue `<feedback.name>-dlq`.

use aws_sdk_sqs::types::QueueAttributeName;

use super::queues;
use super::report::{resource, BootstrapReport, Outcome};
use super::{error_code, BootstrapError, Clients};
use crate::config::{Settings, Transport};

/// What the configuration set's event destination publishes to, when bootstrap wired it.
pub(super) struct Topic {
    pub arn: String,
}

/// Ensures the topic, the queues and the subscription, and adds their rows to `report`.
pub(super) async fn ensure(
    clients: &Clients,
    settings: &Settings,
    report: &mut BootstrapReport,
) -> Result<Option<Topic>, BootstrapError> {
    let f = &settings.feedback;
    let skip = |report: &mut BootstrapReport, id: &str, why: &str| {
        for label in [resource::FEEDBACK_TOPIC, resource::FEEDBACK_QUEUE] {
            report.push(label, id, Outcome::Skipped, vec![why.to_string()]);
        }
    };
    if settings.email.transport == Transport::Smtp {
        skip(
            report,
            &f.name,
            "email.transport is smtp: SES sends no events",
        );
        return Ok(None);
    }
    let names = queues::QueueNames::from_setting(&f.name).map_err(|_| BootstrapError::Config {
        key: "feedback.name",
        reason: format!(
            "{:?}: queue and topic names allow letters, digits, '-' and '_'",
            f.name
        ),
    })?;
    if names.fifo {
        return Err(BootstrapError::Config {
            key: "feedback.name",
            reason: format!(
                "{:?}: SES publishes to a standard topic and queue; drop .fifo",
                f.name
            ),
        });
    }
    // A queue of another name is someone else's: used as it is, not wired to a topic. The one
    // bootstrap made (recorded in the state file, so configured on the next run) is checked
    // like a found one.
    if !f.queue_url.is_empty() && f.queue_url.rsplit('/').next() != Some(names.main.as_str()) {
        report.push(
            resource::FEEDBACK_QUEUE,
            &f.queue_url,
            Outcome::Configured,
            vec!["not named feedback.name: subscribe it to your topic yourself".into()],
        );
        return Ok(None);
    }
    let sqs = &clients.sqs;

    let (dlq_url, dlq_outcome) = if !f.dlq_url.is_empty() {
        (f.dlq_url.clone(), Outcome::Configured)
    } else {
        find_or_create(
            sqs,
            resource::FEEDBACK_DLQ,
            &names.dlq,
            queues::dlq_attributes(false),
        )
        .await?
    };
    let dlq_arn = queues::queue_arn(sqs, resource::FEEDBACK_DLQ, &dlq_url).await?;
    report.push_recorded(
        resource::FEEDBACK_DLQ,
        &dlq_url,
        dlq_outcome,
        vec![],
        ("feedback", "dlq_url"),
    );

    let topic_arn =
        sibling_arn(&dlq_arn, "sns", &f.name).ok_or_else(|| BootstrapError::Unusable {
            resource: format!("{} {dlq_url}", resource::FEEDBACK_DLQ),
            reason: format!("{dlq_arn:?} is not an SQS queue ARN"),
        })?;
    let (topic_arn, topic_outcome) = ensure_topic(&clients.sns, &f.name, &topic_arn).await?;
    report.push(resource::FEEDBACK_TOPIC, &topic_arn, topic_outcome, vec![]);

    let redrive = queues::redrive_policy(&dlq_arn, settings.queue.redrive_max_receive_count);
    let existing = if f.queue_url.is_empty() {
        queues::find(sqs, resource::FEEDBACK_QUEUE, &names.main)
            .await?
            .map(|url| (url, Outcome::Found))
    } else {
        Some((f.queue_url.clone(), Outcome::Configured))
    };
    let (url, outcome) = match existing {
        Some(found) => found,
        None => {
            // The policy names the queue's own ARN, known once it exists: set just after.
            let attributes = vec![
                (QueueAttributeName::RedrivePolicy, redrive),
                (
                    QueueAttributeName::MessageRetentionPeriod,
                    queues::DLQ_RETENTION_SECONDS.to_string(),
                ),
            ];
            let url =
                queues::create(sqs, resource::FEEDBACK_QUEUE, &names.main, attributes).await?;
            (url, Outcome::Created)
        }
    };
    let queue_arn = queues::queue_arn(sqs, resource::FEEDBACK_QUEUE, &url).await?;
    let mut notes = Vec::new();
    if ensure_queue_policy(sqs, &url, &queue_arn, &topic_arn).await? && outcome != Outcome::Created
    {
        notes.push("queue policy set: the topic may send to it".to_string());
    }
    report.push_recorded(
        resource::FEEDBACK_QUEUE,
        &url,
        outcome,
        notes,
        ("feedback", "queue_url"),
    );

    let (subscription, outcome) = ensure_subscription(&clients.sns, &topic_arn, &queue_arn).await?;
    report.push(
        resource::FEEDBACK_SUBSCRIPTION,
        subscription,
        outcome,
        vec![],
    );
    Ok(Some(Topic { arn: topic_arn }))
}

async fn find_or_create(
    sqs: &aws_sdk_sqs::Client,
    what: &str,
    name: &str,
    attributes: Vec<(QueueAttributeName, String)>,
) -> Result<(String, Outcome), BootstrapError> {
    match queues::find(sqs, what, name).await? {
        Some(url) => Ok((url, Outcome::Found)),
        None => Ok((
            queues::create(sqs, what, name, attributes).await?,
            Outcome::Created,
        )),
    }
}

/// `arn:aws:sqs:us-east-1:123456789012:q` -> `arn:aws:sns:us-east-1:123456789012:<name>`: the
/// topic lives next to the queue, in its account and region.
fn sibling_arn(queue_arn: &str, service: &str, name: &str) -> Option<String> {
    let parts: Vec<&str> = queue_arn.split(':').collect();
    match parts.as_slice() {
        ["arn", partition, "sqs", region, account, _] => Some(format!(
            "arn:{partition}:{service}:{region}:{account}:{name}"
        )),
        _ => None,
    }
}

/// The topic's ARN: found by `GetTopicAttributes` on the ARN it would have, else created.
async fn ensure_topic(
    sns: &aws_sdk_sns::Client,
    name: &str,
    arn: &str,
) -> Result<(String, Outcome), BootstrapError> {
    let what = format!("{} {name}", resource::FEEDBACK_TOPIC);
    match sns.get_topic_attributes().topic_arn(arn).send().await {
        Ok(_) => return Ok((arn.to_string(), Outcome::Found)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_not_found_exception())
                || error_code(&e) == Some("NotFound") => {}
        Err(e) => return Err(BootstrapError::aws(what, "GetTopicAttributes", e)),
    }
    let out = sns
        .create_topic()
        .name(name)
        .send()
        .await
        .map_err(|e| BootstrapError::aws(what.clone(), "CreateTopic", e))?;
    match out.topic_arn() {
        Some(arn) if !arn.is_empty() => Ok((arn.to_string(), Outcome::Created)),
        _ => Err(BootstrapError::Unusable {
            resource: what,
            reason: "CreateTopic returned no TopicArn".into(),
        }),
    }
}

/// The queue policy that lets the topic (and only it) send: SNS delivers as
/// `sns.amazonaws.com` with the topic as `aws:SourceArn`.
fn queue_policy(queue_arn: &str, topic_arn: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "FeedbackTopicSends",
            "Effect": "Allow",
            "Principal": { "Service": "sns.amazonaws.com" },
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": { "ArnEquals": { "aws:SourceArn": topic_arn } }
        }]
    })
    .to_string()
}

/// Sets the queue policy unless one already lets the topic send; `true` if it set it.
async fn ensure_queue_policy(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    queue_arn: &str,
    topic_arn: &str,
) -> Result<bool, BootstrapError> {
    let what = resource::FEEDBACK_QUEUE;
    let current = queues::attributes(sqs, what, url, &[QueueAttributeName::Policy]).await?;
    let allows = current
        .get(&QueueAttributeName::Policy)
        .is_some_and(|p| p.contains(topic_arn) && p.contains("sns.amazonaws.com"));
    if allows {
        return Ok(false);
    }
    sqs.set_queue_attributes()
        .queue_url(url)
        .attributes(
            QueueAttributeName::Policy,
            queue_policy(queue_arn, topic_arn),
        )
        .send()
        .await
        .map_err(|e| BootstrapError::aws(format!("{what} {url}"), "SetQueueAttributes", e))?;
    Ok(true)
}

/// The topic's SQS subscription of the queue: found among the topic's subscriptions, else made
/// (`RawMessageDelivery` left off: the worker reads SNS's envelope, and raw messages too).
async fn ensure_subscription(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    queue_arn: &str,
) -> Result<(String, Outcome), BootstrapError> {
    let what = format!("{} {topic_arn}", resource::FEEDBACK_SUBSCRIPTION);
    let mut next: Option<String> = None;
    loop {
        let page = sns
            .list_subscriptions_by_topic()
            .topic_arn(topic_arn)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| BootstrapError::aws(what.clone(), "ListSubscriptionsByTopic", e))?;
        let found = page.subscriptions().iter().find(|s| {
            s.protocol() == Some("sqs")
                && s.endpoint() == Some(queue_arn)
                && s.subscription_arn().is_some_and(|a| a.starts_with("arn:"))
        });
        if let Some(arn) = found.and_then(|s| s.subscription_arn()) {
            return Ok((arn.to_string(), Outcome::Found));
        }
        match page.next_token() {
            Some(token) if !token.is_empty() => next = Some(token.to_string()),
            _ => break,
        }
    }
    let out = sns
        .subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .return_subscription_arn(true)
        .send()
        .await
        .map_err(|e| BootstrapError::aws(what.clone(), "Subscribe", e))?;
    Ok((
        out.subscription_arn().unwrap_or_default().to_string(),
        Outcome::Created,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_configured_queue_of_another_name_is_left_alone() {
        use crate::bootstrap::test_support::{mocked, settings};
        let clients = Clients {
            sqs: mocked!(aws_sdk_sqs),
            dynamodb: mocked!(aws_sdk_dynamodb),
            cognito: mocked!(aws_sdk_cognitoidentityprovider),
            ses: mocked!(aws_sdk_sesv2),
            sns: mocked!(aws_sdk_sns),
        };
        let mut settings = settings();
        settings.email.transport = Transport::Ses;
        settings.feedback.queue_url = "http://sqs/1/ours-already".into();
        let mut report = BootstrapReport::new("s".into());

        let topic = ensure(&clients, &settings, &mut report).await.unwrap();

        assert!(topic.is_none());
        assert_eq!(report.rows.len(), 1);
        assert_eq!(report.rows[0].outcome, Outcome::Configured);
        assert!(report.state_entries().is_empty());
    }

    #[test]
    fn the_topic_lives_next_to_the_queue() {
        assert_eq!(
            sibling_arn("arn:aws:sqs:eu-west-1:123456789012:fb-dlq", "sns", "fb").as_deref(),
            Some("arn:aws:sns:eu-west-1:123456789012:fb")
        );
        assert_eq!(sibling_arn("not an arn", "sns", "fb"), None);
    }

    #[test]
    fn the_queue_policy_lets_only_the_topic_send() {
        let policy: serde_json::Value =
            serde_json::from_str(&queue_policy("arn:q", "arn:t")).unwrap();
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Principal"]["Service"], "sns.amazonaws.com");
        assert_eq!(statement["Action"], "sqs:SendMessage");
        assert_eq!(statement["Resource"], "arn:q");
        assert_eq!(
            statement["Condition"]["ArnEquals"]["aws:SourceArn"],
            "arn:t"
        );
    }
}
