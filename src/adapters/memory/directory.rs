//! An in-memory Cognito user pool that enforces what moto does not: the password policy, the
//! attribute schema (undeclared and required attributes) and the user lifecycle (a disabled user
//! cannot sign in). A test can run a step of its own (the person registering, say) before any
//! call, to interleave it with a multi-call operation: [`MemoryDirectory::before_call`].

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

/// A step a test runs before one of the directory's calls.
type Interleaved = Box<dyn FnOnce(&MemoryDirectory) + Send>;

pub struct MemoryDirectory {
    profile: Mutex<PoolProfile>,
    users: Mutex<HashMap<String, FakeUser>>,
    groups: Mutex<Vec<String>>,
    created: Mutex<u64>,
    /// Every call, by Cognito operation name, in order.
    calls: Mutex<Vec<&'static str>>,
    /// Steps to run before the call with this (1-based) number.
    interleaved: Mutex<Vec<(usize, Interleaved)>>,
    pub faults: Faults,
}

impl std::fmt::Debug for MemoryDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDirectory")
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
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
            calls: Mutex::default(),
            interleaved: Mutex::default(),
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

    /// Runs `step` just before the `nth` call (1-based, counted from the first call ever) of
    /// any operation: "the person registers between the read and the write".
    pub fn before_call(&self, nth: usize, step: impl FnOnce(&MemoryDirectory) + Send + 'static) {
        self.interleaved
            .lock()
            .expect("dir lock")
            .push((nth, Box::new(step)));
    }

    /// The operations called so far, in order.
    pub fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().expect("dir lock").clone()
    }

    /// Logs the call, runs the steps due before it, then the latency and scripted faults.
    async fn call(&self, operation: &'static str) -> Result<(), DownstreamError> {
        let due: Vec<Interleaved> = {
            let mut calls = self.calls.lock().expect("dir lock");
            calls.push(operation);
            let n = calls.len();
            let mut steps = self.interleaved.lock().expect("dir lock");
            let (now, later): (Vec<_>, Vec<_>) = steps.drain(..).partition(|(at, _)| *at == n);
            *steps = later;
            now.into_iter().map(|(_, step)| step).collect()
        };
        for step in due {
            step(self);
        }
        self.faults.before(Service::Cognito, operation).await
    }

    /// An admin (or a test) sets a user's status directly.
    pub fn set_status(&self, username: &str, status: UserStatus, enabled: bool) {
        if let Some(u) = self.users.lock().expect("dir lock").get_mut(username) {
            u.info.status = status;
            u.info.enabled = enabled;
        }
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
        if !u.info.enabled {
            return Err("NotAuthorizedException: User is disabled.".into());
        }
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
        self.call("DescribeUserPool").await?;
        Ok(self.profile())
    }

    async fn create_user(&self, user: &NewUser<'_>) -> Result<CreateOutcome, DownstreamError> {
        const OP: &str = "AdminCreateUser";
        self.call(OP).await?;
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
        self.call("AdminGetUser").await?;
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
        self.call(OP).await?;
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
        self.call("AdminDeleteUser").await?;
        self.users.lock().expect("dir lock").remove(username);
        Ok(())
    }

    async fn disable_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.set_enabled("AdminDisableUser", username, false).await
    }

    async fn enable_user(&self, username: &str) -> Result<(), DownstreamError> {
        self.set_enabled(crate::ports::ENABLE_OPERATION, username, true)
            .await
    }

    async fn add_user_to_group(&self, username: &str, group: &str) -> Result<(), DownstreamError> {
        const OP: &str = "AdminAddUserToGroup";
        self.call(OP).await?;
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

impl MemoryDirectory {
    async fn set_enabled(
        &self,
        op: &'static str,
        username: &str,
        enabled: bool,
    ) -> Result<(), DownstreamError> {
        self.call(op).await?;
        let mut users = self.users.lock().expect("dir lock");
        let u = users
            .get_mut(username)
            .ok_or_else(|| rejected(op, "user_not_found", "User does not exist."))?;
        u.info.enabled = enabled;
        Ok(())
    }
}
