//! The invite pipeline end to end on one core: SQS receive → decode → state machine → store
//! (claim) → directory → composer → mailer → store (finish) → ack (DeleteMessageBatch), driven by
//! the production [`Worker`] over the in-memory fakes, with a configurable latency on every
//! downstream call.
//!
//! `cargo bench --bench pipeline` runs the default suite (about 25 s). One custom scenario:
//!
//! ```text
//! INVITES=20000 LATENCY_MS=0 CONCURRENCY=256 COMPOSER=template cargo bench --bench pipeline
//! ```
//!
//! Knobs (environment variables, or `KEY=value` arguments after `--`):
//! `INVITES`, `LATENCY_MS` (on every store, directory and mailer call; the queue has none),
//! `CONCURRENCY`, `COMPOSER` (`template`, `plain`, `template+mime`, or `all`), `PROFILE_CACHE=1`
//! (cache `pool_profile` as the Cognito adapter does), `LOGS=1` (JSON log lines, as in production,
//! written to a sink), `REPEAT` (runs per scenario; the one with the least CPU is reported),
//! `STAGES` (`on`, `off`, or `only`: the per-stage costs), `STAGE_ITERATIONS`, `TEMPLATES_DIR`
//! (benchmark other templates), `DUMP_RENDERS=FILE` (write renders of every template against
//! tricky contexts and exit, to check that a rendering change keeps the output byte for byte).
//!
//! What each figure means is in docs/performance.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use invite_worker::adapters::memory::queue::MemoryQueue;
use invite_worker::adapters::memory::{MemoryDirectory, MemoryMailer, MemoryStore};
use invite_worker::app::compose::{Composer, MailKind, PlainComposer};
use invite_worker::app::handler::{InviteService, ServiceConfig};
use invite_worker::app::template_composer::TemplateComposer;
use invite_worker::config::{ConfigSources, Settings};
use invite_worker::domain::pool::{AttributeKind, AttributeSpec};
use invite_worker::domain::RedirectHosts;
use invite_worker::domain::TemporaryPassword;
use invite_worker::domain::{Invite, InviteId, InviteStatus, PasswordPolicy, PoolProfile};
use invite_worker::error::DownstreamError;
use invite_worker::mail::Templates;
use invite_worker::ports::{
    BatchFailure, CreateOutcome, DeadLetter, Directory, InviteStore, Mailer, NewUser, OutgoingMail,
    OutgoingMessage, Page, Queue, QueueMessage, StoreError, SystemClock, UserInfo,
};
use invite_worker::worker::{Worker, WorkerOptions};

// ---------------------------------------------------------------------------------------------
// Heap accounting: a counting allocator over the system one.

struct CountingAlloc;

/// Bytes allocated now, and the most ever (since the scenario started).
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes the fakes hold on behalf of DynamoDB, Cognito and SES (stored items, users, sent
/// mails), measured around each of their storing calls, see [`in_fake`].
static STORED_BY_FAKES: AtomicIsize = AtomicIsize::new(0);
/// The most ever of `LIVE - STORED_BY_FAKES`: the heap the worker itself needs.
static PEAK_WORKING: AtomicUsize = AtomicUsize::new(0);
/// Set while a fake runs: its allocations and time are not the worker's.
static IN_FAKE: AtomicBool = AtomicBool::new(false);
/// Time spent inside the fakes (and the benchmark's own bookkeeping around them).
static FAKE_NANOS: AtomicU64 = AtomicU64::new(0);
static FAKE_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn working(live: usize) -> usize {
    (live as isize - STORED_BY_FAKES.load(Relaxed)).max(0) as usize
}

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(now, Relaxed);
    if !IN_FAKE.load(Relaxed) {
        PEAK_WORKING.fetch_max(working(now), Relaxed);
    }
}

/// Whether a fake call keeps what it allocates (a stored item, a user, a sent mail).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keeps {
    Nothing,
    Data,
}

/// Runs a fake's call and books its time and allocations as the fake's, not the worker's; for a
/// storing call also the heap it keeps. Exact on the single-threaded runtime: only the wrapped
/// future runs during its polls. `when_done` runs inside the last poll (bookkeeping that is not
/// the worker's either). What a storing call returns is booked as kept too; the caller gives
/// back its size with [`returned_to_worker`]. The future is created and dropped outside the
/// polls, so its own (boxed) state counts as the worker's, which is where it is allocated.
async fn in_fake<T>(keeps: Keeps, call: impl Future<Output = T>, when_done: impl FnOnce()) -> T {
    let mut call = std::pin::pin!(call);
    let mut when_done = Some(when_done);
    std::future::poll_fn(move |cx| {
        let started = Instant::now();
        let (live, allocations) = (LIVE.load(Relaxed), ALLOCATIONS.load(Relaxed));
        IN_FAKE.store(true, Relaxed);
        let polled = call.as_mut().poll(cx);
        if polled.is_ready() {
            if let Some(done) = when_done.take() {
                done();
            }
        }
        IN_FAKE.store(false, Relaxed);
        if keeps == Keeps::Data {
            STORED_BY_FAKES.fetch_add(LIVE.load(Relaxed) as isize - live as isize, Relaxed);
        }
        FAKE_ALLOCATIONS.fetch_add(ALLOCATIONS.load(Relaxed) - allocations, Relaxed);
        FAKE_NANOS.fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
        polled
    })
    .await
}

