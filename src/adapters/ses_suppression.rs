//! [`SesSuppressionList`]: the [`SuppressionList`] port on SES v2 `GetSuppressedDestination`, the
//! account-level suppression list read before an invite creates its user.

use async_trait::async_trait;
use aws_sdk_sesv2::operation::get_suppressed_destination::GetSuppressedDestinationError;
use aws_sdk_sesv2::types::SuppressionListReason;
use aws_sdk_sesv2::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use time::OffsetDateTime;

use crate::adapters::aws_errors;
use crate::domain::EmailAddress;
use crate::error::{DownstreamError, Service};
use crate::ports::{Suppressed, SuppressionList, SuppressionReason};

const OPERATION: &str = "GetSuppressedDestination";

/// Reads the account's suppression list. IAM: `ses:GetSuppressedDestination` on `*` (the action
/// has no resource-level permissions).
#[derive(Clone, Debug)]
pub struct SesSuppressionList {
    client: Client,
}

impl SesSuppressionList {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SuppressionList for SesSuppressionList {
    async fn suppressed(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<Suppressed>, DownstreamError> {
        match self
            .client
            .get_suppressed_destination()
            .email_address(email.as_str())
            .send()
            .await
        {
            Ok(out) => Ok(out.suppressed_destination().map(|d| Suppressed {
                reason: reason(d.reason()),
                since: OffsetDateTime::from_unix_timestamp(d.last_update_time().secs()).ok(),
            })),
            Err(e) if not_on_the_list(&e) => Ok(None),
            Err(e) => Err(aws_errors::classify(Service::Ses, OPERATION, &e, |_| None)),
        }
    }
}

/// `NotFoundException` (HTTP 404) is SES's documented answer for an address that is not on the
/// list. A 404 without any error code counts the same: moto (the local stack) does not implement
/// the API and answers every call with a bare 404 page, so on the local stack nothing is ever
/// suppressed.
fn not_on_the_list(err: &SdkError<GetSuppressedDestinationError, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(ctx) => {
            ctx.err().is_not_found_exception()
                || (ctx.raw().status().as_u16() == 404 && ctx.err().code().is_none())
        }
        _ => false,
    }
}

/// SES knows two reasons; one it may add later is read as a bounce (the address does not take
/// mail), the stricter reading of a complaint is kept for complaints.
fn reason(r: &SuppressionListReason) -> SuppressionReason {
    match r {
        SuppressionListReason::Complaint => SuppressionReason::Complaint,
        _ => SuppressionReason::Bounce,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::test_support::mocked;
    use crate::error::{ErrorKind, SetupCause};
    use aws_sdk_sesv2::operation::get_suppressed_destination::GetSuppressedDestinationOutput;
    use aws_sdk_sesv2::types::SuppressedDestination;
    use aws_smithy_mocks::mock;
    use aws_smithy_types::body::SdkBody;

    fn response(status: u16, code: Option<&str>, body: &str, content_type: &str) -> HttpResponse {
        let mut resp = HttpResponse::new(status.try_into().unwrap(), SdkBody::from(body));
        resp.headers_mut()
            .insert("content-type", content_type.to_string());
        if let Some(code) = code {
            resp.headers_mut()
                .insert("x-amzn-errortype", code.to_string());
        }
        resp
    }

    fn ses_error(status: u16, code: &str) -> HttpResponse {
        let body = serde_json::json!({ "message": "no" }).to_string();
        response(status, Some(code), &body, "application/json")
    }

    fn jane() -> EmailAddress {
        EmailAddress::parse("jane@example.com").unwrap()
    }

    async fn ask(rule: aws_smithy_mocks::Rule) -> Result<Option<Suppressed>, DownstreamError> {
        SesSuppressionList::new(mocked!(aws_sdk_sesv2, rule))
            .suppressed(&jane())
            .await
    }

    #[tokio::test]
    async fn a_listed_address_is_suppressed_with_its_reason_and_time() {
        for (ses, ours) in [
            (SuppressionListReason::Bounce, SuppressionReason::Bounce),
            (
                SuppressionListReason::Complaint,
                SuppressionReason::Complaint,
            ),
        ] {
            let rule = mock!(Client::get_suppressed_destination)
                .match_requests(|r| r.email_address() == Some("jane@example.com"))
                .then_output(move || {
                    GetSuppressedDestinationOutput::builder()
                        .suppressed_destination(
                            SuppressedDestination::builder()
                                .email_address("jane@example.com")
                                .reason(ses.clone())
                                .last_update_time(aws_smithy_types::DateTime::from_secs(
                                    1_700_000_000,
                                ))
                                .build()
                                .unwrap(),
                        )
                        .build()
                });
            let got = ask(rule).await.unwrap().expect("suppressed");
            assert_eq!(got.reason, ours);
            assert_eq!(
                got.since,
                Some(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap())
            );
        }
    }

    #[tokio::test]
    async fn not_found_means_not_on_the_list() {
        let rule = mock!(Client::get_suppressed_destination)
            .then_http_response(|| ses_error(404, "NotFoundException"));
        assert_eq!(ask(rule).await, Ok(None));
    }

    #[tokio::test]
    async fn a_bare_404_page_as_moto_sends_means_not_on_the_list() {
        let rule = mock!(Client::get_suppressed_destination).then_http_response(|| {
            response(
                404,
                None,
                "<!doctype html>\n<title>404 Not Found</title>",
                "text/html; charset=utf-8",
            )
        });
        assert_eq!(ask(rule).await, Ok(None));
    }

    #[tokio::test]
    async fn throttling_and_outages_are_transient() {
        for (status, code, kind) in [
            (429, "TooManyRequestsException", ErrorKind::Throttled),
            (500, "InternalFailure", ErrorKind::Unavailable),
            (503, "ServiceUnavailable", ErrorKind::Unavailable),
        ] {
            let rule = mock!(Client::get_suppressed_destination)
                .then_http_response(move || ses_error(status, code));
            let e = ask(rule).await.unwrap_err();
            assert_eq!(e.kind, kind, "{code}: {e}");
            assert!(e.is_transient(), "{code}");
            assert_eq!((e.service, e.operation), (Service::Ses, OPERATION));
        }
    }

    #[tokio::test]
    async fn a_timeout_is_transient() {
        let rule = mock!(Client::get_suppressed_destination).then_error(|| {
            GetSuppressedDestinationError::generic(
                aws_smithy_types::error::ErrorMetadata::builder()
                    .code("RequestTimeout")
                    .build(),
            )
        });
        let e = ask(rule).await.unwrap_err();
        assert!(e.is_transient(), "{e}");
    }

    #[tokio::test]
    async fn access_denied_is_a_transient_setup_problem_like_everywhere_else() {
        let rule = mock!(Client::get_suppressed_destination)
            .then_http_response(|| ses_error(403, "AccessDeniedException"));
        let e = ask(rule).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
        assert_eq!(e.setup, Some(SetupCause::AccessDenied));
    }
}
