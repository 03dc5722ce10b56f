//! [`SesMailer`]: the [`Mailer`] port on Amazon SES v2 `SendEmail` with a raw MIME message.

use async_trait::async_trait;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, MessageTag, RawMessage};
use aws_sdk_sesv2::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use lettre::message::Mailbox;

use crate::adapters::aws_errors;
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::mail::message::to_raw;
use crate::ports::{Mailer, OutgoingMail};

const OPERATION: &str = "SendEmail";

/// Account-wide conditions, 4xx on the wire, that say nothing about this mail: retrying later
/// beats dead-lettering every good message while an operator sorts the account out.
const TRANSIENT_CODES: &[&str] = &["AccountSuspendedException", "SendingPausedException"];

/// Sends mail through SES v2, optionally tagged with a configuration set (for event publishing).
#[derive(Clone, Debug)]
pub struct SesMailer {
    client: Client,
    configuration_set: Option<String>,
}

impl SesMailer {
    pub fn new(client: Client, configuration_set: Option<String>) -> Self {
        Self {
            client,
            configuration_set,
        }
    }
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<String, DownstreamError> {
        let raw = to_raw(mail)?;
        let from = sender_address(&mail.from);
        let raw = RawMessage::builder()
            .data(Blob::new(raw))
            .build()
            .map_err(|e| {
                DownstreamError::new(
                    Service::Ses,
                    OPERATION,
                    ErrorKind::Rejected("invalid_message".into()),
                    e.to_string(),
                )
            })?;
        let out = self
            .client
            .send_email()
            .from_email_address(from)
            .destination(
                Destination::builder()
                    .to_addresses(mail.to.as_str())
                    .build(),
            )
            .content(EmailContent::builder().raw(raw).build())
            .set_configuration_set_name(self.configuration_set.clone())
            .set_email_tags(Some(email_tags(&mail.tags)))
            .send()
            .await
            .map_err(|e| error(&e))?;
        // SES always returns one; an empty id must not make us send the mail again.
        Ok(out.message_id().unwrap_or_default().to_string())
    }
}

/// The address in `from` (`Name <address>` or a bare address), which names the verified
/// identity; the display name travels in the raw message's `From` header.
pub fn sender_address(from: &str) -> String {
    from.parse::<Mailbox>()
        .map(|m| m.email.to_string())
        .unwrap_or_else(|_| from.trim().to_string())
}

/// The longest name or value SES accepts in a message tag.
const MAX_TAG_LEN: usize = 256;

/// `mail.tags` as SES message tags. SES allows only ASCII letters, digits, `_`, `-`, `.` and `@`
/// in names and values, at most 256 characters each, and refuses the whole send otherwise: so a
/// name that breaks the rule is left out (a renamed tag would lead nowhere), a value has each
/// other character replaced by `_` and is cut to 256; an empty one is left out. A tag never
/// fails a send.
pub fn email_tags(tags: &[(String, String)]) -> Vec<MessageTag> {
    tags.iter()
        .filter_map(|(name, value)| {
            let name_ok =
                !name.is_empty() && name.len() <= MAX_TAG_LEN && name.chars().all(allowed_in_tag);
            let value: String = value
                .chars()
                .map(|c| if allowed_in_tag(c) { c } else { '_' })
                .take(MAX_TAG_LEN)
                .collect();
            if !name_ok || value.is_empty() {
                tracing::debug!(tag = %name, "message tag left out: SES would refuse it");
                return None;
            }
            MessageTag::builder().name(name).value(value).build().ok()
        })
        .collect()
}

fn allowed_in_tag(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@')
}

/// Our reason codes for SES's error codes.
fn codes(code: &str) -> Option<&'static str> {
    match code {
        "MessageRejected" => Some("email_rejected"),
        "MailFromDomainNotVerifiedException" => Some("sender_not_verified"),
        "BadRequestException" => Some("bad_request"),
        "NotFoundException" => Some("configuration_set_not_found"),
        _ => None,
    }
}

