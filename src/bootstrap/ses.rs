//! The SES v2 identity the invitations are sent from.

use aws_sdk_sesv2::Client;

use super::report::{resource, BootstrapReport, Outcome};
use super::BootstrapError;
use crate::config::{Settings, Transport};

/// Ensures a sending identity for the address in `email.from`, and adds its row to `report`.
///
/// An existing identity for the address, or for its domain, is used as is. Otherwise bootstrap
/// creates an identity for the address; in a real account SES then mails a verification link
/// to it, and sending works once it is clicked.
pub(super) async fn ensure(
    ses: &Client,
    settings: &Settings,
    report: &mut BootstrapReport,
) -> Result<(), BootstrapError> {
    let (address, domain) = sender(&settings.email.from)?;
    if settings.email.transport == Transport::Smtp {
        report.push(
            resource::EMAIL_IDENTITY,
            address,
            Outcome::Skipped,
            vec!["email.transport is smtp".into()],
        );
        return Ok(());
    }
    let what = format!("{} {address}", resource::EMAIL_IDENTITY);
    for identity in [address.as_str(), domain.as_str()] {
        if let Some(verified) = get(ses, &what, identity).await? {
            let notes = if verified {
                vec![]
            } else {
                vec!["not yet verified for sending".to_string()]
            };
            report.push(resource::EMAIL_IDENTITY, identity, Outcome::Found, notes);
            return Ok(());
        }
    }
    match ses
        .create_email_identity()
        .email_identity(&address)
        .send()
        .await
    {
        Ok(out) => {
            let notes = if out.verified_for_sending_status() {
                vec![]
            } else {
                vec![format!("SES sent a verification link to {address}")]
            };
            report.push(resource::EMAIL_IDENTITY, address, Outcome::Created, notes);
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_already_exists_exception()) =>
        {
            report.push(resource::EMAIL_IDENTITY, address, Outcome::Found, vec![]);
        }
        Err(e) => return Err(BootstrapError::aws(what, "CreateEmailIdentity", e)),
    }
    Ok(())
}

/// `Some(verified_for_sending)` if the identity exists.
async fn get(ses: &Client, what: &str, identity: &str) -> Result<Option<bool>, BootstrapError> {
    match ses
        .get_email_identity()
        .email_identity(identity)
        .send()
        .await
    {
        Ok(out) => Ok(Some(out.verified_for_sending_status())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(BootstrapError::aws(
            format!("{what} ({identity})"),
            "GetEmailIdentity",
            e,
        )),
    }
}

/// The address and its domain out of `Name <address>` (or a bare address).
fn sender(from: &str) -> Result<(String, String), BootstrapError> {
    let mailbox: lettre::message::Mailbox = from.parse().map_err(|e| BootstrapError::Config {
        key: "email.from",
        reason: format!("{from:?} is not `Name <address>` or an address: {e}"),
    })?;
    Ok((
        mailbox.email.to_string(),
        mailbox.email.domain().to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use aws_sdk_sesv2::operation::create_email_identity::CreateEmailIdentityOutput;
    use aws_sdk_sesv2::operation::get_email_identity::{
        GetEmailIdentityError, GetEmailIdentityOutput,
    };
    use aws_sdk_sesv2::types::error::NotFoundException;
    use aws_smithy_mocks::mock;

    use super::*;
    use crate::bootstrap::test_support::{mocked, settings};

    #[test]
    fn parses_the_sender() {
        assert_eq!(
            sender("Acme Cloud <no-reply@example.com>").unwrap(),
            ("no-reply@example.com".into(), "example.com".into())
        );
        assert_eq!(
            sender("\"Acme, Inc.\" <a@b.example>").unwrap().0,
            "a@b.example"
        );
        assert_eq!(
            sender("no-reply@example.com").unwrap().0,
            "no-reply@example.com"
        );
        let err = sender("Acme Cloud").unwrap_err().to_string();
        assert!(err.starts_with("email.from: \"Acme Cloud\""), "{err}");
    }

    fn not_found() -> GetEmailIdentityError {
        GetEmailIdentityError::NotFoundException(NotFoundException::builder().build())
    }

    #[tokio::test]
    async fn creates_the_address_identity_when_neither_it_nor_its_domain_exists() {
        let get = mock!(Client::get_email_identity).then_error(not_found);
        let create = mock!(Client::create_email_identity)
            .match_requests(|req| req.email_identity() == Some("no-reply@example.com"))
            .then_output(|| {
                CreateEmailIdentityOutput::builder()
                    .verified_for_sending_status(false)
                    .build()
            });
        let ses = mocked!(aws_sdk_sesv2, get, create);
        let mut report = BootstrapReport::new("s".into());

        ensure(&ses, &settings(), &mut report).await.unwrap();

        assert_eq!((get.num_calls(), create.num_calls()), (2, 1));
        let row = report.get(resource::EMAIL_IDENTITY).unwrap();
        assert_eq!(
            (row.outcome, row.notes.as_slice()),
            (
                Outcome::Created,
                &["SES sent a verification link to no-reply@example.com".to_string()][..]
            )
        );
    }

    #[tokio::test]
    async fn a_verified_domain_identity_is_enough() {
        let address = mock!(Client::get_email_identity)
            .match_requests(|req| req.email_identity() == Some("no-reply@example.com"))
            .then_error(not_found);
        let domain = mock!(Client::get_email_identity)
            .match_requests(|req| req.email_identity() == Some("example.com"))
            .then_output(|| {
                GetEmailIdentityOutput::builder()
                    .verified_for_sending_status(true)
                    .build()
            });
        let ses = mocked!(aws_sdk_sesv2, address, domain);
        let mut report = BootstrapReport::new("s".into());

        ensure(&ses, &settings(), &mut report).await.unwrap();

        let row = report.get(resource::EMAIL_IDENTITY).unwrap();
        assert_eq!(
            (row.id.as_str(), row.outcome, row.notes.len()),
            ("example.com", Outcome::Found, 0)
        );
    }

    #[tokio::test]
    async fn smtp_transport_skips_ses() {
        let ses = mocked!(aws_sdk_sesv2);
        let mut settings = settings();
        settings.email.transport = Transport::Smtp;
        let mut report = BootstrapReport::new("s".into());
        ensure(&ses, &settings, &mut report).await.unwrap();
        assert_eq!(
            report.get(resource::EMAIL_IDENTITY).unwrap().outcome,
            Outcome::Skipped
        );
    }
}
