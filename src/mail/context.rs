//! What a template can see: [`EmailContext`], and how dates are written for people.
//!
//! docs/templates.md lists every variable; keep the two in step.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::{Month, OffsetDateTime, UtcOffset};
use zeroize::Zeroize;

use crate::config::EmailSettings;
use crate::domain::{Invite, RedirectHosts, TemporaryPassword};

/// The variables every template renders against. Build it right before rendering and drop it
/// right after: it holds the temporary password in clear (wiped on drop). `Debug` redacts it,
/// and the type is not `Clone`, so the password is not copied around by accident.
#[derive(Serialize)]
pub struct EmailContext {
    /// The product's name (`email.app_name`).
    pub app_name: String,
    /// The invitee's normalised address.
    pub email: String,
    /// The Cognito username to sign in with.
    pub username: String,
    /// The temporary password, from [`TemporaryPassword::expose`]; empty for a welcome email.
    pub temporary_password: String,
    /// Where to sign in: the invite's `redirect_url` if still allowed, else `email.sign_in_url`.
    pub sign_in_url: String,
    /// When the invitation (and the temporary password) stops working, for people:
    /// `2 December 2026, 12:00 UTC`. Localised templates use `expires_at_iso|human_date`.
    pub expires_at: String,
    /// The same instant as RFC 3339 (`2026-12-02T12:00:00Z`).
    pub expires_at_iso: String,
    /// Whole days left, rounded up; 0 once expired.
    pub expires_in_days: i64,
    /// Who sent the invitation, as the event named them (`Jane Doe`), if it did.
    pub invited_by: Option<String>,
    /// The Cognito attributes of the invite (`attributes.given_name`, `attributes.family_name`).
    pub attributes: BTreeMap<String, String>,
    /// The event's free-form `metadata` object.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The locale the invite asked for (`de-AT`), if any. Templates see it as
    /// `requested_locale`; the variable `locale` is the locale of the template being rendered.
    #[serde(rename = "requested_locale")]
    pub locale: Option<String>,
    /// Where to ask for help, if configured (the address of `email.reply_to`).
    pub support_email: Option<String>,
    /// The invite's id, for support requests.
    pub invite_id: String,
}

impl EmailContext {
    /// The context for an email about `invite`. `password` is `None` for a welcome email.
    pub fn for_invite(
        invite: &Invite,
        password: Option<&TemporaryPassword>,
        settings: &EmailSettings,
        now: OffsetDateTime,
    ) -> Self {
        let details = &invite.details;
        Self {
            app_name: settings.app_name.clone(),
            email: invite.email.as_str().to_owned(),
            username: invite.username.clone(),
            temporary_password: password.map(|p| p.expose().to_owned()).unwrap_or_default(),
            sign_in_url: sign_in_link(
                details.redirect_url.as_deref(),
                &settings.redirect_hosts,
                &settings.sign_in_url,
            ),
            expires_at: human_date(invite.expires_at, "en"),
            expires_at_iso: iso_date(invite.expires_at),
            expires_in_days: days_left(invite.expires_at, now),
            invited_by: details.invited_by.clone(),
            attributes: details.attributes.clone(),
            metadata: details.metadata.clone(),
            locale: details.locale.clone(),
            support_email: settings.reply_to.as_deref().map(address_of),
            invite_id: invite.invite_id.to_string(),
        }
    }

