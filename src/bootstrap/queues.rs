//! The inbound queue, its dead-letter queue (wired with a redrive policy) and, on request, the
//! outbound lifecycle-events queue.

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::Client;

use super::report::{resource, BootstrapReport, Outcome};
use super::{error_code, BootstrapError};
use crate::config::Settings;

/// Fourteen days, the longest SQS keeps a message: time to notice and redrive dead letters.
pub(super) const DLQ_RETENTION_SECONDS: u32 = 14 * 24 * 60 * 60;
/// Long polling at its maximum, so an idle worker costs one call per 20 seconds.
const RECEIVE_WAIT_SECONDS: u32 = 20;
/// `events.outbound_queue_url = "create"` asks bootstrap to create the events queue.
pub(super) const CREATE_EVENTS_QUEUE: &str = "create";
/// Queue names: letters, digits, `-` and `_`, at most 80 characters including `.fifo`.
const MAX_QUEUE_NAME: usize = 80;

/// The names bootstrap gives the queues, derived from `queue.name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct QueueNames {
    pub main: String,
    pub dlq: String,
    /// Always a standard queue: publishers need no message group to write to it.
    pub events: String,
    pub fifo: bool,
}

impl QueueNames {
    /// `invite-events` -> `invite-events-dlq`, `invite-events-events`;
    /// `invite-events.fifo` -> `invite-events-dlq.fifo`, `invite-events-events`.
    pub fn from_setting(name: &str) -> Result<Self, BootstrapError> {
        let bad = |reason: String| BootstrapError::Config {
            key: "queue.name",
            reason,
        };
        let (base, fifo) = match name.strip_suffix(".fifo") {
            Some(base) => (base, true),
            None => (name, false),
        };
        if base.is_empty() {
            return Err(bad("is empty".into()));
        }
        if let Some(c) = base
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(bad(format!("{name:?} has {c:?}; queue names allow letters, digits, '-' and '_' (and a final .fifo)")));
        }
        let suffix = if fifo { ".fifo" } else { "" };
        let names = Self {
            main: name.to_string(),
            dlq: format!("{base}-dlq{suffix}"),
            events: format!("{base}-events"),
            fifo,
        };
        let longest = names.dlq.len().max(names.events.len());
        if longest > MAX_QUEUE_NAME {
            return Err(bad(format!("{name:?} is too long: the derived queue names must fit in {MAX_QUEUE_NAME} characters")));
        }
        Ok(names)
    }
}

