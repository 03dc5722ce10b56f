//! Logging: `tracing` with JSON lines in production (`log.format = "json"`) and readable lines
//! locally. `RUST_LOG` overrides `log.level`. Lines about an invite carry `invite_id` and
//! `event_id`; email addresses are masked (see `domain::email::mask_email`); temporary passwords
//! are never logged (their type prints `[redacted]`).

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogSettings;

/// Installs the global subscriber; a second call is a no-op (tests, subcommands).
pub fn init(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let result = if settings.format == "json" {
        fmt()
            .json()
            .with_current_span(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init()
    } else {
        fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .try_init()
    };
    let _ = result;
}

/// An email address as it may appear in a log line: masked unless the operator turned masking off.
pub fn loggable_email(address: &str, mask: bool) -> String {
    if mask {
        crate::domain::email::mask_email(address)
    } else {
        address.to_string()
    }
}
