//! Builds the real adapters from the settings and the AWS SDK configuration. The only place that
//! knows which adapter implements which port.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use aws_config::SdkConfig;

use crate::adapters::cognito::CognitoDirectory;
use crate::adapters::dynamo::DynamoInviteStore;
use crate::adapters::instrumented::{InstrumentedDirectory, InstrumentedMailer, InstrumentedStore};
use crate::adapters::limited::{RateLimitedDirectory, RateLimitedMailer};
use crate::adapters::ses::SesMailer;
use crate::adapters::smtp::SmtpMailer;
use crate::adapters::sqs::SqsQueue;
use crate::adapters::sqs_publisher::SqsPublisher;
use crate::app::handler::{InviteService, ServiceConfig};
use crate::app::template_composer::TemplateComposer;
use crate::config::{Settings, Transport};
use crate::error::Service;
use crate::mail::templates::Templates;
use crate::observe::Observer;
use crate::ports::{Clock, Directory, InviteStore, Mailer, Publisher, SystemClock};

pub const WORKER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// aws-config's standard chain: `AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, credentials.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

pub struct Components {
    pub settings: Settings,
    pub sdk: SdkConfig,
    pub store: Arc<DynamoInviteStore>,
    pub directory: Arc<dyn Directory>,
    pub mailer: Arc<dyn Mailer>,
    pub queue: Arc<SqsQueue>,
    pub service: Arc<InviteService>,
    /// Where the service's adapters report their calls: metrics and circuit breakers.
    pub observer: Arc<Observer>,
}

/// Checks that the settings name the resources a command needs.
pub fn require(settings: &Settings, needs_queue: bool) -> anyhow::Result<()> {
    let missing = |key: &str, env: &str| {
        format!(
            "{key} is not set: run `invite-worker bootstrap`, or set it in config/ or with {env}"
        )
    };
    if settings.cognito.user_pool_id.is_empty() {
        bail!(missing(
            "cognito.user_pool_id",
            "INVITE_WORKER__COGNITO__USER_POOL_ID"
        ));
    }
    if needs_queue && settings.queue.url.is_empty() {
        bail!(missing("queue.url", "INVITE_WORKER__QUEUE__URL"));
    }
    if needs_queue && settings.queue.dlq_url.is_empty() {
        bail!(missing("queue.dlq_url", "INVITE_WORKER__QUEUE__DLQ_URL"));
    }
    Ok(())
}

pub async fn build(settings: Settings, sdk: SdkConfig) -> anyhow::Result<Components> {
    build_with_clock(settings, sdk, Arc::new(SystemClock)).await
}

/// The lifecycle-events publisher, when `events.outbound_queue_url` names a queue.
pub fn publisher(
    settings: &Settings,
    sdk: &SdkConfig,
) -> anyhow::Result<Option<Arc<dyn Publisher>>> {
    match settings.events.outbound_queue_url.as_str() {
        "" => Ok(None),
        "create" => bail!(
            "events.outbound_queue_url is \"create\": run `invite-worker bootstrap` to create the events queue and record its URL"
        ),
        url => Ok(Some(Arc::new(SqsPublisher::new(
            aws_sdk_sqs::Client::new(sdk),
            url,
        )))),
    }
}

/// [`build`] with another clock (`cleanup --now` evaluates as of another time).
pub async fn build_with_clock(
    settings: Settings,
    sdk: SdkConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Components> {
    require(&settings, false)?;
    let publisher = publisher(&settings, &sdk)?;
    let templates = Templates::load(
        &settings.email.templates_dir,
        &settings.email.default_locale,
    )
    .with_context(|| {
        format!(
            "loading templates from {}",
            settings.email.templates_dir.display()
        )
    })?;
    let composer = Arc::new(TemplateComposer::new(templates, &settings.email));
    let observer = Arc::new(Observer::from_settings(&settings));

    let store = Arc::new(DynamoInviteStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        settings.table.name.clone(),
        settings.table.open_index_shards,
    ));
    let cognito = CognitoDirectory::new(
        aws_sdk_cognitoidentityprovider::Client::new(&sdk),
        settings.cognito.user_pool_id.clone(),
    );
    // Instrumented inside the rate limiters: durations leave out the wait for a token.
    let directory: Arc<dyn Directory> = Arc::new(RateLimitedDirectory::from_settings(
        InstrumentedDirectory::new(cognito, observer.clone()),
        &settings.cognito,
    ));
    let mailer: Arc<dyn Mailer> = match settings.email.transport {
        Transport::Ses => Arc::new(RateLimitedMailer::from_settings(
            InstrumentedMailer::new(
                SesMailer::new(
                    aws_sdk_sesv2::Client::new(&sdk),
                    settings.email.ses.configuration_set.clone(),
                ),
                Service::Ses,
                observer.clone(),
            ),
            &settings.email,
        )),
        Transport::Smtp => Arc::new(RateLimitedMailer::from_settings(
            InstrumentedMailer::new(
                SmtpMailer::new(&settings.email.smtp).context("setting up the SMTP transport")?,
                Service::Smtp,
                observer.clone(),
            ),
            &settings.email,
        )),
    };
    let observed_store: Arc<dyn InviteStore> =
        Arc::new(InstrumentedStore::new(store.clone(), observer.clone()));
    let queue = Arc::new(
        SqsQueue::new(
            aws_sdk_sqs::Client::new(&sdk),
            settings.queue.url.clone(),
            settings.queue.dlq_url.clone(),
            WORKER_VERSION,
        )
        .with_visibility_timeout(Duration::from_secs(
            settings.queue.visibility_timeout_seconds,
        )),
    );
    let mut service = InviteService::new(
        observed_store,
        directory.clone(),
        mailer.clone(),
        composer,
        clock,
        ServiceConfig {
            user_pool_id: settings.cognito.user_pool_id.clone(),
            default_expiry_days: settings.invites.default_expiry_days,
            lease: Duration::from_secs(settings.worker.lease_seconds),
            redirect_hosts: settings.redirect_hosts()?,
        },
    );
    if let Some(publisher) = publisher {
        service = service.with_publisher(publisher);
    }
    let service = Arc::new(service);
    Ok(Components {
        settings,
        sdk,
        store,
        directory,
        mailer,
        queue,
        service,
        observer,
    })
}

#[async_trait::async_trait]
impl crate::worker::MessageHandler for InviteService {
    async fn handle(&self, message: &crate::ports::QueueMessage) -> crate::error::Disposition {
        self.handle_body(&message.body).await
    }
}