/// Ensures the queues and adds their rows to `report`.
pub(super) async fn ensure(
    sqs: &Client,
    settings: &Settings,
    report: &mut BootstrapReport,
) -> Result<(), BootstrapError> {
    let q = &settings.queue;
    let names = QueueNames::from_setting(&q.name)?;

    // The main queue first, when it exists: its redrive policy may already name a DLQ.
    let main = if !q.url.is_empty() {
        Some((q.url.clone(), Outcome::Configured))
    } else {
        find(sqs, resource::QUEUE, &names.main)
            .await?
            .map(|url| (url, Outcome::Found))
    };
    let existing_target = match &main {
        Some((url, _)) => redrive_target(
            &attributes(
                sqs,
                resource::QUEUE,
                url,
                &[QueueAttributeName::RedrivePolicy],
            )
            .await?,
        ),
        None => None,
    };

    let mut dlq_notes = Vec::new();
    let (dlq_url, dlq_outcome) = if !q.dlq_url.is_empty() {
        (q.dlq_url.clone(), Outcome::Configured)
    } else if let Some(arn) = &existing_target {
        if parse_queue_arn(arn).map(|(_, name)| name) != Some(names.dlq.as_str()) {
            dlq_notes.push("named by the queue's redrive policy".to_string());
        }
        (url_for_arn(sqs, arn).await?, Outcome::Found)
    } else if let Some(url) = find(sqs, resource::DEAD_LETTER_QUEUE, &names.dlq).await? {
        (url, Outcome::Found)
    } else {
        (
            create(
                sqs,
                resource::DEAD_LETTER_QUEUE,
                &names.dlq,
                dlq_attributes(names.fifo),
            )
            .await?,
            Outcome::Created,
        )
    };
    let dlq_arn = queue_arn(sqs, resource::DEAD_LETTER_QUEUE, &dlq_url).await?;
    let policy = redrive_policy(&dlq_arn, q.redrive_max_receive_count);

    let mut main_notes = Vec::new();
    let (main_url, main_outcome) = match main {
        None => {
            let attributes = main_attributes(names.fifo, q.visibility_timeout_seconds, policy);
            (
                create(sqs, resource::QUEUE, &names.main, attributes).await?,
                Outcome::Created,
            )
        }
        Some((url, outcome)) => {
            match existing_target {
                None => {
                    sqs.set_queue_attributes()
                        .queue_url(&url)
                        .attributes(QueueAttributeName::RedrivePolicy, policy)
                        .send()
                        .await
                        .map_err(|e| {
                            BootstrapError::aws(
                                format!("{} {url}", resource::QUEUE),
                                "SetQueueAttributes",
                                e,
                            )
                        })?;
                    main_notes.push("redrive policy added".to_string());
                }
                Some(target) if target != dlq_arn => {
                    main_notes.push(format!(
                        "its redrive policy names {target}, not the dead-letter queue; left as is"
                    ));
                }
                Some(_) => {}
            }
            (url, outcome)
        }
    };

    report.push_recorded(
        resource::DEAD_LETTER_QUEUE,
        dlq_url,
        dlq_outcome,
        dlq_notes,
        ("queue", "dlq_url"),
    );
    report.push_recorded(
        resource::QUEUE,
        main_url,
        main_outcome,
        main_notes,
        ("queue", "url"),
    );

    match settings.events.outbound_queue_url.as_str() {
        "" => {}
        CREATE_EVENTS_QUEUE => {
            let (url, outcome) = match find(sqs, resource::EVENTS_QUEUE, &names.events).await? {
                Some(url) => (url, Outcome::Found),
                None => (
                    create(
                        sqs,
                        resource::EVENTS_QUEUE,
                        &names.events,
                        events_attributes(),
                    )
                    .await?,
                    Outcome::Created,
                ),
            };
            report.push_recorded(
                resource::EVENTS_QUEUE,
                url,
                outcome,
                vec![],
                ("events", "outbound_queue_url"),
            );
        }
        url => report.push(resource::EVENTS_QUEUE, url, Outcome::Configured, vec![]),
    }
    Ok(())
}

/// The queue's URL, or `None` if there is no queue by that name.
pub(super) async fn find(
    sqs: &Client,
    what: &str,
    name: &str,
) -> Result<Option<String>, BootstrapError> {
    find_owned(sqs, what, name, None).await
}

async fn find_owned(
    sqs: &Client,
    what: &str,
    name: &str,
    owner: Option<&str>,
) -> Result<Option<String>, BootstrapError> {
    match sqs
        .get_queue_url()
        .queue_name(name)
        .set_queue_owner_aws_account_id(owner.map(str::to_string))
        .send()
        .await
    {
        Ok(out) => match out.queue_url() {
            Some(url) if !url.is_empty() => Ok(Some(url.to_string())),
            _ => Err(BootstrapError::Unusable {
                resource: format!("{what} {name}"),
                reason: "GetQueueUrl returned no URL".into(),
            }),
        },
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_queue_does_not_exist())
                || is_missing_queue(error_code(&e)) =>
        {
            Ok(None)
        }
        Err(e) => Err(BootstrapError::aws(
            format!("{what} {name}"),
            "GetQueueUrl",
            e,
        )),
    }
}

/// Older (query protocol) and emulated endpoints name a missing queue differently.
fn is_missing_queue(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue")
    )
}

pub(super) async fn create(
    sqs: &Client,
    what: &str,
    name: &str,
    attributes: Vec<(QueueAttributeName, String)>,
) -> Result<String, BootstrapError> {
    let mut request = sqs.create_queue().queue_name(name);
    for (key, value) in attributes {
        request = request.attributes(key, value);
    }
    let out = request
        .send()
        .await
        .map_err(|e| BootstrapError::aws(format!("{what} {name}"), "CreateQueue", e))?;
    match out.queue_url() {
        Some(url) if !url.is_empty() => Ok(url.to_string()),
        _ => Err(BootstrapError::Unusable {
            resource: format!("{what} {name}"),
            reason: "CreateQueue returned no URL".into(),
        }),
    }
}

