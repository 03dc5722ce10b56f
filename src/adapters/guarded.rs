//! The guarded user operations behind [`Directory::delete_if_never_used`],
//! [`Directory::rotate_if_never_used`] and [`Directory::lift_hold`], written once over the
//! directory's single calls so that the Cognito adapter and the in-memory fake run the same
//! order of calls (and the fake can inject a person between any two of them).
//!
//! Cognito has no conditional delete or conditional password change. Reading the status and then
//! acting leaves a window in which the person answers `NEW_PASSWORD_REQUIRED` and then loses the
//! account (delete) or the password they just chose (rotation). So the user is first disabled:
//! a disabled user cannot sign in, so cannot answer the challenge. Then its status is read again,
//! and only a user still `FORCE_CHANGE_PASSWORD` is deleted or given a new password; anyone else
//! is re-enabled and left as found. What is left of the window is in docs/lifecycle.md.
//!
//! A failure after the user was disabled re-enables it before the error is returned; if that
//! fails too, the error is the `AdminEnableUser` one (`crate::ports::left_on_hold`) and the caller keeps its
//! lease so that the next attempt finds it stale and calls `lift_hold`.

use tracing::warn;

use crate::domain::{TemporaryPassword, UserStanding, UserStatus};
use crate::error::DownstreamError;
use crate::ports::{Directory, Removal, Rotation, UserInfo};

fn standing(user: &UserInfo) -> UserStanding {
    UserStanding::of(&user.status, user.enabled)
}

/// Re-enables `username` after `err`, if this operation disabled it; returns the error to report.
async fn undo_hold<D: Directory + ?Sized>(
    dir: &D,
    username: &str,
    we_disabled: bool,
    err: DownstreamError,
) -> DownstreamError {
    if !we_disabled {
        return err;
    }
    match dir.enable_user(username).await {
        Ok(()) => err,
        Err(enable) => {
            warn!(error = %err, enable_error = %enable, "a user stays disabled until the next attempt lifts the hold");
            enable
        }
    }
}

/// Disables a never-used user (if enabled), reads it again, deletes it if still never used.
pub async fn delete_if_never_used<D: Directory + ?Sized>(
    dir: &D,
    username: &str,
) -> Result<Removal, DownstreamError> {
    let Some(first) = dir.get_user(username).await? else {
        return Ok(Removal::Deleted);
    };
    if !standing(&first).is_never_used() {
        return Ok(Removal::Kept(standing(&first)));
    }
    let we_disabled = first.enabled;
    if we_disabled {
        dir.disable_user(username).await?;
    }
    let again = match dir.get_user(username).await {
        Ok(u) => u,
        Err(e) => return Err(undo_hold(dir, username, we_disabled, e).await),
    };
    match again {
        None => Ok(Removal::Deleted),
        Some(u) if u.status == UserStatus::ForceChangePassword => {
            match dir.delete_user(username).await {
                Ok(()) => Ok(Removal::Deleted),
                Err(e) => Err(undo_hold(dir, username, we_disabled, e).await),
            }
        }
        Some(u) => {
            // The person registered before the hold: give the account back as it was.
            if we_disabled {
                dir.enable_user(username).await?;
            }
            Ok(Removal::Kept(UserStanding::of(&u.status, first.enabled)))
        }
    }
}

/// Disables a never-used user, reads it again, and if still never used sets the temporary
/// password and enables it (re-enabling a never-used user that was disabled).
pub async fn rotate_if_never_used<D: Directory + ?Sized>(
    dir: &D,
    username: &str,
    password: &TemporaryPassword,
) -> Result<Rotation, DownstreamError> {
    let Some(first) = dir.get_user(username).await? else {
        return Ok(Rotation::Missing);
    };
    if !standing(&first).is_never_used() {
        return Ok(Rotation::Kept(standing(&first)));
    }
    if first.enabled {
        dir.disable_user(username).await?;
    }
    // From here on the user is disabled; every way out enables it (or reports that it could not).
    let again = match dir.get_user(username).await {
        Ok(u) => u,
        Err(e) => return Err(undo_hold(dir, username, true, e).await),
    };
    match again {
        None => Ok(Rotation::Missing),
        Some(u) if u.status == UserStatus::ForceChangePassword => {
            if let Err(e) = dir.set_temporary_password(username, password).await {
                return Err(undo_hold(dir, username, true, e).await);
            }
            dir.enable_user(username).await?;
            Ok(Rotation::Rotated { sub: u.sub })
        }
        Some(u) => {
            if first.enabled {
                dir.enable_user(username).await?;
            }
            Ok(Rotation::Kept(UserStanding::of(&u.status, first.enabled)))
        }
    }
}

/// Re-enables a disabled user that is never used or registered: what an interrupted guarded
/// operation may have left behind. Other users are left alone.
pub async fn lift_hold<D: Directory + ?Sized>(
    dir: &D,
    username: &str,
) -> Result<(), DownstreamError> {
    match dir.get_user(username).await? {
        Some(u)
            if !u.enabled
                && matches!(
                    u.status,
                    UserStatus::ForceChangePassword | UserStatus::Confirmed
                ) =>
        {
            warn!("re-enabling a user an interrupted attempt left disabled");
            dir.enable_user(username).await
        }
        _ => Ok(()),
    }
}
