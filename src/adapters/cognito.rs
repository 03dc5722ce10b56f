//! [`CognitoDirectory`]: the [`Directory`] port on Amazon Cognito user pools (admin APIs).
//!
//! Every SDK error goes through [`aws_errors::classify`]; error messages are built from the
//! service's error code and message only, and a password is scrubbed out of them should a
//! service ever echo one back.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::types::{
    AttributeDataType, AttributeType, MessageActionType, PasswordPolicyType, SchemaAttributeType,
    UserPoolType, UserStatusType,
};
use aws_sdk_cognitoidentityprovider::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::adapters::aws_errors;
use crate::domain::pool::{AttributeKind, AttributeSpec};
use crate::domain::pool::{STANDARD_ATTRIBUTES, SYSTEM_ATTRIBUTES};
use crate::domain::{PasswordPolicy, PoolProfile, TemporaryPassword};
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::ports::{CreateOutcome, Directory, NewUser, UserInfo, UserStatus};

/// Cognito's default `TemporaryPasswordValidityDays`.
const DEFAULT_TEMPORARY_PASSWORD_VALIDITY_DAYS: u32 = 7;

/// Cognito's default `MinimumLength`.
const DEFAULT_MIN_LENGTH: usize = 8;

/// Error codes that are 4xx on the wire but say nothing about the request: retry later.
/// `UnexpectedLambdaException`: a trigger Lambda failed or timed out.
const TRANSIENT_CODES: &[&str] = &["UnexpectedLambdaException"];

/// A Cognito user pool, through the admin APIs.
#[derive(Clone, Debug)]
pub struct CognitoDirectory {
    client: Client,
    user_pool_id: String,
}

impl CognitoDirectory {
    /// A directory for `user_pool_id`. The pool is described on use, not here (and on every
    /// use: `ProfileCachingDirectory` in front of it keeps the profile for a bounded age).
    pub fn new(client: Client, user_pool_id: impl Into<String>) -> Self {
        Self {
            client,
            user_pool_id: user_pool_id.into(),
        }
    }

    pub fn user_pool_id(&self) -> &str {
        &self.user_pool_id
    }

    async fn describe(&self) -> Result<PoolProfile, DownstreamError> {
        let out = self
            .client
            .describe_user_pool()
            .user_pool_id(&self.user_pool_id)
            .send()
            .await
            .map_err(|e| error("DescribeUserPool", &e, pool_codes, None))?;
        let pool = out.user_pool().ok_or_else(|| {
            DownstreamError::new(
                Service::Cognito,
                "DescribeUserPool",
                ErrorKind::Unavailable,
                "the response has no UserPool",
            )
        })?;
        Ok(profile_from(&self.user_pool_id, pool))
    }
}

#[async_trait]
impl Directory for CognitoDirectory {
    async fn pool_profile(&self) -> Result<PoolProfile, DownstreamError> {
        self.describe().await
    }

