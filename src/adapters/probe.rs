//! [`AwsProbe`]: the read-only calls that check a setup before any work (`config check`, and the
//! start-up check of every command): does the queue, table, pool, sender identity exist, and can
//! these credentials reach it. Errors are [`DownstreamError`]s carrying a [`crate::error::SetupCause`].

use aws_config::SdkConfig;
use aws_sdk_sesv2::types::VerificationStatus;
use aws_sdk_sqs::types::QueueAttributeName;

use crate::adapters::aws_errors::{classify, succeeded_unreadably};
use crate::adapters::cognito::CognitoDirectory;
use crate::adapters::ses_suppression::SesSuppressionList;
use crate::domain::{EmailAddress, PoolProfile};
use crate::error::{DownstreamError, Service, SetupCause};
use crate::ports::{Directory, SuppressionList};

/// Read-only SDK calls, one per kind of resource.
#[derive(Clone, Debug)]
pub struct AwsProbe {
    sqs: aws_sdk_sqs::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    cognito: aws_sdk_cognitoidentityprovider::Client,
    ses: aws_sdk_sesv2::Client,
}

/// Whether an SES account may send to anyone, where the API says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SesAccess {
    Production,
    Sandbox,
    /// The endpoint does not implement GetAccount (moto), or the policy does not grant it.
    Unknown,
}

