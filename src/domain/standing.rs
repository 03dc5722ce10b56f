//! What an invite may do with an existing Cognito user, decided from the user's status and
//! whether it is enabled. Pure: the Cognito adapter maps the SDK's status to [`UserStatus`], the
//! callers act on the [`UserStanding`]. Only a `CONFIRMED`, enabled user is an accepted invitee;
//! only a `FORCE_CHANGE_PASSWORD` user (never used) may get a new password or be deleted.

/// A Cognito user's status, as `AdminGetUser` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserStatus {
    /// Created by an admin, temporary password not yet changed: never used.
    ForceChangePassword,
    Confirmed,
    /// Anything else Cognito reports (`RESET_REQUIRED`, `UNCONFIRMED`, `EXTERNAL_PROVIDER`,
    /// `ARCHIVED`, `COMPROMISED`, `UNKNOWN`, or a status added after this code was written).
    Other(String),
}

/// What the invite may do with a user, from its status and whether it is enabled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserStanding {
    /// `FORCE_CHANGE_PASSWORD`, enabled: the invitation is outstanding. The invite may give it
    /// a fresh temporary password and deletes it when it closes.
    Invited,
    /// `FORCE_CHANGE_PASSWORD`, disabled: never used, and nobody can sign in with it (a hold
    /// the worker took while checking it, or an admin's). The invite may delete it when it
    /// closes; a new password re-enables it (the invite owns its never-used user).
    InvitedDisabled,
    /// `CONFIRMED`, enabled: the person completed registration. The only accepted invitee
    /// (groups, welcome email); never modified or deleted.
    Registered,
    /// `CONFIRMED`, disabled (by an admin): not accepted (no groups, no welcome email), never
    /// modified or deleted.
    RegisteredDisabled,
    /// Any other status, enabled or not: not the invite's user and not an accepted invitee.
    /// Never modified, deleted, accepted or mailed; the code names the status.
    Unusable { status: String },
}

impl UserStanding {
    /// The standing of a user with `status`, enabled or not.
    pub fn of(status: &UserStatus, enabled: bool) -> Self {
        match (status, enabled) {
            (UserStatus::ForceChangePassword, true) => UserStanding::Invited,
            (UserStatus::ForceChangePassword, false) => UserStanding::InvitedDisabled,
            (UserStatus::Confirmed, true) => UserStanding::Registered,
            (UserStatus::Confirmed, false) => UserStanding::RegisteredDisabled,
            (UserStatus::Other(s), _) => UserStanding::Unusable { status: s.clone() },
        }
    }

    /// The person completed registration and may join the invite's groups and get the welcome.
    pub fn is_accepted(&self) -> bool {
        *self == UserStanding::Registered
    }

    /// Never used (`FORCE_CHANGE_PASSWORD`): the invite may rotate its password or delete it.
    pub fn is_never_used(&self) -> bool {
        matches!(self, UserStanding::Invited | UserStanding::InvitedDisabled)
    }

    /// The reason code an invite records when it cannot use this user.
    pub fn reason(&self) -> String {
        match self {
            UserStanding::Invited | UserStanding::InvitedDisabled => "never_used".into(),
            UserStanding::Registered => "already_registered".into(),
            UserStanding::RegisteredDisabled => "user_disabled".into(),
            UserStanding::Unusable { status } => {
                let code: String = status
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        }
                    })
                    .collect();
                format!("user_status_{code}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status Cognito documents, plus an unknown future one, enabled and disabled:
    /// (status, enabled) -> (standing reason, accepted?, never used?).
    #[test]
    #[rustfmt::skip]
    fn every_status_has_one_standing() {
        let other = |s: &str| UserStatus::Other(s.into());
        let table: Vec<(UserStatus, bool, &str, bool, bool)> = vec![
            (UserStatus::ForceChangePassword, true, "never_used", false, true),
            (UserStatus::ForceChangePassword, false, "never_used", false, true),
            (UserStatus::Confirmed, true, "already_registered", true, false),
            (UserStatus::Confirmed, false, "user_disabled", false, false),
            (other("UNCONFIRMED"), true, "user_status_unconfirmed", false, false),
            (other("RESET_REQUIRED"), true, "user_status_reset_required", false, false),
            (other("EXTERNAL_PROVIDER"), true, "user_status_external_provider", false, false),
            (other("ARCHIVED"), true, "user_status_archived", false, false),
            (other("COMPROMISED"), true, "user_status_compromised", false, false),
            (other("UNKNOWN"), true, "user_status_unknown", false, false),
            (other("SOMETHING_NEW"), true, "user_status_something_new", false, false),
            (other("UNCONFIRMED"), false, "user_status_unconfirmed", false, false),
            (other("COMPROMISED"), false, "user_status_compromised", false, false),
        ];
        for (status, enabled, reason, accepted, never_used) in table {
            let s = UserStanding::of(&status, enabled);
            assert_eq!(
                (s.reason().as_str(), s.is_accepted(), s.is_never_used()),
                (reason, accepted, never_used),
                "{status:?} enabled={enabled}"
            );
        }
    }
}
