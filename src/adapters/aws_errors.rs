//! Turns any AWS SDK error into a [`DownstreamError`]: transient (throttling, 5xx, timeouts,
//! connection and credential trouble) or a permanent rejection with a snake_case code.
//!
//! Credential and permission errors count as transient on purpose: they are an operator's
//! problem, not the message's, and dead-lettering every good message while IAM is being fixed
//! would be worse than waiting.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::{DownstreamError, ErrorKind, Service, SetupCause};

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "SlowDown",
    "PriorRequestNotComplete",
    "TransactionInProgressException",
    "KMSThrottlingException",
    "EC2ThrottledException",
];

const UNAVAILABLE: &[&str] = &[
    "InternalError",
    "InternalErrorException",
    "InternalServerError",
    "InternalServerException",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Credential and permission problems: fixed by an operator, so retried rather than dead-lettered.
const ACCESS: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "InvalidSignatureException",
    "NotAuthorized",
];

/// Classifies `err`. `code_of` may map a service error code to a reason code of our own
/// (`ResourceNotFoundException` -> `user_pool_not_found`); unmapped 4xx codes become their
/// snake_case form.
pub fn classify<E>(
    service: Service,
    operation: &'static str,
    err: &SdkError<E, HttpResponse>,
    code_of: impl Fn(&str) -> Option<&'static str>,
) -> DownstreamError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    // The whole chain, with the SDK's debug rendering, is for the debug log only (addresses
    // masked, as in every other line).
    let full = crate::domain::email::mask_emails_in(&chain(err));
    tracing::debug!(%service, operation, error = %full, "AWS call failed");
    let (kind, message) = match err {
        SdkError::TimeoutError(_) => (ErrorKind::Timeout, "timed out".to_string()),
        SdkError::DispatchFailure(_) if mentions_credentials(err) => (
            ErrorKind::Unavailable,
            format!("no usable AWS credentials: {}", root_cause(err)),
        ),
        SdkError::DispatchFailure(_) => (
            ErrorKind::Unavailable,
            format!("could not reach the service: {}", root_cause(err)),
        ),
        SdkError::ConstructionFailure(_) => (
            ErrorKind::Unavailable,
            format!(
                "could not build the request (credentials or configuration?): {}",
                root_cause(err)
            ),
        ),
        SdkError::ResponseError(_) => (
            ErrorKind::Unavailable,
            format!("unreadable response: {}", root_cause(err)),
        ),
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or("Unknown");
            let text = ctx.err().message().unwrap_or("");
            let status = ctx.raw().status().as_u16();
            let message = if text.is_empty() {
                format!("{code} (HTTP {status})")
            } else {
                format!("{code}: {text} (HTTP {status})")
            };
            (kind_for(code, status, &code_of), message)
        }
        other => (
            ErrorKind::Unavailable,
            format!("unexpected SDK error: {}", root_cause(other)),
        ),
    };
    let message = if matches!(kind, ErrorKind::Unavailable) && is_access(err) {
        format!("{message}; check the worker's credentials and IAM policy")
    } else {
        message
    };
    DownstreamError::new(service, operation, kind, message).with_setup(setup_cause(err))
}

/// What the error says about the caller's setup, when it says anything.
pub fn setup_cause<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: &SdkError<E, HttpResponse>,
) -> Option<SetupCause> {
    match err {
        SdkError::DispatchFailure(_) if mentions_credentials(err) => {
            Some(SetupCause::NoCredentials)
        }
        SdkError::DispatchFailure(d) if d.is_io() || d.is_other() => Some(SetupCause::Unreachable),
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or("");
            if ACCESS.contains(&code) || ctx.raw().status().as_u16() == 403 {
                Some(SetupCause::AccessDenied)
            } else if NOT_FOUND.contains(&code) {
                Some(SetupCause::NotFound)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The service answered 2xx but the SDK could not read the body: the call succeeded. moto's SES v2
/// `GetConfigurationSet` sends `"SendingEnabled": {}` where a boolean belongs; an existence check
/// must not fail over that.
pub fn succeeded_unreadably<E>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(ctx) => ctx.raw().status().is_success(),
        SdkError::ResponseError(ctx) => ctx.raw().status().is_success(),
        _ => false,
    }
}

/// Codes that say the named resource (queue, table, pool, identity) does not exist.
const NOT_FOUND: &[&str] = &[
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
    "ResourceNotFoundException",
    "NotFoundException",
];

/// The credential chain failing shows up as a dispatch failure whose sources name credentials.
fn mentions_credentials<E: std::error::Error + 'static>(err: &SdkError<E, HttpResponse>) -> bool {
    sources(err).iter().any(|s| s.contains("credential"))
}

