//! `bootstrap` against the local stack (moto). `#[ignore]`d: scripts/test.sh runs them.
//! Every test uses resource names with a unique suffix: the server is shared, never reset.

mod support;

use std::path::Path;

use aws_sdk_cognitoidentityprovider::types::ExplicitAuthFlowsType;
use aws_sdk_sqs::types::QueueAttributeName;
use invite_worker::bootstrap::{bootstrap, resource, BootstrapReport, Outcome};
use invite_worker::config::{ConfigSources, Settings};

async fn sdk() -> aws_config::SdkConfig {
    support::stack_sdk().await
}

fn sources(state_file: &Path) -> ConfigSources {
    ConfigSources::defaults_and_state(state_file.to_path_buf())
}

/// `config/default.toml` with every name made unique, SES as the transport.
fn settings(state_file: &Path, suffix: &str) -> Settings {
    let mut s = Settings::load(&sources(state_file)).expect("config/default.toml loads");
    s.queue.name = format!("bt-{suffix}");
    s.table.name = format!("bt-{suffix}");
    s.cognito.user_pool_name = format!("bt-{suffix}");
    s.email.from = format!("Bootstrap Test <sender-{suffix}@bt-{suffix}.example>");
    s.email.transport = invite_worker::config::Transport::Ses;
    s.email.ses.configuration_set = Some(format!("bt-{suffix}"));
    s.feedback.name = format!("bt-{suffix}-feedback");
    s
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_string()
}

fn row<'a>(report: &'a BootstrapReport, resource: &str) -> &'a invite_worker::bootstrap::ReportRow {
    report
        .get(resource)
        .unwrap_or_else(|| panic!("no {resource} row in\n{report}"))
}

