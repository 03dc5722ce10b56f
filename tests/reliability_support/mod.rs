//! Harness for the reliability tests (crash safety, faults and outages, SIGTERM, secrets): the
//! worker binary as a child process, the fault-injecting proxy (`scripts/fault_proxy.py`), and
//! checks made from the outside (moto's mail store, Cognito, DynamoDB, SQS attributes).
//!
//! Test setup and verification always talk to moto directly; only the child worker may be
//! pointed at the proxy.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use invite_worker::domain::{EmailAddress, Invite, InviteId};
use invite_worker::ports::InviteStore;
use invite_worker::wiring;
use invite_worker::worker::runner::RunSummary;

use crate::support::{self, Env};

/// An environment variable as a number, or `default`.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Named figures, printed as an aligned block so the runner script and CI logs show them.
#[derive(Default)]
pub struct Figures {
    title: String,
    rows: Vec<(String, String)>,
}

impl Figures {
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_string(),
            rows: Vec::new(),
        }
    }

    pub fn add(&mut self, name: &str, value: impl std::fmt::Display) {
        self.rows.push((name.to_string(), value.to_string()));
    }

    pub fn print(&self) {
        let mut out = format!("\n== FIGURES: {} ==\n", self.title);
        for (k, v) in &self.rows {
            out.push_str(&format!("  {k:<34} {v}\n"));
        }
        out.push_str("== END FIGURES ==\n");
        // stdout is captured by the test harness unless --nocapture; stderr always shows.
        eprint!("{out}");
    }
}

/// What a child worker is told, on top of the bootstrapped resources.
pub struct WorkerSpec<'a> {
    pub env: &'a Env,
    /// `AWS_ENDPOINT_URL` for the child (the proxy), or `None` for the same as the test's.
    pub endpoint: Option<String>,
    /// `INVITE_WORKER__...` overrides, e.g. `("WORKER__LEASE_SECONDS", "5")`.
    pub overrides: Vec<(String, String)>,
    /// Extra environment (RUST_LOG...).
    pub extra_env: Vec<(String, String)>,
    /// Where the child's stdout and stderr go (appended).
    pub log: PathBuf,
}

