//! Layered configuration: `config/default.toml`, then `config/<INVITE_WORKER_ENV>.toml` (if any),
//! then the file `bootstrap` wrote (`.local/bootstrap.toml`, if any), then environment variables
//! `INVITE_WORKER__<SECTION>__<KEY>` (for example `INVITE_WORKER__QUEUE__URL`). AWS settings
//! (region, credentials, endpoint) come from aws-config's standard chain, not from here.

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
    /// Token bucket for user-creation calls (Cognito's UserCreation category is account-wide).
    pub create_rate_per_second: f64,
    pub create_burst: u32,
    /// Token bucket for other Cognito calls (AdminGetUser etc.).
    pub read_rate_per_second: f64,
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
    pub send_rate_per_second: f64,
    pub send_burst: u32,
    #[serde(default)]
    pub ses: SesSettings,
    #[serde(default)]
    pub smtp: SmtpSettings,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct SesSettings {
    #[serde(default)]
    pub configuration_set: Option<String>,
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

/// Where the layered files live.
#[derive(Clone, Debug)]
pub struct ConfigSources {
    pub config_dir: PathBuf,
    /// `INVITE_WORKER_ENV`: picks `config/<env>.toml`.
    pub environment: Option<String>,
    /// What bootstrap records (`.local/bootstrap.toml` by default, `INVITE_WORKER_STATE`).
    pub state_file: PathBuf,
}

impl ConfigSources {
    pub fn from_env(config_dir: Option<PathBuf>) -> Self {
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
        let default = sources.config_dir.join("default.toml");
        if !default.exists() {
            return Err(ConfigError(format!(
                "{} not found (run from the checkout or set INVITE_WORKER_CONFIG_DIR)",
                default.display()
            )));
        }
        let mut builder =
            config::Config::builder().add_source(config::File::from(default.as_path()));
        if let Some(env) = &sources.environment {
            builder = builder.add_source(
                config::File::from(sources.config_dir.join(format!("{env}.toml"))).required(true),
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
    // The config crate reads TOML but does not write it; JSON is a fine, exact stand-in.
    serde_json::to_string_pretty(settings).unwrap_or_default()
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
    for (section, key, value) in entries {
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        if let Some(t) = entry.as_table_mut() {
            t.insert(key.to_string(), toml::Value::String(value.clone()));
        }
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

    fn shipped_defaults() -> Settings {
        let sources = ConfigSources {
            config_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"),
            environment: None,
            state_file: PathBuf::from("/nonexistent/invite-worker-state.toml"),
        };
        Settings::load(&sources).expect("config/default.toml loads")
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
}
