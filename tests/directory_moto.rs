//! `CognitoDirectory` and `SesMailer` against the local emulator (moto).
//!
//! Needs the local stack, so `#[ignore]`d: scripts/test.sh runs them (`--include-ignored`); run
//! by hand without `AWS_ENDPOINT_URL` they fail. Every resource gets a unique name; nothing is
//! reset.

mod support;

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_cognitoidentityprovider as cognito;
use cognito::types::{
    AttributeDataType, AuthFlowType, ChallengeNameType, ExplicitAuthFlowsType, PasswordPolicyType,
    SchemaAttributeType, StringAttributeConstraintsType, UserPoolPolicyType, UsernameAttributeType,
    VerifiedAttributeType,
};

use invite_worker::adapters::cognito::CognitoDirectory;
use invite_worker::adapters::ses::SesMailer;
use invite_worker::domain::password::generate;
use invite_worker::domain::EmailAddress;
use invite_worker::ports::{
    CreateOutcome, Directory, Mailer, NewUser, OutgoingMail, Removal, Rotation, UserStanding,
    UserStatus,
};

/// The SDK configuration for the local stack; fails, naming scripts/test.sh, without it.
async fn stack() -> SdkConfig {
    support::stack_sdk().await
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A pool shaped like the reference deployment, and a public app client for password sign-in.
struct TestPool {
    client: cognito::Client,
    pool_id: String,
    app_client_id: String,
}

impl TestPool {
    async fn create(client: &cognito::Client) -> TestPool {
        let schema = |name: &str, required: bool, mutable: bool| {
            SchemaAttributeType::builder()
                .name(name)
                .attribute_data_type(AttributeDataType::String)
                .required(required)
                .mutable(mutable)
        };
        let pool = client
            .create_user_pool()
            .pool_name(unique("invite-worker-directory"))
            .username_attributes(UsernameAttributeType::Email)
            .auto_verified_attributes(VerifiedAttributeType::Email)
            .schema(schema("family_name", true, true).build())
            .schema(schema("email", true, false).build())
            .schema(
                schema("test_attribute1", false, true)
                    .string_attribute_constraints(
                        StringAttributeConstraintsType::builder()
                            .min_length("1")
                            .max_length("256")
                            .build(),
                    )
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
                            .require_symbols(true)
                            .temporary_password_validity_days(7)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("CreateUserPool");
        let pool_id = pool
            .user_pool()
            .and_then(|p| p.id())
            .expect("pool id")
            .to_string();
        let app = client
            .create_user_pool_client()
            .user_pool_id(&pool_id)
            .client_name("invite-worker-test")
            .generate_secret(false)
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserPasswordAuth)
            .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
            .send()
            .await
            .expect("CreateUserPoolClient");
        let app_client_id = app
            .user_pool_client()
            .and_then(|c| c.client_id())
            .expect("client id")
            .to_string();
        TestPool {
            client: client.clone(),
            pool_id,
            app_client_id,
        }
    }

    /// `InitiateAuth(USER_PASSWORD_AUTH)`: the challenge name and session, or the error code.
    async fn sign_in(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(Option<ChallengeNameType>, Option<String>), String> {
        let out = self
            .client
            .initiate_auth()
            .auth_flow(AuthFlowType::UserPasswordAuth)
            .client_id(&self.app_client_id)
            .auth_parameters("USERNAME", username)
            .auth_parameters("PASSWORD", password)
            .send()
            .await
            .map_err(|e| e.into_service_error().to_string())?;
        Ok((
            out.challenge_name().cloned(),
            out.session().map(str::to_string),
        ))
    }

    async fn delete(self) {
        let _ = self
            .client
            .delete_user_pool()
            .user_pool_id(&self.pool_id)
            .send()
            .await;
    }
}

fn email(local: &str) -> EmailAddress {
    EmailAddress::parse(&format!(
        "{local}-{}@example.com",
        uuid::Uuid::new_v4().simple()
    ))
    .expect("valid address")
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test]
async fn cognito_directory_against_moto() {
    let config = stack().await;
    let client = cognito::Client::new(&config);
    let pool = TestPool::create(&client).await;
    let directory = CognitoDirectory::new(client.clone(), &pool.pool_id);

    // The profile: schema names as AdminCreateUser takes them, and the password policy.
    let profile = directory.pool_profile().await.expect("pool_profile");
    let custom = profile
        .attributes
        .get("custom:test_attribute1")
        .expect("custom:test_attribute1 in the profile");
    assert!(!custom.required && custom.mutable && !custom.developer_only);
    assert_eq!((custom.min_length, custom.max_length), (Some(1), Some(256)));
    assert!(profile.attributes["family_name"].required);
    assert!(profile.attributes["email"].required && !profile.attributes["email"].mutable);
    let policy = &profile.password_policy;
    assert_eq!(policy.min_length, 12);
    assert!(
        policy.require_uppercase
            && policy.require_lowercase
            && policy.require_numbers
            && policy.require_symbols
    );
    assert_eq!(policy.temporary_password_validity_days, 7);

    // Create, then create again.
    let jane = email("jane");
    let attributes = BTreeMap::from([
        ("family_name".to_string(), "Doe".to_string()),
        ("custom:test_attribute1".to_string(), "blue".to_string()),
    ]);
    let temporary = generate(policy);
    let new_user = NewUser {
        username: jane.as_str(),
        email: &jane,
        attributes: &attributes,
        temporary_password: &temporary,
    };
    let CreateOutcome::Created { sub } =
        directory.create_user(&new_user).await.expect("create_user")
    else {
        panic!("the first create must create");
    };
    let sub = sub.expect("AdminCreateUser returns the sub");
    assert_eq!(
        directory
            .create_user(&new_user)
            .await
            .expect("second create_user"),
        CreateOutcome::AlreadyExists
    );

    let info = directory
        .get_user(jane.as_str())
        .await
        .expect("get_user")
        .expect("user exists");
    assert_eq!(info.status, UserStatus::ForceChangePassword);
    assert!(info.enabled);
    assert_eq!(info.sub.as_deref(), Some(sub.as_str()));
    assert_eq!(
        info.attributes.get("email_verified").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        info.attributes.get("email").map(String::as_str),
        Some(jane.as_str())
    );

    // First sign-in with the temporary password, then the new password.
    let (challenge, session) = pool
        .sign_in(jane.as_str(), temporary.expose())
        .await
        .expect("sign in");
    assert_eq!(challenge, Some(ChallengeNameType::NewPasswordRequired));
    let permanent = generate(policy);
    let answer = client
        .respond_to_auth_challenge()
        .client_id(&pool.app_client_id)
        .challenge_name(ChallengeNameType::NewPasswordRequired)
        .set_session(session)
        .challenge_responses("USERNAME", jane.as_str())
        .challenge_responses("NEW_PASSWORD", permanent.expose())
        .send()
        .await
        .expect("RespondToAuthChallenge");
    let access_token = answer
        .authentication_result()
        .and_then(|r| r.access_token())
        .expect("access token")
        .to_string();
    let info = directory
        .get_user(jane.as_str())
        .await
        .expect("get_user")
        .expect("user exists");
    assert_eq!(info.status, UserStatus::Confirmed);
    let me = client
        .get_user()
        .access_token(&access_token)
        .send()
        .await
        .expect("GetUser");
    let mine: BTreeMap<&str, &str> = me
        .user_attributes()
        .iter()
        .map(|a| (a.name(), a.value().unwrap_or_default()))
        .collect();
    assert_eq!(mine.get("custom:test_attribute1"), Some(&"blue"));
    assert_eq!(mine.get("family_name"), Some(&"Doe"));

    // A new temporary password replaces the old one.
    let bob = email("bob");
    let first = generate(policy);
    let bob_user = NewUser {
        username: bob.as_str(),
        email: &bob,
        attributes: &attributes,
        temporary_password: &first,
    };
    assert!(matches!(
        directory.create_user(&bob_user).await.expect("create bob"),
        CreateOutcome::Created { .. }
    ));
    let second = generate(policy);
    directory
        .set_temporary_password(bob.as_str(), &second)
        .await
        .expect("set_temporary_password");
    let (challenge, _) = pool
        .sign_in(bob.as_str(), second.expose())
        .await
        .expect("sign in with the new temporary password");
    assert_eq!(challenge, Some(ChallengeNameType::NewPasswordRequired));
    let old = pool.sign_in(bob.as_str(), first.expose()).await;
    assert!(
        old.is_err(),
        "the old temporary password must no longer work: {old:?}"
    );
    let info = directory
        .get_user(bob.as_str())
        .await
        .expect("get_user")
        .expect("bob exists");
    assert_eq!(info.status, UserStatus::ForceChangePassword);

    // Groups.
    let missing_group = unique("missing");
    let err = directory
        .add_user_to_group(bob.as_str(), &missing_group)
        .await
        .expect_err("missing group");
    assert_eq!(err.rejection_code(), Some("group_not_found"), "{err}");
    assert!(err.message.contains(&missing_group), "{err}");
    let group = unique("members");
    client
        .create_group()
        .user_pool_id(&pool.pool_id)
        .group_name(&group)
        .send()
        .await
        .expect("CreateGroup");
    directory
        .add_user_to_group(bob.as_str(), &group)
        .await
        .expect("add_user_to_group");
    directory
        .add_user_to_group(bob.as_str(), &group)
        .await
        .expect("adding twice is fine");
    let groups = client
        .admin_list_groups_for_user()
        .user_pool_id(&pool.pool_id)
        .username(bob.as_str())
        .send()
        .await
        .expect("AdminListGroupsForUser");
    assert!(groups
        .groups()
        .iter()
        .any(|g| g.group_name() == Some(group.as_str())));

    // Delete, twice.
    directory
        .delete_user(bob.as_str())
        .await
        .expect("delete_user");
    assert_eq!(
        directory.get_user(bob.as_str()).await.expect("get_user"),
        None
    );
    directory
        .delete_user(bob.as_str())
        .await
        .expect("deleting a deleted user is fine");

    pool.delete().await;
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test]
async fn a_missing_pool_is_user_pool_not_found() {
    let config = stack().await;
    let directory = CognitoDirectory::new(cognito::Client::new(&config), "us-east-1_doesnotexist0");
    let err = directory.pool_profile().await.expect_err("no such pool");
    assert_eq!(err.rejection_code(), Some("user_pool_not_found"), "{err}");
    let err = directory
        .get_user("jane@example.com")
        .await
        .expect_err("no such pool");
    assert_eq!(err.rejection_code(), Some("user_pool_not_found"), "{err}");
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test]
async fn ses_mailer_against_moto() {
    let config = stack().await;
    let ses = aws_sdk_sesv2::Client::new(&config);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let sender = format!("invites-{tag}@example.com");
    ses.create_email_identity()
        .email_identity(&sender)
        .send()
        .await
        .expect("CreateEmailIdentity");
    let configuration_set = format!("invites-{tag}");
    ses.create_configuration_set()
        .configuration_set_name(&configuration_set)
        .send()
        .await
        .expect("CreateConfigurationSet");

    let to = email("jane");
    let mail = OutgoingMail {
        from: format!("Example Invites <{sender}>"),
        reply_to: Some("help@example.com".into()),
        to: to.clone(),
        subject: format!("You're invited {tag}"),
        text: "Your temporary password is in here".into(),
        html: "<p>Your temporary password is in here</p>".into(),
        tags: Vec::new(),
        headers: vec![("X-Invite-Id".into(), format!("inv-{tag}"))],
    };
    let mailer = SesMailer::new(ses.clone(), Some(configuration_set));
    let message_id = mailer.send(&mail).await.expect("send");
    assert!(!message_id.is_empty());

    let data = support::moto_state();
    let sent = data["ses"]["RawMessage"]
        .as_array()
        .expect("ses.RawMessage is a list");
    let found = sent
        .iter()
        .find(|m| m["id"] == message_id.as_str())
        .expect("the sent message is in moto's data");
    let raw = found["raw_data"].as_str().expect("raw_data");
    assert!(
        raw.contains(&format!("Subject: You're invited {tag}")),
        "{raw}"
    );
    assert!(raw.contains(&format!("X-Invite-Id: inv-{tag}")), "{raw}");
    assert!(raw.contains("multipart/alternative"), "{raw}");
    assert_eq!(found["source"].as_str(), Some(sender.as_str()));
    let destinations = found["destinations"].as_array().expect("destinations");
    assert!(destinations.iter().any(|d| d == to.as_str()));

    // An unverified sender is rejected for good.
    let stranger = OutgoingMail {
        from: format!("nobody-{tag}@unverified.example"),
        ..mail.clone()
    };
    let err = mailer.send(&stranger).await.expect_err("unverified sender");
    assert_eq!(err.rejection_code(), Some("email_rejected"), "{err}");

    // Note: moto does not check that the configuration set exists (real SES: NotFoundException).
    let _ = ses
        .delete_email_identity()
        .email_identity(&sender)
        .send()
        .await;
}

async fn create(
    directory: &CognitoDirectory,
    who: &EmailAddress,
    attributes: &BTreeMap<String, String>,
    password: &invite_worker::domain::TemporaryPassword,
) {
    let user = NewUser {
        username: who.as_str(),
        email: who,
        attributes,
        temporary_password: password,
    };
    directory.create_user(&user).await.expect("create");
}

/// The guarded operations on moto: a registered user is kept, enabled, with their password; a
/// never-used one is rotated (and left enabled) or deleted; a disabled user cannot start signing
/// in (what closes the window), though moto, unlike its `InitiateAuth`, lets a challenge started
/// before the hold be answered during it (see docs/lifecycle.md).
#[tokio::test]
#[ignore = "needs the local stack: scripts/test.sh"]
async fn guarded_operations_against_moto() {
    let config = stack().await;
    let client = cognito::Client::new(&config);
    let pool = TestPool::create(&client).await;
    let directory = CognitoDirectory::new(client.clone(), &pool.pool_id);
    let policy = &directory
        .pool_profile()
        .await
        .expect("profile")
        .password_policy;
    let attributes = BTreeMap::from([("family_name".to_string(), "Doe".to_string())]);
    let answer = |session: Option<String>, username: String, password: String| {
        let (client, app) = (client.clone(), pool.app_client_id.clone());
        async move {
            client
                .respond_to_auth_challenge()
                .client_id(app)
                .challenge_name(ChallengeNameType::NewPasswordRequired)
                .set_session(session)
                .challenge_responses("USERNAME", username)
                .challenge_responses("NEW_PASSWORD", password)
                .send()
                .await
                .map_err(|e| e.into_service_error().to_string())
        }
    };
    // Jane registers; neither guarded operation touches her.
    let jane = email("jane");
    let temporary = generate(policy);
    create(&directory, &jane, &attributes, &temporary).await;
    let (_, session) = pool
        .sign_in(jane.as_str(), temporary.expose())
        .await
        .expect("sign in");
    let chosen = generate(policy);
    answer(session, jane.as_str().into(), chosen.expose().into())
        .await
        .expect("registers");
    let registered = Removal::Kept(UserStanding::Registered);
    assert_eq!(
        directory
            .delete_if_never_used(jane.as_str())
            .await
            .expect("delete"),
        registered
    );
    let other = generate(policy);
    assert_eq!(
        directory
            .rotate_if_never_used(jane.as_str(), &other)
            .await
            .expect("rotate"),
        Rotation::Kept(UserStanding::Registered)
    );
    let info = directory
        .get_user(jane.as_str())
        .await
        .expect("get")
        .expect("kept");
    assert!(info.enabled && info.status == UserStatus::Confirmed);
    let (challenge, _) = pool
        .sign_in(jane.as_str(), chosen.expose())
        .await
        .expect("her own password still works");
    assert_eq!(challenge, None);

    // Bob never signs in: rotated (enabled, new password works, old one not), then deleted.
    let bob = email("bob");
    let first = generate(policy);
    create(&directory, &bob, &attributes, &first).await;
    let second = generate(policy);
    assert!(matches!(
        directory
            .rotate_if_never_used(bob.as_str(), &second)
            .await
            .expect("rotate"),
        Rotation::Rotated { .. }
    ));
    let info = directory
        .get_user(bob.as_str())
        .await
        .expect("get")
        .expect("bob");
    assert!(info.enabled && info.status == UserStatus::ForceChangePassword);
    assert!(pool.sign_in(bob.as_str(), first.expose()).await.is_err());
    let (challenge, session) = pool
        .sign_in(bob.as_str(), second.expose())
        .await
        .expect("the new temporary password works");
    assert_eq!(challenge, Some(ChallengeNameType::NewPasswordRequired));

    // On hold: moto refuses to start a sign-in...
    directory.disable_user(bob.as_str()).await.expect("disable");
    let refused = pool.sign_in(bob.as_str(), second.expose()).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("disabled")),
        "{refused:?}"
    );
    // ...but not the answer to a challenge started before the hold (moto's gap).
    let late = answer(
        session,
        bob.as_str().into(),
        generate(policy).expose().into(),
    )
    .await;
    assert!(
        late.is_ok(),
        "moto now refuses this too: update docs/lifecycle.md ({late:?})"
    );
    directory.enable_user(bob.as_str()).await.expect("enable");
    // Bob is now registered: kept.
    assert_eq!(
        directory
            .delete_if_never_used(bob.as_str())
            .await
            .expect("delete"),
        registered
    );

    // A never-used user is deleted; a missing one counts as deleted.
    let carol = email("carol");
    create(&directory, &carol, &attributes, &generate(policy)).await;
    assert_eq!(
        directory
            .delete_if_never_used(carol.as_str())
            .await
            .expect("delete"),
        Removal::Deleted
    );
    assert_eq!(directory.get_user(carol.as_str()).await.expect("get"), None);
    assert_eq!(
        directory
            .delete_if_never_used(carol.as_str())
            .await
            .expect("again"),
        Removal::Deleted
    );

    pool.delete().await;
}
