//! Arbitrary strings where an event's free text ends up in an email: the given and family name,
//! the inviter, a metadata key and value, the sign-in link and the requested locale. They go
//! straight into an `Invite` (skipping `decode`, which would refuse many of them, so escaping is
//! tested on its own) and the shipped templates render the invite, welcome and reminder emails.
//!
//! The HTML must never contain a raw `<script` (auto-escaping holds for every value), and the
//! subject must be one line without control or invisible formatting characters.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use invite_worker::config::{EmailSettings, SesSettings, SmtpSettings, Transport};
use invite_worker::domain::text::forbidden_char;
use invite_worker::domain::{
    EmailAddress, Invite, InviteDetails, InviteId, InviteStatus, TemporaryPassword,
};
use invite_worker::mail::{EmailContext, TemplateKind, Templates};
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

fn templates() -> &'static Templates {
    static TEMPLATES: OnceLock<Templates> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
        match Templates::load(&dir, "en") {
            Ok(t) => t,
            Err(e) => panic!("the shipped templates do not load: {e}"),
        }
    })
}

fn settings() -> &'static EmailSettings {
    static SETTINGS: OnceLock<EmailSettings> = OnceLock::new();
    SETTINGS.get_or_init(|| EmailSettings {
        transport: Transport::Smtp,
        from: "Acme Cloud <no-reply@example.com>".into(),
        reply_to: Some("Acme Support <support@example.com>".into()),
        app_name: "Acme Cloud".into(),
        sign_in_url: "https://app.example.com/sign-in".into(),
        redirect_hosts: vec![],
        templates_dir: "templates".into(),
        default_locale: "en".into(),
        send_rate_per_second: 14.0,
        send_burst: 14,
        ses: SesSettings::default(),
        smtp: SmtpSettings::default(),
    })
}

type Input = (
    String,         // given_name
    String,         // family_name
    Option<String>, // invited_by
    String,         // metadata key
    String,         // metadata value
    Option<String>, // redirect_url
    Option<String>, // requested locale
);

fn invite(input: &Input) -> Invite {
    let (given, family, invited_by, key, value, redirect, locale) = input;
    let email = match EmailAddress::parse("jane.doe@example.com") {
        Ok(e) => e,
        Err(why) => panic!("fixed address: {why}"),
    };
    let mut details = InviteDetails {
        invited_by: invited_by.clone(),
        redirect_url: redirect.clone(),
        locale: locale.clone(),
        ..InviteDetails::default()
    };
    details
        .attributes
        .insert("given_name".into(), given.clone());
    details
        .attributes
        .insert("family_name".into(), family.clone());
    details
        .metadata
        .insert(key.clone(), serde_json::Value::from(value.as_str()));
    let at = datetime!(2026-11-26 12:00 UTC);
    Invite {
        invite_id: InviteId::for_email("us-east-1_fuzz", &email),
        user_pool_id: "us-east-1_fuzz".into(),
        username: email.as_str().into(),
        email,
        status: InviteStatus::Sent,
        reason: None,
        generation: 1,
        opened_by_event: "fuzz".into(),
        created_at: at,
        updated_at: at,
        expires_at: at + time::Duration::days(7),
        sent_at: Some(at),
        accepted_at: None,
        send_count: 1,
        user_sub: None,
        details,
        history: Vec::new(),
        version: 1,
        lease: None,
        outbox: Vec::new(),
        reminded_generation: None,
        last_occurred_at: None,
        mail: Default::default(),
    }
}

fuzz_target!(|input: Input| {
    let invite = invite(&input);
    let password = TemporaryPassword::from_known("Fuzz-Passw0rd!");
    let now = datetime!(2026-11-27 08:00 UTC);
    for kind in TemplateKind::ALL {
        let password = (kind != TemplateKind::Welcome).then_some(&password);
        let ctx = EmailContext::for_invite(&invite, password, settings(), now);
        let rendered = match templates().render(kind, invite.details.locale.as_deref(), &ctx) {
            Ok(r) => r,
            Err(e) => panic!("{kind} does not render: {e}"),
        };
        assert!(
            !rendered.html.to_ascii_lowercase().contains("<script"),
            "{kind}: a raw <script reached the HTML"
        );
        assert!(
            !rendered.subject.contains(['\r', '\n']),
            "{kind}: the subject has a line break: {:?}",
            rendered.subject
        );
        assert!(
            !rendered.subject.chars().any(forbidden_char),
            "{kind}: the subject has a control or invisible character: {:?}",
            rendered.subject
        );
    }
});
