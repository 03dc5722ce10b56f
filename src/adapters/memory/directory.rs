//! An in-memory Cognito user pool that enforces what moto does not: the password policy, the
//! attribute schema (undeclared and required attributes) and the user lifecycle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::Faults;
use crate::domain::password::satisfies;
use crate::domain::{PoolProfile, TemporaryPassword};
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::ports::{CreateOutcome, Directory, NewUser, UserInfo, UserStatus};

#[derive(Clone, Debug)]
pub struct FakeUser {
    pub info: UserInfo,
    pub password: String,
    pub groups: Vec<String>,
}

#[derive(Debug)]
pub struct MemoryDirectory {
    profile: Mutex<PoolProfile>,
    users: Mutex<HashMap<String, FakeUser>>,
    groups: Mutex<Vec<String>>,
    created: Mutex<u64>,
    pub faults: Faults,
}

fn rejected(op: &'static str, code: &str, msg: impl Into<String>) -> DownstreamError {
    DownstreamError::new(Service::Cognito, op, ErrorKind::Rejected(code.into()), msg)
}

impl MemoryDirectory {
    pub fn new(profile: PoolProfile) -> Self {
        Self {
            profile: Mutex::new(profile),
            users: Mutex::default(),
            groups: Mutex::new(vec!["employees".into(), "contractors".into()]),
            created: Mutex::new(0),
            faults: Faults::default(),
        }
    }

    /// What an administrator does to the pool: add a custom attribute, raise the password
    /// policy. Takes effect at once, as in Cognito.
    pub fn change_pool(&self, change: impl FnOnce(&mut PoolProfile)) {
        change(&mut self.profile.lock().expect("dir lock"));
    }

    fn profile(&self) -> PoolProfile {
        self.profile.lock().expect("dir lock").clone()
    }

    pub fn user(&self, username: &str) -> Option<FakeUser> {
        self.users.lock().expect("dir lock").get(username).cloned()
    }

    pub fn user_count(&self) -> usize {
        self.users.lock().expect("dir lock").len()
    }

    /// How many `create_user` calls created a user.
    pub fn created_count(&self) -> u64 {
        *self.created.lock().expect("dir lock")
    }

    /// What the person does: signs in with the temporary password and sets a new one.
    pub fn complete_registration(
        &self,
        username: &str,
        temporary: &str,
        new_password: &str,
    ) -> Result<(), String> {
        let mut users = self.users.lock().expect("dir lock");
        let u = users.get_mut(username).ok_or("no such user")?;
        if u.info.status != UserStatus::ForceChangePassword || u.password != temporary {
            return Err("NotAuthorizedException: Incorrect username or password.".into());
        }
        u.password = new_password.into();
        u.info.status = UserStatus::Confirmed;
        Ok(())
    }
}

#[async_trait]
impl Directory for MemoryDirectory {
    async fn pool_profile(&self) -> Result<PoolProfile, DownstreamError> {
        self.faults
            .before(Service::Cognito, "DescribeUserPool")
            .await?;
        Ok(self.profile())
    }

    async fn create_user(&self, user: &NewUser<'_>) -> Result<CreateOutcome, DownstreamError> {
        const OP: &str = "AdminCreateUser";
        self.faults.before(Service::Cognito, OP).await?;
        let profile = self.profile();
        satisfies(&profile.password_policy, user.temporary_password.expose()).map_err(|why| {
            rejected(
                OP,
                "invalid_password",
                format!("Password does not conform to policy: {why}"),
            )
        })?;
        profile
            .check_attributes(user.attributes)
            .map_err(|e| rejected(OP, "invalid_parameter", e.to_string()))?;
        let mut users = self.users.lock().expect("dir lock");
        if users.contains_key(user.username) {
            return Ok(CreateOutcome::AlreadyExists);
        }
        let sub = uuid::Uuid::new_v4().to_string();
        let mut attributes: BTreeMap<String, String> = user.attributes.clone();
        attributes.insert("email".into(), user.email.as_str().into());
        attributes.insert("email_verified".into(), "true".into());
        attributes.insert("sub".into(), sub.clone());
        users.insert(
            user.username.to_string(),
            FakeUser {
                info: UserInfo {
                    username: user.username.into(),
                    status: UserStatus::ForceChangePassword,
                    enabled: true,
                    sub: Some(sub.clone()),
                    attributes,
                },
                password: user.temporary_password.expose().into(),
                groups: vec![],
            },
        );
        *self.created.lock().expect("dir lock") += 1;
        Ok(CreateOutcome::Created { sub: Some(sub) })
    }

    async fn get_user(&self, username: &str) -> Result<Option<UserInfo>, DownstreamError> {
        self.faults.before(Service::Cognito, "AdminGetUser").await?;
        Ok(self
            .users
            .lock()
            .expect("dir lock")
            .get(username)
            .map(|u| u.info.clone()))
    }

    async fn set_temporary_password(
        &self,
        username: &str,
        password: &TemporaryPassword,
    ) -> Result<(), DownstreamError> {
        const OP: &str = "AdminSetUserPassword";
        self.faults.before(Service::Cognito, OP).await?;
        satisfies(&self.profile().password_policy, password.expose()).map_err(|why| {
            rejected(
                OP,
                "invalid_password",
                format!("Password does not conform to policy: {why}"),
            )
        })?;
        let mut users = self.users.lock().expect("dir lock");
        let u = users
            .get_mut(username)
            .ok_or_else(|| rejected(OP, "user_not_found", "User does not exist."))?;
        u.password = password.expose().into();
        u.info.status = UserStatus::ForceChangePassword;
        Ok(())
    }

    async fn delete_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.faults
            .before(Service::Cognito, "AdminDeleteUser")
            .await?;
        self.users.lock().expect("dir lock").remove(username);
        Ok(())
    }

    async fn add_user_to_group(&self, username: &str, group: &str) -> Result<(), DownstreamError> {
        const OP: &str = "AdminAddUserToGroup";
        self.faults.before(Service::Cognito, OP).await?;
        if !self
            .groups
            .lock()
            .expect("dir lock")
            .iter()
            .any(|g| g == group)
        {
            return Err(rejected(
                OP,
                "group_not_found",
                format!("group {group:?} does not exist in the user pool"),
            ));
        }
        let mut users = self.users.lock().expect("dir lock");
        let u = users
            .get_mut(username)
            .ok_or_else(|| rejected(OP, "user_not_found", "User does not exist."))?;
        if !u.groups.iter().any(|g| g == group) {
            u.groups.push(group.into());
        }
        Ok(())
    }
}