async fn queue_attributes(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> std::collections::HashMap<QueueAttributeName, String> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes()
        .cloned()
        .unwrap_or_default()
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test]
async fn creates_everything_then_finds_everything() {
    let sdk = sdk().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("bootstrap.toml");
    let suffix = unique();
    let mut settings = settings(&state, &suffix);
    settings.events.outbound_queue_url = "create".into();

    let first = bootstrap(&settings, &sdk, &state)
        .await
        .unwrap_or_else(|e| panic!("first run: {e}"));
    println!("{first}");
    // moto 5.2.5 has no SES v2 event destinations: bootstrap says so and goes on.
    let destination = row(&first, resource::EVENT_DESTINATION);
    assert_eq!(destination.outcome, Outcome::Skipped, "{first}");
    assert!(
        destination.notes[0].contains("no SES v2 event destinations"),
        "{first}"
    );
    for r in first.rows.iter().filter(|r| r.outcome != Outcome::Skipped) {
        assert_eq!(
            r.outcome,
            Outcome::Created,
            "first run should create {} {}\n{first}",
            r.resource,
            r.id
        );
    }
    let labels: Vec<_> = first.rows.iter().map(|r| r.resource).collect();
    assert_eq!(
        labels,
        [
            resource::DEAD_LETTER_QUEUE,
            resource::QUEUE,
            resource::EVENTS_QUEUE,
            resource::TABLE,
            resource::USER_POOL,
            resource::APP_CLIENT,
            resource::GROUP,
            resource::GROUP,
            resource::EMAIL_IDENTITY,
            resource::FEEDBACK_DLQ,
            resource::FEEDBACK_TOPIC,
            resource::FEEDBACK_QUEUE,
            resource::FEEDBACK_SUBSCRIPTION,
            resource::CONFIGURATION_SET,
            resource::EVENT_DESTINATION,
        ]
    );

    let second = bootstrap(&settings, &sdk, &state)
        .await
        .unwrap_or_else(|e| panic!("second run: {e}"));
    println!("{second}");
    assert_eq!(
        second.created().count(),
        0,
        "second run created something:\n{second}"
    );
    for r in second.rows.iter().filter(|r| r.outcome != Outcome::Skipped) {
        // The configuration set is named in the configuration: it is used as is.
        let expected = if r.resource == resource::CONFIGURATION_SET {
            Outcome::Configured
        } else {
            Outcome::Found
        };
        assert_eq!(r.outcome, expected, "{} {}\n{second}", r.resource, r.id);
        // Notes report changes, except the identity's verification status (moto never verifies).
        if r.resource != resource::EMAIL_IDENTITY {
            assert!(
                r.notes.is_empty(),
                "second run changed {}: {:?}",
                r.resource,
                r.notes
            );
        }
    }
    let ids =
        |report: &BootstrapReport| report.rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&second));

    // The state file records the urls and ids, and config layering picks them up.
    let recorded = std::fs::read_to_string(&state).unwrap();
    let reloaded = Settings::load(&sources(&state)).unwrap();
    assert_eq!(
        reloaded.queue.url,
        row(&first, resource::QUEUE).id,
        "{recorded}"
    );
    assert_eq!(
        reloaded.queue.dlq_url,
        row(&first, resource::DEAD_LETTER_QUEUE).id,
        "{recorded}"
    );
    assert_eq!(
        reloaded.events.outbound_queue_url,
        row(&first, resource::EVENTS_QUEUE).id,
        "{recorded}"
    );
    assert_eq!(
        reloaded.cognito.user_pool_id,
        row(&first, resource::USER_POOL).id,
        "{recorded}"
    );
    assert_eq!(
        reloaded.cognito.client_id,
        row(&first, resource::APP_CLIENT).id,
        "{recorded}"
    );
    assert!(
        reloaded.queue.url.ends_with(&format!("/bt-{suffix}")),
        "{recorded}"
    );
    assert!(
        reloaded
            .queue
            .dlq_url
            .ends_with(&format!("/bt-{suffix}-dlq")),
        "{recorded}"
    );

    assert_eq!(
        reloaded.feedback.queue_url,
        row(&first, resource::FEEDBACK_QUEUE).id,
        "{recorded}"
    );
    assert_eq!(
        reloaded.feedback.dlq_url,
        row(&first, resource::FEEDBACK_DLQ).id,
        "{recorded}"
    );
    assert_eq!(
        reloaded.email.ses.configuration_set.as_deref(),
        Some(format!("bt-{suffix}").as_str()),
        "{recorded}"
    );
    feedback_is_wired(&sdk, &first).await;

    // With the recorded ids in the configuration, a third run uses them as configured.
    let mut configured = settings.clone();
    configured.queue.url = reloaded.queue.url.clone();
    configured.queue.dlq_url = reloaded.queue.dlq_url.clone();
    configured.cognito.user_pool_id = reloaded.cognito.user_pool_id.clone();
    configured.cognito.client_id = reloaded.cognito.client_id.clone();
    configured.feedback.queue_url = reloaded.feedback.queue_url.clone();
    configured.feedback.dlq_url = reloaded.feedback.dlq_url.clone();
    let third = bootstrap(&configured, &sdk, &state)
        .await
        .unwrap_or_else(|e| panic!("third run: {e}"));
    for label in [
        resource::QUEUE,
        resource::DEAD_LETTER_QUEUE,
        resource::USER_POOL,
        resource::APP_CLIENT,
        resource::FEEDBACK_QUEUE,
        resource::FEEDBACK_DLQ,
    ] {
        assert_eq!(
            row(&third, label).outcome,
            Outcome::Configured,
            "{label}\n{third}"
        );
    }
    // The feedback queue bootstrap made is still wired to its topic.
    for label in [resource::FEEDBACK_TOPIC, resource::FEEDBACK_SUBSCRIPTION] {
        assert_eq!(
            row(&third, label).outcome,
            Outcome::Found,
            "{label}\n{third}"
        );
    }
    assert!(
        row(&third, resource::FEEDBACK_QUEUE).notes.is_empty(),
        "{third}"
    );
    assert_eq!(third.created().count(), 0, "{third}");

    // The main queue is wired to the DLQ.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let main = queue_attributes(&sqs, &reloaded.queue.url).await;
    let dlq = queue_attributes(&sqs, &reloaded.queue.dlq_url).await;
    let policy: serde_json::Value = serde_json::from_str(
        main.get(&QueueAttributeName::RedrivePolicy)
            .expect("a redrive policy"),
    )
    .unwrap();
    assert_eq!(
        policy["deadLetterTargetArn"].as_str(),
        dlq.get(&QueueAttributeName::QueueArn).map(String::as_str)
    );
    assert_eq!(
        policy["maxReceiveCount"].to_string().trim_matches('"'),
        settings.queue.redrive_max_receive_count.to_string()
    );
    assert_eq!(
        main.get(&QueueAttributeName::VisibilityTimeout)
            .map(String::as_str),
        Some("60")
    );
    assert_eq!(
        main.get(&QueueAttributeName::ReceiveMessageWaitTimeSeconds)
            .map(String::as_str),
        Some("20")
    );
    assert_eq!(
        dlq.get(&QueueAttributeName::MessageRetentionPeriod)
            .map(String::as_str),
        Some("1209600")
    );

    // The table has its three indexes and TTL.
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = ddb
        .describe_table()
        .table_name(&settings.table.name)
        .send()
        .await
        .unwrap();
    let table = table.table().expect("a table description");
    let mut indexes: Vec<_> = table
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["by-status", "open-by-expiry", "unpublished"]);
    let ttl = ddb
        .describe_time_to_live()
        .table_name(&settings.table.name)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().expect("a TTL description");
    assert_eq!(
        (
            ttl.attribute_name(),
            ttl.time_to_live_status().map(|s| s.as_str())
        ),
        (Some("ttl"), Some("ENABLED"))
    );

    // The pool has the reference schema; the app client allows password sign-in; the groups exist.
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(&sdk);
    let pool = cognito
        .describe_user_pool()
        .user_pool_id(&reloaded.cognito.user_pool_id)
        .send()
        .await
        .unwrap();
    let pool = pool.user_pool().expect("a pool");
    let attributes: Vec<_> = pool
        .schema_attributes()
        .iter()
        .filter_map(|a| a.name())
        .collect();
    assert!(
        attributes.contains(&"custom:test_attribute1"),
        "{attributes:?}"
    );
    assert!(attributes.contains(&"family_name"), "{attributes:?}");
    let client = cognito
        .describe_user_pool_client()
        .user_pool_id(&reloaded.cognito.user_pool_id)
        .client_id(&reloaded.cognito.client_id)
        .send()
        .await
        .unwrap();
    let client = client.user_pool_client().expect("a client");
    assert!(
        client
            .explicit_auth_flows()
            .contains(&ExplicitAuthFlowsType::AllowUserPasswordAuth),
        "{:?}",
        client.explicit_auth_flows()
    );
    assert!(client.client_secret().is_none());
    for group in ["employees", "contractors"] {
        cognito
            .get_group()
            .user_pool_id(&reloaded.cognito.user_pool_id)
            .group_name(group)
            .send()
            .await
            .unwrap_or_else(|e| panic!("group {group}: {e:?}"));
    }
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test]
async fn uses_a_configured_queue_and_creates_only_the_rest() {
    let sdk = sdk().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("bootstrap.toml");
    let suffix = unique();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let existing = sqs
        .create_queue()
        .queue_name(format!("bt-{suffix}-existing"))
        .send()
        .await
        .unwrap();
    let existing_url = existing.queue_url().expect("a queue url").to_string();
    let mut settings = settings(&state, &suffix);
    settings.queue.url = existing_url.clone();

    let report = bootstrap(&settings, &sdk, &state)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{report}");

    let main = row(&report, resource::QUEUE);
    assert_eq!(
        (main.id.as_str(), main.outcome),
        (existing_url.as_str(), Outcome::Configured)
    );
    assert_eq!(main.notes, ["redrive policy added"]);
    for label in [
        resource::DEAD_LETTER_QUEUE,
        resource::TABLE,
        resource::USER_POOL,
        resource::APP_CLIENT,
        resource::EMAIL_IDENTITY,
    ] {
        assert_eq!(
            row(&report, label).outcome,
            Outcome::Created,
            "{label}\n{report}"
        );
    }
    assert!(
        report.get(resource::EVENTS_QUEUE).is_none(),
        "no events queue unless asked for"
    );
    // No queue was created under queue.name: the configured one is used.
    let by_name = sqs
        .get_queue_url()
        .queue_name(format!("bt-{suffix}"))
        .send()
        .await;
    assert!(by_name.is_err(), "bootstrap created a second main queue");

    let attributes = queue_attributes(&sqs, &existing_url).await;
    let policy = attributes
        .get(&QueueAttributeName::RedrivePolicy)
        .expect("the redrive policy was added");
    assert!(policy.contains(&format!("bt-{suffix}-dlq")), "{policy}");

    // A configured URL is not written to the state file; what was created is.
    let reloaded = Settings::load(&sources(&state)).unwrap();
    assert_eq!(reloaded.queue.url, "", "configured values are not recorded");
    assert_eq!(
        reloaded.queue.dlq_url,
        row(&report, resource::DEAD_LETTER_QUEUE).id
    );
    assert_eq!(
        reloaded.cognito.user_pool_id,
        row(&report, resource::USER_POOL).id
    );

    // Run again: the redrive policy is there now, nothing is created or changed.
    let again = bootstrap(&settings, &sdk, &state)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.created().count(), 0, "{again}");
    assert!(row(&again, resource::QUEUE).notes.is_empty(), "{again}");
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test]
async fn fifo_queue_names_give_fifo_queues() {
    let sdk = sdk().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("bootstrap.toml");
    let suffix = unique();
    let mut settings = settings(&state, &suffix);
    settings.queue.name = format!("bt-{suffix}.fifo");
    settings.email.transport = invite_worker::config::Transport::Smtp;

    let report = bootstrap(&settings, &sdk, &state)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{report}");

    assert_eq!(
        row(&report, resource::EMAIL_IDENTITY).outcome,
        Outcome::Skipped
    );
    let main = &row(&report, resource::QUEUE).id;
    let dlq = &row(&report, resource::DEAD_LETTER_QUEUE).id;
    assert!(main.ends_with(&format!("/bt-{suffix}.fifo")), "{main}");
    assert!(dlq.ends_with(&format!("/bt-{suffix}-dlq.fifo")), "{dlq}");
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    for url in [main, dlq] {
        let attributes = queue_attributes(&sqs, url).await;
        assert_eq!(
            attributes
                .get(&QueueAttributeName::FifoQueue)
                .map(String::as_str),
            Some("true"),
            "{url}"
        );
    }
    assert!(queue_attributes(&sqs, main)
        .await
        .contains_key(&QueueAttributeName::RedrivePolicy));
}