/// The Display text of the error and each of its sources (never their Debug form).
fn sources<E: std::error::Error + 'static>(err: &SdkError<E, HttpResponse>) -> Vec<String> {
    let mut out = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        out.push(e.to_string());
        next = e.source();
    }
    out
}

/// The innermost useful words: `Connection refused (os error 111)`, not the wrapper chain. For
/// the credential chain, its first line (the attempts follow on further lines).
fn root_cause<E: std::error::Error + 'static>(err: &SdkError<E, HttpResponse>) -> String {
    let all = sources(err);
    let deepest = all
        .iter()
        .rev()
        .map(|s| s.lines().next().unwrap_or("").trim())
        .find(|s| !s.is_empty() && *s != "other" && *s != "io error")
        .unwrap_or("unknown error");
    deepest.to_string()
}

fn is_access<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    matches!(err, SdkError::ServiceError(ctx) if ctx.err().code().is_some_and(|c| ACCESS.contains(&c)))
}

/// The kind for a service error code and HTTP status.
pub fn kind_for(
    code: &str,
    status: u16,
    code_of: &impl Fn(&str) -> Option<&'static str>,
) -> ErrorKind {
    if THROTTLING.contains(&code) || status == 429 {
        return ErrorKind::Throttled;
    }
    if let Some(ours) = code_of(code) {
        return ErrorKind::Rejected(ours.to_string());
    }
    if UNAVAILABLE.contains(&code) || ACCESS.contains(&code) || status >= 500 || status == 403 {
        return ErrorKind::Unavailable;
    }
    ErrorKind::Rejected(snake_case(code))
}

/// `ResourceNotFoundException` -> `resource_not_found`.
pub fn snake_case(code: &str) -> String {
    let code = code.strip_suffix("Exception").unwrap_or(code);
    let mut out = String::with_capacity(code.len() + 4);
    for (i, c) in code.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    if out.is_empty() {
        "unknown".into()
    } else {
        out
    }
}

/// The error and its sources on one line.
fn chain<E: std::error::Error + 'static>(e: &SdkError<E, HttpResponse>) -> String {
    aws_smithy_types::error::display::DisplayErrorContext(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<&'static str> {
        None
    }

    #[test]
    fn classifies_codes_and_statuses() {
        assert_eq!(
            kind_for("ThrottlingException", 400, &none),
            ErrorKind::Throttled
        );
        assert_eq!(
            kind_for("TooManyRequestsException", 400, &none),
            ErrorKind::Throttled
        );
        assert_eq!(kind_for("Whatever", 429, &none), ErrorKind::Throttled);
        assert_eq!(
            kind_for("InternalErrorException", 500, &none),
            ErrorKind::Unavailable
        );
        assert_eq!(kind_for("Whatever", 503, &none), ErrorKind::Unavailable);
        assert_eq!(
            kind_for("AccessDeniedException", 400, &none),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind_for("InvalidParameterException", 400, &none),
            ErrorKind::Rejected("invalid_parameter".into())
        );
        let pool = |c: &str| (c == "ResourceNotFoundException").then_some("user_pool_not_found");
        assert_eq!(
            kind_for("ResourceNotFoundException", 400, &pool),
            ErrorKind::Rejected("user_pool_not_found".into())
        );
    }

    #[test]
    fn snake_cases_codes() {
        assert_eq!(
            snake_case("ResourceNotFoundException"),
            "resource_not_found"
        );
        assert_eq!(snake_case("MessageRejected"), "message_rejected");
        assert_eq!(snake_case(""), "unknown");
    }
}
