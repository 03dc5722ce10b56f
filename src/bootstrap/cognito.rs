//! The Cognito user pool (shaped like the reference deployment), its app client and groups.
//! Existing pools and clients are used as they are: a pool's schema cannot be changed anyway.

use aws_sdk_cognitoidentityprovider::types::{
    AccountRecoverySettingType, AdminCreateUserConfigType, AttributeDataType,
    ExplicitAuthFlowsType, PasswordPolicyType, PreventUserExistenceErrorTypes,
    RecoveryOptionNameType, RecoveryOptionType, SchemaAttributeType,
    StringAttributeConstraintsType, UserPoolPolicyType, UsernameAttributeType,
    UsernameConfigurationType, VerifiedAttributeType,
};
use aws_sdk_cognitoidentityprovider::Client;

use super::report::{resource, BootstrapReport, Outcome};
use super::BootstrapError;
use crate::config::Settings;

/// The app client bootstrap creates (for the sign-in link and the end-to-end tests).
pub const APP_CLIENT_NAME: &str = "invite-worker-app";
/// The groups invites may put people in.
pub const GROUPS: [&str; 2] = ["employees", "contractors"];
/// The reference deployment's custom attribute (`custom:test_attribute1` once created).
pub const CUSTOM_ATTRIBUTE: &str = "test_attribute1";
/// Largest page the list calls accept.
const PAGE: i32 = 60;

/// Ensures the pool, the app client and the groups, and adds their rows to `report`.
pub(super) async fn ensure(
    cognito: &Client,
    settings: &Settings,
    report: &mut BootstrapReport,
) -> Result<(), BootstrapError> {
    let c = &settings.cognito;
    let (pool_id, pool_outcome) = if !c.user_pool_id.is_empty() {
        check_pool(cognito, &c.user_pool_id).await?;
        (c.user_pool_id.clone(), Outcome::Configured)
    } else {
        if c.user_pool_name.is_empty() {
            return Err(BootstrapError::Config {
                key: "cognito.user_pool_name",
                reason: "is empty (and cognito.user_pool_id is not set)".into(),
            });
        }
        match find_pool(cognito, &c.user_pool_name).await? {
            Some(id) => (id, Outcome::Found),
            None => (
                create_pool(cognito, &c.user_pool_name).await?,
                Outcome::Created,
            ),
        }
    };
    report.push_recorded(
        resource::USER_POOL,
        pool_id.clone(),
        pool_outcome,
        vec![],
        ("cognito", "user_pool_id"),
    );

    let (client_id, client_outcome) = if !c.client_id.is_empty() {
        check_client(cognito, &pool_id, &c.client_id).await?;
        (c.client_id.clone(), Outcome::Configured)
    } else {
        let existing = if pool_outcome == Outcome::Created {
            None
        } else {
            find_client(cognito, &pool_id).await?
        };
        match existing {
            Some(id) => (id, Outcome::Found),
            None => (create_client(cognito, &pool_id).await?, Outcome::Created),
        }
    };
    report.push_recorded(
        resource::APP_CLIENT,
        client_id,
        client_outcome,
        vec![],
        ("cognito", "client_id"),
    );

    for group in GROUPS {
        let outcome = ensure_group(cognito, &pool_id, group).await?;
        report.push(resource::GROUP, group, outcome, vec![]);
    }
    Ok(())
}

async fn check_pool(cognito: &Client, id: &str) -> Result<(), BootstrapError> {
    let what = format!("{} {id} (cognito.user_pool_id)", resource::USER_POOL);
    match cognito.describe_user_pool().user_pool_id(id).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Err(BootstrapError::Unusable {
                resource: what,
                reason: "does not exist in this account and region".into(),
            })
        }
        Err(e) => Err(BootstrapError::aws(what, "DescribeUserPool", e)),
    }
}

/// The id of the pool called `name`; an error if several pools have that name.
async fn find_pool(cognito: &Client, name: &str) -> Result<Option<String>, BootstrapError> {
    let what = format!("{} {name}", resource::USER_POOL);
    let mut pools = cognito
        .list_user_pools()
        .max_results(PAGE)
        .into_paginator()
        .items()
        .send();
    let mut matches = Vec::new();
    while let Some(pool) = pools
        .try_next()
        .await
        .map_err(|e| BootstrapError::aws(what.as_str(), "ListUserPools", e))?
    {
        if pool.name() == Some(name) {
            matches.extend(pool.id().map(str::to_string));
        }
    }
    unique(what, matches, "cognito.user_pool_id")
}