pub(super) async fn attributes(
    sqs: &Client,
    what: &str,
    url: &str,
    names: &[QueueAttributeName],
) -> Result<HashMap<QueueAttributeName, String>, BootstrapError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .set_attribute_names(Some(names.to_vec()))
        .send()
        .await
        .map_err(|e| BootstrapError::aws(format!("{what} {url}"), "GetQueueAttributes", e))?;
    Ok(out.attributes().cloned().unwrap_or_default())
}

pub(super) async fn queue_arn(
    sqs: &Client,
    what: &str,
    url: &str,
) -> Result<String, BootstrapError> {
    let mut attrs = attributes(sqs, what, url, &[QueueAttributeName::QueueArn]).await?;
    attrs
        .remove(&QueueAttributeName::QueueArn)
        .filter(|arn| !arn.is_empty())
        .ok_or_else(|| BootstrapError::Unusable {
            resource: format!("{what} {url}"),
            reason: "GetQueueAttributes returned no QueueArn".into(),
        })
}

/// The URL of the queue an ARN names (`arn:aws:sqs:<region>:<account>:<name>`).
async fn url_for_arn(sqs: &Client, arn: &str) -> Result<String, BootstrapError> {
    let what = resource::DEAD_LETTER_QUEUE;
    let (account, name) = parse_queue_arn(arn).ok_or_else(|| BootstrapError::Unusable {
        resource: format!("{} redrive policy", resource::QUEUE),
        reason: format!("deadLetterTargetArn {arn:?} is not an SQS queue ARN"),
    })?;
    find_owned(sqs, what, name, Some(account))
        .await?
        .ok_or_else(|| BootstrapError::Unusable {
            resource: format!("{what} {arn}"),
            reason: "the queue's redrive policy names a queue that does not exist".into(),
        })
}

/// `(account, name)` from `arn:<partition>:sqs:<region>:<account>:<name>`.
pub(super) fn parse_queue_arn(arn: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "sqs", _, account, name] if !account.is_empty() && !name.is_empty() => {
            Some((account, name))
        }
        _ => None,
    }
}

/// The dead-letter target of an existing redrive policy; `None` when there is none (or it is
/// unreadable, in which case bootstrap writes a proper one).
fn redrive_target(attributes: &HashMap<QueueAttributeName, String>) -> Option<String> {
    let policy = attributes.get(&QueueAttributeName::RedrivePolicy)?;
    let value: serde_json::Value = serde_json::from_str(policy).ok()?;
    value
        .get("deadLetterTargetArn")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub(super) fn redrive_policy(dlq_arn: &str, max_receive_count: u32) -> String {
    serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count })
        .to_string()
}

fn fifo_attributes(fifo: bool) -> Vec<(QueueAttributeName, String)> {
    if fifo {
        vec![
            (QueueAttributeName::FifoQueue, "true".into()),
            (
                QueueAttributeName::ContentBasedDeduplication,
                "false".into(),
            ),
        ]
    } else {
        Vec::new()
    }
}

pub(super) fn dlq_attributes(fifo: bool) -> Vec<(QueueAttributeName, String)> {
    let mut attributes = fifo_attributes(fifo);
    attributes.push((
        QueueAttributeName::MessageRetentionPeriod,
        DLQ_RETENTION_SECONDS.to_string(),
    ));
    attributes
}

fn main_attributes(
    fifo: bool,
    visibility_timeout_seconds: u64,
    redrive_policy: String,
) -> Vec<(QueueAttributeName, String)> {
    let mut attributes = fifo_attributes(fifo);
    attributes.push((
        QueueAttributeName::VisibilityTimeout,
        visibility_timeout_seconds.to_string(),
    ));
    attributes.push((
        QueueAttributeName::ReceiveMessageWaitTimeSeconds,
        RECEIVE_WAIT_SECONDS.to_string(),
    ));
    attributes.push((QueueAttributeName::RedrivePolicy, redrive_policy));
    attributes
}

