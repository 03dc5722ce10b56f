//! Builds the real adapters from the settings and the AWS SDK configuration. The only place that
//! knows which adapter implements which port.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use aws_config::SdkConfig;

use crate::adapters::cognito::CognitoDirectory;
use crate::adapters::dynamo::budget::DynamoRateBudget;
use crate::adapters::dynamo::DynamoInviteStore;
use crate::adapters::instrumented::{InstrumentedDirectory, InstrumentedMailer, InstrumentedStore};
use crate::adapters::limited::{LimitedMailer, RateLimitedDirectory, RateLimitedMailer};
use crate::adapters::no_throttle_retry::NoThrottleRetry;
use crate::adapters::probe::AwsProbe;
use crate::adapters::profile_cache::ProfileCachingDirectory;
use crate::adapters::ses::SesMailer;
use crate::adapters::ses_suppression::SesSuppressionList;
use crate::adapters::smtp::SmtpMailer;
use crate::adapters::sqs::{SqsQueue, SqsQueues};
use crate::adapters::sqs_publisher::SqsPublisher;
use crate::app::handler::{InviteService, ServiceConfig};
use crate::app::template_composer::TemplateComposer;
use crate::config::{Settings, Transport};
use crate::error::Service;
use crate::mail::templates::Templates;
use crate::observe::Observer;
use crate::ports::{Clock, Directory, InviteStore, Mailer, Publisher, RateBudget, SystemClock};
use crate::ratelimit::Backlog;
use crate::setup::{self, AwsTarget, Finding, Need, ProblemKind, SetupFailure, SetupProblem};

pub const WORKER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// aws-config's standard chain: `AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, credentials.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// The read-only checks of the setup, on the same SDK configuration.
pub fn probe(sdk: &SdkConfig) -> AwsProbe {
    AwsProbe::new(sdk)
}

/// Checks the resources a command needs before it does any work: `Err` holds one readable line
/// per problem (see [`crate::setup`]).
pub async fn preflight(
    settings: &Settings,
    sdk: &SdkConfig,
    needs: &[Need],
) -> Result<(), SetupFailure> {
    setup::preflight(&probe(sdk), settings, &AwsTarget::of(sdk), needs).await
}

/// What `config check` prints: each resource in `needs`, checked.
pub async fn check_setup(settings: &Settings, sdk: &SdkConfig, needs: &[Need]) -> Vec<Finding> {
    setup::check(&probe(sdk), settings, &AwsTarget::of(sdk), needs).await
}

/// The invite table alone (for `invites show|list`).
pub fn invite_store(settings: &Settings, sdk: &SdkConfig) -> DynamoInviteStore {
    DynamoInviteStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        settings.table.name.clone(),
        settings.table.open_index_shards,
    )
}

/// The queue at any URL, for the operator tools (`dlq`, `enqueue`).
pub fn queues(sdk: &SdkConfig) -> SqsQueues {
    SqsQueues::new(aws_sdk_sqs::Client::new(sdk), WORKER_VERSION)
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
    /// The directory's and the mailer's rate limiters, for the worker's back-pressure.
    pub limiters: Vec<Arc<dyn Backlog>>,
}

