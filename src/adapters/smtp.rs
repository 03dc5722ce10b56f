//! The SMTP mailer: [`ports::Mailer`] on lettre's pooled async SMTP transport.
//!
//! Errors: a 5xx reply is the server refusing this mail (`Rejected("email_rejected")`, with the
//! server's words), except authentication failures (530, 534, 535, 538), which are the
//! operator's to fix and so transient, like credential errors from AWS. 4xx replies, refused
//! connections, I/O and TLS trouble are `Unavailable` (`Throttled` when the server says it is
//! rate limiting), timeouts are `Timeout`. No error ever carries the message body.

use std::time::Duration;

use async_trait::async_trait;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::config::{SmtpSettings, SmtpTls};
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::mail::message;
use crate::ports::{Mailer, OutgoingMail};

const OPERATION: &str = "send_mail";

/// Connections kept open to the server.
const POOL_MAX_SIZE: u32 = 8;

/// SMTP replies that mean "your credentials were not accepted", not "this mail is refused".
const AUTH_CODES: &[&str] = &["530", "534", "535", "538"];

/// Longest server text kept in an error message.
const MAX_MESSAGE_CHARS: usize = 400;

/// The SMTP transport could not be set up from `email.smtp`.
#[derive(Debug, thiserror::Error)]
#[error("email.smtp: {0}")]
pub struct SmtpSetupError(String);

