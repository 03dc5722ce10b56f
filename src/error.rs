//! Errors that say what happens next. Adapters turn SDK and SMTP errors into [`DownstreamError`]
//! (transient or not); the handler turns everything into a [`Disposition`] for the worker.

use std::fmt;
use std::time::Duration;

/// The external systems, for error messages, metrics and rate limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Sqs,
    DynamoDb,
    Cognito,
    Ses,
    Smtp,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Sqs => "sqs",
            Service::DynamoDb => "dynamodb",
            Service::Cognito => "cognito",
            Service::Ses => "ses",
            Service::Smtp => "smtp",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The service asked us to slow down (throttling, quota). Retry later.
    Throttled,
    /// 5xx, connection refused, DNS, credentials temporarily unavailable. Retry later.
    Unavailable,
    /// No answer in time. Retry later (the call may have taken effect).
    Timeout,
    /// The service refused this request and will refuse it again: a short snake_case code
    /// (`user_pool_not_found`, `email_rejected`, `invalid_parameter`...). Do not retry.
    Rejected(String),
}

/// A failed call to an external system.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{service} {operation}: {message}")]
pub struct DownstreamError {
    pub service: Service,
    pub operation: &'static str,
    pub kind: ErrorKind,
    /// The service's own words (never a secret: adapters build it from error codes and messages,
    /// never from request parameters).
    pub message: String,
    /// When the cause is the caller's own setup rather than the request: what an operator fixes.
    pub setup: Option<SetupCause>,
    /// How long to wait before trying again, when the error knows (a rate limiter that gave up
    /// waiting says when its next slot comes).
    pub retry_after: Option<Duration>,
}

/// A failure caused by the worker's setup (credentials, endpoint, a missing resource), as the
/// SDK error showed it. [`crate::setup`] turns it into one line naming the resource and the fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupCause {
    /// The credential chain found no credentials at all.
    NoCredentials,
    /// The endpoint did not answer (connection refused, DNS, TLS): an outage or a wrong endpoint.
    Unreachable,
    /// Access denied, unknown key, bad signature: credentials or IAM policy.
    AccessDenied,
    /// The queue, table, pool or identity named does not exist (in this region).
    NotFound,
}

impl SetupCause {
    /// Whether retrying without an operator's fix is pointless.
    pub fn is_permanent(self) -> bool {
        !matches!(self, SetupCause::Unreachable)
    }
}

impl DownstreamError {
    pub fn new(
        service: Service,
        operation: &'static str,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        // Services quote addresses in their messages (an SES sandbox rejection names the
        // recipient); these messages reach logs and DLQ attributes, so addresses are masked.
        let message = crate::domain::email::mask_emails_in(&message.into());
        Self {
            service,
            operation,
            kind,
            message,
            setup: None,
            retry_after: None,
        }
    }

    /// The same error, saying when to try again.
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// The same error, marked as caused by the setup.
    pub fn with_setup(mut self, cause: Option<SetupCause>) -> Self {
        self.setup = cause;
        self
    }

    /// A permanent setup problem (missing resource, access denied, no credentials): retrying
    /// without a fix is pointless, and it is the worker's configuration, not any message's fault.
    pub fn is_setup_problem(&self) -> bool {
        self.setup.is_some_and(SetupCause::is_permanent)
    }

    pub fn is_transient(&self) -> bool {
        !matches!(self.kind, ErrorKind::Rejected(_))
    }

    pub fn is_throttle(&self) -> bool {
        self.kind == ErrorKind::Throttled
    }

    /// The reason code for a permanent rejection, `None` for transient errors.
    pub fn rejection_code(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Rejected(code) => Some(code),
            _ => None,
        }
    }
}

/// What the worker does with a message after handling it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Done (including "nothing to do"): delete it. `outcome` is a short code for logs/metrics.
    Ack { outcome: &'static str },
    /// Try again later: leave it on the queue, invisible for about `after`.
    Retry {
        reason: String,
        after: Option<Duration>,
        downstream: Option<Service>,
    },
    /// It will never succeed as it is: send it to the DLQ with this reason, then delete it.
    DeadLetter { code: String, reason: String },
}
