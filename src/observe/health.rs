//! What `/healthz`, `/readyz` and `/metrics` answer, computed from the worker's stats and the
//! [`Observer`].
//!
//! - live (`/healthz`): the poll loop made progress within `stale_after` (a receive answered,
//!   even empty; a message settled; a deliberate pause while a circuit is open). A loop stuck
//!   on a failing receive, or wedged, goes stale.
//! - ready (`/readyz`): no circuit is open or half-open, and the last receive succeeded.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::metrics::{self, MetricsSources};
use super::Observer;
use crate::worker::WorkerStats;

/// A check's verdict and its JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub ok: bool,
    pub body: serde_json::Value,
}

/// The state the HTTP endpoints report on.
#[derive(Debug)]
pub struct Health {
    stats: Arc<WorkerStats>,
    observer: Arc<Observer>,
    stale_after: Duration,
    started: Instant,
    version: String,
}

impl Health {
    pub fn new(
        stats: Arc<WorkerStats>,
        observer: Arc<Observer>,
        stale_after: Duration,
        version: impl Into<String>,
    ) -> Self {
        Self {
            stats,
            observer,
            stale_after,
            started: Instant::now(),
            version: version.into(),
        }
    }

    /// Time since the loop's last progress, or since this was created before the first.
    pub fn since_progress(&self) -> Duration {
        self.stats.last_progress().unwrap_or(self.started).elapsed()
    }

    /// `/healthz`.
    pub fn liveness(&self) -> Verdict {
        let since = self.since_progress();
        let ok = since <= self.stale_after;
        Verdict {
            ok,
            body: json!({
                "status": if ok { "ok" } else { "stale" },
                "seconds_since_progress": round(since),
                "stale_after_seconds": self.stale_after.as_secs(),
            }),
        }
    }

    /// `/readyz`.
    pub fn readiness(&self) -> Verdict {
        let tripped = self.observer.circuits().tripped();
        let last_receive = self.stats.last_receive_ok();
        let ok = tripped.is_empty() && last_receive == Some(true);
        let circuits: Vec<serde_json::Value> = tripped
            .iter()
            .map(|(service, state)| {
                let mut c = json!({ "service": service.as_str(), "state": state.as_str() });
                if let super::CircuitState::Open { remaining } = state {
                    c["remaining_seconds"] = json!(round(*remaining));
                }
                c
            })
            .collect();
        Verdict {
            ok,
            body: json!({
                "status": if ok { "ready" } else { "not_ready" },
                "open_circuits": circuits,
                "last_receive": match last_receive {
                    Some(true) => "ok",
                    Some(false) => "failed",
                    None => "none_yet",
                },
            }),
        }
    }

    /// `/metrics`, in the Prometheus text format.
    pub fn metrics(&self) -> String {
        metrics::render(&MetricsSources {
            stats: &self.stats,
            downstream: self.observer.downstream(),
            circuits: self.observer.circuits(),
            version: &self.version,
            seconds_since_progress: round(self.since_progress()),
        })
    }

    pub fn observer(&self) -> &Arc<Observer> {
        &self.observer
    }

    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }
}

/// Seconds with millisecond precision.
fn round(d: Duration) -> f64 {
    (d.as_millis() as f64) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Service;

    fn health() -> Health {
        Health::new(
            Arc::new(WorkerStats::default()),
            Arc::new(Observer::default()),
            Duration::from_secs(60),
            "0.0.0-test",
        )
    }

    #[tokio::test(start_paused = true)]
    async fn live_until_the_loop_stalls() {
        let h = health();
        assert!(h.liveness().ok, "a fresh worker gets stale_after to start");
        tokio::time::advance(Duration::from_secs(61)).await;
        let v = h.liveness();
        assert!(!v.ok);
        assert_eq!(v.body["status"], "stale");
        h.stats().record_receive(true);
        assert!(h.liveness().ok);
        tokio::time::advance(Duration::from_secs(59)).await;
        h.stats().record_receive(false);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!h.liveness().ok, "failed receives are no progress");
    }

    #[tokio::test(start_paused = true)]
    async fn ready_when_receiving_works_and_no_circuit_is_open() {
        let h = health();
        let v = h.readiness();
        assert!(!v.ok);
        assert_eq!(v.body["last_receive"], "none_yet");
        h.stats().record_receive(true);
        assert!(h.readiness().ok);
        for _ in 0..5 {
            h.observer().circuits().record_failure(Service::Cognito);
        }
        let v = h.readiness();
        assert!(!v.ok);
        assert_eq!(v.body["open_circuits"][0]["service"], "cognito");
        assert_eq!(v.body["open_circuits"][0]["state"], "open");
        assert_eq!(v.body["open_circuits"][0]["remaining_seconds"], 30.0);
        h.observer().circuits().record_success(Service::Cognito);
        assert!(h.readiness().ok);
        h.stats().record_receive(false);
        assert_eq!(h.readiness().body["last_receive"], "failed");
    }
}