/// The heap of a value a fake returned to the worker (its ownership moves to the worker).
fn returned_to_worker(bytes: usize) {
    STORED_BY_FAKES.fetch_sub(bytes as isize, Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; only counters are added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            ALLOCATIONS.fetch_add(1, Relaxed);
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            ALLOCATIONS.fetch_add(1, Relaxed);
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            ALLOCATIONS.fetch_add(1, Relaxed);
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------------------------------------
// Process figures: CPU time and peak RSS, from the kernel, without extra crates.

mod process {
    use std::time::Duration;

    #[cfg(target_os = "linux")]
    mod sys {
        #[repr(C)]
        pub struct Timespec {
            pub tv_sec: i64,
            pub tv_nsec: i64,
        }
        pub const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
        extern "C" {
            pub fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
        }
        #[cfg(target_env = "gnu")]
        extern "C" {
            pub fn malloc_trim(pad: usize) -> i32;
        }
    }

    /// CPU time (user + system) of the whole process so far.
    pub fn cpu_time() -> Duration {
        #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
        {
            let mut ts = sys::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is a valid, writable timespec; the clock id is a Linux constant.
            if unsafe { sys::clock_gettime(sys::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0 {
                return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
            }
        }
        cpu_time_from_proc().unwrap_or_default()
    }

    /// utime + stime from /proc/self/stat, in clock ticks of 1/100 s.
    fn cpu_time_from_proc() -> Option<Duration> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }

    /// A `VmHWM`-style line of /proc/self/status, in bytes.
    fn status_bytes(key: &str) -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with(key))?;
        let kb: u64 = line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    }

    /// Resident set size now.
    pub fn rss() -> Option<u64> {
        status_bytes("VmRSS:")
    }

    /// Peak resident set size since the last [`reset_peak_rss`].
    pub fn peak_rss() -> Option<u64> {
        status_bytes("VmHWM:")
    }

    /// Hands freed heap back to the OS and restarts the `VmHWM` count at the current RSS, so
    /// that each scenario's peak is its own.
    pub fn reset_peak_rss() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory.
        unsafe {
            sys::malloc_trim(0);
        }
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
}

// ---------------------------------------------------------------------------------------------
// Counting decorators: how many downstream calls one invite makes, measured, not assumed.

#[derive(Debug, Default)]
struct Calls {
    /// Per operation: calls, and their total duration as the caller saw it.
    by_operation: Mutex<HashMap<&'static str, (u64, Duration)>>,
}

impl Calls {
    /// Runs one downstream call in the fake, counting it and timing it.
    async fn track<T>(
        &self,
        operation: &'static str,
        keeps: Keeps,
        call: impl Future<Output = T>,
    ) -> T {
        let started = Instant::now();
        in_fake(keeps, call, || {
            let mut calls = self.by_operation.lock().expect("calls lock");
            let entry = calls.entry(operation).or_default();
            entry.0 += 1;
            entry.1 += started.elapsed();
        })
        .await
    }

    fn snapshot(&self) -> Vec<(&'static str, u64, Duration)> {
        let mut v: Vec<_> = self
            .by_operation
            .lock()
            .expect("calls lock")
            .iter()
            .map(|(k, (n, d))| (*k, *n, *d))
            .collect();
        v.sort();
        v
    }
}

struct CountedStore {
    inner: Arc<MemoryStore>,
    calls: Arc<Calls>,
}

#[async_trait]
impl InviteStore for CountedStore {
    async fn load(&self, id: &InviteId) -> Result<Option<Invite>, StoreError> {
        let op = "store.load (GetItem)";
        self.calls
            .track(op, Keeps::Nothing, self.inner.load(id))
            .await
    }
    async fn save(&self, invite: &Invite) -> Result<(), StoreError> {
        let op = "store.save (PutItem)";
        self.calls
            .track(op, Keeps::Data, self.inner.save(invite))
            .await
    }
    async fn open_expired(
        &self,
        now: OffsetDateTime,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<InviteId>, StoreError> {
        let call = self.inner.open_expired(now, limit, cursor);
        self.calls
            .track("store.open_expired", Keeps::Nothing, call)
            .await
    }
    async fn list_by_status(
        &self,
        status: InviteStatus,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<Invite>, StoreError> {
        let call = self.inner.list_by_status(status, limit, cursor);
        self.calls
            .track("store.list_by_status", Keeps::Nothing, call)
            .await
    }
    async fn with_unpublished(&self, limit: usize) -> Result<Vec<InviteId>, StoreError> {
        let call = self.inner.with_unpublished(limit);
        self.calls
            .track("store.with_unpublished", Keeps::Nothing, call)
            .await
    }
}

struct CountedDirectory {
    inner: Arc<MemoryDirectory>,
    calls: Arc<Calls>,
    /// Set: `pool_profile` is read once and cached, as `ProfileCachingDirectory` does within
    /// `cognito.pool_profile_max_age_seconds`.
    profile_cache: Option<OnceCell<PoolProfile>>,
}

#[async_trait]
impl Directory for CountedDirectory {
    async fn pool_profile(&self) -> Result<PoolProfile, DownstreamError> {
        let op = "directory.pool_profile (DescribeUserPool)";
        match &self.profile_cache {
            Some(cache) => cache
                .get_or_try_init(|| {
                    self.calls
                        .track(op, Keeps::Nothing, self.inner.pool_profile())
                })
                .await
                .cloned(),
            None => {
                self.calls
                    .track(op, Keeps::Nothing, self.inner.pool_profile())
                    .await
            }
        }
    }
    async fn create_user(&self, user: &NewUser<'_>) -> Result<CreateOutcome, DownstreamError> {
        let op = "directory.create_user (AdminCreateUser)";
        let created = self
            .calls
            .track(op, Keeps::Data, self.inner.create_user(user))
            .await;
        if let Ok(CreateOutcome::Created { sub: Some(sub) }) = &created {
            returned_to_worker(sub.capacity());
        }
        created
    }
    async fn get_user(&self, username: &str) -> Result<Option<UserInfo>, DownstreamError> {
        let call = self.inner.get_user(username);
        self.calls
            .track("directory.get_user", Keeps::Nothing, call)
            .await
    }
    async fn set_temporary_password(
        &self,
        username: &str,
        password: &TemporaryPassword,
    ) -> Result<(), DownstreamError> {
        let call = self.inner.set_temporary_password(username, password);
        let op = "directory.set_temporary_password";
        self.calls.track(op, Keeps::Data, call).await
    }
    async fn delete_user(&self, username: &str) -> Result<(), DownstreamError> {
        let call = self.inner.delete_user(username);
        self.calls
            .track("directory.delete_user", Keeps::Data, call)
            .await
    }
    async fn add_user_to_group(&self, username: &str, group: &str) -> Result<(), DownstreamError> {
        let call = self.inner.add_user_to_group(username, group);
        self.calls
            .track("directory.add_user_to_group", Keeps::Data, call)
            .await
    }
    async fn disable_user(&self, username: &str) -> Result<(), DownstreamError> {
        let call = self.inner.disable_user(username);
        self.calls
            .track("directory.disable_user", Keeps::Nothing, call)
            .await
    }
    async fn enable_user(&self, username: &str) -> Result<(), DownstreamError> {
        let call = self.inner.enable_user(username);
        self.calls
            .track("directory.enable_user", Keeps::Nothing, call)
            .await
    }
}

struct CountedMailer {
    inner: Arc<MemoryMailer>,
    calls: Arc<Calls>,
    /// Build the raw MIME message first, as the SES adapter does before its network call (this
    /// is the worker's work, so it is not booked to the fake).
    build_mime: bool,
}

#[async_trait]
impl Mailer for CountedMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<String, DownstreamError> {
        if self.build_mime {
            let raw = invite_worker::mail::message::to_raw(mail)?;
            std::hint::black_box(raw);
        }
        let op = "mailer.send (SendEmail)";
        let message_id = self
            .calls
            .track(op, Keeps::Data, self.inner.send(mail))
            .await;
        if let Ok(id) = &message_id {
            returned_to_worker(id.capacity());
        }
        message_id
    }
}

// ---------------------------------------------------------------------------------------------
// The queue, timed: receive → DeleteMessageBatch per message, and when the last ack lands.

struct TimedQueue {
    inner: Arc<MemoryQueue>,
    started: Instant,
    received_at: Mutex<HashMap<String, Instant>>,
    /// (latency, ack time since start) per deleted message, in microseconds.
    acks: Mutex<Vec<(u32, u32)>>,
    acked: AtomicU64,
    target: u64,
    done: CancellationToken,
}

#[async_trait]
impl Queue for TimedQueue {
    async fn receive(&self, max: u8, wait: Duration) -> Result<Vec<QueueMessage>, DownstreamError> {
        let received = async {
            let messages = self.inner.receive(max, wait).await?;
            let now = Instant::now();
            let mut received = self.received_at.lock().expect("timing lock");
            for m in &messages {
                received.insert(m.receipt_handle.clone(), now);
            }
            Ok(messages)
        };
        in_fake(Keeps::Nothing, received, || {}).await
    }

    async fn receive_and_hold(
        &self,
        max: u8,
        wait: Duration,
        hold: Duration,
    ) -> Result<Vec<QueueMessage>, DownstreamError> {
        let call = self.inner.receive_and_hold(max, wait, hold);
        in_fake(Keeps::Nothing, call, || {}).await
    }

    async fn send_messages(
        &self,
        entries: Vec<OutgoingMessage>,
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        in_fake(Keeps::Nothing, self.inner.send_messages(entries), || {}).await
    }

    async fn delete_messages(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        in_fake(Keeps::Nothing, self.timed_delete(receipt_handles), || {}).await
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        timeout: Duration,
    ) -> Result<(), DownstreamError> {
        let call = self.inner.change_visibility(receipt_handle, timeout);
        in_fake(Keeps::Nothing, call, || {}).await
    }

    async fn dead_letter(
        &self,
        message: &QueueMessage,
        why: &DeadLetter,
    ) -> Result<(), DownstreamError> {
        in_fake(Keeps::Nothing, self.inner.dead_letter(message, why), || {}).await
    }

    fn is_fifo(&self) -> bool {
        self.inner.is_fifo()
    }

    async fn messages_left(&self) -> Result<Option<u64>, DownstreamError> {
        in_fake(Keeps::Nothing, self.inner.messages_left(), || {}).await
    }
}

impl TimedQueue {
    /// Deletes, and notes each message's latency and the time of its ack.
    async fn timed_delete(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<BatchFailure>, DownstreamError> {
        let failures = self.inner.delete_messages(receipt_handles).await?;
        let now = Instant::now();
        let at = (now - self.started).as_micros() as u32;
        let mut deleted = 0;
        {
            let mut received = self.received_at.lock().expect("timing lock");
            let mut acks = self.acks.lock().expect("timing lock");
            for (i, handle) in receipt_handles.iter().enumerate() {
                if failures.iter().any(|f| f.index == i) {
                    continue;
                }
                if let Some(t) = received.remove(handle) {
                    acks.push(((now - t).as_micros() as u32, at));
                    deleted += 1;
                }
            }
        }
        if self.acked.fetch_add(deleted, Relaxed) + deleted >= self.target {
            self.done.cancel();
        }
        Ok(failures)
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ComposerKind {
    Template,
    Plain,
    /// The template composer, and the mailer builds the MIME message (as SES does).
    TemplateMime,
}

impl ComposerKind {
    fn name(self) -> &'static str {
        match self {
            ComposerKind::Template => "template",
            ComposerKind::Plain => "plain",
            ComposerKind::TemplateMime => "template+mime",
        }
    }

    fn parse(s: &str) -> Vec<ComposerKind> {
        match s {
            "plain" => vec![ComposerKind::Plain],
            "template+mime" | "mime" => vec![ComposerKind::TemplateMime],
            "all" => vec![
                ComposerKind::Template,
                ComposerKind::Plain,
                ComposerKind::TemplateMime,
            ],
            _ => vec![ComposerKind::Template],
        }
    }
}

#[derive(Clone, Debug)]
struct Scenario {
    label: String,
    invites: u64,
    latency: Duration,
    concurrency: usize,
    composer: ComposerKind,
    profile_cache: bool,
    logs: bool,
}

#[derive(Clone, Debug)]
struct Figures {
    wall: Duration,
    /// Acks per second between the 10th and the 90th percentile of ack times.
    steady_rate: f64,
    cpu: Duration,
    /// Time spent pushing messages onto the fake queue (part of `cpu`).
    producer: Duration,
    allocations: u64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    peak_heap: usize,
    /// Peak heap without what the fakes store for DynamoDB, Cognito and SES.
    peak_working: usize,
    /// What the fakes store at the end.
    stored_by_fakes: usize,
    baseline_heap: usize,
    baseline_rss: Option<u64>,
    peak_rss: Option<u64>,
    /// Time and allocations inside the fakes (and the benchmark's bookkeeping around them).
    fake_cpu: Duration,
    fake_allocations: u64,
    /// Per operation: calls and their total duration as the handler saw it.
    calls: Vec<(&'static str, u64, Duration)>,
    calls_per_invite: f64,
    /// Downstream time per invite as the handler saw it (the sum of its calls' durations).
    downstream_per_invite: Duration,
    /// Messages being handled, on average, in the steady state.
    mean_in_flight: f64,
    /// The worker's own handling-time figure (whole milliseconds, so about 0.5 ms low).
    handler_mean_ms: f64,
    outcomes: String,
}

impl Figures {
    fn rate(&self, invites: u64) -> f64 {
        invites as f64 / self.wall.as_secs_f64()
    }
}

/// The reference pool's schema: email and family_name required, given_name, a custom attribute.
fn reference_pool() -> PoolProfile {
    let spec = |name: &str, required: bool, mutable: bool| AttributeSpec {
        name: name.into(),
        kind: AttributeKind::String,
        required,
        mutable,
        developer_only: false,
        min_length: None,
        max_length: Some(2048),
        min_value: None,
        max_value: None,
    };
    let mut attributes = std::collections::BTreeMap::new();
    for s in [
        spec("email", true, false),
        spec("family_name", true, true),
        spec("given_name", false, true),
        AttributeSpec {
            max_length: Some(256),
            ..spec("custom:test_attribute1", false, true)
        },
    ] {
        attributes.insert(s.name.clone(), s);
    }
    PoolProfile {
        user_pool_id: "us-east-1_bench".into(),
        attributes,
        password_policy: PasswordPolicy::default(),
    }
}

/// A realistic `invite.requested` event for invitee `i`.
fn event_body(run: &str, i: u64) -> String {
    format!(
        concat!(
            r#"{{"version":1,"type":"invite.requested","id":"bench-{run}-{i}","#,
            r#""occurred_at":"2026-11-26T12:00:00Z","source":"bench","#,
            r#""data":{{"email":"Person.{i}@Example.com","#,
            r#""attributes":{{"given_name":"Person","family_name":"Number {i}","custom:test_attribute1":"blue"}},"#,
            r#""groups":["employees"],"locale":"en-GB","invited_by":"Priya from HR","#,
            r#""external_id":"HR-{i}","metadata":{{"team":"Platform"}}}}}}"#
        ),
        run = run,
        i = i
    )
}

fn settings() -> Settings {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources =
        ConfigSources::defaults_and_state(PathBuf::from("/nonexistent/invite-worker-bench.toml"));
    let mut settings = match Settings::load(&sources) {
        Ok(s) => s,
        Err(e) => panic!("config/default.toml: {e}"),
    };
    settings.email.templates_dir = knob("TEMPLATES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("templates"));
    settings
}

fn composer(kind: ComposerKind, settings: &Settings) -> Arc<dyn Composer> {
    match kind {
        ComposerKind::Plain => Arc::new(PlainComposer),
        ComposerKind::Template | ComposerKind::TemplateMime => {
            let templates = match Templates::load(&settings.email.templates_dir, "en") {
                Ok(t) => t,
                Err(e) => panic!("templates: {e}"),
            };
            Arc::new(TemplateComposer::new(templates, &settings.email))
        }
    }
}

/// Runs one scenario on a fresh single-threaded runtime and fresh fakes.
fn run(scenario: &Scenario, settings: &Settings, run_id: &str) -> Figures {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    let _logs = scenario.logs.then(|| {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::set_default(subscriber)
    });
    runtime.block_on(drive(scenario, settings, run_id))
}

async fn drive(scenario: &Scenario, settings: &Settings, run_id: &str) -> Figures {
    let n = scenario.invites;
    let calls = Arc::new(Calls::default());
    let store = Arc::new(MemoryStore::new());
    let directory = Arc::new(MemoryDirectory::new(reference_pool()));
    let mailer = Arc::new(MemoryMailer::new());
    store.faults.set_latency(scenario.latency);
    directory.faults.set_latency(scenario.latency);
    mailer.faults.set_latency(scenario.latency);

    let service = InviteService::new(
        Arc::new(CountedStore {
            inner: store.clone(),
            calls: calls.clone(),
        }),
        Arc::new(CountedDirectory {
            inner: directory.clone(),
            calls: calls.clone(),
            profile_cache: scenario.profile_cache.then(OnceCell::new),
        }),
        Arc::new(CountedMailer {
            inner: mailer.clone(),
            calls: calls.clone(),
            build_mime: scenario.composer == ComposerKind::TemplateMime,
        }),
        composer(scenario.composer, settings),
        Arc::new(SystemClock),
        ServiceConfig {
            user_pool_id: "us-east-1_bench".into(),
            default_expiry_days: settings.invites.default_expiry_days,
            lease: Duration::from_secs(settings.worker.lease_seconds),
            redirect_hosts: RedirectHosts::only(&["app.example.com"]),
        },
    );

    let memory_queue = Arc::new(MemoryQueue::standard().with_visibility_timeout(
        Duration::from_secs(settings.queue.visibility_timeout_seconds),
    ));
    let done = CancellationToken::new();
    let queue = Arc::new(TimedQueue {
        inner: memory_queue.clone(),
        started: Instant::now(),
        received_at: Mutex::new(HashMap::with_capacity(scenario.concurrency * 2)),
        acks: Mutex::new(Vec::with_capacity(n as usize)),
        acked: AtomicU64::new(0),
        target: n,
        done: done.clone(),
    });
    let mut options = WorkerOptions::from_settings(settings, false);
    options.concurrency = scenario.concurrency;
    let worker = Worker::new(queue.clone(), Arc::new(service), options);

    // Everything above is set-up; the measurement starts here.
    process::reset_peak_rss();
    let baseline_rss = process::rss();
    let baseline_heap = LIVE.load(Relaxed);
    PEAK.store(baseline_heap, Relaxed);
    STORED_BY_FAKES.store(0, Relaxed);
    PEAK_WORKING.store(baseline_heap, Relaxed);
    let allocations_before = ALLOCATIONS.load(Relaxed);
    let fake_allocations_before = FAKE_ALLOCATIONS.load(Relaxed);
    let fake_nanos_before = FAKE_NANOS.load(Relaxed);
    let cpu_before = process::cpu_time();
    let started = Instant::now();

    // The producer keeps the queue topped up, as a busy SQS queue would be, without holding
    // every message in memory at once.
    let ahead = (scenario.concurrency as u64 * 2).max(500);
    let producer = {
        let (queue, memory_queue, run_id) =
            (queue.clone(), memory_queue.clone(), run_id.to_string());
        tokio::spawn(async move {
            let mut pushed = 0u64;
            let mut busy = Duration::ZERO;
            while pushed < n {
                let t = Instant::now();
                let acked = queue.acked.load(Relaxed);
                while pushed < n && pushed - acked < ahead {
                    memory_queue.push(event_body(&run_id, pushed));
                    pushed += 1;
                }
                busy += t.elapsed();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            busy
        })
    };

    // How full the worker keeps its slots, sampled every millisecond between 10 % and 90 % of
    // the acks (the steady state).
    let sampler = {
        let (queue, stats, done) = (queue.clone(), worker.stats(), done.clone());
        tokio::spawn(async move {
            let (mut sum, mut samples) = (0u64, 0u64);
            while !done.is_cancelled() {
                let acked = queue.acked.load(Relaxed);
                if acked >= n / 10 && acked <= n - n / 10 {
                    sum += stats.in_flight.load(Relaxed);
                    samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            if samples == 0 {
                0.0
            } else {
                sum as f64 / samples as f64
            }
        })
    };

    let summary = worker.run(done.clone()).await;
    let wall = started.elapsed();
    let cpu = process::cpu_time().saturating_sub(cpu_before);
    let allocations = ALLOCATIONS.load(Relaxed) - allocations_before;
    let fake_allocations = FAKE_ALLOCATIONS.load(Relaxed) - fake_allocations_before;
    let fake_cpu = Duration::from_nanos(FAKE_NANOS.load(Relaxed) - fake_nanos_before);
    let peak_heap = PEAK.load(Relaxed);
    let peak_working = PEAK_WORKING.load(Relaxed);
    let stored_by_fakes = STORED_BY_FAKES.load(Relaxed).max(0) as usize;
    let peak_rss = process::peak_rss();
    let producer_busy = producer.await.unwrap_or_default();
    let mean_in_flight = sampler.await.unwrap_or_default();

    let acks = std::mem::take(&mut *queue.acks.lock().expect("timing lock"));
    // Ack times count from when the queue was built, a moment before `started`.
    let offset = started.saturating_duration_since(queue.started).as_micros() as u32;
    let last_ack = acks
        .iter()
        .map(|a| a.1)
        .max()
        .unwrap_or(0)
        .saturating_sub(offset);
    let mut latencies: Vec<u32> = acks.iter().map(|a| a.0).collect();
    latencies.sort_unstable();
    let mut ack_times: Vec<u32> = acks.iter().map(|a| a.1).collect();
    ack_times.sort_unstable();
    let pct = |v: &[u32], p: f64| -> u32 {
        if v.is_empty() {
            0
        } else {
            v[((v.len() - 1) as f64 * p).round() as usize]
        }
    };
    let steady_rate = {
        let (a, b) = (pct(&ack_times, 0.1), pct(&ack_times, 0.9));
        let between = ack_times.len() as f64 * 0.8;
        if b > a {
            between / (f64::from(b - a) / 1e6)
        } else {
            0.0
        }
    };
    let us = |v: u32| Duration::from_micros(u64::from(v));
    let outcomes = worker
        .stats()
        .ack_outcomes()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        acks.len() as u64,
        n,
        "every invite is acked once ({summary:?})"
    );
    assert_eq!(summary.retried + summary.dead_lettered, 0, "{summary:?}");
    assert_eq!(mailer.count() as u64, n, "one mail per invite");

    Figures {
        wall: us(last_ack).min(wall),
        steady_rate,
        cpu,
        producer: producer_busy,
        allocations,
        p50: us(pct(&latencies, 0.5)),
        p99: us(pct(&latencies, 0.99)),
        max: us(latencies.last().copied().unwrap_or(0)),
        peak_heap,
        peak_working,
        stored_by_fakes,
        baseline_heap,
        baseline_rss,
        peak_rss,
        fake_cpu,
        fake_allocations,
        calls_per_invite: calls.snapshot().iter().map(|c| c.1).sum::<u64>() as f64 / n as f64,
        downstream_per_invite: calls.snapshot().iter().map(|c| c.2).sum::<Duration>() / n as u32,
        calls: calls.snapshot(),
        mean_in_flight,
        handler_mean_ms: worker.stats().latency.sum_ms() as f64
            / worker.stats().latency.count().max(1) as f64,
        outcomes,
    }
}

// ---------------------------------------------------------------------------------------------
// Stages on their own: what one call of each CPU-heavy step costs, outside the pipeline.

struct StageCost {
    stage: &'static str,
    cpu_per_call: Duration,
    allocations_per_call: f64,
}

fn stage<T>(name: &'static str, iterations: u32, mut f: impl FnMut() -> T) -> StageCost {
    for _ in 0..iterations / 10 {
        std::hint::black_box(f());
    }
    let allocations = ALLOCATIONS.load(Relaxed);
    let cpu = process::cpu_time();
    for _ in 0..iterations {
        std::hint::black_box(f());
    }
    StageCost {
        stage: name,
        cpu_per_call: (process::cpu_time() - cpu) / iterations,
        allocations_per_call: (ALLOCATIONS.load(Relaxed) - allocations) as f64
            / f64::from(iterations),
    }
}

/// One invite as the pipeline stores it after the claim, made by the real handler.
fn sample_invite(settings: &Settings) -> Invite {
    let store = Arc::new(MemoryStore::new());
    let service = InviteService::new(
        store.clone(),
        Arc::new(MemoryDirectory::new(reference_pool())),
        Arc::new(MemoryMailer::new()),
        Arc::new(PlainComposer),
        Arc::new(SystemClock),
        ServiceConfig {
            user_pool_id: "us-east-1_bench".into(),
            default_expiry_days: settings.invites.default_expiry_days,
            lease: Duration::from_secs(settings.worker.lease_seconds),
            redirect_hosts: RedirectHosts::only(&["app.example.com"]),
        },
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    runtime.block_on(service.handle_body(&event_body("sample", 1)));
    let mut all = store.all();
    match all.pop() {
        Some(invite) => invite,
        None => panic!("the sample invite was not stored"),
    }
}

fn stage_costs(settings: &Settings, iterations: u32) -> Vec<StageCost> {
    let invite = sample_invite(settings);
    let password = invite_worker::domain::password::generate(&PasswordPolicy::default());
    let template = composer(ComposerKind::Template, settings);
    let plain = composer(ComposerKind::Plain, settings);
    let now = OffsetDateTime::now_utc();
    let body = event_body("stage", 7);
    let mail = match template.compose(MailKind::Invitation, &invite, Some(&password), now) {
        Ok(m) => m,
        Err(e) => panic!("compose: {e}"),
    };
    vec![
        stage("decode the event (JSON + contract)", iterations, || {
            invite_worker::domain::event::decode(&body).is_ok()
        }),
        stage("generate the temporary password", iterations, || {
            invite_worker::domain::password::generate(&PasswordPolicy::default())
        }),
        stage(
            "compose: TemplateComposer (3 templates)",
            iterations,
            || template.compose(MailKind::Invitation, &invite, Some(&password), now),
        ),
        stage("compose: PlainComposer", iterations, || {
            plain.compose(MailKind::Invitation, &invite, Some(&password), now)
        }),
        stage("build the MIME message (SES raw)", iterations, || {
            invite_worker::mail::message::to_raw(&mail)
        }),
    ]
}

/// Writes every template rendered against tricky contexts, to compare renders before and after
/// a change to the template code.
fn dump_renders(settings: &Settings, path: &Path) {
    use invite_worker::mail::{EmailContext, TemplateKind};
    let templates = match Templates::load(&settings.email.templates_dir, "en") {
        Ok(t) => t,
        Err(e) => panic!("templates: {e}"),
    };
    let mut contexts = vec![
        EmailContext::sample_full("Acme"),
        EmailContext::sample_minimal("Acme"),
    ];
    let mut tricky = EmailContext::sample_full("Acme <Cloud> & \"Co\" 'x'");
    tricky.attributes.insert(
        "given_name".into(),
        "<script>alert('1')</script> Zoë ünï 日本 &amp;".into(),
    );
    tricky.invited_by = Some("\"onmouseover=alert(1)&<>'\u{1F600}".into());
    tricky.sign_in_url = "https://app.example.com/a?b=1&c=<2>#'\"".into();
    tricky.temporary_password = "A#b%c+d-e=f?g@h^i_j~".into();
    contexts.push(tricky);
    let mut out = String::new();
    for kind in TemplateKind::ALL {
        for locale in ["en", "de", "fr"] {
            for (i, ctx) in contexts.iter().enumerate() {
                let r = templates.render(kind, Some(locale), ctx);
                out.push_str(&format!("=== {kind} {locale} {i}\n{r:?}\n"));
                if let Ok(r) = r {
                    out.push_str(&format!(
                        "{}\n---\n{}\n---\n{}\n",
                        r.subject, r.text, r.html
                    ));
                }
            }
        }
    }
    if let Err(e) = std::fs::write(path, out) {
        panic!("{}: {e}", path.display());
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting

fn knob(name: &str) -> Option<String> {
    let from_args = std::env::args().skip(1).find_map(|a| {
        a.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::to_string)
    });
    from_args
        .or_else(|| std::env::var(name).ok())
        .filter(|v| !v.is_empty())
}

fn knob_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = knob(name)?;
    match value.parse() {
        Ok(v) => Some(v),
        Err(_) => panic!("{name}={value:?} is not a number"),
    }
}

fn default_suite(logs: bool, profile_cache: bool) -> Vec<Scenario> {
    let base = |label: &str, invites, latency_ms, composer| Scenario {
        label: label.into(),
        invites,
        latency: Duration::from_millis(latency_ms),
        concurrency: 256,
        composer,
        profile_cache,
        logs,
    };
    let with_logs = |mut s: Scenario| {
        s.logs = true;
        s
    };
    let with_cache = |mut s: Scenario| {
        s.profile_cache = true;
        s
    };
    vec![
        base("a", 20_000, 0, ComposerKind::Template),
        base("a-plain", 20_000, 0, ComposerKind::Plain),
        base("a-mime", 20_000, 0, ComposerKind::TemplateMime),
        with_logs(base("a-logs", 20_000, 0, ComposerKind::Template)),
        base("b", 10_000, 20, ComposerKind::Template),
        base("c-plain", 10_000, 20, ComposerKind::Plain),
        with_cache(base("d-cached", 10_000, 20, ComposerKind::Template)),
    ]
}

fn custom_scenarios(logs: bool, profile_cache: bool) -> Option<Vec<Scenario>> {
    let any = ["INVITES", "LATENCY_MS", "CONCURRENCY", "COMPOSER"]
        .iter()
        .any(|k| knob(k).is_some());
    if !any {
        return None;
    }
    let latency_ms: u64 = knob_num("LATENCY_MS").unwrap_or(0);
    let composers = ComposerKind::parse(&knob("COMPOSER").unwrap_or_default());
    Some(
        composers
            .into_iter()
            .map(|composer| Scenario {
                label: "custom".into(),
                invites: knob_num("INVITES").unwrap_or(20_000),
                latency: Duration::from_millis(latency_ms),
                concurrency: knob_num("CONCURRENCY").unwrap_or(256),
                composer,
                profile_cache,
                logs,
            })
            .collect(),
    )
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let logs = knob("LOGS").is_some_and(|v| v != "0");
    let profile_cache = knob("PROFILE_CACHE").is_some_and(|v| v != "0");
    let repeat: u32 = knob_num("REPEAT").unwrap_or(1).max(1);
    let scenarios =
        custom_scenarios(logs, profile_cache).unwrap_or_else(|| default_suite(logs, profile_cache));
    let settings = settings();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

    println!(
        "invite pipeline benchmark: one current-thread tokio runtime; {cores} cores visible, CPU {}",
        cpu_model()
    );
    println!(
        "fakes: MemoryStore, MemoryDirectory, MemoryMailer, MemoryQueue (no queue latency); logs {}; pool_profile {}",
        if logs { "JSON to a sink" } else { "off" },
        if profile_cache { "cached (as CognitoDirectory)" } else { "a downstream call each time" },
    );
    if let Some(path) = knob("DUMP_RENDERS") {
        dump_renders(&settings, Path::new(&path));
        return;
    }
    let stages = knob("STAGES").unwrap_or_else(|| "on".into());
    if stages != "off" {
        let iterations: u32 = knob_num("STAGE_ITERATIONS").unwrap_or(5_000);
        println!();
        println!("stages on their own ({iterations} calls each, CPU time)");
        println!("{:<42} {:>10} {:>10}", "stage", "µs/call", "allocs/call");
        for cost in stage_costs(&settings, iterations) {
            println!(
                "{:<42} {:>10.2} {:>10.1}",
                cost.stage,
                cost.cpu_per_call.as_secs_f64() * 1e6,
                cost.allocations_per_call
            );
        }
        if stages == "only" {
            return;
        }
    }

    let mut results = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        let mut best: Option<Figures> = None;
        for r in 0..repeat {
            let figures = run(scenario, &settings, &format!("{i}.{r}"));
            if best.as_ref().is_none_or(|b| figures.cpu < b.cpu) {
                best = Some(figures);
            }
        }
        if let Some(f) = best {
            eprintln!(
                "  done: {} [{}] in {:.1} s",
                scenario.label.trim(),
                scenario.composer.name(),
                f.wall.as_secs_f64()
            );
            results.push((scenario.clone(), f));
        }
    }

    println!();
    println!(
        "throughput (whole run, and steady: between the 10 % and 90 % acks), the bound \
         concurrency / (calls x latency), and latency per message (received -> deleted)"
    );
    println!(
        "{:<9} {:<13} {:>6} {:>5} {:>4} {:>9} {:>9} {:>8} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8}",
        "scenario",
        "composer",
        "N",
        "conc",
        "lat",
        "invites/s",
        "steady/s",
        "bound/s",
        "%bound",
        "%steady",
        "%eff",
        "p50 ms",
        "p99 ms",
        "max ms"
    );
    for (scenario, f) in &results {
        let rate = f.rate(scenario.invites);
        let latency = scenario.latency.as_secs_f64();
        let bound =
            (latency > 0.0).then(|| scenario.concurrency as f64 / (f.calls_per_invite * latency));
        // The same bound with the downstream time the handler actually saw per invite.
        let effective = (latency > 0.0)
            .then(|| scenario.concurrency as f64 / f.downstream_per_invite.as_secs_f64());
        let percent = |rate: f64, b: Option<f64>| {
            b.map_or("-".into(), |b| format!("{:.1}", 100.0 * rate / b))
        };
        println!(
            "{:<9} {:<13} {:>6} {:>5} {:>4} {:>9.0} {:>9.0} {:>8} {:>7} {:>7} {:>7} {:>8} {:>8} {:>8}",
            scenario.label,
            scenario.composer.name(),
            scenario.invites,
            scenario.concurrency,
            scenario.latency.as_millis(),
            rate,
            f.steady_rate,
            bound.map_or("-".into(), |b| format!("{b:.0}")),
            percent(rate, bound),
            percent(f.steady_rate, bound),
            percent(f.steady_rate, effective),
            ms(f.p50),
            ms(f.p99),
            ms(f.max),
        );
    }
    println!();
    println!(
        "cost per invite: CPU time of the process, split into the worker's share and the fakes' \
         (with the benchmark's bookkeeping and the producer); worker/s = 1 s / worker µs.\n\
         heap: worker = peak without what the fakes store for DynamoDB, Cognito and SES; \
         total = peak of everything; fakes = what they store at the end; rss = peak RSS (VmHWM)"
    );
    println!(
        "{:<9} {:<13} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>7}",
        "scenario",
        "composer",
        "cpu µs",
        "worker",
        "fakes",
        "worker/s",
        "allocs",
        "w.allocs",
        "calls",
        "worker MB",
        "total MB",
        "fakes MB",
        "rss MB"
    );
    for (scenario, f) in &results {
        let n = scenario.invites as f64;
        let cpu = f.cpu.as_secs_f64() * 1e6 / n;
        let fakes = (f.fake_cpu + f.producer).as_secs_f64() * 1e6 / n;
        let worker = (cpu - fakes).max(0.0);
        println!(
            "{:<9} {:<13} {:>8.1} {:>8.1} {:>8.1} {:>10.0} {:>8.0} {:>8.0} {:>7.2} {:>9} {:>9} {:>9} {:>7}",
            scenario.label,
            scenario.composer.name(),
            cpu,
            worker,
            fakes,
            if worker > 0.0 { 1e6 / worker } else { 0.0 },
            f.allocations as f64 / n,
            (f.allocations - f.fake_allocations) as f64 / n,
            f.calls_per_invite,
            mb(f.peak_working as u64),
            mb(f.peak_heap as u64),
            mb(f.stored_by_fakes as u64),
            f.peak_rss.map_or("-".into(), mb),
        );
    }
    println!();
    for (scenario, f) in &results {
        println!(
            "{} [{}]: wall {:.2} s, cpu {:.2} s (fakes {:.2} s, producer {:.2} s), heap at start {} MB, rss at start {} MB, mean in flight {:.1}, handler mean {:.1} ms, downstream per invite {:.1} ms, outcomes {}",
            scenario.label.trim(),
            scenario.composer.name(),
            f.wall.as_secs_f64(),
            f.cpu.as_secs_f64(),
            f.fake_cpu.as_secs_f64(),
            f.producer.as_secs_f64(),
            mb(f.baseline_heap as u64),
            f.baseline_rss.map_or("-".into(), mb),
            f.mean_in_flight,
            f.handler_mean_ms,
            f.downstream_per_invite.as_secs_f64() * 1e3,
            f.outcomes,
        );
        let per_invite: Vec<String> = f
            .calls
            .iter()
            .map(|(op, count, took)| {
                format!(
                    "{op} {:.2} x {:.2} ms",
                    *count as f64 / scenario.invites as f64,
                    took.as_secs_f64() * 1e3 / (*count).max(1) as f64
                )
            })
            .collect();
        println!("    calls per invite: {}", per_invite.join(", "));
    }
}
