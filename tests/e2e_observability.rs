//! Operating the worker: /metrics, /healthz and /readyz over a real drain against the local
//! stack; the circuit breaker opening on a failing Cognito (in-memory fakes), pausing receives
//! and closing again; and the log lines carrying invite and event ids without addresses.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use invite_worker::adapters::instrumented::{InstrumentedDirectory, InstrumentedMailer};
use invite_worker::adapters::memory::queue::MemoryQueue;
use invite_worker::adapters::memory::{MemoryDirectory, MemoryMailer, MemoryStore};
use invite_worker::app::compose::PlainComposer;
use invite_worker::app::handler::{InviteService, ServiceConfig};
use invite_worker::config::Transport;
use invite_worker::domain::pool::{AttributeKind, AttributeSpec};
use invite_worker::domain::RedirectHosts;
use invite_worker::domain::{PasswordPolicy, PoolProfile};
use invite_worker::error::{ErrorKind, Service};
use invite_worker::observe::http::HttpServer;
use invite_worker::observe::{CircuitPolicy, CircuitState, Health, Observer};
use invite_worker::ports::{Queue, SystemClock};
use invite_worker::wiring::WORKER_VERSION;
use invite_worker::worker::runner::{Worker, WorkerOptions};
use invite_worker::worker::MessageHandler;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The tests of this file run one at a time: the log test installs a thread-scoped subscriber,
/// and a tracing callsite first reached by another test's worker at that very moment could be
/// cached as disabled, dropping the spans the test looks for.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `GET path` over a fresh connection; (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

/// The sum of every sample of `name` whose labels include all of `labels`.
fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let metric = series.split('{').next().unwrap_or("");
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_and_the_worker_is_healthy_after_a_drain() {
    require_stack();
    let _serial = SERIAL.lock().await;
    let env = bootstrapped("e2e-obs", Transport::Ses).await;
    let c = components(&env).await;
    let mut options = WorkerOptions::from_settings(&c.settings, true);
    options.pause_when = Some(c.observer.circuits().pause_hook());
    let worker = Worker::new(
        c.queue.clone(),
        c.service.clone() as Arc<dyn MessageHandler>,
        options,
    );
    let health = Arc::new(Health::new(
        worker.stats(),
        c.observer.clone(),
        Duration::from_secs(60),
        WORKER_VERSION,
    ));
    let server = HttpServer::bind("127.0.0.1:0", health).await.expect("bind");
    let addr = server.local_addr();

    let (status, before) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(before.contains(&format!(
        "invite_worker_build_info{{version=\"{WORKER_VERSION}\"}} 1\n"
    )));
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "not ready before the first receive: {body}");

    let emails: Vec<String> = (0..3).map(|i| recipient(&format!("obs{i}"))).collect();
    let events: Vec<String> = emails
        .iter()
        .map(|e| invite_event(&unique("evt"), e))
        .collect();
    enqueue(&env, &events).await;
    let summary = worker.run(CancellationToken::new()).await;
    assert_eq!(summary.acked, 3, "{summary:?}");

    let (status, after) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let moved = |name: &str, labels: &[(&str, &str)]| {
        sum(&after, name, labels) - sum(&before, name, labels)
    };
    assert_eq!(moved("invite_worker_messages_received_total", &[]), 3.0);
    assert_eq!(
        moved(
            "invite_worker_messages_processed_total",
            &[("outcome", "sent")]
        ),
        3.0,
        "{after}"
    );
    assert!(moved("invite_worker_empty_receives_total", &[]) >= 1.0);
    assert_eq!(
        moved("invite_worker_handler_duration_seconds_count", &[]),
        3.0
    );
    assert_eq!(
        moved(
            "invite_worker_downstream_calls_total",
            &[
                ("service", "cognito"),
                ("operation", "create_user"),
                ("result", "ok")
            ]
        ),
        3.0,
        "{after}"
    );
    assert!(
        moved(
            "invite_worker_downstream_calls_total",
            &[("service", "cognito"), ("result", "ok")]
        ) >= 4.0,
        "create_user for each, and at least one real DescribeUserPool (the profile cache answers the rest): {after}"
    );
    assert_eq!(
        moved(
            "invite_worker_downstream_calls_total",
            &[("service", "ses"), ("operation", "send"), ("result", "ok")]
        ),
        3.0
    );
    assert!(
        moved(
            "invite_worker_downstream_calls_total",
            &[
                ("service", "dynamodb"),
                ("operation", "save"),
                ("result", "ok")
            ]
        ) >= 6.0,
        "a claim and a final write per invite: {after}"
    );
    assert_eq!(
        moved(
            "invite_worker_downstream_call_duration_seconds_count",
            &[("service", "ses"), ("operation", "send")]
        ),
        3.0
    );
    assert_eq!(
        moved("invite_worker_invite_transitions_total", &[("to", "sent")]),
        3.0
    );
    assert_eq!(
        moved(
            "invite_worker_invite_transitions_total",
            &[("to", "pending")]
        ),
        3.0
    );
    assert_eq!(
        sum(
            &after,
            "invite_worker_circuit_open",
            &[("service", "cognito")]
        ),
        0.0
    );
    for email in &emails {
        assert!(!after.contains(email.as_str()), "no address in metrics");
    }

    let (status, body) = get(addr, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(addr, "/nope").await.0, 404);
}

