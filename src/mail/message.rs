//! Builds the MIME message both transports send: `multipart/alternative` with a text and an HTML
//! part, every header set through lettre, which encodes non-ASCII (RFC 2047) and folds lines.
//!
//! Nothing in an [`OutgoingMail`] can add a header: the subject is reduced to one line, sender
//! and reply-to names with control characters are refused, and extra headers must have a plain
//! name (letters, digits, `-`), must not replace a structural header, and must be one line.
//!
//! Errors are [`ErrorKind::Rejected`] (the same mail would fail again) with operation
//! `build_message` and a code: `invalid_sender`, `invalid_reply_to`, `invalid_recipient`,
//! `invalid_header` or `invalid_message`. They carry the service about to send, because the
//! message is built right before the transport call: [`build`] says SMTP, [`to_raw`] (the SES
//! raw message) says SES, [`build_for`] lets a caller choose. An invalid sender or reply-to is a
//! configuration problem (`email.from`, `email.reply_to`); configuration checks should catch it
//! at start-up with [`parse_mailbox`].

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};

use super::single_line;
use crate::domain::text::forbidden_char;
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::ports::OutgoingMail;

const OPERATION: &str = "build_message";

/// Longest extra header value we accept (RFC 5322 caps a line at 998 characters).
const MAX_HEADER_VALUE_CHARS: usize = 900;

/// Headers that lettre sets from the mail itself; an extra header may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "content-id",
    "return-path",
    "received",
    "dkim-signature",
];

/// Builds `mail` as a lettre message, labelling errors as SMTP's (see the module docs).
pub fn build(mail: &OutgoingMail) -> Result<Message, DownstreamError> {
    build_for(Service::Smtp, mail)
}

/// The whole message as bytes (RFC 5322), for SES `SendEmail` with `Content.Raw`; errors are
/// labelled as SES's.
pub fn to_raw(mail: &OutgoingMail) -> Result<Vec<u8>, DownstreamError> {
    Ok(build_for(Service::Ses, mail)?.formatted())
}

/// Builds `mail`; errors name `service`, the transport that was about to send it.
pub fn build_for(service: Service, mail: &OutgoingMail) -> Result<Message, DownstreamError> {
    let reject = |code: &str, message: String| {
        DownstreamError::new(
            service,
            OPERATION,
            ErrorKind::Rejected(code.to_owned()),
            message,
        )
    };

    let from = parse_mailbox(&mail.from)
        .map_err(|why| reject("invalid_sender", format!("sender (email.from) {why}")))?;
    let to: Address = mail.to.as_str().parse().map_err(|e| {
        reject(
            "invalid_recipient",
            format!("recipient address is not accepted ({e})"),
        )
    })?;

    let mut builder = Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to))
        .subject(single_line(&mail.subject))
        .date_now()
        .message_id(Some(new_message_id(&from)));
    if let Some(reply_to) = mail.reply_to.as_deref() {
        let reply_to = parse_mailbox(reply_to).map_err(|why| {
            reject(
                "invalid_reply_to",
                format!("reply-to (email.reply_to) {why}"),
            )
        })?;
        builder = builder.reply_to(reply_to);
    }
    for (name, value) in &mail.headers {
        let header = extra_header(name, value).map_err(|why| reject("invalid_header", why))?;
        builder = builder.raw_header(header);
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
        .map_err(|e| reject("invalid_message", format!("cannot build the message ({e})")))
}

/// Parses `Name <address>` or a bare address; the reason on failure reads after the field's name.
pub fn parse_mailbox(value: &str) -> Result<Mailbox, String> {
    if let Some(c) = value.chars().find(|c| forbidden_char(*c)) {
        return Err(format!(
            "contains a control or invisible formatting character (U+{:04X})",
            c as u32
        ));
    }
    value
        .trim()
        .parse::<Mailbox>()
        .map_err(|e| format!("is not an address such as \"Acme <no-reply@example.com>\" ({e})"))
}

/// The `Message-ID` of a built message, without the angle brackets.
pub fn message_id(message: &Message) -> Option<String> {
    message.headers().get_raw("Message-ID").map(|id| {
        id.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned()
    })
}

