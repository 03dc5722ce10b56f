//! The command line: `invite-worker <command>`. Each command is a function of its own file;
//! this module parses arguments, loads settings and maps results to exit codes.

mod check;
mod dlq;
mod enqueue;
mod invites;
mod lifecycle;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ConfigSources, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "invite-worker",
    version,
    about = "Onboards people into Amazon Cognito user pools from SQS invite events"
)]
pub struct Cli {
    /// A TOML file over the built-in defaults (only the keys you change).
    #[arg(long, global = true, env = "INVITE_WORKER_CONFIG")]
    config: Option<PathBuf>,
    /// Directory with <INVITE_WORKER_ENV>.toml (default: config).
    #[arg(long, global = true, env = "INVITE_WORKER_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Consume the queue until SIGTERM/SIGINT (or, with --until-idle, until it stays empty).
    Run {
        /// Exit once the queue stays empty and nothing is in flight.
        #[arg(long)]
        until_idle: bool,
        /// Print the closing summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create (idempotently) the queues, table, user pool, app client and SES identity.
    Bootstrap,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Look at invites.
    Invites {
        #[command(subcommand)]
        command: invites::InvitesCommand,
    },
    /// Validate and send invites: CSV or JSON Lines in bulk, JSON files of whole events, or
    /// one invite from flags (--email ...).
    Enqueue(enqueue::EnqueueArgs),
    /// Dead letters: list, replay after a fix, purge.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// One pass for a scheduler: expire open invites past their expiry (deleting never-used
    /// users), record acceptances found in Cognito, send due reminders, relay lifecycle events.
    Cleanup {
        /// Report what would happen; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Evaluate as of this RFC 3339 time instead of now.
        #[arg(long, value_parser = lifecycle::parse_now)]
        now: Option<time::OffsetDateTime>,
        /// At most this many invites per phase (expiry, reminders); the next run continues.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Record acceptances nobody reported: check every `sent` invite's user in Cognito.
    Reconcile {
        /// At most this many `sent` invites (most recently updated first).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        #[arg(long)]
        json: bool,
        /// AdminGetUser calls per second (default: cognito.read_rate_per_second).
        #[arg(long, value_parser = lifecycle::parse_rate)]
        rate: Option<f64>,
        /// Report the acceptances it would record; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the effective configuration (secrets redacted) and check every resource is reachable.
    Check,
}

/// Parses the command line and runs the command.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(&ConfigSources::from_env(
        cli.config.clone(),
        cli.config_dir.clone(),
    )) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(&settings.log);
    let result = match cli.command {
        Command::Run { until_idle, json } => run::run(settings, until_idle, json).await,
        Command::Bootstrap => run::bootstrap(settings).await,
        Command::Config {
            command: ConfigCommand::Check,
        } => check::check(settings).await,
        Command::Invites { command } => invites::invites(settings, command).await,
        Command::Enqueue(args) => enqueue::enqueue(settings, args).await,
        Command::Dlq { command } => dlq::dlq(settings, command).await,
        Command::Cleanup {
            dry_run,
            now,
            limit,
            json,
        } => lifecycle::cleanup(settings, dry_run, now, limit as usize, json).await,
        Command::Reconcile {
            limit,
            json,
            rate,
            dry_run,
        } => lifecycle::reconcile(settings, limit as usize, json, rate, dry_run).await,
    };
    match result {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<crate::setup::SetupFailure>().is_some() => {
            let failure = e
                .downcast::<crate::setup::SetupFailure>()
                .expect("checked above");
            for line in failure.lines() {
                eprintln!("error: {line}");
            }
            ExitCode::from(failure.exit_status())
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