// ---------------------------------------------------------------------------------------------
// In-memory fakes

const POOL: &str = "us-east-1_obs";

fn pool() -> PoolProfile {
    let spec = |name: &str, required: bool| AttributeSpec {
        name: name.into(),
        kind: AttributeKind::String,
        required,
        mutable: name != "email",
        developer_only: false,
        min_length: None,
        max_length: None,
        min_value: None,
        max_value: None,
    };
    PoolProfile {
        user_pool_id: POOL.into(),
        attributes: ["email", "email_verified", "given_name", "family_name"]
            .into_iter()
            .map(|n| (n.to_string(), spec(n, n == "email")))
            .collect::<BTreeMap<_, _>>(),
        password_policy: PasswordPolicy::default(),
    }
}

fn request(id: &str, email: &str) -> String {
    serde_json::json!({
        "version": 1, "type": "invite.requested", "id": id,
        "data": { "email": email, "attributes": {"given_name": "Jane", "family_name": "Doe"} }
    })
    .to_string()
}

struct Fakes {
    queue: Arc<MemoryQueue>,
    directory: Arc<InstrumentedDirectory<MemoryDirectory>>,
    mailer: Arc<InstrumentedMailer<MemoryMailer>>,
    observer: Arc<Observer>,
    service: Arc<InviteService>,
}

fn fakes(policy: CircuitPolicy) -> Fakes {
    let observer = Arc::new(Observer::new(
        policy,
        &[Service::Cognito, Service::Ses, Service::DynamoDb],
    ));
    let directory = Arc::new(InstrumentedDirectory::new(
        MemoryDirectory::new(pool()),
        observer.clone(),
    ));
    let mailer = Arc::new(InstrumentedMailer::new(
        MemoryMailer::new(),
        Service::Ses,
        observer.clone(),
    ));
    let service = Arc::new(InviteService::new(
        Arc::new(MemoryStore::new()),
        directory.clone(),
        mailer.clone(),
        Arc::new(PlainComposer),
        Arc::new(SystemClock),
        ServiceConfig {
            user_pool_id: POOL.into(),
            default_expiry_days: 7,
            lease: Duration::from_secs(120),
            redirect_hosts: RedirectHosts::only(&["app.example.com"]),
        },
    ));
    Fakes {
        queue: Arc::new(MemoryQueue::standard()),
        directory,
        mailer,
        observer,
        service,
    }
}

