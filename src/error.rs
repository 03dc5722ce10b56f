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
        }
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