    /// A context with every optional value filled in, used to check templates at start-up and
    /// for previews. The password is a made-up one.
    pub fn sample_full(app_name: &str) -> Self {
        let expires =
            OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_789) + time::Duration::hours(12);
        let mut attributes = BTreeMap::new();
        attributes.insert("given_name".to_owned(), "Jane".to_owned());
        attributes.insert("family_name".to_owned(), "Doe".to_owned());
        let mut metadata = serde_json::Map::new();
        metadata.insert("team".to_owned(), serde_json::Value::from("Platform"));
        Self {
            app_name: app_name.to_owned(),
            email: "jane.doe@example.com".to_owned(),
            username: "jane.doe@example.com".to_owned(),
            temporary_password: "Sample-Passw0rd!".to_owned(),
            sign_in_url: "https://app.example.com/sign-in".to_owned(),
            expires_at: human_date(expires, "en"),
            expires_at_iso: iso_date(expires),
            expires_in_days: 7,
            invited_by: Some("Max Mustermann".to_owned()),
            attributes,
            metadata,
            locale: Some("en-GB".to_owned()),
            support_email: Some("support@example.com".to_owned()),
            invite_id: "00000000-0000-0000-0000-000000000000".to_owned(),
        }
    }

    /// A context with every optional value absent (no name, no inviter, no support address,
    /// no password), so that templates are also checked for the sparse case.
    pub fn sample_minimal(app_name: &str) -> Self {
        let mut ctx = Self::sample_full(app_name);
        ctx.temporary_password.zeroize();
        ctx.invited_by = None;
        ctx.attributes.clear();
        ctx.metadata.clear();
        ctx.locale = None;
        ctx.support_email = None;
        ctx
    }

    /// The name to greet: `attributes.given_name` when present and not blank, else the email.
    pub fn greeting_name(&self) -> &str {
        match self.attributes.get("given_name").map(|s| s.trim()) {
            Some(name) if !name.is_empty() => name,
            _ => &self.email,
        }
    }
}

impl fmt::Debug for EmailContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailContext")
            .field("app_name", &self.app_name)
            .field("email", &self.email)
            .field("username", &self.username)
            .field("temporary_password", &"[redacted]")
            .field("sign_in_url", &self.sign_in_url)
            .field("expires_at_iso", &self.expires_at_iso)
            .field("invited_by", &self.invited_by)
            .field("locale", &self.locale)
            .field("invite_id", &self.invite_id)
            .finish_non_exhaustive()
    }
}

impl Drop for EmailContext {
    fn drop(&mut self) {
        self.temporary_password.zeroize();
    }
}

/// `Name <addr@x>` → `addr@x`; a bare address is returned as it is.
fn address_of(mailbox: &str) -> String {
    match (mailbox.rfind('<'), mailbox.rfind('>')) {
        (Some(start), Some(end)) if start < end => mailbox[start + 1..end].trim().to_owned(),
        _ => mailbox.trim().to_owned(),
    }
}

/// Whole days from `now` until `at`, rounded up, never negative.
pub fn days_left(at: OffsetDateTime, now: OffsetDateTime) -> i64 {
    let seconds = (at - now).whole_seconds();
    if seconds <= 0 {
        0
    } else {
        (seconds + 86_399) / 86_400
    }
}

/// RFC 3339 in UTC, whole seconds (`2026-12-02T12:00:00Z`).
pub fn iso_date(at: OffsetDateTime) -> String {
    let at = at
        .to_offset(UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_default()
}

/// A date for people, in UTC, in the language of `locale` (English unless it is German):
/// `2 December 2026, 12:00 UTC` / `2. Dezember 2026, 12:00 UTC`.
pub fn human_date(at: OffsetDateTime, locale: &str) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    let language = locale
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let (day, month, year, hour, minute) =
        (at.day(), at.month(), at.year(), at.hour(), at.minute());
    match language.as_str() {
        "de" => format!(
            "{day}. {} {year}, {hour:02}:{minute:02} UTC",
            german_month(month)
        ),
        _ => format!("{day} {month} {year}, {hour:02}:{minute:02} UTC"),
    }
}

/// Parses an RFC 3339 string and writes it with [`human_date`]; `None` if it does not parse.
pub fn human_date_from_iso(iso: &str, locale: &str) -> Option<String> {
    OffsetDateTime::parse(iso, &Rfc3339)
        .ok()
        .map(|at| human_date(at, locale))
}

