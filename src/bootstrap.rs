//! `invite-worker bootstrap`: creates, idempotently, the resources the worker needs (queues, the
//! DynamoDB table, the Cognito user pool with its app client and groups, the SES sender identity,
//! and for delivery awareness the SES configuration set, the feedback topic and queue with its
//! subscription and, where the endpoint has the API, the configuration set's event destination)
//! on the local stack or in a real account.
//!
//! For each resource: when the configuration names it (`queue.url`, `queue.dlq_url`,
//! `cognito.user_pool_id`, `cognito.client_id`) bootstrap uses it as is ("configured"); otherwise
//! it looks it up by name ("found") and creates it only when the lookup finds nothing
//! ("created"). Existing resources are not reshaped, with two exceptions that the worker relies
//! on: a main queue without a redrive policy gets one, and a table gets any index or TTL setting
//! it lacks. What was created or found is recorded in the state file
//! ([`crate::config::record_state`]) so that later commands pick it up through config layering.
//!
//! The outbound events queue is left alone unless `events.outbound_queue_url` is the literal
//! `"create"`: then bootstrap finds or creates `<queue base name>-events` (a standard queue) and
//! records its URL. Set `"create"` in a config file, not in the environment: an environment
//! variable outranks the state file, so the recorded URL would never take effect.

mod cognito;
mod configuration_set;
mod feedback;
mod queues;
mod report;
mod ses;
mod table;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_smithy_types::error::display::DisplayErrorContext;

use crate::config::{self, Settings};

pub use cognito::{APP_CLIENT_NAME, CUSTOM_ATTRIBUTE, GROUPS};
pub use configuration_set::DEFAULT_CONFIGURATION_SET;
pub use report::{resource, BootstrapReport, Outcome, ReportRow};

/// Names in the invites table that bootstrap creates: the DynamoDB adapter's names (one
/// definition, in `adapters::dynamo`).
pub mod table_layout {
    use crate::adapters::dynamo as d;

    /// Partition key (S).
    pub const PK: &str = d::ATTR_PK;
    /// Sort key (S).
    pub const SK: &str = d::ATTR_SK;
    /// Sparse index of open invites by expiry, sharded to spread writes.
    pub const OPEN_BY_EXPIRY_INDEX: &str = d::INDEX_OPEN;
    /// Hash key of [`OPEN_BY_EXPIRY_INDEX`] (S).
    pub const OPEN_SHARD: &str = d::ATTR_OPEN_SHARD;
    /// Range key of [`OPEN_BY_EXPIRY_INDEX`] (N, epoch seconds).
    pub const OPEN_EXPIRES_AT: &str = d::ATTR_OPEN_EXPIRES_AT;
    /// Index of invites by status, most recently updated last.
    pub const BY_STATUS_INDEX: &str = d::INDEX_STATUS;
    /// Hash key of [`BY_STATUS_INDEX`] (S).
    pub const STATUS: &str = d::ATTR_STATUS;
    /// Range key of [`BY_STATUS_INDEX`] and [`UNPUBLISHED_INDEX`] (N, epoch milliseconds).
    pub const UPDATED_MS: &str = d::ATTR_UPDATED_MS;
    /// Sparse index of invites with lifecycle events not yet published (the outbox).
    pub const UNPUBLISHED_INDEX: &str = d::INDEX_UNPUBLISHED;
    /// Hash key of [`UNPUBLISHED_INDEX`] (S).
    pub const OUTBOX_SHARD: &str = d::ATTR_OUTBOX_SHARD;
    /// The TTL attribute (N, epoch seconds).
    pub const TTL: &str = d::ATTR_TTL;
}