impl<'a> WorkerSpec<'a> {
    pub fn new(env: &'a Env, log: PathBuf) -> Self {
        Self {
            env,
            endpoint: None,
            overrides: Vec::new(),
            extra_env: Vec::new(),
            log,
        }
    }

    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.overrides.retain(|(k, _)| k != key);
        self.overrides.push((key.to_string(), value.to_string()));
        self
    }

    pub fn endpoint(mut self, url: &str) -> Self {
        self.endpoint = Some(url.to_string());
        self
    }

    pub fn extra_env(mut self, key: &str, value: &str) -> Self {
        self.extra_env.push((key.to_string(), value.to_string()));
        self
    }

    /// The `invite-worker` command with the resources and overrides in its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let s = &self.env.settings;
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_invite-worker"));
        cmd.args(args).current_dir(root);
        // Nothing from the test's own environment may steer the child by accident.
        for (k, _) in std::env::vars() {
            if k.starts_with("INVITE_WORKER") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        let transport = match s.email.transport {
            invite_worker::config::Transport::Ses => "ses",
            invite_worker::config::Transport::Smtp => "smtp",
        };
        let mut vars: BTreeMap<String, String> = [
            ("QUEUE__URL", s.queue.url.clone()),
            ("QUEUE__DLQ_URL", s.queue.dlq_url.clone()),
            ("TABLE__NAME", s.table.name.clone()),
            ("COGNITO__USER_POOL_ID", s.cognito.user_pool_id.clone()),
            ("COGNITO__CLIENT_ID", s.cognito.client_id.clone()),
            ("EMAIL__TRANSPORT", transport.to_string()),
            ("QUEUE__WAIT_SECONDS", s.queue.wait_seconds.to_string()),
            ("WORKER__IDLE_POLLS", s.worker.idle_polls.to_string()),
            ("LOG__FORMAT", "json".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in &self.overrides {
            vars.insert(k.clone(), v.clone());
        }
        for (k, v) in vars {
            cmd.env(format!("INVITE_WORKER__{k}"), v);
        }
        cmd.env("INVITE_WORKER_STATE", &self.env.state_file)
            .env("INVITE_WORKER_CONFIG_DIR", root.join("config"));
        if let Some(url) = &self.endpoint {
            cmd.env("AWS_ENDPOINT_URL", url);
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `invite-worker <args>` with output appended to the log file.
    pub fn spawn(&self, args: &[&str]) -> WorkerProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open worker log");
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn invite-worker");
        WorkerProcess {
            child: Some(child),
            started: Instant::now(),
        }
    }

    /// Runs `invite-worker run --until-idle` to the end (or panics after `limit`).
    pub fn run_until_idle(&self, limit: Duration) -> (ExitStatus, Duration) {
        let mut p = self.spawn(&["run", "--until-idle", "--json"]);
        let status = p.wait_for(limit).unwrap_or_else(|| {
            p.kill();
            panic!(
                "`run --until-idle` still running after {limit:?}; log: {}",
                self.log.display()
            )
        });
        (status, p.started.elapsed())
    }
}

/// A running worker; killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
pub struct WorkerProcess {
    child: Option<Child>,
    pub started: Instant,
}

impl WorkerProcess {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM (through `kill(1)`: the crate has no libc dependency).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.child.as_mut()?;
            if let Ok(Some(status)) = c.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies a worker log to `$CARGO_TARGET_TMPDIR/<name>.log` (kept after the test's temporary
/// directory is gone) and returns where.
pub fn keep_log(log: &Path, name: &str) -> PathBuf {
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.log"));
    let _ = std::fs::copy(log, &kept);
    kept
}

/// Sums the summaries `run --json` prints on exit (one JSON object per run, among the JSON
/// log lines).
pub fn run_summaries(log: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut totals = BTreeMap::new();
    for line in text.lines() {
        let Ok(summary) = serde_json::from_str::<RunSummary>(line.trim()) else {
            continue;
        };
        let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(summary) else {
            continue;
        };
        for (k, v) in fields {
            *totals.entry(k).or_insert(0) += v.as_u64().unwrap_or(0);
        }
    }
    totals
}

/// `count` unique recipients and their `invite.requested` events.
pub fn invites(tag: &str, count: usize) -> (Vec<String>, Vec<String>) {
    let emails: Vec<String> = (0..count)
        .map(|i| support::recipient(&format!("{tag}{i}")))
        .collect();
    let bodies = emails
        .iter()
        .map(|e| support::invite_event(&support::unique("evt"), e))
        .collect();
    (emails, bodies)
}

/// Sends bodies to the inbound queue, ten per call.
pub async fn enqueue_batched(env: &Env, bodies: &[String]) {
    let sqs = aws_sdk_sqs::Client::new(&wiring::sdk_config().await);
    for (n, chunk) in bodies.chunks(10).enumerate() {
        let mut req = sqs.send_message_batch().queue_url(&env.settings.queue.url);
        for (i, body) in chunk.iter().enumerate() {
            req = req.entries(
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("m{n}-{i}"))
                    .message_body(body)
                    .build()
                    .expect("entry"),
            );
        }
        let out = req.send().await.expect("send_message_batch");
        assert!(
            out.failed().is_empty(),
            "enqueue failures: {:?}",
            out.failed()
        );
    }
}

/// Every SES mail moto holds, by recipient (`To:`), oldest first. One fetch of moto's state.
pub fn mails_by_recipient() -> HashMap<String, Vec<String>> {
    // moto builds this from live state and now and then fails while other tests change it.
    let mut attempt = 0;
    let data: serde_json::Value = loop {
        let text = support::moto_get("/moto-api/data.json");
        match serde_json::from_str(&text) {
            Ok(v) => break v,
            Err(e) if attempt < 5 => {
                attempt += 1;
                eprintln!("moto /moto-api/data.json unreadable ({e}); again");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => panic!("moto state JSON: {e}: {}", &text[..text.len().min(300)]),
        }
    };
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for raw in data["ses"]["RawMessage"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["raw_data"].as_str())
    {
        if let Some(to) = raw
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix("To: "))
        {
            out.entry(to.trim().to_ascii_lowercase())
                .or_default()
                .push(raw.to_string());
        }
    }
    out
}

/// The stored invite of each address (`None`: no record).
pub async fn records(env: &Env, emails: &[String]) -> HashMap<String, Option<Invite>> {
    let c = support::components(env).await;
    let pool = &env.settings.cognito.user_pool_id;
    let mut out = HashMap::new();
    for chunk in emails.chunks(16) {
        let loads = chunk.iter().map(|e| {
            let store = c.store.clone();
            let id = InviteId::for_email(pool, &EmailAddress::parse(e).expect("test address"));
            async move { store.load(&id).await.expect("load invite") }
        });
        for (e, rec) in chunk.iter().zip(futures::future::join_all(loads).await) {
            out.insert(e.clone(), rec);
        }
    }
    out
}

/// Users in the pool per email attribute (lower-cased), from a full ListUsers.
pub async fn users_by_email(env: &Env) -> HashMap<String, usize> {
    let idp = aws_sdk_cognitoidentityprovider::Client::new(&wiring::sdk_config().await);
    let mut out = HashMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = idp
            .list_users()
            .user_pool_id(&env.settings.cognito.user_pool_id)
            .limit(60)
            .set_pagination_token(token.clone())
            .send()
            .await
            .expect("ListUsers");
        for u in page.users() {
            let email = u
                .attributes()
                .iter()
                .find(|a| a.name() == "email")
                .and_then(|a| a.value())
                .unwrap_or("(no email)")
                .to_ascii_lowercase();
            *out.entry(email).or_insert(0) += 1;
        }
        token = page.pagination_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    out
}

/// Sets the inbound queue's own `VisibilityTimeout`: the worker's receive does not pass one, so
/// the queue attribute (set by bootstrap from the default configuration) decides how long a
/// crashed worker's messages stay invisible.
pub async fn set_queue_visibility(env: &Env, seconds: u64) {
    let sqs = aws_sdk_sqs::Client::new(&wiring::sdk_config().await);
    sqs.set_queue_attributes()
        .queue_url(&env.settings.queue.url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            seconds.to_string(),
        )
        .send()
        .await
        .expect("SetQueueAttributes");
}

/// (visible, in flight, delayed) on a queue.
pub async fn queue_counts(url: &str) -> (u64, u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let sqs = aws_sdk_sqs::Client::new(&wiring::sdk_config().await);
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("GetQueueAttributes");
    let get = |a: A| {
        out.attributes()
            .and_then(|m| m.get(&a))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        get(A::ApproximateNumberOfMessages),
        get(A::ApproximateNumberOfMessagesNotVisible),
        get(A::ApproximateNumberOfMessagesDelayed),
    )
}

/// Signs in with the newest emailed password of each sampled address; the failures.
pub async fn verify_sign_ins(
    env: &Env,
    mails: &HashMap<String, Vec<String>>,
    sample: &[String],
) -> Vec<String> {
    let mut failures = Vec::new();
    for chunk in sample.chunks(8) {
        let tries = chunk.iter().map(|email| async move {
            let Some(newest) = mails.get(email).and_then(|m| m.last()) else {
                return Err(format!("{email}: no email"));
            };
            let password = support::password_in(newest);
            support::complete_registration(&env.settings, email, &password)
                .await
                .map(|_| ())
                .map_err(|e| format!("{email}: {e}"))
        });
        for r in futures::future::join_all(tries).await {
            if let Err(e) = r {
                failures.push(e);
            }
        }
    }
    failures
}

/// A small HTTP/1.0 client for loopback control endpoints: (status, body).
pub fn http(
    hostport: &str,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(hostport)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// `scripts/fault_proxy.py` in front of the test's moto endpoint; stopped when dropped.
pub struct FaultProxy {
    child: Child,
    pub hostport: String,
}

impl FaultProxy {
    pub fn start(seed: u64) -> Self {
        let upstream = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fault_proxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--listen", "127.0.0.1:0", "--upstream", &upstream])
            .args(["--seed", &seed.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 scripts/fault_proxy.py");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("proxy stdout"))
            .read_line(&mut first)
            .expect("proxy announces its port");
        let hostport = first
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected proxy output {first:?}"))
            .to_string();
        Self { child, hostport }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.hostport)
    }

    /// Replaces the fault configuration.
    pub fn set(&self, config: serde_json::Value) {
        let (status, body) =
            http(&self.hostport, "POST", "/__faults", &config.to_string()).expect("POST /__faults");
        assert_eq!(status, 200, "fault proxy refused {config}: {body}");
    }

    /// The proxy's counters (`services.<name>.<counter>`).
    pub fn stats(&self) -> serde_json::Value {
        let (_, body) = http(&self.hostport, "GET", "/__stats", "").expect("GET /__stats");
        serde_json::from_str(&body).expect("stats JSON")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `stats.services.<service>.<key>` as a number (0 when absent).
pub fn stat(stats: &serde_json::Value, service: &str, key: &str) -> u64 {
    stats["services"][service][key].as_u64().unwrap_or(0)
}

/// A free loopback port (bound and released; good enough for a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Whether something answers HTTP at `hostport` `path` (e.g. the worker's /metrics).
pub fn get_text(hostport: &str, path: &str) -> Option<String> {
    match http(hostport, "GET", path, "") {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}