fn german_month(month: Month) -> &'static str {
    match month {
        Month::January => "Januar",
        Month::February => "Februar",
        Month::March => "März",
        Month::April => "April",
        Month::May => "Mai",
        Month::June => "Juni",
        Month::July => "Juli",
        Month::August => "August",
        Month::September => "September",
        Month::October => "Oktober",
        Month::November => "November",
        Month::December => "Dezember",
    }
}

/// The link an email sends the person to: the invite's `redirect_url` if it is still allowed
/// (https, on `email.redirect_hosts`), else `email.sign_in_url`. Events are checked when they
/// arrive; this covers records stored before the allow-list existed or was narrowed, which a
/// resend or reminder would otherwise render.
fn sign_in_link(
    redirect_url: Option<&str>,
    redirect_hosts: &[String],
    sign_in_url: &str,
) -> String {
    let allowed = |url: &str| {
        RedirectHosts::new(redirect_hosts, sign_in_url).is_ok_and(|hosts| hosts.check(url).is_ok())
    };
    match redirect_url {
        Some(url) if allowed(url) => url.to_owned(),
        _ => sign_in_url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_stored_redirect_off_the_allow_list_falls_back_to_the_sign_in_url() {
        let sign_in = "https://app.example.com/sign-in";
        let ok = "https://app.example.com/welcome";
        assert_eq!(sign_in_link(Some(ok), &[], sign_in), ok);
        assert_eq!(sign_in_link(None, &[], sign_in), sign_in);
        for stale in ["http://app.example.com/welcome", "https://evil.example/"] {
            assert_eq!(sign_in_link(Some(stale), &[], sign_in), sign_in, "{stale}");
        }
        let listed = vec!["login.example.org".to_string()];
        assert_eq!(
            sign_in_link(Some("https://login.example.org/x"), &listed, sign_in),
            "https://login.example.org/x"
        );
        assert_eq!(sign_in_link(Some(ok), &listed, sign_in), sign_in);
    }

    #[test]
    fn dates_for_people() {
        let at = datetime!(2026-12-02 13:00 +01:00);
        assert_eq!(human_date(at, "en"), "2 December 2026, 12:00 UTC");
        assert_eq!(human_date(at, "de-AT"), "2. Dezember 2026, 12:00 UTC");
        assert_eq!(human_date(at, "fr"), "2 December 2026, 12:00 UTC");
        assert_eq!(iso_date(at), "2026-12-02T12:00:00Z");
        assert_eq!(
            human_date_from_iso("2026-03-05T08:05:00Z", "de").as_deref(),
            Some("5. März 2026, 08:05 UTC")
        );
        assert_eq!(human_date_from_iso("not a date", "de"), None);
    }

    #[test]
    fn days_left_rounds_up() {
        let now = datetime!(2026-01-01 00:00 UTC);
        assert_eq!(days_left(now + time::Duration::days(7), now), 7);
        assert_eq!(
            days_left(
                now + time::Duration::days(7) - time::Duration::seconds(5),
                now
            ),
            7
        );
        assert_eq!(days_left(now + time::Duration::hours(1), now), 1);
        assert_eq!(days_left(now - time::Duration::hours(1), now), 0);
    }

    #[test]
    fn sample_dates_are_consistent() {
        let ctx = EmailContext::sample_full("Acme");
        assert_eq!(
            human_date_from_iso(&ctx.expires_at_iso, "en").as_deref(),
            Some(ctx.expires_at.as_str())
        );
    }

    #[test]
    fn debug_redacts_the_password() {
        let ctx = EmailContext::sample_full("Acme");
        let shown = format!("{ctx:?}");
        assert!(!shown.contains(&ctx.temporary_password), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn greeting_falls_back_to_email() {
        let mut ctx = EmailContext::sample_full("Acme");
        assert_eq!(ctx.greeting_name(), "Jane");
        ctx.attributes.insert("given_name".into(), "  ".into());
        assert_eq!(ctx.greeting_name(), "jane.doe@example.com");
        assert_eq!(
            address_of("Acme Support <help@acme.test>"),
            "help@acme.test"
        );
        assert_eq!(address_of("help@acme.test"), "help@acme.test");
    }
}