    async fn create_user(&self, user: &NewUser<'_>) -> Result<CreateOutcome, DownstreamError> {
        let op = "AdminCreateUser";
        let secret = Some(user.temporary_password);
        let mut attributes = Vec::with_capacity(user.attributes.len() + 2);
        for (name, value) in user.attributes {
            // The worker sets these two itself, below.
            if name == "email" || name == "email_verified" {
                continue;
            }
            attributes.push(attribute(op, name, value)?);
        }
        attributes.push(attribute(op, "email", user.email.as_str())?);
        attributes.push(attribute(op, "email_verified", "true")?);

        let result = self
            .client
            .admin_create_user()
            .user_pool_id(&self.user_pool_id)
            .username(user.username)
            .temporary_password(user.temporary_password.expose())
            .message_action(MessageActionType::Suppress)
            .set_user_attributes(Some(attributes))
            .send()
            .await;
        match result {
            Ok(out) => {
                let sub = out.user().and_then(|u| find(u.attributes(), "sub"));
                Ok(CreateOutcome::Created { sub })
            }
            Err(e) if service_code(&e) == Some("UsernameExistsException") => {
                Ok(CreateOutcome::AlreadyExists)
            }
            Err(e) => Err(error(op, &e, pool_codes, secret)),
        }
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserInfo>, DownstreamError> {
        let result = self
            .client
            .admin_get_user()
            .user_pool_id(&self.user_pool_id)
            .username(username)
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) if service_code(&e) == Some("UserNotFoundException") => return Ok(None),
            Err(e) => return Err(error("AdminGetUser", &e, pool_codes, None)),
        };
        let attributes: BTreeMap<String, String> = out
            .user_attributes()
            .iter()
            .map(|a| {
                (
                    a.name().to_string(),
                    a.value().unwrap_or_default().to_string(),
                )
            })
            .collect();
        Ok(Some(UserInfo {
            username: out.username().to_string(),
            status: user_status(out.user_status()),
            enabled: out.enabled(),
            sub: attributes.get("sub").cloned(),
            attributes,
        }))
    }

    async fn set_temporary_password(
        &self,
        username: &str,
        password: &TemporaryPassword,
    ) -> Result<(), DownstreamError> {
        self.client
            .admin_set_user_password()
            .user_pool_id(&self.user_pool_id)
            .username(username)
            .password(password.expose())
            .permanent(false)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| error("AdminSetUserPassword", &e, pool_codes, Some(password)))
    }

    async fn delete_user(&self, username: &str) -> Result<(), DownstreamError> {
        match self
            .client
            .admin_delete_user()
            .user_pool_id(&self.user_pool_id)
            .username(username)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if service_code(&e) == Some("UserNotFoundException") => Ok(()),
            Err(e) => Err(error("AdminDeleteUser", &e, pool_codes, None)),
        }
    }

    async fn add_user_to_group(&self, username: &str, group: &str) -> Result<(), DownstreamError> {
        let result = self
            .client
            .admin_add_user_to_group()
            .user_pool_id(&self.user_pool_id)
            .username(username)
            .group_name(group)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let mut err = error("AdminAddUserToGroup", &e, group_codes, None);
                if err.rejection_code() == Some("group_not_found") {
                    err.message = format!(
                        "group {group:?} does not exist in user pool {}: {}",
                        self.user_pool_id, err.message
                    );
                }
                Err(err)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Our reason codes for Cognito's error codes, for calls on a user pool.
fn pool_codes(code: &str) -> Option<&'static str> {
    match code {
        "ResourceNotFoundException" => Some("user_pool_not_found"),
        other => common_codes(other),
    }
}

/// As [`pool_codes`], for `AdminAddUserToGroup`, where a missing resource is the group.
fn group_codes(code: &str) -> Option<&'static str> {
    match code {
        "ResourceNotFoundException" => Some("group_not_found"),
        other => common_codes(other),
    }
}

fn common_codes(code: &str) -> Option<&'static str> {
    match code {
        "InvalidParameterException" => Some("invalid_parameter"),
        "InvalidPasswordException" => Some("invalid_password"),
        "UserLambdaValidationException" => Some("lambda_validation_failed"),
        "UserNotFoundException" => Some("user_not_found"),
        _ => None,
    }
}

/// The service's error code, for service errors.
fn service_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    err.as_service_error().and_then(|e| e.code())
}

/// Classifies `err`; removes `secret` from the message should the service have echoed it.
fn error<E>(
    operation: &'static str,
    err: &SdkError<E, HttpResponse>,
    code_of: fn(&str) -> Option<&'static str>,
    secret: Option<&TemporaryPassword>,
) -> DownstreamError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut out = aws_errors::classify(Service::Cognito, operation, err, code_of);
    if service_code(err).is_some_and(|c| TRANSIENT_CODES.contains(&c)) {
        out.kind = ErrorKind::Unavailable;
    }
    if let Some(secret) = secret {
        out.message = scrub(&out.message, secret.expose());
    }
    out
}

