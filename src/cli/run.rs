//! `invite-worker run` and `invite-worker bootstrap`.

use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{ConfigSources, Settings};
use crate::wiring;
use crate::worker::runner::{Worker, WorkerOptions};

pub async fn run(settings: Settings, until_idle: bool) -> anyhow::Result<ExitCode> {
    wiring::require(&settings, true)?;
    let sdk = wiring::sdk_config().await;
    let options = WorkerOptions::from_settings(&settings, until_idle);
    let c = wiring::build(settings, sdk).await?;
    let worker = Worker::new(
        c.queue.clone(),
        c.service.clone() as Arc<dyn crate::worker::MessageHandler>,
        options,
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    info!(queue = %c.settings.queue.url, fifo = c.settings.queue_is_fifo(), "worker starting");
    let summary = worker.run(shutdown).await;
    info!(?summary, "worker stopped");
    eprintln!("{summary:?}");
    Ok(ExitCode::SUCCESS)
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
    let sources = ConfigSources::from_env(None);
    let report = crate::bootstrap::bootstrap(&settings, &sdk, &sources.state_file).await?;
    println!("{report}");

    Ok(ExitCode::SUCCESS)
}