/// Why bootstrap stopped. Every variant names the resource (or configuration key) concerned.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// An AWS call failed; `detail` is the SDK error with its sources.
    #[error("{resource}: {operation} failed: {detail}")]
    Aws {
        resource: String,
        operation: &'static str,
        detail: String,
    },
    /// The resource exists but cannot be used as the worker needs it.
    #[error("{resource}: {reason}")]
    Unusable { resource: String, reason: String },
    /// A setting bootstrap cannot work with.
    #[error("{key}: {reason}")]
    Config { key: &'static str, reason: String },
    /// The resource did not become ready in time.
    #[error("{resource}: not ready after {waited_seconds}s (last status: {status}); run bootstrap again later")]
    NotReady {
        resource: String,
        status: String,
        waited_seconds: u64,
    },
    /// The state file could not be written.
    #[error("could not record the resources in {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BootstrapError {
    /// An AWS error on `resource`, with the SDK error and its sources on one line.
    fn aws<E: std::error::Error + 'static>(
        resource: impl Into<String>,
        operation: &'static str,
        err: E,
    ) -> Self {
        Self::Aws {
            resource: resource.into(),
            operation,
            detail: DisplayErrorContext(err).to_string(),
        }
    }

    /// A request that could not be built (a bug here, not a problem with the account).
    fn build(
        resource: impl Into<String>,
        err: aws_smithy_types::error::operation::BuildError,
    ) -> Self {
        Self::Unusable {
            resource: resource.into(),
            reason: format!("could not build the request: {err}"),
        }
    }
}

/// The service error code of an SDK error, if the service answered.
fn error_code<E, R>(err: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> Option<&str>
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    err.as_service_error().and_then(|e| e.code())
}

/// How long to wait for resources that are created asynchronously (the table and its indexes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitOptions {
    pub timeout: Duration,
    pub first_poll: Duration,
    pub max_poll: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        // Adding an index to a large table can take a while; creating an empty one takes seconds.
        Self {
            timeout: Duration::from_secs(15 * 60),
            first_poll: Duration::from_millis(500),
            max_poll: Duration::from_secs(5),
        }
    }
}

/// The SDK clients bootstrap uses.
pub(crate) struct Clients {
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub cognito: aws_sdk_cognitoidentityprovider::Client,
    pub ses: aws_sdk_sesv2::Client,
    pub sns: aws_sdk_sns::Client,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            sqs: aws_sdk_sqs::Client::new(sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            cognito: aws_sdk_cognitoidentityprovider::Client::new(sdk),
            ses: aws_sdk_sesv2::Client::new(sdk),
            sns: aws_sdk_sns::Client::new(sdk),
        }
    }
}

/// Creates or finds every resource the worker needs and records what it created or found in
/// `state_file`. Safe to run again: a second run finds everything and creates nothing.
///
/// If a step fails, what earlier steps created or found is still recorded before the error is
/// returned, so that the next run (or the operator) can pick up from there.
pub async fn bootstrap(
    settings: &Settings,
    sdk: &aws_config::SdkConfig,
    state_file: &Path,
) -> Result<BootstrapReport, BootstrapError> {
    run(
        &Clients::new(sdk),
        settings,
        state_file,
        WaitOptions::default(),
    )
    .await
}

/// [`bootstrap`] with given clients and wait options.
pub(crate) async fn run(
    clients: &Clients,
    settings: &Settings,
    state_file: &Path,
    wait: WaitOptions,
) -> Result<BootstrapReport, BootstrapError> {
    let mut report = BootstrapReport::new(state_file.to_path_buf());
    let outcome = ensure_all(clients, settings, wait, &mut report).await;
    let entries = report.state_entries();
    let recorded = if entries.is_empty() {
        Ok(())
    } else {
        config::record_state(state_file, &entries).map_err(|source| BootstrapError::State {
            path: state_file.to_path_buf(),
            source,
        })
    };
    outcome?;
    recorded?;
    Ok(report)
}

