//! [`NoThrottleRetry`]: an SDK retry classifier that leaves throttling errors to the caller.
//!
//! The SDK's standard retry strategy retries a throttled call by itself, invisible to the rate
//! limiters: every such retry is a call outside the fleet's budget, and the limiter never learns
//! that it should slow down. With this classifier on a client, throttling answers come back at
//! once; the rate-limited decorators (`crate::adapters::limited`) retry them through their
//! limiter. Other transient errors (5xx, timeouts, dropped connections) are still retried by
//! the SDK as before.

use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority, RetryReason,
};
use aws_smithy_types::retry::ErrorKind;

/// Forbids the SDK's own retry of a throttling error. Runs after the SDK's classifiers.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoThrottleRetry;

impl ClassifyRetry for NoThrottleRetry {
    fn classify_retry(&self, _ctx: &InterceptorContext) -> RetryAction {
        RetryAction::NoActionIndicated
    }

    fn classify_retry_v2(&self, _ctx: &InterceptorContext, previous: &RetryAction) -> RetryAction {
        match previous {
            RetryAction::RetryIndicated(RetryReason::RetryableError {
                kind: ErrorKind::ThrottlingError,
                ..
            }) => RetryAction::RetryForbidden,
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "invite-worker: throttling is retried by the rate limiter, not the SDK"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sdk_cognitoidentityprovider::config::retry::RetryConfig;
    use aws_sdk_cognitoidentityprovider::operation::describe_user_pool::DescribeUserPoolOutput;
    use aws_sdk_cognitoidentityprovider::Client;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn error(status: u16, code: &str) -> HttpResponse {
        let body = serde_json::json!({ "__type": code, "message": "no" }).to_string();
        let mut resp = HttpResponse::new(status.try_into().expect("status"), SdkBody::from(body));
        resp.headers_mut()
            .insert("content-type", "application/x-amz-json-1.1");
        resp
    }

    /// Two failures with `status`/`code`, then success; the calls made.
    async fn calls_for(status: u16, code: &'static str) -> usize {
        let rule: Rule = mock!(Client::describe_user_pool)
            .sequence()
            .http_response(move || error(status, code))
            .times(2)
            .output(|| DescribeUserPoolOutput::builder().build())
            .build();
        let client = mock_client!(
            aws_sdk_cognitoidentityprovider,
            RuleMode::Sequential,
            [&rule],
            |c| c
                .retry_config(
                    RetryConfig::standard()
                        .with_max_attempts(3)
                        .with_initial_backoff(Duration::from_millis(1))
                )
                .retry_classifier(NoThrottleRetry)
        );
        let _ = client.describe_user_pool().user_pool_id("p").send().await;
        rule.num_calls()
    }

    #[tokio::test]
    async fn throttling_is_not_retried_by_the_sdk() {
        assert_eq!(calls_for(400, "TooManyRequestsException").await, 1);
    }

    #[tokio::test]
    async fn server_errors_are_still_retried_by_the_sdk() {
        assert_eq!(calls_for(500, "InternalErrorException").await, 3);
    }
}
