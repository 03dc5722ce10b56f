//! The SES configuration set every mail is sent with, and its event destination: the sending
//! events (bounces, complaints, deliveries, rejects, delays) published to the feedback topic.

use aws_sdk_sesv2::types::{EventDestinationDefinition, EventType, SnsDestination};
use aws_sdk_sesv2::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::feedback::Topic;
use super::report::{resource, BootstrapReport, Outcome};
use super::BootstrapError;
use crate::adapters::aws_errors::succeeded_unreadably;
use crate::config::{Settings, Transport};

/// The configuration set's name unless `email.ses.configuration_set` names one.
pub const DEFAULT_CONFIGURATION_SET: &str = "invite-worker";

/// The sending events the worker reads (docs/lifecycle.md, "Delivery awareness").
const EVENT_TYPES: [EventType; 5] = [
    EventType::Bounce,
    EventType::Complaint,
    EventType::Delivery,
    EventType::Reject,
    EventType::DeliveryDelay,
];

/// Ensures the configuration set and, when bootstrap made the feedback topic, its event
/// destination; adds their rows to `report`.
pub(super) async fn ensure(
    ses: &Client,
    settings: &Settings,
    topic: Option<&Topic>,
    report: &mut BootstrapReport,
) -> Result<(), BootstrapError> {
    let configured = settings
        .email
        .ses
        .configuration_set
        .as_deref()
        .filter(|s| !s.is_empty());
    let name = configured.unwrap_or(DEFAULT_CONFIGURATION_SET);
    if settings.email.transport == Transport::Smtp {
        report.push(
            resource::CONFIGURATION_SET,
            name,
            Outcome::Skipped,
            vec!["email.transport is smtp".into()],
        );
        return Ok(());
    }
    let what = format!("{} {name}", resource::CONFIGURATION_SET);
    let exists = match ses
        .get_configuration_set()
        .configuration_set_name(name)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e) if succeeded_unreadably(&e) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_not_found_exception()) =>
        {
            false
        }
        Err(e) => return Err(BootstrapError::aws(what, "GetConfigurationSet", e)),
    };
    let outcome = match (exists, configured.is_some()) {
        (true, true) => Outcome::Configured,
        (true, false) => Outcome::Found,
        (false, _) => create(ses, name, &what).await?,
    };
    report.push_recorded(
        resource::CONFIGURATION_SET,
        name,
        outcome,
        vec![],
        ("email.ses", "configuration_set"),
    );
    match topic {
        None => report.push(
            resource::EVENT_DESTINATION,
            &settings.feedback.name,
            Outcome::Skipped,
            vec!["bootstrap made no feedback topic to publish to".into()],
        ),
        Some(topic) => {
            ensure_event_destination(ses, name, &settings.feedback.name, topic, report).await?
        }
    }
    Ok(())
}

async fn create(ses: &Client, name: &str, what: &str) -> Result<Outcome, BootstrapError> {
    match ses
        .create_configuration_set()
        .configuration_set_name(name)
        .send()
        .await
    {
        Ok(_) => Ok(Outcome::Created),
        // Made meanwhile (another bootstrap); moto names the code differently.
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_already_exists_exception()
                    || s.code() == Some("ConfigurationSetAlreadyExistsException")
            }) =>
        {
            Ok(Outcome::Found)
        }
        Err(e) => Err(BootstrapError::aws(what, "CreateConfigurationSet", e)),
    }
}

/// The event destination `<feedback.name>` on the configuration set, publishing to the topic.
/// An endpoint without the API (moto 5.2.5 has no SES v2 event destinations) is reported as
/// skipped, not as a failure: the rest of the stack still works, the events just never come.
async fn ensure_event_destination(
    ses: &Client,
    set: &str,
    name: &str,
    topic: &Topic,
    report: &mut BootstrapReport,
) -> Result<(), BootstrapError> {
    let what = format!("{} {name} of {set}", resource::EVENT_DESTINATION);
    let unsupported = |report: &mut BootstrapReport| {
        report.push(
            resource::EVENT_DESTINATION,
            name,
            Outcome::Skipped,
            vec!["this endpoint has no SES v2 event destinations (moto): none is published here; in AWS, deploy/cloudformation.yaml creates it".into()],
        )
    };
    match ses
        .get_configuration_set_event_destinations()
        .configuration_set_name(set)
        .send()
        .await
    {
        Ok(out) if out.event_destinations().iter().any(|d| d.name() == name) => {
            report.push(resource::EVENT_DESTINATION, name, Outcome::Found, vec![]);
            return Ok(());
        }
        Ok(_) => {}
        Err(e) if not_implemented(&e) => {
            unsupported(report);
            return Ok(());
        }
        Err(e) => {
            return Err(BootstrapError::aws(
                what,
                "GetConfigurationSetEventDestinations",
                e,
            ))
        }
    }
    let sns = SnsDestination::builder()
        .topic_arn(&topic.arn)
        .build()
        .map_err(|e| BootstrapError::build(what.clone(), e))?;
    let definition = EventDestinationDefinition::builder()
        .enabled(true)
        .set_matching_event_types(Some(EVENT_TYPES.to_vec()))
        .sns_destination(sns)
        .build();
    match ses
        .create_configuration_set_event_destination()
        .configuration_set_name(set)
        .event_destination_name(name)
        .event_destination(definition)
        .send()
        .await
    {
        Ok(_) => report.push(resource::EVENT_DESTINATION, name, Outcome::Created, vec![]),
        Err(e) if not_implemented(&e) => unsupported(report),
        Err(e) => {
            return Err(BootstrapError::aws(
                what,
                "CreateConfigurationSetEventDestination",
                e,
            ))
        }
    }
    Ok(())
}

