//! Operating the worker: metrics, health, circuit breakers (docs/observability.md).
//!
//! The instrumented adapters (`crate::adapters::instrumented`) report every downstream call to
//! an [`Observer`], which counts it ([`metrics::DownstreamMetrics`]) and feeds the service's
//! circuit breaker ([`circuit::CircuitBreakers`]). [`health::Health`] combines that with the
//! worker's [`WorkerStats`](crate::worker::WorkerStats) for `/healthz`, `/readyz` and
//! `/metrics`, which [`http`] serves.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Settings, Transport};
use crate::error::Service;

pub mod circuit;
pub mod health;
pub mod http;
pub mod metrics;

pub use circuit::{CircuitBreakers, CircuitPolicy, CircuitState};
pub use health::Health;
pub use metrics::{CallResult, DownstreamMetrics};

/// Where the instrumented adapters report: call metrics plus the circuit breakers.
#[derive(Debug)]
pub struct Observer {
    downstream: DownstreamMetrics,
    circuits: Arc<CircuitBreakers>,
}

impl Observer {
    /// An observer with closed breakers for `services`.
    pub fn new(policy: CircuitPolicy, services: &[Service]) -> Self {
        Self {
            downstream: DownstreamMetrics::default(),
            circuits: Arc::new(CircuitBreakers::new(policy, services)),
        }
    }

    /// Breakers from `[circuit]` for the services this configuration calls: Cognito, DynamoDB
    /// and the mail transport.
    pub fn from_settings(settings: &Settings) -> Self {
        let mail = match settings.email.transport {
            Transport::Ses => Service::Ses,
            Transport::Smtp => Service::Smtp,
        };
        Self::new(
            CircuitPolicy::from_settings(&settings.circuit),
            &[Service::Cognito, Service::DynamoDb, mail],
        )
    }

    /// Records one call. `feeds_circuit` is false for answers that did not come from the
    /// service (a cached pool profile): they say nothing about its health. Transient failures
    /// always feed it.
    pub fn record_call(
        &self,
        service: Service,
        operation: &'static str,
        result: CallResult,
        elapsed: Duration,
        feeds_circuit: bool,
    ) {
        self.downstream
            .record_call(service, operation, result, elapsed);
        if result.is_transient_failure() {
            self.circuits.record_failure(service);
        } else if feeds_circuit {
            self.circuits.record_success(service);
        }
    }

    /// Counts an invite status change written to the store.
    pub fn record_transition(&self, to: &'static str) {
        self.downstream.record_transition(to);
    }

    pub fn downstream(&self) -> &DownstreamMetrics {
        &self.downstream
    }

    pub fn circuits(&self) -> &Arc<CircuitBreakers> {
        &self.circuits
    }
}

impl Default for Observer {
    /// Default breakers for Cognito, DynamoDB and SES.
    fn default() -> Self {
        Self::new(
            CircuitPolicy::default(),
            &[Service::Cognito, Service::DynamoDb, Service::Ses],
        )
    }
}