/// `<uuid@sender-domain>`: unique, and on a domain we send for (a container's host name is not).
fn new_message_id(from: &Mailbox) -> String {
    format!(
        "<{}@{}>",
        uuid::Uuid::new_v4().simple(),
        from.email.domain()
    )
}

fn extra_header(name: &str, value: &str) -> Result<HeaderValue, String> {
    let plain = !name.is_empty()
        && name.len() <= 76
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !plain {
        return Err(format!(
            "header name {name:?} must be 1 to 76 ASCII letters, digits or hyphens"
        ));
    }
    if RESERVED_HEADERS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "header {name} is set by the message builder and cannot be given as an extra header"
        ));
    }
    if value.chars().any(forbidden_char) {
        return Err(format!(
            "header {name} has a control or invisible formatting character in its value"
        ));
    }
    if value.chars().count() > MAX_HEADER_VALUE_CHARS {
        return Err(format!(
            "header {name} is longer than {MAX_HEADER_VALUE_CHARS} characters"
        ));
    }
    let name = HeaderName::new_from_ascii(name.to_owned())
        .map_err(|_| format!("header name {name:?} is not valid"))?;
    Ok(HeaderValue::new(name, value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EmailAddress;

    fn mail() -> OutgoingMail {
        OutgoingMail {
            from: "Acme Cloud <no-reply@acme.test>".into(),
            reply_to: Some("Acme Support <support@acme.test>".into()),
            to: EmailAddress::parse("jane@example.com").expect("address"),
            subject: "You're invited to Acme Cloud".into(),
            text: "Hello Jane\nTemporary password: Abc-123-xyz\n".into(),
            html: "<p>Hello Jane</p>".into(),
            tags: Vec::new(),
            headers: vec![(
                "X-Invite-Id".into(),
                "7f0c6a1e-0000-4000-8000-000000000001".into(),
            )],
        }
    }

    fn formatted(mail: &OutgoingMail) -> String {
        String::from_utf8(to_raw(mail).expect("build")).expect("ASCII message")
    }

    /// The top-level header lines, unfolded.
    fn header_lines(raw: &str) -> Vec<String> {
        let head = raw.split("\r\n\r\n").next().unwrap_or_default();
        let mut lines: Vec<String> = Vec::new();
        for line in head.split("\r\n") {
            match lines.last_mut() {
                Some(last) if line.starts_with([' ', '\t']) => last.push_str(line),
                _ => lines.push(line.to_owned()),
            }
        }
        lines
    }

    fn header_names(raw: &str) -> Vec<String> {
        header_lines(raw)
            .iter()
            .map(|l| l.split(':').next().unwrap_or_default().to_ascii_lowercase())
            .collect()
    }

    fn rejection(result: Result<Message, DownstreamError>) -> DownstreamError {
        match result {
            Ok(_) => panic!("expected the mail to be refused"),
            Err(e) => e,
        }
    }

    #[test]
    fn has_every_header_once_and_both_parts() {
        let raw = formatted(&mail());
        let mut names = header_names(&raw);
        names.sort();
        assert_eq!(
            names,
            [
                "content-type",
                "date",
                "from",
                "message-id",
                "mime-version",
                "reply-to",
                "subject",
                "to",
                "x-invite-id"
            ],
            "{raw}"
        );
        let lines = header_lines(&raw);
        assert!(
            lines.contains(&"From: \"Acme Cloud\" <no-reply@acme.test>".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"To: jane@example.com".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"X-Invite-Id: 7f0c6a1e-0000-4000-8000-000000000001".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("Message-ID: <") && l.ends_with("@acme.test>")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("Content-Type: multipart/alternative;")),
            "{lines:?}"
        );
        assert!(
            raw.contains("Content-Type: text/plain; charset=utf-8"),
            "{raw}"
        );
        assert!(
            raw.contains("Content-Type: text/html; charset=utf-8"),
            "{raw}"
        );
        assert!(raw.contains("Temporary password: Abc-123-xyz"), "{raw}");
        assert!(raw.contains("<p>Hello Jane</p>"), "{raw}");
    }

    #[test]
    fn crlf_in_subject_cannot_add_a_header() {
        let mut m = mail();
        m.subject =
            "Hello\r\nBcc: evil@attacker.test\r\nX-Injected: yes\nContent-Type: text/evil".into();
        let raw = formatted(&m);
        let names = header_names(&raw);
        assert!(
            !names.contains(&"bcc".to_owned()) && !names.contains(&"x-injected".to_owned()),
            "{raw}"
        );
        assert_eq!(
            names.iter().filter(|n| *n == "content-type").count(),
            1,
            "{raw}"
        );
        assert!(header_lines(&raw).contains(
            &"Subject: Hello Bcc: evil@attacker.test X-Injected: yes Content-Type: text/evil"
                .to_owned()
        ));
        let message = build(&m).expect("build");
        assert!(message
            .envelope()
            .to()
            .iter()
            .all(|a| a.to_string() == "jane@example.com"));
        assert_eq!(message.envelope().to().len(), 1);
    }

    #[test]
    fn crlf_in_names_and_headers_is_refused() {
        let mut m = mail();
        m.from = "Acme\r\nBcc: evil@attacker.test <no-reply@acme.test>".into();
        let err = rejection(build(&m));
        assert_eq!(err.kind, ErrorKind::Rejected("invalid_sender".into()));
        assert_eq!(err.service, Service::Smtp);

        let mut m = mail();
        m.reply_to = Some("Help\n <help@acme.test>".into());
        assert_eq!(
            rejection(build(&m)).rejection_code(),
            Some("invalid_reply_to")
        );

        for (name, value) in [
            ("X-Invite-Id", "abc\r\nBcc: evil@attacker.test"),
            ("X-Bad:Name", "x"),
            ("X Bad", "x"),
            ("", "x"),
            ("Bcc", "evil@attacker.test"),
            ("content-type", "text/evil"),
            ("X-Ünïcode", "x"),
        ] {
            let mut m = mail();
            m.headers = vec![(name.into(), value.into())];
            let err = rejection(build(&m));
            assert_eq!(err.rejection_code(), Some("invalid_header"), "{name:?}");
            assert!(!err.to_string().contains("evil@"), "{err}");
        }
    }

    #[test]
    fn non_ascii_subject_and_name_are_encoded() {
        let mut m = mail();
        m.from = "Zoë Łukasz GmbH <no-reply@acme.test>".into();
        m.subject = "Einladung für Zoë – Ihr Zugang".into();
        m.headers
            .push(("X-Team".into(), "Qualitätssicherung".into()));
        let raw = formatted(&m);
        assert!(raw.is_ascii());
        let lines = header_lines(&raw);
        let subject = lines
            .iter()
            .find(|l| l.starts_with("Subject: "))
            .expect("subject");
        // Only the words that need it are encoded, as RFC 2047 allows.
        assert!(
            subject.starts_with("Subject: Einladung =?utf-8?b?")
                && subject.ends_with(" Ihr Zugang"),
            "{subject}"
        );
        let from = lines
            .iter()
            .find(|l| l.starts_with("From: "))
            .expect("from");
        assert!(
            from.contains("=?utf-8?") && from.ends_with("<no-reply@acme.test>"),
            "{from}"
        );
        let team = lines
            .iter()
            .find(|l| l.starts_with("X-Team: "))
            .expect("x-team");
        assert!(team.starts_with("X-Team: =?utf-8?b?"), "{team}");
    }

    #[test]
    fn bare_sender_and_no_reply_to() {
        let mut m = mail();
        m.from = "no-reply@acme.test".into();
        m.reply_to = None;
        let raw = formatted(&m);
        assert!(!header_names(&raw).contains(&"reply-to".to_owned()));
        assert!(header_lines(&raw).contains(&"From: no-reply@acme.test".to_owned()));
    }

    #[test]
    fn invalid_sender_is_rejected_for_the_calling_service() {
        let mut m = mail();
        m.from = "not an address".into();
        let err = to_raw(&m).expect_err("invalid sender");
        assert_eq!(
            (err.service, err.rejection_code()),
            (Service::Ses, Some("invalid_sender"))
        );
        assert_eq!(err.operation, "build_message");
        assert!(!err.is_transient());
        assert!(parse_mailbox("Acme <no-reply@acme.test>").is_ok());
    }

    #[test]
    fn message_id_is_readable_back() {
        let message = build(&mail()).expect("build");
        let id = message_id(&message).expect("message id");
        assert!(id.ends_with("@acme.test") && !id.contains('<'), "{id}");
    }
}