fn unique(what: String, mut ids: Vec<String>, key: &str) -> Result<Option<String>, BootstrapError> {
    if ids.len() > 1 {
        return Err(BootstrapError::Unusable {
            resource: what,
            reason: format!(
                "several exist ({}); set {key} to the one to use",
                ids.join(", ")
            ),
        });
    }
    Ok(ids.pop())
}

async fn create_pool(cognito: &Client, name: &str) -> Result<String, BootstrapError> {
    let what = format!("{} {name}", resource::USER_POOL);
    let build = |e| BootstrapError::build(what.as_str(), e);
    let out = cognito
        .create_user_pool()
        .pool_name(name)
        .username_attributes(UsernameAttributeType::Email)
        // Invites are keyed by the lower-cased address: the pool must agree that case does not matter.
        .username_configuration(
            UsernameConfigurationType::builder()
                .case_sensitive(false)
                .build()
                .map_err(build)?,
        )
        .auto_verified_attributes(VerifiedAttributeType::Email)
        .set_schema(Some(schema()))
        .policies(
            UserPoolPolicyType::builder()
                .password_policy(password_policy())
                .build(),
        )
        .admin_create_user_config(
            AdminCreateUserConfigType::builder()
                .allow_admin_create_user_only(true)
                .build(),
        )
        .account_recovery_setting(
            AccountRecoverySettingType::builder()
                .recovery_mechanisms(
                    RecoveryOptionType::builder()
                        .name(RecoveryOptionNameType::VerifiedEmail)
                        .priority(1)
                        .build()
                        .map_err(build)?,
                )
                .build(),
        )
        .send()
        .await
        .map_err(|e| BootstrapError::aws(what.as_str(), "CreateUserPool", e))?;
    out.user_pool()
        .and_then(|p| p.id())
        .map(str::to_string)
        .ok_or_else(|| BootstrapError::Unusable {
            resource: what,
            reason: "CreateUserPool returned no pool id".into(),
        })
}

/// The reference deployment's attributes: `email` (required, immutable), `family_name`
/// (required) and `custom:test_attribute1` (optional, at most 256 characters).
fn schema() -> Vec<SchemaAttributeType> {
    let string = |name: &str, required: bool, mutable: bool| {
        SchemaAttributeType::builder()
            .name(name)
            .attribute_data_type(AttributeDataType::String)
            .developer_only_attribute(false)
            .required(required)
            .mutable(mutable)
    };
    vec![
        string("email", true, false).build(),
        string("family_name", true, true).build(),
        string(CUSTOM_ATTRIBUTE, false, true)
            .string_attribute_constraints(
                StringAttributeConstraintsType::builder()
                    .min_length("0")
                    .max_length("256")
                    .build(),
            )
            .build(),
    ]
}

fn password_policy() -> PasswordPolicyType {
    PasswordPolicyType::builder()
        .minimum_length(12)
        .require_uppercase(true)
        .require_lowercase(true)
        .require_numbers(true)
        .require_symbols(true)
        .temporary_password_validity_days(7)
        .build()
}

async fn check_client(
    cognito: &Client,
    pool_id: &str,
    client_id: &str,
) -> Result<(), BootstrapError> {
    let what = format!("{} {client_id} (cognito.client_id)", resource::APP_CLIENT);
    match cognito
        .describe_user_pool_client()
        .user_pool_id(pool_id)
        .client_id(client_id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Err(BootstrapError::Unusable {
                resource: what,
                reason: format!("is not a client of user pool {pool_id}"),
            })
        }
        Err(e) => Err(BootstrapError::aws(what, "DescribeUserPoolClient", e)),
    }
}

async fn find_client(cognito: &Client, pool_id: &str) -> Result<Option<String>, BootstrapError> {
    let what = format!("{} {APP_CLIENT_NAME}", resource::APP_CLIENT);
    let mut clients = cognito
        .list_user_pool_clients()
        .user_pool_id(pool_id)
        .max_results(PAGE)
        .into_paginator()
        .items()
        .send();
    let mut matches = Vec::new();
    while let Some(client) = clients
        .try_next()
        .await
        .map_err(|e| BootstrapError::aws(what.as_str(), "ListUserPoolClients", e))?
    {
        if client.client_name() == Some(APP_CLIENT_NAME) {
            matches.extend(client.client_id().map(str::to_string));
        }
    }
    unique(what, matches, "cognito.client_id")
}

