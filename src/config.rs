//! Layered configuration: the defaults compiled into the binary (`config/default.toml`, which
//! also documents every key), then the file named by `--config` / `INVITE_WORKER_CONFIG` (if
//! any), then `<config dir>/<INVITE_WORKER_ENV>.toml` (if that variable is set), then the file
//! `bootstrap` wrote (`INVITE_WORKER_STATE`, default `.local/bootstrap.toml` under the working
//! directory, if it exists), then environment variables `INVITE_WORKER__<SECTION>__<KEY>` (for
//! example `INVITE_WORKER__QUEUE__URL`). No file is needed: the binary runs from any directory.
//! AWS settings (region, credentials, endpoint) come from aws-config's standard chain.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::redirect::RedirectHosts;

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Settings {
    pub queue: QueueSettings,
    pub worker: WorkerSettings,
    pub table: TableSettings,
    pub cognito: CognitoSettings,
    pub email: EmailSettings,
    pub invites: InviteSettings,
    #[serde(default)]
    pub events: EventsSettings,
    #[serde(default)]
    pub feedback: FeedbackSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub http: HttpSettings,
    #[serde(default)]
    pub circuit: CircuitSettings,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct QueueSettings {
    /// The inbound queue's URL; empty until bootstrap or the operator sets it.
    #[serde(default)]
    pub url: String,
    /// The dead-letter queue's URL.
    #[serde(default)]
    pub dlq_url: String,
    /// Names bootstrap uses when it creates the queues.
    pub name: String,
    /// Long-poll wait, at most 20 seconds.
    pub wait_seconds: u64,
    /// Messages per receive, at most 10.
    pub max_messages: u8,
    /// Visibility timeout while a message is being handled; the heartbeat extends it.
    pub visibility_timeout_seconds: u64,
    /// Deliveries before a message that keeps failing transiently is dead-lettered.
    pub max_attempts: u32,
    /// Backoff for transient failures: base and cap of the exponential delay (with jitter).
    pub retry_base_seconds: u64,
    pub retry_max_seconds: u64,
    /// maxReceiveCount bootstrap puts in the redrive policy (a safety net above max_attempts).
    pub redrive_max_receive_count: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct WorkerSettings {
    /// Messages handled at once.
    pub concurrency: usize,
    /// On SIGTERM/SIGINT: how long in-flight work may take before it is released.
    pub shutdown_grace_seconds: u64,
    /// Upper bound for handling one message.
    pub handler_timeout_seconds: u64,
    /// How long a worker's claim on an invite lasts if it crashes.
    pub lease_seconds: u64,
    /// With `--until-idle`: consecutive empty receives before exiting.
    pub idle_polls: u32,
    /// `run` with a broken setup (a missing queue, table or pool, access denied, no credentials):
    /// how long it stays up, not ready and logging the fix, before it exits with status 2.
    #[serde(default = "default_setup_grace_seconds")]
    pub setup_grace_seconds: u64,
}

fn default_setup_grace_seconds() -> u64 {
    60
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct TableSettings {
    pub name: String,
    /// Partitions of the sparse open-invite index (spreads writes; cleanup queries each).
    pub open_index_shards: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CognitoSettings {
    #[serde(default)]
    pub user_pool_id: String,
    /// App client for the sign-in link and the end-to-end tests (optional).
    #[serde(default)]
    pub client_id: String,
    /// Name bootstrap gives a pool it creates.
    pub user_pool_name: String,
    /// User-creation calls per second for the whole fleet on this table (Cognito's UserCreation
    /// category is account-wide); the fleet shares it through the table.
    pub create_rate_per_second: f64,
    /// Unused since the rate is a fleet budget (kept so existing configurations load).
    pub create_burst: u32,
    /// The part of `create_rate_per_second` left to the application's own sign-ups.
    #[serde(default)]
    pub reserve_rate_per_second: f64,
    /// Token bucket for other Cognito calls (AdminGetUser etc.).
    pub read_rate_per_second: f64,
    /// How long the worker keeps the pool's schema and password policy before reading them
    /// again (0: read for every use). A rejection is checked against a fresh read regardless.
    pub pool_profile_max_age_seconds: u64,
}

impl CognitoSettings {
    /// The fleet's budget of user creations per second: the rate less the reserve.
    pub fn fleet_create_rate(&self) -> f64 {
        self.create_rate_per_second - self.reserve_rate_per_second
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Ses,
    Smtp,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct EmailSettings {
    pub transport: Transport,
    /// `Name <address>`.
    pub from: String,
    #[serde(default)]
    pub reply_to: Option<String>,
    pub app_name: String,
    /// Default sign-in link when an invite has no `redirect_url`.
    pub sign_in_url: String,
    /// Hosts an invite's `redirect_url` may point to (https only); empty: the host of
    /// `sign_in_url`. See [`crate::domain::redirect`].
    #[serde(default)]
    pub redirect_hosts: Vec<String>,
    pub templates_dir: PathBuf,
    pub default_locale: String,
    /// Emails per second for the whole fleet on this table (SES's account sending rate, or the
    /// relay's); the fleet shares it through the table.
    pub send_rate_per_second: f64,
    /// Unused since the rate is a fleet budget (kept so existing configurations load).
    pub send_burst: u32,
    #[serde(default)]
    pub ses: SesSettings,
    #[serde(default)]
    pub smtp: SmtpSettings,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SesSettings {
    #[serde(default)]
    pub configuration_set: Option<String>,
    /// Read the account's suppression list before creating an invite's user.
    #[serde(default = "yes")]
    pub check_suppression_list: bool,
}

impl Default for SesSettings {
    fn default() -> Self {
        Self {
            configuration_set: None,
            check_suppression_list: true,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text; only for a local sink.
    None,
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    /// Redacted by `config check`.
    #[serde(default)]
    pub password: Option<String>,
    pub timeout_seconds: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 2525,
            tls: SmtpTls::None,
            username: None,
            password: None,
            timeout_seconds: 15,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct InviteSettings {
    pub default_expiry_days: u32,
    /// Days before expiry to send a reminder; 0 is off.
    #[serde(default)]
    pub reminder_days_before_expiry: u32,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct EventsSettings {
    /// Outbound lifecycle-events queue; empty is off.
    #[serde(default)]
    pub outbound_queue_url: String,
}

/// SES sending events in (bounces, complaints, deliveries): docs/lifecycle.md.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct FeedbackSettings {
    /// The queue the sending events arrive on; empty is off.
    #[serde(default)]
    pub queue_url: String,
    /// Where an unreadable feedback message goes.
    #[serde(default)]
    pub dlq_url: String,
    /// Names bootstrap gives the queue (and `<name>-dlq`) and the SNS topic.
    #[serde(default = "default_feedback_name")]
    pub name: String,
}

fn default_feedback_name() -> String {
    "invite-worker-feedback".into()
}

impl Default for FeedbackSettings {
    fn default() -> Self {
        Self {
            queue_url: String::new(),
            dlq_url: String::new(),
            name: default_feedback_name(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct LogSettings {
    /// `json` or `pretty`.
    pub format: String,
    /// A tracing filter, e.g. `info,invite_worker=debug`; `RUST_LOG` wins when set.
    pub level: String,
    /// Mask email addresses in logs (`j***@example.com`).
    pub mask_emails: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: "pretty".into(),
            level: "info".into(),
            mask_emails: true,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct HttpSettings {
    /// `127.0.0.1:9090` to serve /healthz, /readyz, /metrics; empty is off. `0.0.0.0:9090`
    /// exposes them to the whole network.
    #[serde(default)]
    pub listen: String,
    /// /healthz answers 503 when the poll loop made no progress for this long.
    #[serde(default = "default_stale_after_seconds")]
    pub stale_after_seconds: u64,
}

fn default_stale_after_seconds() -> u64 {
    60
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: String::new(),
            stale_after_seconds: default_stale_after_seconds(),
        }
    }
}

/// Per-downstream circuit breakers: while one is open the worker stops receiving.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct CircuitSettings {
    /// Consecutive transient failures (throttling, 5xx, timeouts) of one service that open its
    /// circuit; 0 turns the breakers off.
    pub failure_threshold: u32,
    /// How long a circuit stays open the first time.
    pub open_seconds: u64,
    /// The longest it stays open: each failed trial doubles the time, up to this.
    pub max_open_seconds: u64,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_seconds: 30,
            max_open_seconds: 300,
        }
    }
}

/// The defaults, compiled in: `config/default.toml` is both their documentation and their source.
pub const DEFAULTS_TOML: &str = include_str!("../config/default.toml");

/// Where the optional layered files live.
#[derive(Clone, Debug)]
pub struct ConfigSources {
    /// `--config FILE` / `INVITE_WORKER_CONFIG`: an overlay on the defaults (must exist if named).
    pub config_file: Option<PathBuf>,
    /// `--config-dir` / `INVITE_WORKER_CONFIG_DIR` (default `config`): where
    /// `<INVITE_WORKER_ENV>.toml` is looked for.
    pub config_dir: PathBuf,
    /// `INVITE_WORKER_ENV`: picks `config/<env>.toml`.
    pub environment: Option<String>,
    /// What bootstrap records (`.local/bootstrap.toml` by default, `INVITE_WORKER_STATE`).
    pub state_file: PathBuf,
}

impl ConfigSources {
    /// The compiled-in defaults and `state_file` (if it exists), nothing else: for tests.
    pub fn defaults_and_state(state_file: PathBuf) -> Self {
        Self {
            config_file: None,
            config_dir: PathBuf::from("config"),
            environment: None,
            state_file,
        }
    }

    pub fn from_env(config_file: Option<PathBuf>, config_dir: Option<PathBuf>) -> Self {
        let config_file = config_file
            .or_else(|| std::env::var_os("INVITE_WORKER_CONFIG").map(PathBuf::from))
            .filter(|p| !p.as_os_str().is_empty());
        let config_dir = config_dir
            .or_else(|| std::env::var_os("INVITE_WORKER_CONFIG_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("config"));
        let environment = std::env::var("INVITE_WORKER_ENV")
            .ok()
            .filter(|s| !s.is_empty());
        let state_file = std::env::var_os("INVITE_WORKER_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".local/bootstrap.toml"));
        Self {
            config_file,
            config_dir,
            environment,
            state_file,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    pub fn load(sources: &ConfigSources) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULTS_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(file) = &sources.config_file {
            if !file.is_file() {
                return Err(ConfigError(format!(
                    "{} (from --config or INVITE_WORKER_CONFIG) is not a readable file",
                    file.display()
                )));
            }
            builder = builder.add_source(
                config::File::from(file.as_path())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        if let Some(env) = &sources.environment {
            let file = sources.config_dir.join(format!("{env}.toml"));
            if !file.is_file() {
                return Err(ConfigError(format!(
                    "{} not found: INVITE_WORKER_ENV={env} names it (set INVITE_WORKER_CONFIG_DIR \
                     to its directory, or unset INVITE_WORKER_ENV)",
                    file.display()
                )));
            }
            builder = builder.add_source(
                config::File::from(file.as_path())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        builder = builder
            .add_source(
                config::File::from(sources.state_file.as_path())
                    .format(config::FileFormat::Toml)
                    .required(false),
            )
            .add_source(
                config::Environment::with_prefix("INVITE_WORKER")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("email.redirect_hosts"),
            );
        let settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Rules that serde cannot express. Each message names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if self.queue.wait_seconds > 20 {
            return bad("queue.wait_seconds", "SQS allows at most 20");
        }
        if !(1..=10).contains(&self.queue.max_messages) {
            return bad("queue.max_messages", "must be 1 to 10");
        }
        if self.queue.visibility_timeout_seconds < 10 {
            return bad("queue.visibility_timeout_seconds", "must be at least 10");
        }
        if self.queue.max_attempts == 0 {
            return bad("queue.max_attempts", "must be at least 1");
        }
        if self.worker.concurrency == 0 {
            return bad("worker.concurrency", "must be at least 1");
        }
        if self.worker.handler_timeout_seconds >= self.worker.lease_seconds {
            return bad(
                "worker.handler_timeout_seconds",
                "must be shorter than worker.lease_seconds",
            );
        }
        if self.cognito.create_rate_per_second <= 0.0
            || self.email.send_rate_per_second <= 0.0
            || self.cognito.read_rate_per_second <= 0.0
        {
            return bad("cognito/email rate limits", "must be greater than 0");
        }
        if !(self.cognito.reserve_rate_per_second >= 0.0
            && self.cognito.reserve_rate_per_second < self.cognito.create_rate_per_second)
        {
            return bad(
                "cognito.reserve_rate_per_second",
                "must be at least 0 and less than cognito.create_rate_per_second",
            );
        }
        if self.invites.default_expiry_days == 0 || self.invites.default_expiry_days > 90 {
            return bad("invites.default_expiry_days", "must be 1 to 90");
        }
        if self.circuit.failure_threshold > 0 && self.circuit.open_seconds == 0 {
            return bad("circuit.open_seconds", "must be at least 1");
        }
        if self.circuit.max_open_seconds < self.circuit.open_seconds {
            return bad(
                "circuit.max_open_seconds",
                "must be at least circuit.open_seconds",
            );
        }
        if self.http.stale_after_seconds == 0 {
            return bad("http.stale_after_seconds", "must be at least 1");
        }
        if self.log.format != "json" && self.log.format != "pretty" {
            return bad("log.format", "must be \"json\" or \"pretty\"");
        }
        self.redirect_hosts()?;
        Ok(())
    }

    /// The allow-list for invites' `redirect_url` (`email.redirect_hosts`, else the host of
    /// `email.sign_in_url`); an error names the key.
    pub fn redirect_hosts(&self) -> Result<RedirectHosts, ConfigError> {
        RedirectHosts::new(&self.email.redirect_hosts, &self.email.sign_in_url).map_err(ConfigError)
    }

    /// The effective configuration as TOML with secrets replaced, for `config check`.
    pub fn redacted_toml(&self) -> String {
        let mut copy = self.clone();
        if copy.email.smtp.password.is_some() {
            copy.email.smtp.password = Some("[redacted]".into());
        }
        toml_string(&copy)
    }

    pub fn queue_is_fifo(&self) -> bool {
        self.queue.url.ends_with(".fifo")
    }
}

fn toml_string(settings: &Settings) -> String {
    // TOML, the format people write the files in.
    toml::to_string(settings).unwrap_or_else(|e| format!("# cannot print as TOML: {e}"))
}

/// Writes `key = "value"` pairs under `[section]` headers, merging with an existing state file
/// (read and written with the `toml` crate, so values survive any number of round trips). An
/// existing file that is not valid TOML is an error, not silently replaced.
pub fn record_state(path: &Path, entries: &[(&str, &str, String)]) -> std::io::Result<()> {
    let invalid = |e: &dyn std::fmt::Display| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    };
    let mut table = match std::fs::read_to_string(path) {
        Ok(text) => text.parse::<toml::Table>().map_err(|e| invalid(&e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(e) => return Err(e),
    };
    'entries: for (section, key, value) in entries {
        // A dotted section (`email.ses`) is a nested table.
        let mut t = &mut table;
        for part in section.split('.') {
            let entry = t
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            match entry.as_table_mut() {
                Some(inner) => t = inner,
                None => continue 'entries,
            }
        }
        t.insert(key.to_string(), toml::Value::String(value.clone()));
    }
    let body = toml::to_string(&table).map_err(|e| invalid(&e))?;
    let out = format!(
        "# Written by `invite-worker bootstrap`: the resources it created or found.\n\n{body}"
    );
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &Path) -> ConfigSources {
        ConfigSources::defaults_and_state(dir.join("no-state.toml"))
    }

    #[test]
    fn the_compiled_in_defaults_load_without_any_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = Settings::load(&sources(dir.path())).expect("defaults load");
        assert_eq!(settings.table.open_index_shards, 4);
        assert!(settings.email.templates_dir.as_os_str().is_empty());
    }

    #[test]
    fn a_config_file_overlays_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("mine.toml");
        std::fs::write(&file, "[queue]\nname = \"mine\"\n").expect("write");
        let mut s = sources(dir.path());
        s.config_file = Some(file);
        let settings = Settings::load(&s).expect("overlay loads");
        assert_eq!(settings.queue.name, "mine");
        assert_eq!(
            settings.table.open_index_shards, 4,
            "the rest stays default"
        );
    }

    #[test]
    fn a_named_config_file_that_is_missing_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = sources(dir.path());
        s.config_file = Some(dir.path().join("absent.toml"));
        let err = Settings::load(&s).expect_err("missing file").to_string();
        assert!(
            err.contains("absent.toml") && err.contains("INVITE_WORKER_CONFIG"),
            "{err}"
        );
    }

    fn shipped_defaults() -> Settings {
        let sources = ConfigSources::defaults_and_state(PathBuf::from(
            "/nonexistent/invite-worker-state.toml",
        ));
        Settings::load(&sources).expect("the built-in defaults load")
    }

    #[test]
    fn a_malformed_redirect_host_is_refused_naming_the_key() {
        let mut settings = shipped_defaults();
        assert_eq!(
            settings.redirect_hosts().unwrap().hosts(),
            ["app.example.com"]
        );
        settings.email.redirect_hosts = vec!["app.example.com".into(), "https://evil/".into()];
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("email.redirect_hosts"), "{err}");
        assert!(err.contains("https://evil/"), "{err}");
    }

    #[test]
    fn recorded_state_round_trips_quotes_and_backslashes() {
        let dir = std::env::temp_dir().join(format!("iw-state-{}", std::process::id()));
        let path = dir.join("bootstrap.toml");
        let tricky = r#"C:\queues\"invites" \\ end"#.to_string();
        record_state(&path, &[("queue", "url", tricky.clone())]).unwrap();
        for round in 0..3 {
            record_state(&path, &[("table", "name", format!("t{round}"))]).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(
            parsed["queue"]["url"].as_str(),
            Some(tricky.as_str()),
            "{text}"
        );
        assert_eq!(parsed["table"]["name"].as_str(), Some("t2"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_dotted_section_is_recorded_as_a_nested_table_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstrap.toml");
        record_state(&path, &[("email", "from", "a@b.example".into())]).unwrap();
        record_state(
            &path,
            &[("email.ses", "configuration_set", "invite-worker".into())],
        )
        .unwrap();
        let settings = Settings::load(&ConfigSources::defaults_and_state(path.clone())).unwrap();
        assert_eq!(
            settings.email.ses.configuration_set.as_deref(),
            Some("invite-worker")
        );
        assert_eq!(settings.email.from, "a@b.example");
    }
}