/// A 404 without an error code: the endpoint does not know the operation at all (moto answers
/// an HTML "Not Found" page). A real missing configuration set says `NotFoundException`.
fn not_implemented<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(ctx) => {
            ctx.raw().status().as_u16() == 404 && ctx.err().code().is_none()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sesv2::operation::create_configuration_set::CreateConfigurationSetOutput;
    use aws_sdk_sesv2::operation::create_configuration_set_event_destination::CreateConfigurationSetEventDestinationOutput;
    use aws_sdk_sesv2::operation::get_configuration_set::{
        GetConfigurationSetError, GetConfigurationSetOutput,
    };
    use aws_sdk_sesv2::operation::get_configuration_set_event_destinations::GetConfigurationSetEventDestinationsOutput;
    use aws_sdk_sesv2::types::error::NotFoundException;
    use aws_smithy_mocks::mock;
    use aws_smithy_types::body::SdkBody;

    use super::*;
    use crate::bootstrap::test_support::{mocked, settings};

    fn topic() -> Topic {
        Topic {
            arn: "arn:aws:sns:us-east-1:1:invite-worker-feedback".into(),
        }
    }

    fn bare_404() -> HttpResponse {
        let mut resp =
            HttpResponse::new(404.try_into().unwrap(), SdkBody::from("<h1>Not Found</h1>"));
        resp.headers_mut().insert("content-type", "text/html");
        resp
    }

    #[tokio::test]
    async fn creates_the_set_and_its_event_destination_for_every_sending_event() {
        let missing = mock!(Client::get_configuration_set).then_error(|| {
            GetConfigurationSetError::NotFoundException(NotFoundException::builder().build())
        });
        let create = mock!(Client::create_configuration_set)
            .match_requests(|r| r.configuration_set_name() == Some("invite-worker"))
            .then_output(|| CreateConfigurationSetOutput::builder().build());
        let none = mock!(Client::get_configuration_set_event_destinations)
            .then_output(|| GetConfigurationSetEventDestinationsOutput::builder().build());
        let destination = mock!(Client::create_configuration_set_event_destination)
            .match_requests(|r| {
                let d = r.event_destination();
                r.event_destination_name() == Some("invite-worker-feedback")
                    && d.is_some_and(|d| {
                        d.enabled()
                            && d.matching_event_types() == EVENT_TYPES
                            && d.sns_destination().map(|s| s.topic_arn())
                                == Some("arn:aws:sns:us-east-1:1:invite-worker-feedback")
                    })
            })
            .then_output(|| CreateConfigurationSetEventDestinationOutput::builder().build());
        let ses = mocked!(aws_sdk_sesv2, missing, create, none, destination);
        let mut report = BootstrapReport::new("s".into());

        ensure(&ses, &settings(), Some(&topic()), &mut report)
            .await
            .unwrap();

        assert_eq!((create.num_calls(), destination.num_calls()), (1, 1));
        assert_eq!(
            report.get(resource::CONFIGURATION_SET).unwrap().outcome,
            Outcome::Created
        );
        assert_eq!(
            report.state_entries(),
            vec![(
                "email.ses",
                "configuration_set",
                "invite-worker".to_string()
            )]
        );
        assert_eq!(
            report.get(resource::EVENT_DESTINATION).unwrap().outcome,
            Outcome::Created
        );
    }

    #[tokio::test]
    async fn an_endpoint_without_event_destinations_is_skipped_with_its_reason() {
        let exists = mock!(Client::get_configuration_set)
            .then_output(|| GetConfigurationSetOutput::builder().build());
        let unknown =
            mock!(Client::get_configuration_set_event_destinations).then_http_response(bare_404);
        let ses = mocked!(aws_sdk_sesv2, exists, unknown);
        let mut report = BootstrapReport::new("s".into());

        ensure(&ses, &settings(), Some(&topic()), &mut report)
            .await
            .unwrap();

        assert_eq!(
            report.get(resource::CONFIGURATION_SET).unwrap().outcome,
            Outcome::Found
        );
        let row = report.get(resource::EVENT_DESTINATION).unwrap();
        assert_eq!(row.outcome, Outcome::Skipped);
        assert!(
            row.notes[0].contains("no SES v2 event destinations"),
            "{:?}",
            row.notes
        );
    }
}