async fn create_client(cognito: &Client, pool_id: &str) -> Result<String, BootstrapError> {
    let what = format!("{} {APP_CLIENT_NAME}", resource::APP_CLIENT);
    let out = cognito
        .create_user_pool_client()
        .user_pool_id(pool_id)
        .client_name(APP_CLIENT_NAME)
        .generate_secret(false)
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserPasswordAuth)
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
        .prevent_user_existence_errors(PreventUserExistenceErrorTypes::Enabled)
        .send()
        .await
        .map_err(|e| BootstrapError::aws(what.as_str(), "CreateUserPoolClient", e))?;
    out.user_pool_client()
        .and_then(|c| c.client_id())
        .map(str::to_string)
        .ok_or_else(|| BootstrapError::Unusable {
            resource: what,
            reason: "CreateUserPoolClient returned no client id".into(),
        })
}

async fn ensure_group(
    cognito: &Client,
    pool_id: &str,
    group: &str,
) -> Result<Outcome, BootstrapError> {
    match cognito
        .create_group()
        .user_pool_id(pool_id)
        .group_name(group)
        .description("Created by invite-worker bootstrap")
        .send()
        .await
    {
        Ok(_) => Ok(Outcome::Created),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_group_exists_exception()) =>
        {
            Ok(Outcome::Found)
        }
        Err(e) => Err(BootstrapError::aws(
            format!("{} {group}", resource::GROUP),
            "CreateGroup",
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_cognitoidentityprovider::operation::create_group::{
        CreateGroupError, CreateGroupOutput,
    };
    use aws_sdk_cognitoidentityprovider::operation::create_user_pool::CreateUserPoolOutput;
    use aws_sdk_cognitoidentityprovider::operation::create_user_pool_client::CreateUserPoolClientOutput;
    use aws_sdk_cognitoidentityprovider::operation::describe_user_pool::DescribeUserPoolError;
    use aws_sdk_cognitoidentityprovider::operation::list_user_pool_clients::ListUserPoolClientsOutput;
    use aws_sdk_cognitoidentityprovider::operation::list_user_pools::ListUserPoolsOutput;
    use aws_sdk_cognitoidentityprovider::types::error::{
        GroupExistsException, ResourceNotFoundException,
    };
    use aws_sdk_cognitoidentityprovider::types::{
        UserPoolClientDescription, UserPoolClientType, UserPoolDescriptionType, UserPoolType,
    };
    use aws_smithy_mocks::mock;

    use super::*;
    use crate::bootstrap::test_support::{mocked, settings};

    fn pool(id: &str, name: &str) -> UserPoolDescriptionType {
        UserPoolDescriptionType::builder().id(id).name(name).build()
    }

    #[tokio::test]
    async fn creates_the_pool_client_and_groups() {
        let empty =
            mock!(Client::list_user_pools).then_output(|| ListUserPoolsOutput::builder().build());
        let create_pool = mock!(Client::create_user_pool)
            .match_requests(|req| {
                let custom = req
                    .schema()
                    .iter()
                    .find(|s| s.name() == Some(CUSTOM_ATTRIBUTE));
                let email = req.schema().iter().find(|s| s.name() == Some("email"));
                let policy = req.policies().and_then(|p| p.password_policy());
                req.pool_name() == Some("invite-worker-pool")
                    && req.username_attributes() == [UsernameAttributeType::Email]
                    && custom
                        .and_then(|c| c.string_attribute_constraints())
                        .and_then(|c| c.max_length())
                        == Some("256")
                    && email
                        .is_some_and(|e| e.required() == Some(true) && e.mutable() == Some(false))
                    && policy.is_some_and(|p| {
                        p.minimum_length() == Some(12) && p.temporary_password_validity_days() == 7
                    })
                    && req
                        .admin_create_user_config()
                        .is_some_and(|c| c.allow_admin_create_user_only())
            })
            .then_output(|| {
                CreateUserPoolOutput::builder()
                    .user_pool(UserPoolType::builder().id("us-east-1_new").build())
                    .build()
            });
        let create_client = mock!(Client::create_user_pool_client)
            .match_requests(|req| {
                req.client_name() == Some(APP_CLIENT_NAME)
                    && req.generate_secret() == Some(false)
                    && req.explicit_auth_flows()
                        == [
                            ExplicitAuthFlowsType::AllowUserPasswordAuth,
                            ExplicitAuthFlowsType::AllowRefreshTokenAuth,
                        ]
            })
            .then_output(|| {
                CreateUserPoolClientOutput::builder()
                    .user_pool_client(UserPoolClientType::builder().client_id("client-1").build())
                    .build()
            });
        let groups = mock!(Client::create_group)
            .match_requests(|req| req.user_pool_id() == Some("us-east-1_new"))
            .then_output(|| CreateGroupOutput::builder().build());
        let cognito = mocked!(
            aws_sdk_cognitoidentityprovider,
            empty,
            create_pool,
            create_client,
            groups
        );
        let mut report = BootstrapReport::new("s".into());

        ensure(&cognito, &settings(), &mut report).await.unwrap();

        assert_eq!(
            (
                create_pool.num_calls(),
                create_client.num_calls(),
                groups.num_calls()
            ),
            (1, 1, 2)
        );
        assert_eq!(report.created().count(), 4);
        assert_eq!(report.get(resource::APP_CLIENT).unwrap().id, "client-1");
    }

    #[tokio::test]
    async fn finds_the_pool_across_pages_and_existing_groups() {
        let pools = mock!(Client::list_user_pools)
            .sequence()
            .output(|| {
                ListUserPoolsOutput::builder()
                    .user_pools(pool("us-east-1_a", "other"))
                    .next_token("t")
                    .build()
            })
            .output(|| {
                ListUserPoolsOutput::builder()
                    .user_pools(pool("us-east-1_b", "invite-worker-pool"))
                    .build()
            })
            .build();
        let clients = mock!(Client::list_user_pool_clients).then_output(|| {
            ListUserPoolClientsOutput::builder()
                .user_pool_clients(
                    UserPoolClientDescription::builder()
                        .client_id("c-other")
                        .client_name("web")
                        .build(),
                )
                .user_pool_clients(
                    UserPoolClientDescription::builder()
                        .client_id("c-app")
                        .client_name(APP_CLIENT_NAME)
                        .build(),
                )
                .build()
        });
        let exists = mock!(Client::create_group).then_error(|| {
            CreateGroupError::GroupExistsException(GroupExistsException::builder().build())
        });
        let cognito = mocked!(aws_sdk_cognitoidentityprovider, pools, clients, exists);
        let mut report = BootstrapReport::new("s".into());

        ensure(&cognito, &settings(), &mut report).await.unwrap();

        assert_eq!(report.created().count(), 0);
        let ids: Vec<_> = report
            .rows
            .iter()
            .map(|r| (r.id.as_str(), r.outcome))
            .collect();
        assert_eq!(
            ids,
            [
                ("us-east-1_b", Outcome::Found),
                ("c-app", Outcome::Found),
                ("employees", Outcome::Found),
                ("contractors", Outcome::Found)
            ]
        );
    }

    #[tokio::test]
    async fn two_pools_with_the_name_is_an_error() {
        let pools = mock!(Client::list_user_pools).then_output(|| {
            ListUserPoolsOutput::builder()
                .user_pools(pool("us-east-1_a", "invite-worker-pool"))
                .user_pools(pool("us-east-1_b", "invite-worker-pool"))
                .build()
        });
        let cognito = mocked!(aws_sdk_cognitoidentityprovider, pools);
        let err = ensure(&cognito, &settings(), &mut BootstrapReport::new("s".into()))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(err, "user pool invite-worker-pool: several exist (us-east-1_a, us-east-1_b); set cognito.user_pool_id to the one to use");
    }

    #[tokio::test]
    async fn a_configured_pool_that_does_not_exist_is_named() {
        let missing = mock!(Client::describe_user_pool).then_error(|| {
            DescribeUserPoolError::ResourceNotFoundException(
                ResourceNotFoundException::builder().build(),
            )
        });
        let cognito = mocked!(aws_sdk_cognitoidentityprovider, missing);
        let mut settings = settings();
        settings.cognito.user_pool_id = "us-east-1_gone".into();
        let err = ensure(&cognito, &settings, &mut BootstrapReport::new("s".into()))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(err, "user pool us-east-1_gone (cognito.user_pool_id): does not exist in this account and region");
    }
}