/// `message` with every occurrence of `secret` replaced by `[redacted]`.
fn scrub(message: &str, secret: &str) -> String {
    if secret.is_empty() {
        message.to_string()
    } else {
        message.replace(secret, "[redacted]")
    }
}

// ---------------------------------------------------------------------------------------------
// Mapping SDK types to ours

fn attribute(
    operation: &'static str,
    name: &str,
    value: &str,
) -> Result<AttributeType, DownstreamError> {
    AttributeType::builder()
        .name(name)
        .value(value)
        .build()
        .map_err(|e| {
            DownstreamError::new(
                Service::Cognito,
                operation,
                ErrorKind::Rejected("invalid_parameter".into()),
                format!("attribute {name:?} cannot be sent: {e}"),
            )
        })
}

fn find(attributes: &[AttributeType], name: &str) -> Option<String> {
    attributes
        .iter()
        .find(|a| a.name() == name)
        .and_then(|a| a.value())
        .map(str::to_string)
}

fn user_status(status: Option<&UserStatusType>) -> UserStatus {
    match status {
        Some(UserStatusType::ForceChangePassword) => UserStatus::ForceChangePassword,
        Some(UserStatusType::Confirmed) => UserStatus::Confirmed,
        Some(other) => UserStatus::Other(other.as_str().to_string()),
        None => UserStatus::Other("UNKNOWN".into()),
    }
}

fn profile_from(user_pool_id: &str, pool: &UserPoolType) -> PoolProfile {
    let attributes = pool
        .schema_attributes()
        .iter()
        .filter_map(attribute_spec)
        .map(|spec| (spec.name.clone(), spec))
        .collect();
    let password_policy = pool
        .policies()
        .and_then(|p| p.password_policy())
        .map(password_policy)
        .unwrap_or_default();
    PoolProfile {
        user_pool_id: user_pool_id.to_string(),
        attributes,
        password_policy,
    }
}

/// One schema attribute; `None` for an attribute without a name.
fn attribute_spec(a: &SchemaAttributeType) -> Option<AttributeSpec> {
    let raw = a.name().filter(|n| !n.is_empty())?;
    let developer_only = a.developer_only_attribute().unwrap_or(false) || raw.starts_with("dev:");
    let name = normalised_name(raw, developer_only);
    let kind = match a.attribute_data_type() {
        Some(AttributeDataType::Number) => AttributeKind::Number,
        Some(AttributeDataType::Datetime) => AttributeKind::DateTime,
        Some(AttributeDataType::Boolean) => AttributeKind::Boolean,
        _ => AttributeKind::String,
    };
    let strings = a.string_attribute_constraints();
    let numbers = a.number_attribute_constraints();
    Some(AttributeSpec {
        name,
        kind,
        required: a.required().unwrap_or(false),
        mutable: a.mutable().unwrap_or(true),
        developer_only,
        min_length: strings
            .and_then(|s| s.min_length())
            .and_then(|v| v.trim().parse().ok()),
        max_length: strings
            .and_then(|s| s.max_length())
            .and_then(|v| v.trim().parse().ok()),
        min_value: numbers
            .and_then(|n| n.min_value())
            .and_then(|v| v.trim().parse().ok()),
        max_value: numbers
            .and_then(|n| n.max_value())
            .and_then(|v| v.trim().parse().ok()),
    })
}

/// The name as `AdminCreateUser` takes it: `custom:foo` for custom attributes and
/// `dev:custom:foo` for developer-only ones, whatever prefix the service returned.
fn normalised_name(raw: &str, developer_only: bool) -> String {
    let bare = raw.strip_prefix("dev:").unwrap_or(raw);
    let custom = bare.starts_with("custom:")
        || !(STANDARD_ATTRIBUTES.contains(&bare) || SYSTEM_ATTRIBUTES.contains(&bare));
    let bare = bare.strip_prefix("custom:").unwrap_or(bare);
    match (developer_only, custom) {
        (true, _) => format!("dev:custom:{bare}"),
        (false, true) => format!("custom:{bare}"),
        (false, false) => bare.to_string(),
    }
}

