//! The first hour of an operator: broken setups × the commands people run, through the built
//! binary against the local stack. Each must end within seconds with its documented exit status
//! and one readable line naming the resource and the next step, and never show the SDK's debug
//! rendering. Access denied is not in the table: moto does not enforce IAM (the line for it is
//! unit-tested in `src/setup.rs`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_invite-worker");
/// Only to catch hangs: every row is expected to end in a few seconds.
const HANG: Duration = Duration::from_secs(15);
const DEBUG_OUTPUT: [&str; 3] = ["{ source:", "DispatchFailure(", "Extensions"];

fn unique(tag: &str) -> String {
    format!("{tag}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// Uniquely named resources made by `invite-worker bootstrap`, and the environment that names them.
struct Stack {
    _dir: tempfile::TempDir,
    empty_home: PathBuf,
    env: Vec<(String, String)>,
    queue_url: String,
}

fn bootstrap() -> Stack {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("needs the local stack (AWS_ENDPOINT_URL): run scripts/test.sh");
    assert!(
        !endpoint.is_empty(),
        "needs the local stack: scripts/test.sh"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let empty_home = dir.path().join("home");
    std::fs::create_dir_all(empty_home.join(".aws")).unwrap();
    for f in ["config", "credentials"] {
        std::fs::write(empty_home.join(".aws").join(f), "").unwrap();
    }
    let name = unique("setup");
    let state = dir.path().join("bootstrap.toml");
    let env: Vec<(String, String)> = [
        ("INVITE_WORKER_STATE", state.display().to_string()),
        ("INVITE_WORKER__QUEUE__NAME", name.clone()),
        ("INVITE_WORKER__TABLE__NAME", format!("{name}-invites")),
        (
            "INVITE_WORKER__COGNITO__USER_POOL_NAME",
            format!("{name}-pool"),
        ),
        (
            "INVITE_WORKER__EMAIL__FROM",
            format!("Ops <{name}@example.com>"),
        ),
        ("INVITE_WORKER__QUEUE__WAIT_SECONDS", "1".into()),
        ("INVITE_WORKER__WORKER__IDLE_POLLS", "1".into()),
        ("INVITE_WORKER__WORKER__SETUP_GRACE_SECONDS", "1".into()),
        ("INVITE_WORKER__HTTP__LISTEN", String::new()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let out = Command::new(BIN)
        .arg("bootstrap")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run bootstrap");
    assert!(out.status.success(), "bootstrap: {out:?}");
    let recorded = std::fs::read_to_string(&state).expect("bootstrap state");
    let queue_url = recorded
        .lines()
        .find_map(|l| l.strip_prefix("url = \""))
        .map(|u| u.trim_end_matches('"').to_string())
        .expect("queue url recorded");
    Stack {
        _dir: dir,
        empty_home,
        env,
        queue_url,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Broken {
    NoCredentials,
    Unreachable,
    WrongRegion,
    QueueMissing,
    DlqMissing,
    TableMissing,
    PoolMissing,
    SenderUnverified,
}

const RUN_IDLE: &[&str] = &["run", "--until-idle"];
const RUN: &[&str] = &["run"];
const INVITES: &[&str] = &["invites", "list"];
const CLEANUP: &[&str] = &["cleanup"];
const DLQ: &[&str] = &["dlq", "list"];
const CHECK: &[&str] = &["config", "check"];
const ENQUEUE: &[&str] = &[
    "enqueue",
    "--email",
    "jane@example.com",
    "--attribute",
    "family_name=Doe",
];
const ALL: &[&[&str]] = &[RUN_IDLE, RUN, INVITES, CLEANUP, DLQ, CHECK, ENQUEUE];

impl Broken {
    /// The commands that use the broken thing (the others do not notice it).
    fn commands(self) -> &'static [&'static [&'static str]] {
        match self {
            Broken::NoCredentials | Broken::Unreachable | Broken::WrongRegion => ALL,
            Broken::QueueMissing => &[RUN_IDLE, RUN, CHECK, ENQUEUE],
            Broken::DlqMissing => &[RUN_IDLE, RUN, CHECK, DLQ],
            Broken::TableMissing => &[RUN_IDLE, RUN, CHECK, INVITES, CLEANUP],
            Broken::PoolMissing => &[RUN_IDLE, RUN, CHECK, CLEANUP],
            Broken::SenderUnverified => &[RUN_IDLE, RUN, CHECK],
        }
    }

    /// What the person must read (the resource and the next step).
    fn expected(self, stack: &Stack) -> Vec<String> {
        match self {
            Broken::NoCredentials => vec!["no AWS credentials: set AWS_PROFILE".into()],
            Broken::Unreachable => vec![
                "cannot reach ".into(),
                "at http://127.0.0.1:1".into(),
                "connection refused; check AWS_ENDPOINT_URL".into(),
            ],
            Broken::WrongRegion => vec!["does not exist in eu-west-1".into()],
            Broken::QueueMissing => vec![format!(
                "queue {}-gone does not exist in us-east-1: run `invite-worker bootstrap` or set queue.url",
                stack.queue_url
            )],
            Broken::DlqMissing => vec![
                "dead-letter queue".into(),
                "-gone does not exist in us-east-1: run `invite-worker bootstrap` or set queue.dlq_url"
                    .into(),
            ],
            Broken::TableMissing => vec![
                "table gone-".into(),
                "does not exist in us-east-1: run `invite-worker bootstrap` or set table.name"
                    .into(),
            ],
            Broken::PoolMissing => vec![
                "user pool us-east-1_gone".into(),
                "does not exist in us-east-1: run `invite-worker bootstrap` or set cognito.user_pool_id".into(),
            ],
            Broken::SenderUnverified => vec![
                "SES sender identity nobody-".into(),
                "SES rejects every invitation".into(),
                "or set email.from".into(),
            ],
        }
    }

    /// The documented exit status: 2 for a broken setup, 1 when AWS cannot be reached;
    /// `config check` exits 1 when any check failed.
    fn status(self, command: &[&str]) -> i32 {
        if command == CHECK || self == Broken::Unreachable {
            1
        } else {
            2
        }
    }

    fn apply(self, stack: &Stack, cmd: &mut Command) {
        let tag = unique("gone");
        match self {
            Broken::NoCredentials => {
                for var in [
                    "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY",
                    "AWS_SESSION_TOKEN",
                    "AWS_PROFILE",
                    "AWS_WEB_IDENTITY_TOKEN_FILE",
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                ] {
                    cmd.env_remove(var);
                }
                let aws = stack.empty_home.join(".aws");
                cmd.env("HOME", &stack.empty_home)
                    .env("AWS_CONFIG_FILE", aws.join("config"))
                    .env("AWS_SHARED_CREDENTIALS_FILE", aws.join("credentials"));
            }
            Broken::Unreachable => {
                cmd.env("AWS_ENDPOINT_URL", "http://127.0.0.1:1");
            }
            Broken::WrongRegion => {
                cmd.env("AWS_REGION", "eu-west-1");
            }
            Broken::QueueMissing => {
                cmd.env(
                    "INVITE_WORKER__QUEUE__URL",
                    format!("{}-gone", stack.queue_url),
                );
            }
            Broken::DlqMissing => {
                cmd.env(
                    "INVITE_WORKER__QUEUE__DLQ_URL",
                    format!("{}-dlq-gone", stack.queue_url),
                );
            }
            Broken::TableMissing => {
                cmd.env("INVITE_WORKER__TABLE__NAME", tag);
            }
            Broken::PoolMissing => {
                cmd.env("INVITE_WORKER__COGNITO__USER_POOL_ID", "us-east-1_gone");
            }
            Broken::SenderUnverified => {
                cmd.env(
                    "INVITE_WORKER__EMAIL__FROM",
                    format!("nobody-{tag}@unverified.example"),
                );
            }
        }
    }
}

struct Row {
    broken: Broken,
    command: &'static [&'static str],
}

/// Runs one row; `Err` says what is wrong with it.
fn run_row(stack: &Stack, row: &Row) -> Result<(), String> {
    let mut cmd = Command::new(BIN);
    cmd.args(row.command)
        .envs(stack.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    row.broken.apply(stack, &mut cmd);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let started = Instant::now();
    let mut child = cmd
        .stdout(std::fs::File::create(&out_path).map_err(|e| e.to_string())?)
        .stderr(std::fs::File::create(&err_path).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| e.to_string())?;
    // Stop a hang (our own child) rather than wait on it forever.
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if started.elapsed() >= HANG {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    let text = format!(
        "{}{}",
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    let name = format!("{:?} × {}", row.broken, row.command.join(" "));
    let Some(status) = status else {
        return Err(format!("{name}: still running after {took:?}\n{text}"));
    };
    let expected = row.broken.status(row.command);
    if status.code() != Some(expected) {
        return Err(format!(
            "{name}: exit {:?} after {took:?}, expected {expected}\n{text}",
            status.code()
        ));
    }
    let one_line = text.lines().find(|l| {
        row.broken
            .expected(stack)
            .iter()
            .all(|part| l.contains(part.as_str()))
    });
    if one_line.is_none() {
        return Err(format!(
            "{name}: no line with {:?}\n{text}",
            row.broken.expected(stack)
        ));
    }
    if let Some(debug) = DEBUG_OUTPUT.iter().find(|d| text.contains(*d)) {
        return Err(format!("{name}: Rust debug output {debug:?}\n{text}"));
    }
    Ok(())
}

#[test]
#[ignore = "needs the local stack: scripts/test.sh"]
fn every_broken_setup_reads_as_one_line_with_the_fix_and_its_exit_status() {
    let stack = bootstrap();
    let rows: Vec<Row> = [
        Broken::NoCredentials,
        Broken::Unreachable,
        Broken::WrongRegion,
        Broken::QueueMissing,
        Broken::DlqMissing,
        Broken::TableMissing,
        Broken::PoolMissing,
        Broken::SenderUnverified,
    ]
    .into_iter()
    .flat_map(|broken| {
        broken
            .commands()
            .iter()
            .map(move |command| Row { broken, command })
    })
    .collect();
    let started = Instant::now();
    let mut failures = Vec::new();
    // A few rows at a time: each is a process making a handful of calls to the shared stack.
    for chunk in rows.chunks(8) {
        let results: Vec<Result<(), String>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|row| s.spawn(|| run_row(&stack, row)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("row thread"))
                .collect()
        });
        failures.extend(results.into_iter().filter_map(Result::err));
    }
    eprintln!("{} rows in {:?}", rows.len(), started.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
}

/// `GET path` on 127.0.0.1:`port`; the whole answer, or `None` while nothing listens.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

#[test]
#[ignore = "needs the local stack: scripts/test.sh"]
fn run_with_a_missing_table_is_not_ready_at_once_and_exits_2_after_the_grace() {
    let stack = bootstrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .arg("run")
        .envs(stack.env.iter().map(|(k, v)| (k, v)))
        .env("INVITE_WORKER__TABLE__NAME", unique("gone"))
        .env("INVITE_WORKER__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .env("INVITE_WORKER__WORKER__SETUP_GRACE_SECONDS", "4")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let mut ready = None;
    while started.elapsed() < Duration::from_secs(3) && ready.is_none() {
        ready = http_get(port, "/readyz");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready = ready.expect("/readyz answers during the grace");
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains("not_ready"), "{ready}");
    let mut status = None;
    while started.elapsed() < HANG && status.is_none() {
        status = child.try_wait().expect("wait");
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("run still going after {HANG:?}");
    };
    let took = started.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        took >= Duration::from_secs(4),
        "left before the grace: {took:?}"
    );
    assert!(stderr.contains(" ERROR "), "{stderr}");
    assert!(
        stderr.contains("does not exist in us-east-1: run `invite-worker bootstrap` or set table.name; not ready"),
        "{stderr}"
    );
    assert!(!stderr.contains("WARN receive failed"), "{stderr}");
}