impl AwsProbe {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            sqs: aws_sdk_sqs::Client::new(sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            cognito: aws_sdk_cognitoidentityprovider::Client::new(sdk),
            ses: aws_sdk_sesv2::Client::new(sdk),
        }
    }

    /// `GetQueueAttributes`: the approximate number of visible messages.
    pub async fn queue(&self, url: &str) -> Result<String, DownstreamError> {
        let name = QueueAttributeName::ApproximateNumberOfMessages;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(name.clone())
            .send()
            .await
            .map_err(|e| classify(Service::Sqs, "GetQueueAttributes", &e, |_| None))?;
        Ok(out
            .attributes()
            .and_then(|a| a.get(&name))
            .cloned()
            .unwrap_or_default())
    }

    /// `DescribeTable`: the table's status (`ACTIVE`...).
    pub async fn table(&self, name: &str) -> Result<String, DownstreamError> {
        let out = self
            .dynamodb
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| classify(Service::DynamoDb, "DescribeTable", &e, |_| None))?;
        Ok(out
            .table()
            .and_then(|t| t.table_status())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default())
    }

    /// `DescribeUserPool`, read the way the worker reads it.
    pub async fn pool(&self, user_pool_id: &str) -> Result<PoolProfile, DownstreamError> {
        CognitoDirectory::new(self.cognito.clone(), user_pool_id.to_string())
            .pool_profile()
            .await
    }

    /// `GetEmailIdentity`: whether SES lets `address` send, as an address identity or, when
    /// there is none, through its domain's identity (as SES itself decides).
    pub async fn sender_verified(&self, address: &str) -> Result<bool, DownstreamError> {
        match self.identity_verified(address).await {
            Err(e) if e.setup == Some(SetupCause::NotFound) => match address.rsplit_once('@') {
                Some((_, domain)) => self.identity_verified(domain).await.map_err(|_| e),
                None => Err(e),
            },
            other => other,
        }
    }

    async fn identity_verified(&self, identity: &str) -> Result<bool, DownstreamError> {
        let out = self
            .ses
            .get_email_identity()
            .email_identity(identity)
            .send()
            .await
            .map_err(|e| classify(Service::Ses, "GetEmailIdentity", &e, |_| None))?;
        Ok(out.verified_for_sending_status()
            || out.verification_status() == Some(&VerificationStatus::Success))
    }

    /// `GetConfigurationSet`: the configuration set every mail is sent with exists (SES rejects
    /// each send naming one that does not).
    pub async fn configuration_set(&self, name: &str) -> Result<(), DownstreamError> {
        match self
            .ses
            .get_configuration_set()
            .configuration_set_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if succeeded_unreadably(&e) => Ok(()),
            Err(e) => Err(classify(Service::Ses, "GetConfigurationSet", &e, |_| None)),
        }
    }

    /// One `GetSuppressedDestination` for `address` (harmless: a read), the way the worker asks
    /// before each invite: whether these credentials may read the suppression list. `Ok` whether
    /// or not the address is listed.
    pub async fn suppression_list(&self, address: &EmailAddress) -> Result<(), DownstreamError> {
        SesSuppressionList::new(self.ses.clone())
            .suppressed(address)
            .await
            .map(|_| ())
    }

    /// `GetAccount`: whether the account is in the SES sandbox. Any error (not implemented,
    /// not granted) is [`SesAccess::Unknown`]: this is advice, not a check.
    pub async fn ses_access(&self) -> SesAccess {
        match self.ses.get_account().send().await {
            Ok(out) if out.production_access_enabled() => SesAccess::Production,
            Ok(_) => SesAccess::Sandbox,
            Err(e) => {
                tracing::debug!(error = %classify(Service::Ses, "GetAccount", &e, |_| None), "SES GetAccount failed");
                SesAccess::Unknown
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::test_support::mocked;
    use aws_sdk_sesv2::operation::get_email_identity::GetEmailIdentityOutput;
    use aws_smithy_mocks::mock;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_types::body::SdkBody;

    fn error(status: u16, code: &str, content_type: &str) -> HttpResponse {
        let body = serde_json::json!({ "__type": code, "message": "no" }).to_string();
        let mut resp = HttpResponse::new(status.try_into().unwrap(), SdkBody::from(body));
        resp.headers_mut()
            .insert("content-type", content_type.to_string());
        resp.headers_mut()
            .insert("x-amzn-errortype", code.to_string());
        resp
    }

    fn probe(dynamodb: aws_sdk_dynamodb::Client, ses: aws_sdk_sesv2::Client) -> AwsProbe {
        AwsProbe {
            sqs: mocked!(aws_sdk_sqs),
            dynamodb,
            cognito: mocked!(aws_sdk_cognitoidentityprovider),
            ses,
        }
    }

    #[tokio::test]
    async fn a_sender_counts_as_verified_through_its_domain() {
        let address = mock!(aws_sdk_sesv2::Client::get_email_identity)
            .match_requests(|r| r.email_identity() == Some("ops@acme.example"))
            .then_http_response(|| error(404, "NotFoundException", "application/json"));
        let domain = mock!(aws_sdk_sesv2::Client::get_email_identity)
            .match_requests(|r| r.email_identity() == Some("acme.example"))
            .then_output(|| {
                GetEmailIdentityOutput::builder()
                    .verified_for_sending_status(true)
                    .build()
            });
        let p = probe(
            mocked!(aws_sdk_dynamodb),
            mocked!(aws_sdk_sesv2, address, domain),
        );
        assert_eq!(p.sender_verified("ops@acme.example").await, Ok(true));
    }

    #[tokio::test]
    async fn a_sender_without_any_identity_is_not_found() {
        let none = mock!(aws_sdk_sesv2::Client::get_email_identity)
            .then_http_response(|| error(404, "NotFoundException", "application/json"));
        let p = probe(mocked!(aws_sdk_dynamodb), mocked!(aws_sdk_sesv2, none));
        let e = p.sender_verified("ops@acme.example").await.unwrap_err();
        assert_eq!(e.setup, Some(SetupCause::NotFound));
    }

    #[tokio::test]
    async fn a_missing_configuration_set_is_not_found() {
        let missing = mock!(aws_sdk_sesv2::Client::get_configuration_set)
            .then_http_response(|| error(404, "NotFoundException", "application/json"));
        let p = probe(mocked!(aws_sdk_dynamodb), mocked!(aws_sdk_sesv2, missing));
        let e = p.configuration_set("invites").await.unwrap_err();
        assert_eq!(e.setup, Some(SetupCause::NotFound), "{e}");
        assert_eq!(e.operation, "GetConfigurationSet");
    }

    #[tokio::test]
    async fn a_configuration_set_moto_describes_wrongly_still_exists() {
        let moto = mock!(aws_sdk_sesv2::Client::get_configuration_set).then_http_response(|| {
            let body =
                r#"{"ConfigurationSetName": "invites", "SendingOptions": {"SendingEnabled": {}}}"#;
            let mut resp = HttpResponse::new(200.try_into().unwrap(), SdkBody::from(body));
            resp.headers_mut()
                .insert("content-type", "text/html; charset=utf-8");
            resp
        });
        let p = probe(mocked!(aws_sdk_dynamodb), mocked!(aws_sdk_sesv2, moto));
        assert_eq!(p.configuration_set("invites").await, Ok(()));
    }

    #[tokio::test]
    async fn reading_the_suppression_list_without_the_permission_is_access_denied() {
        let denied = mock!(aws_sdk_sesv2::Client::get_suppressed_destination)
            .then_http_response(|| error(403, "AccessDeniedException", "application/json"));
        let p = probe(mocked!(aws_sdk_dynamodb), mocked!(aws_sdk_sesv2, denied));
        let address = EmailAddress::parse("no-reply@example.com").unwrap();
        let e = p.suppression_list(&address).await.unwrap_err();
        assert_eq!(e.setup, Some(SetupCause::AccessDenied), "{e}");
        let listed = mock!(aws_sdk_sesv2::Client::get_suppressed_destination)
            .then_http_response(|| error(404, "NotFoundException", "application/json"));
        let p = probe(mocked!(aws_sdk_dynamodb), mocked!(aws_sdk_sesv2, listed));
        assert_eq!(p.suppression_list(&address).await, Ok(()));
    }

    #[tokio::test]
    async fn get_account_unsupported_is_unknown_not_a_failure() {
        let unsupported = mock!(aws_sdk_sesv2::Client::get_account)
            .then_http_response(|| error(404, "UnknownOperationException", "application/json"));
        let p = probe(
            mocked!(aws_sdk_dynamodb),
            mocked!(aws_sdk_sesv2, unsupported),
        );
        assert_eq!(p.ses_access().await, SesAccess::Unknown);
    }

    #[tokio::test]
    async fn access_denied_and_a_missing_table_are_setup_causes() {
        for (code, cause) in [
            ("AccessDeniedException", SetupCause::AccessDenied),
            ("ResourceNotFoundException", SetupCause::NotFound),
        ] {
            let rule = mock!(aws_sdk_dynamodb::Client::describe_table)
                .then_http_response(move || error(400, code, "application/x-amz-json-1.0"));
            let p = probe(mocked!(aws_sdk_dynamodb, rule), mocked!(aws_sdk_sesv2));
            let e = p.table("invites").await.unwrap_err();
            assert_eq!(e.setup, Some(cause), "{code}: {e}");
            assert!(!e.message.contains("{ source:"), "{e}");
        }
    }
}