fn password_policy(p: &PasswordPolicyType) -> PasswordPolicy {
    PasswordPolicy {
        min_length: p
            .minimum_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_MIN_LENGTH),
        require_uppercase: p.require_uppercase(),
        require_lowercase: p.require_lowercase(),
        require_numbers: p.require_numbers(),
        require_symbols: p.require_symbols(),
        // Absent is 0 in the SDK's model, and Cognito itself reads 0 as "the default".
        temporary_password_validity_days: u32::try_from(p.temporary_password_validity_days())
            .ok()
            .filter(|d| *d > 0)
            .unwrap_or(DEFAULT_TEMPORARY_PASSWORD_VALIDITY_DAYS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EmailAddress;
    use aws_sdk_cognitoidentityprovider::config::retry::RetryConfig;
    use aws_sdk_cognitoidentityprovider::operation::admin_create_user::AdminCreateUserOutput;
    use aws_sdk_cognitoidentityprovider::operation::describe_user_pool::DescribeUserPoolOutput;
    use aws_sdk_cognitoidentityprovider::types::{
        NumberAttributeConstraintsType, StringAttributeConstraintsType, UserPoolPolicyType,
        UserType,
    };
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use aws_smithy_types::body::SdkBody;

    const POOL: &str = "us-east-1_test";
    const SECRET: &str = "Sup3r-Secret-Temp!";

    /// A Cognito (awsJson 1.1) error response, as the service sends it.
    fn cognito_error(status: u16, code: &str, message: &str) -> HttpResponse {
        let body = serde_json::json!({ "__type": code, "message": message }).to_string();
        let mut resp = HttpResponse::new(
            status.try_into().expect("valid status"),
            SdkBody::from(body),
        );
        resp.headers_mut()
            .insert("content-type", "application/x-amz-json-1.1");
        resp
    }

    fn directory(rules: &[&Rule]) -> CognitoDirectory {
        let client = mock_client!(
            aws_sdk_cognitoidentityprovider,
            RuleMode::MatchAny,
            rules,
            |c| c.retry_config(RetryConfig::disabled())
        );
        CognitoDirectory::new(client, POOL)
    }

    fn new_user<'a>(
        email: &'a EmailAddress,
        attributes: &'a BTreeMap<String, String>,
        password: &'a TemporaryPassword,
    ) -> NewUser<'a> {
        NewUser {
            username: email.as_str(),
            email,
            attributes,
            temporary_password: password,
        }
    }

    fn fixtures() -> (EmailAddress, BTreeMap<String, String>, TemporaryPassword) {
        let email = EmailAddress::parse("jane@example.com").expect("valid");
        let attrs = BTreeMap::from([
            ("family_name".to_string(), "Doe".to_string()),
            ("email".to_string(), "spoofed@example.com".to_string()),
        ]);
        (email, attrs, TemporaryPassword::from_known(SECRET))
    }

    #[tokio::test]
    async fn create_user_sends_suppress_verified_email_and_returns_sub() {
        let rule = mock!(Client::admin_create_user)
            .match_requests(|r| {
                let attrs = r.user_attributes();
                let get = |n: &str| attrs.iter().find(|a| a.name() == n).and_then(|a| a.value());
                r.user_pool_id() == Some(POOL)
                    && r.username() == Some("jane@example.com")
                    && r.temporary_password() == Some(SECRET)
                    && r.message_action() == Some(&MessageActionType::Suppress)
                    && get("email") == Some("jane@example.com")
                    && get("email_verified") == Some("true")
                    && get("family_name") == Some("Doe")
                    && attrs.iter().filter(|a| a.name() == "email").count() == 1
            })
            .then_output(|| {
                AdminCreateUserOutput::builder()
                    .user(
                        UserType::builder()
                            .username("abc")
                            .attributes(
                                AttributeType::builder()
                                    .name("sub")
                                    .value("sub-123")
                                    .build()
                                    .expect("name"),
                            )
                            .build(),
                    )
                    .build()
            });
        let dir = directory(&[&rule]);
        let (email, attrs, pw) = fixtures();
        let out = dir
            .create_user(&new_user(&email, &attrs, &pw))
            .await
            .expect("created");
        assert_eq!(
            out,
            CreateOutcome::Created {
                sub: Some("sub-123".into())
            }
        );
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn username_exists_is_already_exists() {
        let rule = mock!(Client::admin_create_user).then_http_response(|| {
            cognito_error(
                400,
                "UsernameExistsException",
                "User account already exists",
            )
        });
        let dir = directory(&[&rule]);
        let (email, attrs, pw) = fixtures();
        let out = dir
            .create_user(&new_user(&email, &attrs, &pw))
            .await
            .expect("not an error");
        assert_eq!(out, CreateOutcome::AlreadyExists);
    }

    #[tokio::test]
    async fn too_many_requests_is_transient_throttle() {
        let rule = mock!(Client::admin_create_user)
            .then_http_response(|| cognito_error(400, "TooManyRequestsException", "Rate exceeded"));
        let dir = directory(&[&rule]);
        let (email, attrs, pw) = fixtures();
        let err = dir
            .create_user(&new_user(&email, &attrs, &pw))
            .await
            .expect_err("throttled");
        assert_eq!(err.kind, ErrorKind::Throttled);
        assert!(err.is_transient());
        assert_eq!(err.operation, "AdminCreateUser");
    }

    #[tokio::test]
    async fn resource_not_found_is_user_pool_not_found() {
        let rule = mock!(Client::admin_create_user).then_http_response(|| {
            cognito_error(
                400,
                "ResourceNotFoundException",
                "User pool us-east-1_test does not exist.",
            )
        });
        let dir = directory(&[&rule]);
        let (email, attrs, pw) = fixtures();
        let err = dir
            .create_user(&new_user(&email, &attrs, &pw))
            .await
            .expect_err("rejected");
        assert_eq!(err.rejection_code(), Some("user_pool_not_found"));
    }

    #[tokio::test]
    async fn create_user_error_codes() {
        for (code, status, want) in [
            (
                "InvalidParameterException",
                400,
                ErrorKind::Rejected("invalid_parameter".into()),
            ),
            (
                "InvalidPasswordException",
                400,
                ErrorKind::Rejected("invalid_password".into()),
            ),
            (
                "UserLambdaValidationException",
                400,
                ErrorKind::Rejected("lambda_validation_failed".into()),
            ),
            ("LimitExceededException", 400, ErrorKind::Throttled),
            ("InternalErrorException", 500, ErrorKind::Unavailable),
            ("UnexpectedLambdaException", 400, ErrorKind::Unavailable),
        ] {
            let rule = mock!(Client::admin_create_user)
                .then_http_response(move || cognito_error(status, code, "nope"));
            let dir = directory(&[&rule]);
            let (email, attrs, pw) = fixtures();
            let err = dir
                .create_user(&new_user(&email, &attrs, &pw))
                .await
                .expect_err(code);
            assert_eq!(err.kind, want, "{code}");
        }
    }

    #[tokio::test]
    async fn a_password_echoed_by_the_service_is_scrubbed() {
        let rule = mock!(Client::admin_create_user).then_http_response(|| {
            cognito_error(
                400,
                "InvalidPasswordException",
                &format!("Password {SECRET} did not conform with policy"),
            )
        });
        let set = mock!(Client::admin_set_user_password).then_http_response(|| {
            cognito_error(
                400,
                "InvalidPasswordException",
                &format!("Password {SECRET} did not conform with policy"),
            )
        });
        let dir = directory(&[&rule, &set]);
        let (email, attrs, pw) = fixtures();
        let err = dir
            .create_user(&new_user(&email, &attrs, &pw))
            .await
            .expect_err("rejected");
        assert_eq!(err.rejection_code(), Some("invalid_password"));
        assert!(!err.to_string().contains(SECRET), "{err}");
        assert!(!format!("{err:?}").contains(SECRET));
        let err = dir
            .set_temporary_password("jane@example.com", &pw)
            .await
            .expect_err("rejected");
        assert!(!err.to_string().contains(SECRET), "{err}");
    }

    #[tokio::test]
    async fn get_user_maps_status_and_attributes_and_missing_user() {
        use aws_sdk_cognitoidentityprovider::operation::admin_get_user::AdminGetUserOutput;
        let found = mock!(Client::admin_get_user)
            .match_requests(|r| r.username() == Some("jane@example.com"))
            .then_output(|| {
                AdminGetUserOutput::builder()
                    .username("uuid-1")
                    .enabled(true)
                    .user_status(UserStatusType::ForceChangePassword)
                    .user_attributes(
                        AttributeType::builder()
                            .name("sub")
                            .value("uuid-1")
                            .build()
                            .expect("name"),
                    )
                    .user_attributes(
                        AttributeType::builder()
                            .name("custom:test_attribute1")
                            .value("blue")
                            .build()
                            .expect("name"),
                    )
                    .build()
                    .expect("username set")
            });
        let confirmed = mock!(Client::admin_get_user)
            .match_requests(|r| r.username() == Some("bob@example.com"))
            .then_output(|| {
                AdminGetUserOutput::builder()
                    .username("uuid-2")
                    .enabled(false)
                    .user_status(UserStatusType::Confirmed)
                    .build()
                    .expect("username set")
            });
        let reset = mock!(Client::admin_get_user)
            .match_requests(|r| r.username() == Some("rita@example.com"))
            .then_output(|| {
                AdminGetUserOutput::builder()
                    .username("uuid-3")
                    .user_status(UserStatusType::ResetRequired)
                    .build()
                    .expect("username set")
            });
        let missing = mock!(Client::admin_get_user)
            .match_requests(|r| r.username() == Some("nobody@example.com"))
            .then_http_response(|| {
                cognito_error(400, "UserNotFoundException", "User does not exist.")
            });
        let dir = directory(&[&found, &confirmed, &reset, &missing]);

        let jane = dir
            .get_user("jane@example.com")
            .await
            .expect("ok")
            .expect("found");
        assert_eq!(jane.username, "uuid-1");
        assert_eq!(jane.status, UserStatus::ForceChangePassword);
        assert!(jane.enabled);
        assert_eq!(jane.sub.as_deref(), Some("uuid-1"));
        assert_eq!(
            jane.attributes
                .get("custom:test_attribute1")
                .map(String::as_str),
            Some("blue")
        );

        let bob = dir
            .get_user("bob@example.com")
            .await
            .expect("ok")
            .expect("found");
        assert_eq!(bob.status, UserStatus::Confirmed);
        assert!(!bob.enabled);
        assert_eq!(bob.sub, None);

        let rita = dir
            .get_user("rita@example.com")
            .await
            .expect("ok")
            .expect("found");
        assert_eq!(rita.status, UserStatus::Other("RESET_REQUIRED".into()));

        assert_eq!(dir.get_user("nobody@example.com").await.expect("ok"), None);
    }

    #[tokio::test]
    async fn delete_of_a_missing_user_is_ok_and_other_errors_are_not() {
        let missing = mock!(Client::admin_delete_user)
            .match_requests(|r| r.username() == Some("nobody"))
            .then_http_response(|| {
                cognito_error(400, "UserNotFoundException", "User does not exist.")
            });
        let gone_pool = mock!(Client::admin_delete_user)
            .match_requests(|r| r.username() == Some("jane"))
            .then_http_response(|| {
                cognito_error(
                    400,
                    "ResourceNotFoundException",
                    "User pool does not exist.",
                )
            });
        let dir = directory(&[&missing, &gone_pool]);
        dir.delete_user("nobody").await.expect("counts as deleted");
        let err = dir.delete_user("jane").await.expect_err("pool gone");
        assert_eq!(err.rejection_code(), Some("user_pool_not_found"));
    }

    #[tokio::test]
    async fn set_temporary_password_is_not_permanent() {
        let rule = mock!(Client::admin_set_user_password)
            .match_requests(|r| r.permanent() == Some(false) && r.password() == Some(SECRET) && r.username() == Some("jane"))
            .then_output(|| aws_sdk_cognitoidentityprovider::operation::admin_set_user_password::AdminSetUserPasswordOutput::builder().build());
        let dir = directory(&[&rule]);
        dir.set_temporary_password("jane", &TemporaryPassword::from_known(SECRET))
            .await
            .expect("set");
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn missing_group_is_group_not_found_and_names_the_group() {
        let rule = mock!(Client::admin_add_user_to_group).then_http_response(|| {
            cognito_error(400, "ResourceNotFoundException", "Group not found.")
        });
        let dir = directory(&[&rule]);
        let err = dir
            .add_user_to_group("jane", "admins")
            .await
            .expect_err("rejected");
        assert_eq!(err.rejection_code(), Some("group_not_found"));
        assert!(err.message.contains("\"admins\""), "{err}");
    }

    fn described_pool() -> DescribeUserPoolOutput {
        let schema = |name: &str, kind: AttributeDataType, required: bool, mutable: bool| {
            SchemaAttributeType::builder()
                .name(name)
                .attribute_data_type(kind)
                .required(required)
                .mutable(mutable)
                .developer_only_attribute(false)
        };
        DescribeUserPoolOutput::builder()
            .user_pool(
                UserPoolType::builder()
                    .id(POOL)
                    .schema_attributes(
                        schema("email", AttributeDataType::String, true, false)
                            .string_attribute_constraints(
                                StringAttributeConstraintsType::builder()
                                    .min_length("0")
                                    .max_length("2048")
                                    .build(),
                            )
                            .build(),
                    )
                    .schema_attributes(
                        schema("family_name", AttributeDataType::String, true, true).build(),
                    )
                    .schema_attributes(
                        schema(
                            "custom:test_attribute1",
                            AttributeDataType::String,
                            false,
                            true,
                        )
                        .string_attribute_constraints(
                            StringAttributeConstraintsType::builder()
                                .max_length("256")
                                .build(),
                        )
                        .build(),
                    )
                    // Some emulators return custom attributes without their prefix.
                    .schema_attributes(
                        schema("level", AttributeDataType::Number, false, true)
                            .number_attribute_constraints(
                                NumberAttributeConstraintsType::builder()
                                    .min_value("0")
                                    .max_value("not a number")
                                    .build(),
                            )
                            .build(),
                    )
                    .schema_attributes(
                        schema("dev:custom:secret", AttributeDataType::String, false, true)
                            .developer_only_attribute(true)
                            .build(),
                    )
                    .schema_attributes(
                        schema("internal", AttributeDataType::Boolean, false, true)
                            .developer_only_attribute(true)
                            .build(),
                    )
                    .policies(
                        UserPoolPolicyType::builder()
                            .password_policy(
                                PasswordPolicyType::builder()
                                    .minimum_length(12)
                                    .require_uppercase(true)
                                    .require_lowercase(true)
                                    .require_numbers(true)
                                    .require_symbols(false)
                                    .temporary_password_validity_days(3)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .build()
    }

    #[tokio::test]
    async fn pool_profile_maps_schema_and_policy() {
        let rule = mock!(Client::describe_user_pool)
            .match_requests(|r| r.user_pool_id() == Some(POOL))
            .then_output(described_pool);
        let dir = directory(&[&rule]);
        let profile = dir.pool_profile().await.expect("profile");
        assert_eq!(profile.user_pool_id, POOL);
        let names: Vec<&str> = profile.attributes.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "custom:level",
                "custom:test_attribute1",
                "dev:custom:internal",
                "dev:custom:secret",
                "email",
                "family_name"
            ]
        );
        let email = &profile.attributes["email"];
        assert!(email.required && !email.mutable && !email.developer_only);
        assert_eq!((email.min_length, email.max_length), (Some(0), Some(2048)));
        let custom = &profile.attributes["custom:test_attribute1"];
        assert!(!custom.required && custom.mutable);
        assert_eq!(
            (custom.kind, custom.min_length, custom.max_length),
            (AttributeKind::String, None, Some(256))
        );
        let level = &profile.attributes["custom:level"];
        assert_eq!(
            (level.kind, level.min_value, level.max_value),
            (AttributeKind::Number, Some(0), None)
        );
        assert!(profile.attributes["dev:custom:secret"].developer_only);
        assert_eq!(
            profile.attributes["dev:custom:internal"].kind,
            AttributeKind::Boolean
        );
        assert!(profile.attributes["family_name"].required);
        assert_eq!(
            profile.password_policy,
            PasswordPolicy {
                min_length: 12,
                require_uppercase: true,
                require_lowercase: true,
                require_numbers: true,
                require_symbols: false,
                temporary_password_validity_days: 3,
            }
        );
    }

    #[tokio::test]
    async fn a_pool_without_a_policy_gets_the_default() {
        let rule = mock!(Client::describe_user_pool).then_output(|| {
            DescribeUserPoolOutput::builder()
                .user_pool(UserPoolType::builder().id(POOL).build())
                .build()
        });
        let dir = directory(&[&rule]);
        let profile = dir.pool_profile().await.expect("profile");
        assert_eq!(profile.password_policy, PasswordPolicy::default());
        assert!(profile.attributes.is_empty());
    }

    #[tokio::test]
    async fn missing_validity_days_default_to_seven() {
        let rule = mock!(Client::describe_user_pool).then_output(|| {
            DescribeUserPoolOutput::builder()
                .user_pool(
                    UserPoolType::builder()
                        .policies(
                            UserPoolPolicyType::builder()
                                .password_policy(
                                    PasswordPolicyType::builder().minimum_length(10).build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
        let dir = directory(&[&rule]);
        let policy = dir.pool_profile().await.expect("profile").password_policy;
        assert_eq!(
            (policy.min_length, policy.temporary_password_validity_days),
            (10, 7)
        );
    }

    #[tokio::test]
    async fn every_call_describes_the_pool_and_a_failure_is_not_remembered() {
        let rule = mock!(Client::describe_user_pool)
            .sequence()
            .http_response(|| cognito_error(500, "InternalErrorException", "oops"))
            .output(described_pool)
            .repeatedly()
            .build();
        let dir = directory(&[&rule]);
        let err = dir.pool_profile().await.expect_err("first call fails");
        assert_eq!(err.kind, ErrorKind::Unavailable);
        let first = dir.pool_profile().await.expect("second call succeeds");
        let again = dir.clone().pool_profile().await.expect("described again");
        assert_eq!(first, again);
        assert_eq!(
            rule.num_calls(),
            3,
            "no cache here: ProfileCachingDirectory keeps the profile"
        );
    }

    #[tokio::test]
    async fn describe_of_a_missing_pool_is_user_pool_not_found() {
        let rule = mock!(Client::describe_user_pool).then_http_response(|| {
            cognito_error(
                400,
                "ResourceNotFoundException",
                "User pool us-east-1_test does not exist.",
            )
        });
        let dir = directory(&[&rule]);
        let err = dir.pool_profile().await.expect_err("rejected");
        assert_eq!(err.rejection_code(), Some("user_pool_not_found"));
        assert!(err.message.contains("does not exist"), "{err}");
    }

    #[test]
    fn normalises_attribute_names() {
        assert_eq!(normalised_name("given_name", false), "given_name");
        assert_eq!(normalised_name("custom:foo", false), "custom:foo");
        assert_eq!(normalised_name("foo", false), "custom:foo");
        assert_eq!(normalised_name("dev:custom:foo", true), "dev:custom:foo");
        assert_eq!(normalised_name("custom:foo", true), "dev:custom:foo");
        assert_eq!(normalised_name("foo", true), "dev:custom:foo");
    }
}
