//! `invite-worker run` and `invite-worker bootstrap`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{ConfigSources, Settings};
use crate::observe::http::HttpServer;
use crate::observe::Health;
use crate::wiring;
use crate::worker::runner::{Worker, WorkerOptions};

pub async fn run(settings: Settings, until_idle: bool, json: bool) -> anyhow::Result<ExitCode> {
    wiring::require(&settings, true)?;
    let sdk = wiring::sdk_config().await;
    let mut options = WorkerOptions::from_settings(&settings, until_idle);
    let c = wiring::build(settings, sdk).await?;
    // While a downstream's circuit is open the worker stops receiving.
    options.pause_when = Some(c.observer.circuits().pause_hook());
    let worker = Worker::new(
        c.queue.clone(),
        c.service.clone() as Arc<dyn crate::worker::MessageHandler>,
        options,
    );
    let _http = start_http(&c, &worker).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
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
    let summary = worker.run(shutdown).await;
    relay_stop.cancel();
    if let Some(relay) = relay {
        let _ = relay.await;
    }
    info!(?summary, "worker stopped");
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

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
