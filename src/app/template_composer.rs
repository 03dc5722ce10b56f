//! The production [`Composer`]: renders the templates in `templates/` with the invite's locale
//! and wraps the result in an [`OutgoingMail`] with the configured sender.

use time::OffsetDateTime;

use super::compose::{Composer, MailKind};
use crate::config::EmailSettings;
use crate::domain::{Invite, TemporaryPassword};
use crate::mail::{EmailContext, TemplateKind, Templates};
use crate::ports::OutgoingMail;

pub struct TemplateComposer {
    templates: Templates,
    settings: EmailSettings,
}

impl TemplateComposer {
    pub fn new(templates: Templates, settings: &EmailSettings) -> Self {
        Self {
            templates,
            settings: settings.clone(),
        }
    }
}

impl Composer for TemplateComposer {
    fn compose(
        &self,
        kind: MailKind,
        invite: &Invite,
        password: Option<&TemporaryPassword>,
        now: OffsetDateTime,
    ) -> Result<OutgoingMail, String> {
        let template = match kind {
            MailKind::Invitation => TemplateKind::Invite,
            MailKind::Welcome => TemplateKind::Welcome,
            MailKind::Reminder => TemplateKind::Reminder,
        };
        let context = EmailContext::for_invite(invite, password, &self.settings, now);
        let rendered = self
            .templates
            .render(template, invite.details.locale.as_deref(), &context)
            .map_err(|e| e.to_string())?;
        drop(context);
        Ok(OutgoingMail {
            from: self.settings.from.clone(),
            reply_to: self.settings.reply_to.clone(),
            to: invite.email.clone(),
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
            headers: vec![
                ("X-Invite-Id".into(), invite.invite_id.to_string()),
                ("X-Invite-Generation".into(), invite.generation.to_string()),
            ],
            tags: super::compose::mail_tags(kind, invite),
        })
    }
}
