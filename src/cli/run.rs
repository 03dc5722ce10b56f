//! `invite-worker run` and `invite-worker bootstrap`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::{ConfigSources, Settings};
use crate::observe::http::HttpServer;
use crate::observe::Health;
use crate::setup::{self, AwsTarget, Need, SetupFailure};
use crate::wiring;
use crate::worker::runner::{Worker, WorkerOptions};

pub async fn run(settings: Settings, until_idle: bool, json: bool) -> anyhow::Result<ExitCode> {
    wiring::require(&settings, true)?;
    let sdk = wiring::sdk_config().await;
    let mut options = WorkerOptions::from_settings(&settings, until_idle);
    let c = wiring::build(settings, sdk).await?;
    // While a downstream's circuit is open the worker stops receiving.
    options.pause_when = Some(c.observer.circuits().pause_hook());
    // No more messages than the rate limiters can start well within the handler timeout.
    options.limiters = c.limiters.clone();
    // SES's sending events (bounces, complaints, deliveries), when a feedback queue is set.
    let feedback = wiring::feedback_worker(&c, &options);
    let worker = Worker::new(
        c.queue.clone(),
        c.service.clone() as Arc<dyn crate::worker::MessageHandler>,
        options,
    );
    // Up before the start-up check: /readyz answers not ready while the setup is wrong.
    let _http = start_http(&c, &worker).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let grace = match until_idle {
        true => Duration::ZERO,
        false => Duration::from_secs(c.settings.worker.setup_grace_seconds),
    };
    let needs = setup::needs_for_run(&c.settings);
    check_setup_within(grace, &shutdown, || {
        wiring::preflight(&c.settings, &c.sdk, &needs)
    })
    .await?;
    // Lifecycle events a publishing outage left in outboxes go out from here (every ~60 s).
    let relay_stop = shutdown.child_token();
    let relay = (!c.settings.events.outbound_queue_url.is_empty()).then(|| {
        tokio::spawn(crate::lifecycle::relay::relay_periodically(
            c.service.clone(),
            crate::lifecycle::relay::RELAY_INTERVAL,
            relay_stop.clone(),
        ))
    });
    info!(queue = %c.settings.queue.url, fifo = c.settings.queue_is_fifo(), "worker starting");
    if feedback.is_some() {
        info!(queue = %c.settings.feedback.queue_url, "feedback worker starting");
    }
    let feedback_run = async {
        match &feedback {
            Some(f) => Some(f.run(shutdown.clone()).await),
            None => None,
        }
    };
    let (summary, feedback_summary) = tokio::join!(worker.run(shutdown.clone()), feedback_run);
    if let Some(fs) = &feedback_summary {
        info!(summary = %fs, "feedback worker stopped");
    }
    relay_stop.cancel();
    if let Some(relay) = relay {
        let _ = relay.await;
    }
    info!(summary = %summary, "worker stopped");
    if json {
        // The invite queue's summary, with the feedback queue's under "feedback" when it ran.
        let mut out = serde_json::to_value(summary)?;
        if let (Some(fs), Some(o)) = (&feedback_summary, out.as_object_mut()) {
            o.insert("feedback".into(), serde_json::to_value(fs)?);
        }
        println!("{out}");
    } else {
        println!("{summary}");
        if let Some(fs) = &feedback_summary {
            println!("feedback queue: {fs}");
        }
    }
    if let Some(e) = worker.setup_error() {
        let problem = setup::explain(Need::Queue, &e, &c.settings, &AwsTarget::of(&c.sdk));
        let failure = SetupFailure {
            problems: vec![problem],
        };
        if !grace.is_zero() {
            error!(
                "{failure}; not ready; exiting in {}s unless stopped",
                grace.as_secs()
            );
            tokio::select! {
                () = tokio::time::sleep(grace) => {}
                () = shutdown.cancelled() => {}
            }
        }
        return Err(failure.into());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `check` until it passes, for at most `grace`: a broken setup is logged as an ERROR
/// (again only when it changes) and rechecked every few seconds, so a fix made in time lets the
/// worker start; when the grace ends (or at once when it is zero, or on SIGTERM) the last
/// failure is returned, and the command exits with its status (2 setup, 1 unreachable).
async fn check_setup_within<F, Fut>(
    grace: Duration,
    shutdown: &CancellationToken,
    check: F,
) -> Result<(), SetupFailure>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), SetupFailure>>,
{
    let deadline = tokio::time::Instant::now() + grace;
    let mut logged: Option<SetupFailure> = None;
    loop {
        let failure = match check().await {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() || shutdown.is_cancelled() {
            return Err(failure);
        }
        if logged.as_ref() != Some(&failure) {
            for line in failure.lines() {
                error!(
                    "{line}; not ready; exiting with status {} in {}s unless fixed",
                    failure.exit_status(),
                    left.as_secs()
                );
            }
            logged = Some(failure.clone());
        }
        tokio::select! {
            () = tokio::time::sleep(left.min(SETUP_RECHECK)) => {}
            () = shutdown.cancelled() => return Err(failure),
        }
    }
}

/// How often a broken setup is checked again during the grace.
const SETUP_RECHECK: Duration = Duration::from_secs(5);

/// Serves /healthz, /readyz and /metrics on `http.listen` (none when it is empty) until the
/// returned server is dropped.
async fn start_http(c: &wiring::Components, worker: &Worker) -> anyhow::Result<Option<HttpServer>> {
    let listen = c.settings.http.listen.trim();
    if listen.is_empty() {
        return Ok(None);
    }
    let health = Arc::new(Health::new(
        worker.stats(),
        c.observer.clone(),
        Duration::from_secs(c.settings.http.stale_after_seconds),
        wiring::WORKER_VERSION,
    ));
    let server = HttpServer::bind(listen, health)
        .await
        .with_context(|| format!("http.listen: cannot listen on {listen}"))?;
    Ok(Some(server))
}

/// Cancels `token` on SIGTERM or SIGINT.
async fn stop_on_signal(token: CancellationToken) {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT: stopping"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    token.cancel();
}

pub async fn bootstrap(settings: Settings) -> anyhow::Result<ExitCode> {
    let sdk = wiring::sdk_config().await;
    let sources = ConfigSources::from_env(None, None);
    let report = crate::bootstrap::bootstrap(&settings, &sdk, &sources.state_file).await?;
    println!("{report}");

    Ok(ExitCode::SUCCESS)
}