/// Checks that the settings name the resources a command needs.
pub fn require(settings: &Settings, needs_queue: bool) -> anyhow::Result<()> {
    let missing = |key: &str, env: &str| {
        SetupFailure {
        problems: vec![SetupProblem {
            line: format!(
                "{key} is not set: run `invite-worker bootstrap`, or set it in config/ or with {env}"
            ),
            kind: ProblemKind::Setup,
        }],
    }
    };
    if settings.cognito.user_pool_id.is_empty() {
        return Err(missing(
            "cognito.user_pool_id",
            "INVITE_WORKER__COGNITO__USER_POOL_ID",
        )
        .into());
    }
    if needs_queue && settings.queue.url.is_empty() {
        return Err(missing("queue.url", "INVITE_WORKER__QUEUE__URL").into());
    }
    if needs_queue && settings.queue.dlq_url.is_empty() {
        return Err(missing("queue.dlq_url", "INVITE_WORKER__QUEUE__DLQ_URL").into());
    }
    if needs_queue
        && !settings.feedback.queue_url.is_empty()
        && settings.feedback.dlq_url.is_empty()
    {
        return Err(missing("feedback.dlq_url", "INVITE_WORKER__FEEDBACK__DLQ_URL").into());
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
            Templates::describe(&settings.email.templates_dir)
        )
    })?;
    let composer = Arc::new(TemplateComposer::new(templates, &settings.email));
    let observer = Arc::new(Observer::from_settings(&settings));

    let store = Arc::new(invite_store(&settings, &sdk));
    // The fleet's rate budgets live in the invite table: every worker on it shares them.
    let budget: Arc<dyn RateBudget> = Arc::new(DynamoRateBudget::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        settings.table.name.clone(),
    ));
    // Throttling answers go back to the rate limiters, which retry them within the budget.
    let cognito_client = aws_sdk_cognitoidentityprovider::Client::from_conf(
        aws_sdk_cognitoidentityprovider::config::Builder::from(&sdk)
            .retry_classifier(NoThrottleRetry)
            .build(),
    );
    let cognito = CognitoDirectory::new(cognito_client, settings.cognito.user_pool_id.clone());
    // Instrumented inside the rate limiters: durations leave out the wait for a token. The
    // profile cache outside them: a cached profile costs no token. Its age is wall-clock time,
    // whatever clock the service runs on.
    let limited_directory = Arc::new(RateLimitedDirectory::from_settings(
        InstrumentedDirectory::new(cognito, observer.clone()),
        &settings.cognito,
        budget.clone(),
    ));
    let mut limiters: Vec<Arc<dyn Backlog>> = limited_directory
        .limiters()
        .into_iter()
        .map(|l| l as Arc<dyn Backlog>)
        .collect();
    let directory: Arc<dyn Directory> = Arc::new(ProfileCachingDirectory::new(
        limited_directory,
        Arc::new(SystemClock),
        Duration::from_secs(settings.cognito.pool_profile_max_age_seconds),
    ));
    let mailer: Arc<dyn LimitedMailer> = match settings.email.transport {
        Transport::Ses => Arc::new(RateLimitedMailer::from_settings(
            InstrumentedMailer::new(
                SesMailer::new(
                    aws_sdk_sesv2::Client::from_conf(
                        aws_sdk_sesv2::config::Builder::from(&sdk)
                            .retry_classifier(NoThrottleRetry)
                            .build(),
                    ),
                    settings.email.ses.configuration_set.clone(),
                ),
                Service::Ses,
                observer.clone(),
            ),
            &settings.email,
            budget,
        )),
        Transport::Smtp => Arc::new(RateLimitedMailer::from_settings(
            InstrumentedMailer::new(
                SmtpMailer::new(&settings.email.smtp).context("setting up the SMTP transport")?,
                Service::Smtp,
                observer.clone(),
            ),
            &settings.email,
            budget,
        )),
    };
    limiters.extend(mailer.limiters().into_iter().map(|l| l as Arc<dyn Backlog>));
    let mailer = mailer.into_mailer();
    let observed_store: Arc<dyn InviteStore> =
        Arc::new(InstrumentedStore::new(store.clone(), observer.clone()));
    let queue = Arc::new(worker_queue(
        &sdk,
        &settings,
        &settings.queue.url,
        &settings.queue.dlq_url,
    ));
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
    // SES's account-level suppression list, read before an invite creates its user.
    if settings.email.transport == Transport::Ses && settings.email.ses.check_suppression_list {
        service = service.with_suppression_list(Arc::new(SesSuppressionList::new(
            aws_sdk_sesv2::Client::new(&sdk),
        )));
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
        limiters,
    })
}

#[async_trait::async_trait]
impl crate::worker::MessageHandler for InviteService {
    async fn handle(&self, message: &crate::ports::QueueMessage) -> crate::error::Disposition {
        // A copy sent back by `dlq replay` carries its lineage: the handler may re-open a failed
        // invite for it (docs/lifecycle.md, "Replay").
        let replay = crate::ops::dlq::lineage::replay_of(message);
        self.handle_delivery(&message.body, replay.as_ref()).await
    }
}

#[async_trait::async_trait]
impl crate::feedback::FeedbackTarget for InviteService {
    async fn apply_feedback(
        &self,
        feedback: &crate::domain::feedback::MailFeedback,
    ) -> Result<crate::app::handler::Handled, crate::app::handle_error::HandleError> {
        InviteService::apply_feedback(self, feedback).await
    }
}

/// A queue a worker consumes (`url`, dead letters to `dlq_url`), its messages held for
/// `queue.visibility_timeout_seconds` while handled.
fn worker_queue(sdk: &SdkConfig, settings: &Settings, url: &str, dlq_url: &str) -> SqsQueue {
    SqsQueue::new(
        aws_sdk_sqs::Client::new(sdk),
        url.to_string(),
        dlq_url.to_string(),
        WORKER_VERSION,
    )
    .with_visibility_timeout(Duration::from_secs(
        settings.queue.visibility_timeout_seconds,
    ))
}

/// The worker for SES's sending events (`feedback.queue_url`), when one is configured: the same
/// runtime as the invite queue's (heartbeat, retries, dead letters to `feedback.dlq_url`), a
/// quarter of its concurrency, applying each event to its invite through `c.service`.
pub fn feedback_worker(
    c: &Components,
    invite_options: &crate::worker::WorkerOptions,
) -> Option<crate::worker::Worker> {
    let f = &c.settings.feedback;
    if f.queue_url.is_empty() {
        return None;
    }
    let queue = Arc::new(worker_queue(&c.sdk, &c.settings, &f.queue_url, &f.dlq_url));
    let handler = crate::feedback::FeedbackHandler::new(c.service.clone(), c.observer.clone());
    let mut options = invite_options.clone();
    options.concurrency = (options.concurrency / 4).max(1);
    // Feedback sends no email: a slowed email limiter must not hold it back (its Cognito calls
    // still give up before the handler's deadline if the read limiter is slow).
    options.limiters = Vec::new();
    Some(crate::worker::Worker::new(
        queue,
        Arc::new(handler) as Arc<dyn crate::worker::MessageHandler>,
        options,
    ))
}
