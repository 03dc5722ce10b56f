//! Shared helpers for the tests that run against the local stack (moto server + SMTP sink).
//! Each test makes its own uniquely named resources, so tests run in parallel and never reset
//! the shared server. Those tests are `#[ignore = "needs the local stack: scripts/test.sh"]`;
//! scripts/test.sh runs them with `--include-ignored`, and without `AWS_ENDPOINT_URL` they fail.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use aws_sdk_cognitoidentityprovider::types::{AuthFlowType, ChallengeNameType};
use invite_worker::config::{ConfigSources, Settings, Transport};
use invite_worker::wiring::{self, Components};
use invite_worker::worker::runner::{RunSummary, Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

/// Fails the test, naming scripts/test.sh, when the local stack is not configured: a test that
/// needs it never passes without it.
pub fn require_stack() {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "AWS_ENDPOINT_URL is not set: this test needs the local stack. Run scripts/test.sh \
         (it starts the stack), or `eval \"$(scripts/local-stack.sh env)\"` first"
    );
}

/// The SDK configuration for the local stack (after [`require_stack`]).
pub async fn stack_sdk() -> aws_config::SdkConfig {
    require_stack();
    wiring::sdk_config().await
}

pub fn unique(tag: &str) -> String {
    format!("{tag}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A unique recipient on the example domain.
pub fn recipient(tag: &str) -> String {
    format!("{}@example.com", unique(tag))
}

pub struct Env {
    pub settings: Settings,
    pub state_file: PathBuf,
    pub dir: tempfile::TempDir,
}

/// Settings for a fresh, uniquely named set of resources, bootstrapped.
pub async fn bootstrapped(tag: &str, transport: Transport) -> Env {
    bootstrapped_named(tag, transport, |_| {}).await
}

/// Like [`bootstrapped`], with a last word on the settings before bootstrap runs.
pub async fn bootstrapped_named(
    tag: &str,
    transport: Transport,
    adjust: impl FnOnce(&mut Settings),
) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_file = dir.path().join("bootstrap.toml");
    let sources = ConfigSources::defaults_and_state(state_file.clone());
    let mut settings = Settings::load(&sources).expect("config/default.toml loads");
    let name = unique(tag);
    settings.queue.name = name.clone();
    settings.table.name = format!("{name}-invites");
    settings.cognito.user_pool_name = format!("{name}-pool");
    // Its own feedback topic and queue: a shared one would let one test's worker take another's
    // feedback messages.
    settings.feedback.name = format!("{name}-fb");
    settings.queue.wait_seconds = 1;
    settings.queue.retry_base_seconds = 1;
    settings.queue.retry_max_seconds = 2;
    settings.worker.idle_polls = 2;
    settings.email.transport = transport;
    if let Ok(port) = std::env::var("INVITE_TEST_SMTP_PORT") {
        settings.email.smtp.port = port.parse().expect("INVITE_TEST_SMTP_PORT");
    }
    adjust(&mut settings);
    let sdk = wiring::sdk_config().await;
    invite_worker::bootstrap::bootstrap(&settings, &sdk, &state_file)
        .await
        .expect("bootstrap");
    // Pick up what bootstrap recorded, exactly as a later command would.
    let mut loaded = Settings::load(&sources).expect("settings with bootstrap state");
    loaded.queue.name = settings.queue.name.clone();
    loaded.table.name = settings.table.name.clone();
    loaded.cognito.user_pool_name = settings.cognito.user_pool_name.clone();
    loaded.feedback.name = settings.feedback.name.clone();
    loaded.queue.wait_seconds = 1;
    loaded.queue.retry_base_seconds = 1;
    loaded.queue.retry_max_seconds = 2;
    loaded.worker.idle_polls = 2;
    loaded.email = settings.email.clone();
    Env {
        settings: loaded,
        state_file,
        dir,
    }
}

pub async fn components(env: &Env) -> Components {
    wiring::build(env.settings.clone(), wiring::sdk_config().await)
        .await
        .expect("components")
}

/// Sends raw bodies to the inbound queue.
pub async fn enqueue(env: &Env, bodies: &[String]) {
    let sqs = aws_sdk_sqs::Client::new(&wiring::sdk_config().await);
    for body in bodies {
        sqs.send_message()
            .queue_url(&env.settings.queue.url)
            .message_body(body)
            .send()
            .await
            .expect("send_message");
    }
}

/// Runs the worker over the queue until it is idle.
pub async fn drain(c: &Components) -> RunSummary {
    let options = WorkerOptions::from_settings(&c.settings, true);
    let worker = Worker::new(
        c.queue.clone(),
        c.service.clone() as Arc<dyn invite_worker::worker::MessageHandler>,
        options,
    );
    worker.run(CancellationToken::new()).await
}

pub fn invite_event(id: &str, email: &str) -> String {
    serde_json::json!({
        "version": 1, "type": "invite.requested", "id": id,
        "data": {
            "email": email,
            "attributes": {"given_name": "Jane", "family_name": "Doe", "custom:test_attribute1": "blue"},
            "groups": ["employees"],
            "invited_by": "Priya (HR)"
        }
    })
    .to_string()
}

/// GET a path from the moto server (HTTP/1.0, so the answer is not chunked).
pub fn moto_get(path: &str) -> String {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let hostport = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(hostport).expect("connect to moto");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// moto's whole state. Its `/moto-api/data.json` sometimes fails (HTTP 500: a Cognito object
/// that does not serialise while other tests change state), so this retries for up to 60 s.
pub fn moto_state() -> serde_json::Value {
    let mut last = String::new();
    for _ in 0..120 {
        match serde_json::from_str(&moto_get("/moto-api/data.json")) {
            Ok(v) => return v,
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("moto /moto-api/data.json never answered with JSON: {last}");
}

/// Raw MIME of every SES mail moto holds for `to`.
pub fn ses_mails_to(to: &str) -> Vec<String> {
    let data = moto_state();
    data["ses"]["RawMessage"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["raw_data"].as_str())
                .filter(|raw| {
                    raw.lines()
                        .any(|l| l.eq_ignore_ascii_case(&format!("To: {to}")))
                })
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Raw MIME of every mail the SMTP sink wrote for `to`.
pub fn smtp_mails_to(to: &str) -> Vec<String> {
    let dir = std::env::var("INVITE_TEST_MAIL_DIR").expect("INVITE_TEST_MAIL_DIR");
    smtp_mails_in(Path::new(&dir), to)
}

/// Raw MIME of every mail an SMTP sink wrote to `dir` for `to`.
pub fn smtp_mails_in(dir: &Path, to: &str) -> Vec<String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter(|raw| {
            raw.lines()
                .any(|l| l.eq_ignore_ascii_case(&format!("To: {to}")))
        })
        .collect()
}

/// The decoded text/plain part of a raw MIME message (quoted-printable or base64 or plain).
pub fn text_part(raw: &str) -> String {
    let normalized = raw.replace("\r\n", "\n");
    let mut in_text = false;
    let mut headers = true;
    let mut encoding = String::new();
    let mut body = Vec::new();
    for line in normalized.lines() {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("content-type: text/plain") {
            in_text = true;
            headers = true;
            encoding.clear();
            body.clear();
            continue;
        }
        if in_text && headers {
            if lower.starts_with("content-transfer-encoding:") {
                encoding = lower
                    .trim_start_matches("content-transfer-encoding:")
                    .trim()
                    .to_string();
            } else if line.is_empty() {
                headers = false;
            }
            continue;
        }
        if in_text {
            if line.starts_with("--") {
                break;
            }
            body.push(line.to_string());
        }
    }
    match encoding.as_str() {
        "base64" => {
            let joined: String = body.concat();
            String::from_utf8_lossy(&base64_decode(&joined)).to_string()
        }
        "quoted-printable" => quoted_printable(&body.join("\n")),
        _ => body.join("\n"),
    }
}

fn quoted_printable(s: &str) -> String {
    let decoded = quoted_printable::decode(s.as_bytes(), quoted_printable::ParseMode::Robust)
        .expect("robust quoted-printable decoding does not fail");
    String::from_utf8_lossy(&decoded).to_string()
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .expect("a base64 body")
}

/// The temporary password from an invitation's text part (`Temporary password: ...`).
pub fn password_in(raw: &str) -> String {
    let text = text_part(raw);
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Temporary password:")
                .map(|p| p.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no 'Temporary password:' line in:\n{text}"))
}

/// What the person does: sign in with the temporary password (`USER_PASSWORD_AUTH`), answer
/// `NEW_PASSWORD_REQUIRED`, and return the access token.
pub async fn complete_registration(
    settings: &Settings,
    username: &str,
    temporary: &str,
) -> Result<String, String> {
    let idp = aws_sdk_cognitoidentityprovider::Client::new(&wiring::sdk_config().await);
    let auth = idp
        .initiate_auth()
        .client_id(&settings.cognito.client_id)
        .auth_flow(AuthFlowType::UserPasswordAuth)
        .auth_parameters("USERNAME", username)
        .auth_parameters("PASSWORD", temporary)
        .send()
        .await
        .map_err(|e| {
            format!(
                "InitiateAuth: {}",
                aws_smithy_types::error::display::DisplayErrorContext(e)
            )
        })?;
    if auth.challenge_name() != Some(&ChallengeNameType::NewPasswordRequired) {
        return Err(format!(
            "expected NEW_PASSWORD_REQUIRED, got {:?}",
            auth.challenge_name()
        ));
    }
    let answer = idp
        .respond_to_auth_challenge()
        .client_id(&settings.cognito.client_id)
        .challenge_name(ChallengeNameType::NewPasswordRequired)
        .session(auth.session().unwrap_or_default())
        .challenge_responses("USERNAME", username)
        .challenge_responses("NEW_PASSWORD", "Chosen-by-Jane-42!")
        .send()
        .await
        .map_err(|e| {
            format!(
                "RespondToAuthChallenge: {}",
                aws_smithy_types::error::display::DisplayErrorContext(e)
            )
        })?;
    answer
        .authentication_result()
        .and_then(|r| r.access_token())
        .map(str::to_string)
        .ok_or_else(|| "no access token".to_string())
}

/// `GetUser` with an access token: the user's attributes as the person sees them.
pub async fn attributes_of(access_token: &str) -> std::collections::BTreeMap<String, String> {
    let idp = aws_sdk_cognitoidentityprovider::Client::new(&wiring::sdk_config().await);
    let user = idp
        .get_user()
        .access_token(access_token)
        .send()
        .await
        .expect("GetUser");
    user.user_attributes()
        .iter()
        .map(|a| {
            (
                a.name().to_string(),
                a.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Messages on the DLQ (received with visibility 0 so they stay), with string attributes.
pub async fn dead_letters(
    settings: &Settings,
) -> Vec<(String, std::collections::HashMap<String, String>)> {
    let sqs = aws_sdk_sqs::Client::new(&wiring::sdk_config().await);
    let out = sqs
        .receive_message()
        .queue_url(&settings.queue.dlq_url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive from DLQ");
    out.messages()
        .iter()
        .map(|m| {
            let attrs = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            (m.body().unwrap_or_default().to_string(), attrs)
        })
        .collect()
}

/// The binary, configured for this test's resources.
pub fn cli(settings: &Settings, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_invite-worker"))
        .args(args)
        .env("INVITE_WORKER_STATE", "/nonexistent/bootstrap.toml")
        .env("INVITE_WORKER__QUEUE__URL", &settings.queue.url)
        .env("INVITE_WORKER__QUEUE__DLQ_URL", &settings.queue.dlq_url)
        .env(
            "INVITE_WORKER__COGNITO__USER_POOL_ID",
            &settings.cognito.user_pool_id,
        )
        .env("INVITE_WORKER__TABLE__NAME", &settings.table.name)
        .env("INVITE_WORKER__LOG__LEVEL", "warn")
        .output()
        .expect("run invite-worker");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A private SMTP sink (`scripts/smtp_sink.py`) on a free port with its own mail directory,
/// stopped when dropped. Its rejection mode plays a relay that refuses a domain for a while.
/// Needs the stack's Python (`INVITE_TEST_PYTHON`, set by `scripts/local-stack.sh env`).
pub struct SmtpSink {
    child: std::process::Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl SmtpSink {
    pub fn start() -> Self {
        let python = std::env::var("INVITE_TEST_PYTHON").expect(
            "INVITE_TEST_PYTHON (the local stack's python with aiosmtpd; eval \"$(scripts/local-stack.sh env)\")",
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/smtp_sink.py");
        let child = Command::new(&python)
            .arg(script)
            .args(["--port", &port.to_string()])
            .arg("--dir")
            .arg(dir.path())
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {python} scripts/smtp_sink.py: {e}"));
        let sink = Self { child, port, dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return sink;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("scripts/smtp_sink.py did not listen on port {port}");
    }

    fn flag(&self, domain: &str) -> PathBuf {
        self.dir.path().join(format!("reject-{domain}"))
    }

    /// The relay starts refusing every recipient at `domain` (550).
    pub fn reject(&self, domain: &str) {
        std::fs::write(self.flag(domain), b"").expect("write the reject flag");
    }

    /// The relay is fixed: `domain` is accepted again.
    pub fn accept(&self, domain: &str) {
        std::fs::remove_file(self.flag(domain)).expect("remove the reject flag");
    }

    /// Raw MIME of every mail this sink accepted for `to`.
    pub fn mails_to(&self, to: &str) -> Vec<String> {
        smtp_mails_in(self.dir.path(), to)
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every lifecycle event on the test's events queue so far (received and deleted), by recipient.
pub async fn lifecycle_events(
    env: &Env,
    seen: &mut Vec<serde_json::Value>,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let sqs = aws_sdk_sqs::Client::new(&wiring::sdk_config().await);
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&env.settings.events.outbound_queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive from the events queue");
        if out.messages().is_empty() {
            break;
        }
        for m in out.messages() {
            let body: serde_json::Value =
                serde_json::from_str(m.body().unwrap_or_default()).expect("JSON");
            let attr = m
                .message_attributes()
                .and_then(|a| a.get("event_type"))
                .and_then(|v| v.string_value())
                .map(str::to_string);
            assert_eq!(
                attr.as_deref(),
                body["type"].as_str(),
                "event_type attribute"
            );
            seen.push(body);
            sqs.delete_message()
                .queue_url(&env.settings.events.outbound_queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }
    // At least once: a re-publication carries the same id; count each id once.
    let mut ids = std::collections::BTreeSet::new();
    let mut by_email: std::collections::BTreeMap<String, Vec<String>> =
        std::collections::BTreeMap::new();
    for e in seen.iter() {
        if !ids.insert(e["id"].as_str().unwrap_or_default().to_string()) {
            continue;
        }
        by_email
            .entry(e["data"]["email"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(e["type"].as_str().unwrap_or_default().to_string());
    }
    by_email
}

/// Cognito's status for a user, `None` when there is no such user.
pub async fn cognito_status(env: &Env, username: &str) -> Option<String> {
    let sdk = wiring::sdk_config().await;
    match aws_sdk_cognitoidentityprovider::Client::new(&sdk)
        .admin_get_user()
        .user_pool_id(&env.settings.cognito.user_pool_id)
        .username(username)
        .send()
        .await
    {
        Ok(u) => u.user_status().map(|s| s.as_str().to_string()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_user_not_found_exception()) =>
        {
            None
        }
        Err(e) => panic!(
            "AdminGetUser: {}",
            aws_smithy_types::error::display::DisplayErrorContext(e)
        ),
    }
}