/// The feedback queue has its redrive policy and a policy letting the topic send, the topic has
/// the queue's SQS subscription, and a message published to the topic arrives on the queue in
/// SNS's envelope.
async fn feedback_is_wired(sdk: &aws_config::SdkConfig, report: &BootstrapReport) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let sns = aws_sdk_sns::Client::new(sdk);
    let queue_url = &row(report, resource::FEEDBACK_QUEUE).id;
    let dlq_url = &row(report, resource::FEEDBACK_DLQ).id;
    let topic_arn = &row(report, resource::FEEDBACK_TOPIC).id;
    let queue = queue_attributes(&sqs, queue_url).await;
    let dlq = queue_attributes(&sqs, dlq_url).await;
    let queue_arn = queue.get(&QueueAttributeName::QueueArn).expect("an ARN");
    let redrive = queue
        .get(&QueueAttributeName::RedrivePolicy)
        .expect("a redrive policy");
    assert!(
        redrive.contains(dlq.get(&QueueAttributeName::QueueArn).expect("an ARN")),
        "{redrive}"
    );
    let policy = queue.get(&QueueAttributeName::Policy).expect("a policy");
    assert!(
        policy.contains(topic_arn) && policy.contains("sns.amazonaws.com"),
        "{policy}"
    );
    let subscriptions = sns
        .list_subscriptions_by_topic()
        .topic_arn(topic_arn)
        .send()
        .await
        .expect("ListSubscriptionsByTopic");
    let subscription = subscriptions
        .subscriptions()
        .iter()
        .find(|s| s.endpoint() == Some(queue_arn.as_str()))
        .expect("the queue is subscribed");
    assert_eq!(subscription.protocol(), Some("sqs"));
    assert_eq!(
        subscription.subscription_arn(),
        Some(row(report, resource::FEEDBACK_SUBSCRIPTION).id.as_str())
    );

    sns.publish()
        .topic_arn(topic_arn)
        .message(r#"{"eventType":"Delivery"}"#)
        .send()
        .await
        .expect("Publish");
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .wait_time_seconds(2)
        .send()
        .await
        .expect("ReceiveMessage");
    let body = received
        .messages()
        .first()
        .and_then(|m| m.body())
        .expect("the published message arrives");
    let envelope: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(envelope["Type"], "Notification", "{body}");
    assert_eq!(envelope["Message"], r#"{"eventType":"Delivery"}"#, "{body}");
}