/// Sends mail over SMTP with a small connection pool. Cheap to clone.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// Upper bound for one whole send (connect, greeting, TLS, auth, transaction); lettre's own
    /// timeout applies to each command.
    deadline: Duration,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// Builds the transport; nothing connects until the first send. `tls = "none"` is plain
    /// text (only for a local sink), `starttls` upgrades on the submission port and refuses to
    /// continue without TLS, `tls` is TLS from the first byte (port 465).
    ///
    /// Must be called (and the mailer dropped) inside a Tokio runtime: the connection pool runs
    /// a background task. Outside one this is an error rather than lettre's panic.
    pub fn new(settings: &SmtpSettings) -> Result<SmtpMailer, SmtpSetupError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SmtpSetupError(
                "the SMTP mailer must be created inside a Tokio runtime".into(),
            ));
        }
        if settings.host.trim().is_empty() {
            return Err(SmtpSetupError("host is empty".into()));
        }
        if settings.port == 0 {
            return Err(SmtpSetupError("port must not be 0".into()));
        }
        if settings.timeout_seconds == 0 {
            return Err(SmtpSetupError("timeout_seconds must be at least 1".into()));
        }
        let host = settings.host.trim();
        let mut builder = match settings.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(|e| SmtpSetupError(format!("cannot set up STARTTLS for {host}: {e}")))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                .map_err(|e| SmtpSetupError(format!("cannot set up TLS for {host}: {e}")))?,
        };
        let timeout = Duration::from_secs(settings.timeout_seconds);
        builder = builder
            .port(settings.port)
            .timeout(Some(timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(POOL_MAX_SIZE)
                    .idle_timeout(Duration::from_secs(60)),
            );
        if let Some(username) = settings.username.as_deref().filter(|u| !u.is_empty()) {
            let password = settings.password.clone().unwrap_or_default();
            builder = builder.credentials(Credentials::new(username.to_owned(), password));
        }
        // A send is a handful of round trips, each bounded by `timeout`; allow for all of them.
        Ok(SmtpMailer {
            transport: builder.build(),
            deadline: timeout * 4,
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    /// Sends `mail`; returns its `Message-ID` (without angle brackets), which is how the mail
    /// is found again in the server's logs.
    async fn send(&self, mail: &OutgoingMail) -> Result<String, DownstreamError> {
        let built = message::build_for(Service::Smtp, mail)?;
        let id = message::message_id(&built).unwrap_or_default();
        match tokio::time::timeout(self.deadline, self.transport.send(built)).await {
            Err(_) => Err(DownstreamError::new(
                Service::Smtp,
                OPERATION,
                ErrorKind::Timeout,
                format!("no answer within {} seconds", self.deadline.as_secs()),
            )),
            Ok(Err(e)) => Err(classify(&e)),
            Ok(Ok(_response)) => Ok(id),
        }
    }
}

/// Maps a lettre SMTP error (see the module docs). The message is lettre's description and the
/// server's reply text, never anything from the mail itself.
pub fn classify(err: &lettre::transport::smtp::Error) -> DownstreamError {
    let mut message: String = err
        .to_string()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect();
    let code = err.status().map(|c| c.to_string());
    let kind = if err.is_permanent() {
        if code.as_deref().is_some_and(|c| AUTH_CODES.contains(&c)) {
            message =
                format!("authentication failed (check email.smtp.username/password): {message}");
            ErrorKind::Unavailable
        } else {
            ErrorKind::Rejected("email_rejected".into())
        }
    } else if err.is_timeout() {
        ErrorKind::Timeout
    } else if err.is_transient() && says_slow_down(&message) {
        ErrorKind::Throttled
    } else {
        // 4xx replies, refused connections, I/O, TLS, unreadable replies, a closed pool.
        ErrorKind::Unavailable
    };
    DownstreamError::new(Service::Smtp, OPERATION, kind, message)
}

fn says_slow_down(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "rate limit",
        "too many",
        "throttl",
        "slow down",
        "try again later",
    ]
    .iter()
    .any(|p| text.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EmailAddress;
    use std::net::{SocketAddr, TcpStream};
    use std::path::PathBuf;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    fn settings(port: u16, timeout_seconds: u64) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls: SmtpTls::None,
            username: None,
            password: None,
            timeout_seconds,
        }
    }

    fn mail(to: &str) -> OutgoingMail {
        OutgoingMail {
            from: "Acme Cloud <no-reply@acme.test>".into(),
            reply_to: Some("support@acme.test".into()),
            to: EmailAddress::parse(to).expect("address"),
            subject: "Einladung für Zoë".into(),
            text: "Hello\nTemporary password: Secret-Pa55word!\n".into(),
            html: "<p>Hello</p><p>Secret-Pa55word!</p>".into(),
            tags: Vec::new(),
            headers: vec![(
                "X-Invite-Id".into(),
                "11111111-2222-4333-8444-555555555555".into(),
            )],
        }
    }

    /// A scripted SMTP server on a free port: greets, accepts EHLO and MAIL, answers RCPT with
    /// `rcpt_reply`, and quits. With `greet = false` it accepts connections and says nothing.
    async fn fake_server(rcpt_reply: &'static str, greet: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    if !greet {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    let _ = write.write_all(b"220 fake ESMTP\r\n").await;
                    let mut lines = BufReader::new(read).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let verb = line
                            .split(' ')
                            .next()
                            .unwrap_or_default()
                            .to_ascii_uppercase();
                        let reply = match verb.as_str() {
                            "EHLO" | "HELO" => "250 fake\r\n".to_owned(),
                            "RCPT" => format!("{rcpt_reply}\r\n"),
                            "QUIT" => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => "250 ok\r\n".to_owned(),
                        };
                        if write.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn send_to_fake(rcpt_reply: &'static str) -> DownstreamError {
        let addr = fake_server(rcpt_reply, true).await;
        let mailer = SmtpMailer::new(&settings(addr.port(), 5)).expect("mailer");
        mailer
            .send(&mail("jane@example.com"))
            .await
            .expect_err("the fake server refuses")
    }

    #[tokio::test]
    async fn permanent_reply_is_a_rejection_with_the_server_text() {
        let err = send_to_fake("550 5.1.1 mailbox unavailable").await;
        assert_eq!(
            err.kind,
            ErrorKind::Rejected("email_rejected".into()),
            "{err}"
        );
        assert!(
            err.message.contains("550") && err.message.contains("mailbox unavailable"),
            "{err}"
        );
        assert!(!err.to_string().contains("Secret-Pa55word!"));
    }

    #[tokio::test]
    async fn transient_reply_is_unavailable_or_throttled() {
        let err = send_to_fake("451 4.3.0 local problem").await;
        assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
        let err = send_to_fake("450 4.7.1 rate limit exceeded, try again later").await;
        assert_eq!(err.kind, ErrorKind::Throttled, "{err}");
    }

    #[tokio::test]
    async fn authentication_failure_is_transient() {
        let err = send_to_fake("535 5.7.8 authentication credentials invalid").await;
        assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
        assert!(err.message.contains("authentication failed"), "{err}");
    }

    #[tokio::test]
    async fn connection_refused_is_transient() {
        let mailer = SmtpMailer::new(&settings(1, 2)).expect("mailer");
        let err = mailer
            .send(&mail("jane@example.com"))
            .await
            .expect_err("nothing listens on port 1");
        assert!(err.is_transient(), "{err}");
        assert_eq!(
            (err.service, err.kind.clone()),
            (Service::Smtp, ErrorKind::Unavailable),
            "{err}"
        );
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let addr = fake_server("", false).await;
        let mailer = SmtpMailer::new(&settings(addr.port(), 1)).expect("mailer");
        let err = mailer
            .send(&mail("jane@example.com"))
            .await
            .expect_err("no greeting");
        assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    }

    #[tokio::test]
    async fn invalid_sender_is_refused_before_connecting() {
        let mailer = SmtpMailer::new(&settings(1, 2)).expect("mailer");
        let mut m = mail("jane@example.com");
        m.from = "not an address".into();
        let err = mailer.send(&m).await.expect_err("invalid sender");
        assert_eq!(err.rejection_code(), Some("invalid_sender"));
    }

    #[test]
    fn setup_outside_a_runtime_is_an_error_not_a_panic() {
        assert!(SmtpMailer::new(&settings(25, 5)).is_err());
    }

    #[tokio::test]
    async fn setup_checks_settings_and_builds_tls_modes() {
        assert!(SmtpMailer::new(&SmtpSettings {
            host: " ".into(),
            ..settings(25, 5)
        })
        .is_err());
        assert!(SmtpMailer::new(&settings(0, 5)).is_err());
        assert!(SmtpMailer::new(&settings(25, 0)).is_err());
        for tls in [SmtpTls::None, SmtpTls::Starttls, SmtpTls::Tls] {
            let s = SmtpSettings {
                host: "smtp.example.com".into(),
                tls,
                username: Some("user".into()),
                password: Some("pw".into()),
                ..settings(587, 5)
            };
            assert!(SmtpMailer::new(&s).is_ok());
        }
    }

    /// Where the local stack's SMTP sink writes mail: `INVITE_SMTP_SINK_DIR`, else
    /// `.stack/mail` in this checkout.
    fn sink_dir() -> Option<PathBuf> {
        let dir = std::env::var_os("INVITE_SMTP_SINK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".stack/mail"));
        dir.is_dir().then_some(dir)
    }

    #[tokio::test]
    async fn delivers_to_the_local_sink() {
        let port: u16 = std::env::var("SMTP_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(2525);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
            eprintln!("skipping: no SMTP sink on {addr} (scripts/local-stack.sh start)");
            return;
        }
        let recipient = format!("smtp-test-{}@example.com", uuid::Uuid::new_v4().simple());
        let mailer = SmtpMailer::new(&settings(port, 10)).expect("mailer");
        let id = mailer
            .send(&mail(&recipient))
            .await
            .expect("the sink accepts");
        assert!(id.ends_with("@acme.test"), "{id}");

        let Some(dir) = sink_dir() else {
            eprintln!("sent, but not checking the file: set INVITE_SMTP_SINK_DIR to the sink's mail directory");
            return;
        };
        let suffix = format!("-{recipient}.eml");
        let mut found = None;
        for _ in 0..50 {
            let entries = std::fs::read_dir(&dir).expect("read sink dir");
            found = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(&suffix));
            if found.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let path = found.unwrap_or_else(|| panic!("no {suffix} in {}", dir.display()));
        let raw = std::fs::read_to_string(&path).expect("read eml");
        let head = raw
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .replace("\r\n ", " ");
        assert!(head.contains(&format!("To: {recipient}")), "{head}");
        assert!(
            head.contains("From: \"Acme Cloud\" <no-reply@acme.test>"),
            "{head}"
        );
        assert!(head.contains("Reply-To: support@acme.test"), "{head}");
        assert!(head.contains(&format!("Message-ID: <{id}>")), "{head}");
        assert!(
            head.contains("X-Invite-Id: 11111111-2222-4333-8444-555555555555"),
            "{head}"
        );
        assert!(head.contains("Subject: Einladung =?utf-8?"), "{head}");
        assert!(
            head.contains("Content-Type: multipart/alternative;"),
            "{head}"
        );
        assert!(raw.contains("Content-Type: text/plain; charset=utf-8"));
        assert!(raw.contains("Content-Type: text/html; charset=utf-8"));
        assert!(
            raw.contains("Temporary password: Secret-Pa55word!"),
            "{raw}"
        );
    }
}