fn events_attributes() -> Vec<(QueueAttributeName, String)> {
    vec![(
        QueueAttributeName::MessageRetentionPeriod,
        DLQ_RETENTION_SECONDS.to_string(),
    )]
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::operation::create_queue::CreateQueueOutput;
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
    use aws_sdk_sqs::operation::get_queue_url::{GetQueueUrlError, GetQueueUrlOutput};
    use aws_sdk_sqs::operation::set_queue_attributes::SetQueueAttributesOutput;
    use aws_sdk_sqs::types::error::QueueDoesNotExist;
    use aws_smithy_mocks::mock;

    use super::*;
    use crate::bootstrap::test_support::{mocked, settings};

    #[test]
    fn derives_queue_names() {
        let standard = QueueNames::from_setting("invite-events").unwrap();
        assert_eq!(
            (
                standard.dlq.as_str(),
                standard.events.as_str(),
                standard.fifo
            ),
            ("invite-events-dlq", "invite-events-events", false)
        );
        let fifo = QueueNames::from_setting("invite-events.fifo").unwrap();
        assert_eq!(
            (
                fifo.main.as_str(),
                fifo.dlq.as_str(),
                fifo.events.as_str(),
                fifo.fifo
            ),
            (
                "invite-events.fifo",
                "invite-events-dlq.fifo",
                "invite-events-events",
                true
            )
        );
    }

    #[test]
    fn rejects_bad_queue_names_naming_the_key() {
        for bad in ["", ".fifo", "invite events", "a.b", &"x".repeat(80)] {
            let err = QueueNames::from_setting(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("queue.name: "),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn reads_and_writes_redrive_policies() {
        let policy = redrive_policy("arn:aws:sqs:us-east-1:123456789012:q-dlq", 20);
        let value: serde_json::Value = serde_json::from_str(&policy).unwrap();
        assert_eq!(value["maxReceiveCount"], 20);
        let attrs = HashMap::from([(QueueAttributeName::RedrivePolicy, policy)]);
        assert_eq!(
            redrive_target(&attrs).as_deref(),
            Some("arn:aws:sqs:us-east-1:123456789012:q-dlq")
        );
        assert_eq!(redrive_target(&HashMap::new()), None);
        assert_eq!(
            redrive_target(&HashMap::from([(
                QueueAttributeName::RedrivePolicy,
                "{}".to_string()
            )])),
            None
        );
        assert_eq!(
            parse_queue_arn("arn:aws:sqs:us-east-1:123456789012:q-dlq"),
            Some(("123456789012", "q-dlq"))
        );
        assert_eq!(
            parse_queue_arn("arn:aws:sns:us-east-1:123456789012:t"),
            None
        );
    }

    #[test]
    fn fifo_queues_get_fifo_attributes() {
        let attrs = main_attributes(true, 60, "{}".into());
        assert!(attrs.contains(&(QueueAttributeName::FifoQueue, "true".into())));
        assert!(attrs.contains(&(
            QueueAttributeName::ContentBasedDeduplication,
            "false".into()
        )));
        assert!(attrs.contains(&(QueueAttributeName::VisibilityTimeout, "60".into())));
        assert!(attrs.contains(&(
            QueueAttributeName::ReceiveMessageWaitTimeSeconds,
            "20".into()
        )));
        assert!(!dlq_attributes(false)
            .iter()
            .any(|(k, _)| *k == QueueAttributeName::FifoQueue));
        assert!(dlq_attributes(false)
            .contains(&(QueueAttributeName::MessageRetentionPeriod, "1209600".into())));
    }

    fn arn_attributes() -> aws_smithy_mocks::Rule {
        mock!(Client::get_queue_attributes).then_compute_output(|req| {
            let name = req
                .queue_url()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            GetQueueAttributesOutput::builder()
                .attributes(
                    QueueAttributeName::QueueArn,
                    format!("arn:aws:sqs:us-east-1:1:{name}"),
                )
                .build()
        })
    }

    #[tokio::test]
    async fn adds_a_missing_redrive_policy_to_an_existing_queue() {
        let url_of = mock!(Client::get_queue_url).then_compute_output(|req| {
            GetQueueUrlOutput::builder()
                .queue_url(format!("http://sqs/1/{}", req.queue_name().unwrap_or("")))
                .build()
        });
        let no_policy = mock!(Client::get_queue_attributes)
            .match_requests(|req| {
                req.attribute_names()
                    .contains(&QueueAttributeName::RedrivePolicy)
            })
            .then_output(|| GetQueueAttributesOutput::builder().build());
        let set = mock!(Client::set_queue_attributes)
            .match_requests(|req| {
                req.queue_url() == Some("http://sqs/1/invite-events")
                    && req.attributes().and_then(|a| a.get(&QueueAttributeName::RedrivePolicy)).is_some_and(|p| {
                        p.contains("\"deadLetterTargetArn\":\"arn:aws:sqs:us-east-1:1:invite-events-dlq\"") && p.contains("\"maxReceiveCount\":20")
                    })
            })
            .then_output(|| SetQueueAttributesOutput::builder().build());
        let sqs = mocked!(aws_sdk_sqs, url_of, no_policy, arn_attributes(), set);
        let mut report = BootstrapReport::new("state.toml".into());

        ensure(&sqs, &settings(), &mut report).await.unwrap();

        assert_eq!(set.num_calls(), 1);
        let main = report.get(resource::QUEUE).unwrap();
        assert_eq!(
            (main.outcome, main.notes.as_slice()),
            (Outcome::Found, &["redrive policy added".to_string()][..])
        );
        assert_eq!(
            report.get(resource::DEAD_LETTER_QUEUE).unwrap().outcome,
            Outcome::Found
        );
    }

    #[tokio::test]
    async fn creates_missing_queues_with_the_redrive_policy() {
        let missing = mock!(Client::get_queue_url).then_error(|| {
            GetQueueUrlError::QueueDoesNotExist(QueueDoesNotExist::builder().build())
        });
        let create_dlq = mock!(Client::create_queue)
            .match_requests(|req| {
                req.queue_name() == Some("invite-events-dlq")
                    && req
                        .attributes()
                        .and_then(|a| a.get(&QueueAttributeName::MessageRetentionPeriod))
                        .map(String::as_str)
                        == Some("1209600")
            })
            .then_output(|| {
                CreateQueueOutput::builder()
                    .queue_url("http://sqs/1/invite-events-dlq")
                    .build()
            });
        let create_main = mock!(Client::create_queue)
            .match_requests(|req| {
                req.queue_name() == Some("invite-events")
                    && req
                        .attributes()
                        .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
                        .is_some_and(|p| p.contains("invite-events-dlq"))
            })
            .then_output(|| {
                CreateQueueOutput::builder()
                    .queue_url("http://sqs/1/invite-events")
                    .build()
            });
        let sqs = mocked!(
            aws_sdk_sqs,
            missing,
            create_dlq,
            create_main,
            arn_attributes()
        );
        let mut settings = settings();
        settings.events.outbound_queue_url = "https://sqs/1/elsewhere".into();
        let mut report = BootstrapReport::new("state.toml".into());

        ensure(&sqs, &settings, &mut report).await.unwrap();

        assert_eq!((create_dlq.num_calls(), create_main.num_calls()), (1, 1));
        assert_eq!(report.created().count(), 2);
        assert_eq!(
            report.get(resource::EVENTS_QUEUE).unwrap().outcome,
            Outcome::Configured
        );
        assert_eq!(
            report.state_entries().len(),
            2,
            "a configured events queue is not recorded"
        );
    }

    #[tokio::test]
    async fn a_configured_queue_that_does_not_exist_is_named_in_the_error() {
        let missing = mock!(Client::get_queue_attributes).then_error(|| {
            aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError::QueueDoesNotExist(QueueDoesNotExist::builder().message("The specified queue does not exist").build())
        });
        let sqs = mocked!(aws_sdk_sqs, missing);
        let mut settings = settings();
        settings.queue.url = "http://sqs/1/gone".into();
        let mut report = BootstrapReport::new("state.toml".into());

        let err = ensure(&sqs, &settings, &mut report)
            .await
            .unwrap_err()
            .to_string();

        assert!(
            err.starts_with("queue http://sqs/1/gone: GetQueueAttributes failed"),
            "{err}"
        );
        assert!(err.contains("The specified queue does not exist"), "{err}");
    }
}