async fn ensure_all(
    clients: &Clients,
    settings: &Settings,
    wait: WaitOptions,
    report: &mut BootstrapReport,
) -> Result<(), BootstrapError> {
    queues::ensure(&clients.sqs, settings, report).await?;
    table::ensure(&clients.dynamodb, &settings.table.name, wait, report).await?;
    cognito::ensure(&clients.cognito, settings, report).await?;
    ses::ensure(&clients.ses, settings, report).await?;
    let topic = feedback::ensure(clients, settings, report).await?;
    configuration_set::ensure(&clients.ses, settings, topic.as_ref(), report).await?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_support {
    //! SDK clients answered by `aws-smithy-mocks` rules, without the crates' `test-util` feature.

    /// `mocked!(aws_sdk_sqs, rule_a, rule_b)`: a client whose calls are answered by the rules
    /// (first matching rule wins), with retries off.
    macro_rules! mocked {
        ($krate:ident $(, $rule:expr)* $(,)?) => {{
            #[allow(unused_mut)]
            let mut interceptor = aws_smithy_mocks::MockResponseInterceptor::new().rule_mode(aws_smithy_mocks::RuleMode::MatchAny);
            $( interceptor = interceptor.with_rule(&$rule); )*
            $krate::Client::from_conf(
                $krate::Config::builder()
                    .behavior_version($krate::config::BehaviorVersion::latest())
                    .region($krate::config::Region::new("us-east-1"))
                    .credentials_provider($krate::config::Credentials::new("test", "test", None, None, "test"))
                    .retry_config($krate::config::retry::RetryConfig::disabled())
                    .http_client(aws_smithy_mocks::create_mock_http_client())
                    .interceptor(interceptor)
                    .build(),
            )
        }};
    }
    pub(crate) use mocked;

    use crate::config::{ConfigSources, Settings};

    /// `config/default.toml` as loaded by the worker.
    pub fn settings() -> Settings {
        let dir = tempfile::tempdir().expect("tempdir");
        let sources = ConfigSources::defaults_and_state(dir.path().join("none.toml"));
        Settings::load(&sources).expect("default settings")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_errors_name_the_resource_and_the_cause() {
        let err = BootstrapError::aws(
            "table invites",
            "DescribeTable",
            std::io::Error::other("connection refused"),
        );
        let text = err.to_string();
        assert!(
            text.starts_with("table invites: DescribeTable failed: connection refused"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn records_what_was_found_before_a_failure() {
        use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
        use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
        use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlOutput;
        use aws_sdk_sqs::types::QueueAttributeName;
        use aws_smithy_mocks::mock;

        let url_of = mock!(aws_sdk_sqs::Client::get_queue_url).then_compute_output(|req| {
            GetQueueUrlOutput::builder()
                .queue_url(format!("http://sqs/1/{}", req.queue_name().unwrap_or("")))
                .build()
        });
        let attributes = mock!(aws_sdk_sqs::Client::get_queue_attributes).then_compute_output(|req| {
            let url = req.queue_url().unwrap_or("");
            let name = url.rsplit('/').next().unwrap_or("");
            let mut out = GetQueueAttributesOutput::builder().attributes(QueueAttributeName::QueueArn, format!("arn:aws:sqs:us-east-1:1:{name}"));
            if !name.ends_with("-dlq") {
                let policy = format!(r#"{{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:{name}-dlq","maxReceiveCount":20}}"#);
                out = out.attributes(QueueAttributeName::RedrivePolicy, policy);
            }
            out.build()
        });
        let throttled = mock!(aws_sdk_dynamodb::Client::describe_table).then_error(|| {
            DescribeTableError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .message("slow down")
                    .build(),
            )
        });
        let clients = Clients {
            sqs: test_support::mocked!(aws_sdk_sqs, url_of, attributes),
            dynamodb: test_support::mocked!(aws_sdk_dynamodb, throttled),
            cognito: test_support::mocked!(aws_sdk_cognitoidentityprovider),
            ses: test_support::mocked!(aws_sdk_sesv2),
            sns: test_support::mocked!(aws_sdk_sns),
        };
        let settings = test_support::settings();
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state.toml");

        let err = run(&clients, &settings, &state, WaitOptions::default())
            .await
            .expect_err("the table step fails");
        let text = err.to_string();
        assert!(
            text.starts_with("table invite-worker-invites: DescribeTable failed"),
            "{text}"
        );
        assert!(text.contains("ThrottlingException"), "{text}");

        let recorded = std::fs::read_to_string(&state).expect("state written");
        assert!(
            recorded.contains("url = \"http://sqs/1/invite-events\""),
            "{recorded}"
        );
        assert!(
            recorded.contains("dlq_url = \"http://sqs/1/invite-events-dlq\""),
            "{recorded}"
        );
    }
}
