//! The real binary against the local stack, as an operator would use it: bootstrap with
//! environment variables, `config check`, `enqueue`, `run --until-idle`, `invites show --json`.
//! Every command runs in an empty temporary directory, as an installed binary would: the
//! defaults and the templates are compiled in, nothing is read from the source checkout.

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
            .current_dir(self._dir.path())
            .env_remove("INVITE_WORKER_CONFIG")
            .env_remove("INVITE_WORKER_CONFIG_DIR")
            .env_remove("INVITE_WORKER_ENV")
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

#[ignore = "needs the local stack: scripts/test.sh"]
#[test]
fn the_binary_bootstraps_checks_enqueues_runs_and_shows() {
    require_stack();
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
    let check_out = String::from_utf8_lossy(&check.stdout);
    assert!(check_out.contains("all checks passed"));
    assert!(
        check_out.contains("the built-in templates load and render"),
        "{check_out}"
    );

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

    let run = cli.run(&["run", "--until-idle", "--json"]);
    assert!(run.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).expect("summary JSON");
    assert_eq!(
        (summary["received"].as_u64(), summary["acked"].as_u64()),
        (Some(1), Some(1))
    );
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
fn a_missing_setting_is_named_from_any_directory() {
    let anywhere = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_invite-worker"))
        .args(["run", "--until-idle"])
        .current_dir(anywhere.path())
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
    let anywhere = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_invite-worker"))
        .args(["config", "check"])
        .current_dir(anywhere.path())
        .env("INVITE_WORKER__QUEUE__MAX_MESSAGES", "50")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("queue.max_messages"));
}

#[test]
fn a_config_file_given_with_the_flag_overlays_the_built_in_defaults() {
    let anywhere = tempfile::tempdir().unwrap();
    let file = anywhere.path().join("worker.toml");
    std::fs::write(&file, "[queue]\nmax_messages = 50\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_invite-worker"))
        .args(["--config", file.to_str().unwrap(), "config", "check"])
        .current_dir(anywhere.path())
        .env_remove("INVITE_WORKER__QUEUE__MAX_MESSAGES")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "the file's bad value is read");
    assert!(String::from_utf8_lossy(&out.stderr).contains("queue.max_messages"));
}
