//! The real binary against the local stack, as an operator would use it: bootstrap with
//! environment variables, `config check`, `enqueue`, `run --until-idle`, `invites show --json`.

mod support;

use std::process::{Command, Output};

use support::*;

struct Cli {
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Cli {
    fn new(tag: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let name = unique(tag);
        let env = vec![
            (
                "INVITE_WORKER_STATE".to_string(),
                dir.path().join("bootstrap.toml").display().to_string(),
            ),
            ("INVITE_WORKER__QUEUE__NAME".to_string(), name.clone()),
            (
                "INVITE_WORKER__TABLE__NAME".to_string(),
                format!("{name}-invites"),
            ),
            (
                "INVITE_WORKER__COGNITO__USER_POOL_NAME".to_string(),
                format!("{name}-pool"),
            ),
            (
                "INVITE_WORKER__QUEUE__WAIT_SECONDS".to_string(),
                "1".to_string(),
            ),
            ("INVITE_WORKER__LOG__FORMAT".to_string(), "json".to_string()),
        ];
        Self { env, _dir: dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_invite-worker"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run invite-worker");
        eprintln!(
            "$ invite-worker {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

#[test]
fn the_binary_bootstraps_checks_enqueues_runs_and_shows() {
    if !stack_available() {
        return;
    }
    let cli = Cli::new("bin");
    assert!(cli.run(&["bootstrap"]).status.success());
    let again = cli.run(&["bootstrap"]);
    assert!(again.status.success());
    assert!(
        !String::from_utf8_lossy(&again.stdout).contains("created"),
        "a second bootstrap creates nothing"
    );
    let check = cli.run(&["config", "check"]);
    assert!(
        check.status.success(),
        "config check passes after bootstrap"
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("all checks passed"));

    let email = recipient("bin");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("event.json");
    std::fs::write(&file, invite_event(&unique("evt"), &email)).unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"version": 1, "type": "invite.requested", "id": "x", "data": {"email": "nope"}}"#,
    )
    .unwrap();
    let enq = cli.run(&["enqueue", file.to_str().unwrap(), bad.to_str().unwrap()]);
    assert!(!enq.status.success(), "a bad file makes enqueue fail");
    assert!(
        String::from_utf8_lossy(&enq.stderr).contains("data.email"),
        "the bad file is named with its field"
    );

    assert!(cli.run(&["run", "--until-idle"]).status.success());
    let show = cli.run(&["invites", "show", &email, "--json"]);
    assert!(show.status.success());
    let record: serde_json::Value = serde_json::from_slice(&show.stdout).expect("JSON");
    assert_eq!(record["status"], "sent");
    assert_eq!(record["history"].as_array().map(Vec::len), Some(2));
    assert!(record.get("lease").is_none());
    let text = cli.run(&["invites", "show", record["invite_id"].as_str().unwrap()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("pending -> sent"));
    assert_eq!(ses_mails_to(&email).len(), 1);
    let missing = cli.run(&["invites", "show", "nobody@example.com"]);
    assert_eq!(missing.status.code(), Some(3));
}

#[test]
fn a_missing_setting_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_invite-worker"))
        .args(["run", "--until-idle"])
        .env("INVITE_WORKER_STATE", "/nonexistent/bootstrap.toml")
        .env("INVITE_WORKER__QUEUE__URL", "")
        .env("INVITE_WORKER__COGNITO__USER_POOL_ID", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cognito.user_pool_id is not set"), "{err}");
}

#[test]
fn a_bad_setting_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_invite-worker"))
        .args(["config", "check"])
        .env("INVITE_WORKER__QUEUE__MAX_MESSAGES", "50")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("queue.max_messages"));
}