fn quick_options() -> WorkerOptions {
    WorkerOptions {
        concurrency: 10,
        wait: Duration::ZERO,
        max_messages: 10,
        visibility_timeout: Duration::from_secs(30),
        max_attempts: 10,
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(2),
        handler_timeout: Duration::from_secs(10),
        until_idle: Some(3),
        pause_when: None,
        limiters: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_cognito_opens_the_circuit_pauses_receiving_then_recovers() {
    let _serial = SERIAL.lock().await;
    let f = fakes(CircuitPolicy {
        failure_threshold: 5,
        open_for: Duration::from_secs(2),
        max_open_for: Duration::from_secs(8),
    });
    let emails: Vec<String> = (0..5).map(|i| format!("person{i}@example.com")).collect();
    for (i, email) in emails.iter().enumerate() {
        f.queue.push(request(&format!("evt-{i}"), email));
    }
    f.directory
        .inner()
        .faults
        .fail_next("DescribeUserPool", 5, ErrorKind::Unavailable);

    let circuits = f.observer.circuits().clone();
    let mut options = quick_options();
    options.pause_when = Some(circuits.pause_hook());
    let worker = Arc::new(Worker::new(
        f.queue.clone() as Arc<dyn Queue>,
        f.service.clone() as Arc<dyn MessageHandler>,
        options,
    ));
    let health = Arc::new(Health::new(
        worker.stats(),
        f.observer.clone(),
        Duration::from_secs(60),
        WORKER_VERSION,
    ));
    let server = HttpServer::bind("127.0.0.1:0", health).await.expect("bind");
    let addr = server.local_addr();
    let run = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run(CancellationToken::new()).await }
    });

    // Five transient failures in a row: Cognito's circuit opens.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !matches!(circuits.state(Service::Cognito), CircuitState::Open { .. }) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the circuit never opened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let receives = f.queue.receive_requests().len();
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(ready["open_circuits"][0]["service"], "cognito");
    assert_eq!(ready["open_circuits"][0]["state"], "open");
    let (_, metrics) = get(addr, "/metrics").await;
    assert_eq!(
        sum(
            &metrics,
            "invite_worker_circuit_open",
            &[("service", "cognito")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &metrics,
            "invite_worker_circuit_open",
            &[("service", "ses")]
        ),
        0.0
    );
    assert_eq!(
        sum(
            &metrics,
            "invite_worker_downstream_calls_total",
            &[
                ("service", "cognito"),
                ("operation", "pool_profile"),
                ("result", "unavailable")
            ]
        ),
        5.0
    );
    assert_eq!(
        sum(
            &metrics,
            "invite_worker_messages_processed_total",
            &[("outcome", "retry")]
        ),
        5.0
    );
    let hook = circuits.pause_hook();
    assert!(hook().is_some(), "the worker's pause hook holds it off");
    // While open, the worker does not receive (the failed messages wait out their delay).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(matches!(
        circuits.state(Service::Cognito),
        CircuitState::Open { .. }
    ));
    assert_eq!(
        f.queue.receive_requests().len(),
        receives,
        "no receive while the circuit is open"
    );
    let (status, _) = get(addr, "/healthz").await;
    assert_eq!(status, 200, "a deliberate pause is not a stall");

    // The cool-down ends, a trial batch goes through, Cognito answers: closed, all sent.
    let summary = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the worker finishes")
        .expect("no panic");
    assert_eq!(summary.acked, 5, "{summary:?}");
    assert_eq!(circuits.state(Service::Cognito), CircuitState::Closed);
    assert_eq!(f.mailer.inner().count(), 5);
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
}

// ---------------------------------------------------------------------------------------------
// Logs

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A field of a JSON log line, from the event or any of its spans.
fn field<'a>(line: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    line["fields"].get(name).or_else(|| {
        line["spans"]
            .as_array()?
            .iter()
            .rev()
            .find_map(|s| s.get(name))
    })
}

#[tokio::test]
async fn log_lines_about_an_invite_carry_its_ids_and_no_address() {
    let _serial = SERIAL.lock().await;
    let captured = Captured::default();
    // The JSON format `log.format = "json"` selects (see telemetry::init).
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_env_filter("info")
        .with_writer(captured.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();

    let f = fakes(CircuitPolicy::default());
    let email = "Log.Person@example.com";
    f.queue.push(request("evt-log-1", email));
    f.queue.push(request("evt-log-1", email)); // a redelivery
    f.queue.push(
        serde_json::json!({"version": 1, "type": "invite.resend", "id": "evt-log-2",
            "data": {"email": email}})
        .to_string(),
    );
    f.queue.push("{not json");
    let worker = Worker::new(
        f.queue.clone() as Arc<dyn Queue>,
        f.service.clone() as Arc<dyn MessageHandler>,
        WorkerOptions {
            concurrency: 1,
            ..quick_options()
        },
    );
    let summary = worker.run(CancellationToken::new()).await;
    assert_eq!(summary.acked, 3, "{summary:?}");
    assert_eq!(summary.dead_lettered, 1, "{summary:?}");

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lower = text.to_ascii_lowercase();
    assert!(
        !lower.contains("log.person@example.com"),
        "an address in the logs:\n{text}"
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let about_invites = [
        "invite transition",
        "email sent",
        "event recorded; status unchanged",
        "message handled",
    ];
    let mut checked = 0;
    for line in &lines {
        let message = line["fields"]["message"].as_str().unwrap_or("");
        if about_invites.contains(&message) {
            checked += 1;
            assert!(field(line, "invite_id").is_some(), "no invite_id: {line}");
            assert!(field(line, "event_id").is_some(), "no event_id: {line}");
            assert!(field(line, "message_id").is_some(), "no message_id: {line}");
        }
    }
    assert!(checked >= 6, "too few lines checked ({checked}):\n{text}");
    let dead = lines
        .iter()
        .find(|l| l["fields"]["message"] == "message dead-lettered")
        .expect("a dead-letter line");
    assert_eq!(dead["fields"]["reason_code"], "invalid_event");
    assert!(field(dead, "message_id").is_some());
}