fn error<E>(err: &SdkError<E, HttpResponse>) -> DownstreamError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut out = aws_errors::classify(Service::Ses, OPERATION, err, codes);
    if err
        .as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|c| TRANSIENT_CODES.contains(&c))
    {
        out.kind = ErrorKind::Unavailable;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EmailAddress;
    use aws_sdk_sesv2::config::retry::RetryConfig;
    use aws_sdk_sesv2::operation::send_email::SendEmailOutput;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use aws_smithy_types::body::SdkBody;

    /// An SES v2 (restJson1) error response, as the service sends it.
    fn ses_error(status: u16, code: &str, message: &str) -> HttpResponse {
        let body = serde_json::json!({ "message": message }).to_string();
        let mut resp = HttpResponse::new(
            status.try_into().expect("valid status"),
            SdkBody::from(body),
        );
        resp.headers_mut()
            .insert("content-type", "application/json");
        resp.headers_mut()
            .insert("x-amzn-errortype", code.to_string());
        resp
    }

    fn mailer(rules: &[&Rule], configuration_set: Option<&str>) -> SesMailer {
        let client = mock_client!(aws_sdk_sesv2, RuleMode::MatchAny, rules, |c| c
            .retry_config(RetryConfig::disabled()));
        SesMailer::new(client, configuration_set.map(str::to_string))
    }

    fn mail() -> OutgoingMail {
        OutgoingMail {
            from: "Example <noreply@example.com>".into(),
            reply_to: Some("help@example.com".into()),
            to: EmailAddress::parse("jane@example.com").expect("valid"),
            subject: "You're invited".into(),
            text: "Your temporary password is Secret-1".into(),
            html: "<p>Your temporary password is Secret-1</p>".into(),
            tags: vec![
                ("invite_id".into(), "inv-1".into()),
                ("invite_generation".into(), "2".into()),
                ("mail_kind".into(), "invite".into()),
            ],
            headers: vec![("X-Invite-Id".into(), "inv-1".into())],
        }
    }

    #[tokio::test]
    async fn sends_the_raw_message_and_returns_the_message_id() {
        let rule = mock!(Client::send_email)
            .match_requests(|r| {
                let raw = r
                    .content()
                    .and_then(|c| c.raw())
                    .map(|m| String::from_utf8_lossy(m.data().as_ref()).into_owned());
                let raw = raw.unwrap_or_default();
                r.from_email_address() == Some("noreply@example.com")
                    && r.destination().map(|d| d.to_addresses())
                        == Some(&["jane@example.com".to_string()][..])
                    && r.configuration_set_name() == Some("invites")
                    && raw.contains("Subject: You're invited")
                    && raw.contains("multipart/alternative")
                    && raw.contains("X-Invite-Id: inv-1")
                    && raw.contains("From: Example <noreply@example.com>")
            })
            .then_output(|| SendEmailOutput::builder().message_id("ses-123").build());
        let m = mailer(&[&rule], Some("invites"));
        assert_eq!(m.send(&mail()).await.expect("sent"), "ses-123");
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn sends_the_tags_with_the_configuration_set() {
        let rule = mock!(Client::send_email)
            .match_requests(|r| {
                let tags: Vec<(&str, &str)> = r
                    .email_tags()
                    .iter()
                    .map(|t| (t.name(), t.value()))
                    .collect();
                r.configuration_set_name() == Some("invites")
                    && tags
                        == [
                            ("invite_id", "inv-1"),
                            ("invite_generation", "2"),
                            ("mail_kind", "invite"),
                        ]
            })
            .then_output(|| SendEmailOutput::builder().message_id("ses-9").build());
        let m = mailer(&[&rule], Some("invites"));
        assert_eq!(m.send(&mail()).await.expect("sent"), "ses-9");
        assert_eq!(rule.num_calls(), 1);
    }

    #[test]
    fn tags_ses_would_refuse_are_cleaned_or_left_out() {
        let long = "x".repeat(300);
        let tags = email_tags(&[
            ("ok".into(), "a b/c:d".into()),
            ("bad name".into(), "v".into()),
            ("".into(), "v".into()),
            ("empty".into(), "".into()),
            ("long".into(), long),
            (format!("n{}", "x".repeat(256)), "v".into()),
            ("mail@kind.x-y_z".into(), "ä".into()),
        ]);
        let got: Vec<(&str, &str)> = tags.iter().map(|t| (t.name(), t.value())).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], ("ok", "a_b_c_d"));
        assert_eq!(got[1].0, "long");
        assert_eq!(got[1].1.len(), 256);
        assert_eq!(got[2], ("mail@kind.x-y_z", "_"));
    }

    #[tokio::test]
    async fn without_a_configuration_set_none_is_sent() {
        let rule = mock!(Client::send_email)
            .match_requests(|r| r.configuration_set_name().is_none())
            .then_output(|| SendEmailOutput::builder().message_id("ses-1").build());
        let m = mailer(&[&rule], None);
        assert_eq!(m.send(&mail()).await.expect("sent"), "ses-1");
    }

    #[tokio::test]
    async fn an_invalid_sender_is_rejected_before_any_call() {
        let rule = mock!(Client::send_email)
            .then_output(|| SendEmailOutput::builder().message_id("x").build());
        let m = mailer(&[&rule], None);
        let err = m
            .send(&OutgoingMail {
                from: "not an address".into(),
                ..mail()
            })
            .await
            .expect_err("rejected");
        assert_eq!(err.rejection_code(), Some("invalid_sender"));
        assert_eq!(rule.num_calls(), 0);
    }

    #[tokio::test]
    async fn maps_each_error() {
        for (code, status, want) in [
            (
                "MessageRejected",
                400,
                ErrorKind::Rejected("email_rejected".into()),
            ),
            (
                "MailFromDomainNotVerifiedException",
                400,
                ErrorKind::Rejected("sender_not_verified".into()),
            ),
            (
                "BadRequestException",
                400,
                ErrorKind::Rejected("bad_request".into()),
            ),
            (
                "NotFoundException",
                404,
                ErrorKind::Rejected("configuration_set_not_found".into()),
            ),
            ("AccountSuspendedException", 400, ErrorKind::Unavailable),
            ("SendingPausedException", 400, ErrorKind::Unavailable),
            ("TooManyRequestsException", 429, ErrorKind::Throttled),
            ("LimitExceededException", 400, ErrorKind::Throttled),
            ("InternalFailure", 500, ErrorKind::Unavailable),
        ] {
            let rule =
                mock!(Client::send_email).then_http_response(move || ses_error(status, code, "no"));
            let m = mailer(&[&rule], None);
            let err = m.send(&mail()).await.expect_err(code);
            assert_eq!(err.kind, want, "{code}: {err}");
            assert_eq!((err.service, err.operation), (Service::Ses, OPERATION));
            assert!(!err.message.contains("Secret-1"), "{err}");
        }
    }
}
