//! Turning an invite into an email: the port the handler uses, so that the handler does not
//! depend on the template engine (`crate::mail` implements it).

use time::OffsetDateTime;

use crate::domain::{Invite, TemporaryPassword};
use crate::ports::OutgoingMail;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailKind {
    /// The invitation, with username and temporary password.
    Invitation,
    /// After acceptance.
    Welcome,
    /// Before expiry, with a fresh temporary password.
    Reminder,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Invitation => "invite",
            MailKind::Welcome => "welcome",
            MailKind::Reminder => "reminder",
        }
    }
}

/// The SES message tags every mail carries ([`crate::domain::feedback`]): SES's sending events
/// name the invite and generation they are about, and which mail it was.
pub fn mail_tags(kind: MailKind, invite: &Invite) -> Vec<(String, String)> {
    use crate::domain::feedback::{TAG_GENERATION, TAG_INVITE_ID, TAG_MAIL_KIND};
    vec![
        (TAG_INVITE_ID.into(), invite.invite_id.to_string()),
        (TAG_GENERATION.into(), invite.generation.to_string()),
        (TAG_MAIL_KIND.into(), kind.as_str().into()),
    ]
}

pub trait Composer: Send + Sync {
    /// Renders the email of `kind` for `invite`. The error is a message for operators (a template
    /// error names its file and line); it never contains the password.
    fn compose(
        &self,
        kind: MailKind,
        invite: &Invite,
        password: Option<&TemporaryPassword>,
        now: OffsetDateTime,
    ) -> Result<OutgoingMail, String>;
}

/// A composer without templates, for unit tests and the benchmark: the text part carries the
/// password on a `Temporary password: ...` line, like the real templates.
#[derive(Clone, Debug, Default)]
pub struct PlainComposer;

impl Composer for PlainComposer {
    fn compose(
        &self,
        kind: MailKind,
        invite: &Invite,
        password: Option<&TemporaryPassword>,
        _now: OffsetDateTime,
    ) -> Result<OutgoingMail, String> {
        let pw = password.map(|p| p.expose().to_string()).unwrap_or_default();
        Ok(OutgoingMail {
            from: "Acme <no-reply@example.com>".into(),
            reply_to: None,
            to: invite.email.clone(),
            subject: format!("{} for {}", kind.as_str(), invite.email),
            text: format!("Username: {}\nTemporary password: {pw}\n", invite.username),
            html: format!("<p>Temporary password: <code>{pw}</code></p>"),
            headers: vec![("X-Invite-Id".into(), invite.invite_id.to_string())],
            tags: mail_tags(kind, invite),
        })
    }
}
