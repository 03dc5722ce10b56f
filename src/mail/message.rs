//! Building the MIME message for an [`OutgoingMail`].
//!
//! STAND-IN: a minimal version written alongside the SES adapter so that it compiles and can be
//! tested; the real implementation (owned by another change) replaces this file.

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;

use crate::error::{DownstreamError, ErrorKind, Service};
use crate::ports::OutgoingMail;

const OPERATION: &str = "BuildMessage";

/// The RFC 5322 bytes of `mail`: `multipart/alternative` with the text and HTML bodies.
/// A `from`, `reply_to` or `to` that is not a valid mailbox is a permanent rejection.
pub fn to_raw(mail: &OutgoingMail) -> Result<Vec<u8>, DownstreamError> {
    let from: Mailbox = mail.from.parse().map_err(|e| {
        rejected(
            "invalid_sender",
            format!("from is not a valid mailbox: {e}"),
        )
    })?;
    let to: Mailbox = mail.to.as_str().parse().map_err(|e| {
        rejected(
            "invalid_recipient",
            format!("to is not a valid mailbox: {e}"),
        )
    })?;
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject.clone());
    if let Some(reply_to) = &mail.reply_to {
        let reply_to: Mailbox = reply_to.parse().map_err(|e| {
            rejected(
                "invalid_reply_to",
                format!("reply_to is not a valid mailbox: {e}"),
            )
        })?;
        builder = builder.reply_to(reply_to);
    }
    for (name, value) in &mail.headers {
        let header = HeaderName::new_from_ascii(name.clone()).map_err(|e| {
            rejected(
                "invalid_header",
                format!("header name {name:?} is not valid: {e}"),
            )
        })?;
        builder = builder.raw_header(HeaderValue::new(header, value.clone()));
    }
    let message = builder
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
        .map_err(|e| {
            rejected(
                "invalid_message",
                format!("the message cannot be built: {e}"),
            )
        })?;
    Ok(message.formatted())
}

fn rejected(code: &str, message: String) -> DownstreamError {
    DownstreamError::new(
        Service::Ses,
        OPERATION,
        ErrorKind::Rejected(code.into()),
        message,
    )
}
