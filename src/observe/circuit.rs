//! Circuit breakers, one per downstream service. The instrumented adapters report every call's
//! result; after `failure_threshold` consecutive transient failures (throttling, 5xx, timeouts)
//! a service's circuit opens and the worker stops receiving, instead of receiving messages only
//! to fail and release them. Messages already in flight retry through their visibility timeout.
//!
//! ```text
//!   closed ──N consecutive transient failures──▶ open ──cool-down over──▶ half-open
//!     ▲                                           ▲                          │
//!     └──────── any answer from the service ──────┼──────────────────────────┤
//!                                                 └── a transient failure ───┘ (cool-down × 2)
//! ```
//!
//! Half-open lets one batch through (one receive, then another only if no verdict came within a
//! cool-down); the first answer from the service closes the circuit, a failure re-opens it with
//! twice the cool-down, up to `max_open_for`. A permanent rejection counts as an answer: the
//! service is up, the request was bad.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::CircuitSettings;
use crate::error::Service;
use crate::worker::PauseHook;

/// The longest single pause the hook asks for, so a circuit that closes early (an in-flight
/// call succeeded) lets the worker go again within about this long.
const MAX_PAUSE_STEP: Duration = Duration::from_secs(1);

/// When circuits open and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitPolicy {
    /// Consecutive transient failures that open a circuit; 0 never opens one.
    pub failure_threshold: u32,
    /// The first cool-down.
    pub open_for: Duration,
    /// The longest cool-down (it doubles after each failed trial).
    pub max_open_for: Duration,
}

impl Default for CircuitPolicy {
    fn default() -> Self {
        Self::from_settings(&CircuitSettings::default())
    }
}

impl CircuitPolicy {
    pub fn from_settings(settings: &CircuitSettings) -> Self {
        let open_for = Duration::from_secs(settings.open_seconds.max(1));
        Self {
            failure_threshold: settings.failure_threshold,
            open_for,
            max_open_for: Duration::from_secs(settings.max_open_seconds).max(open_for),
        }
    }
}

/// A circuit's state as reported by /readyz and the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    /// Failing; receiving stays paused for `remaining`.
    Open {
        remaining: Duration,
    },
    /// Cool-down over: a trial batch may go (or went) through; waiting for a verdict.
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open { .. } => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    /// Anything but closed: open, or half-open and not yet proven healthy.
    pub fn is_tripped(self) -> bool {
        self != CircuitState::Closed
    }
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    /// `trial_until`: a trial receive was let through and the next one waits until then.
    HalfOpen {
        trial_until: Option<Instant>,
    },
}

#[derive(Clone, Copy, Debug)]
struct Circuit {
    phase: Phase,
    consecutive_failures: u32,
    /// The cool-down the next opening uses.
    open_for: Duration,
}

/// The breakers of every downstream service, shared by the instrumented adapters (which feed
/// them), the worker's pause hook and the HTTP endpoints.
#[derive(Debug)]
pub struct CircuitBreakers {
    policy: CircuitPolicy,
    circuits: Mutex<BTreeMap<Service, Circuit>>,
}

impl CircuitBreakers {
    /// Breakers for `services`, all closed (others are added when first reported).
    pub fn new(policy: CircuitPolicy, services: &[Service]) -> Self {
        let breakers = Self {
            policy,
            circuits: Mutex::new(BTreeMap::new()),
        };
        {
            let mut circuits = breakers.lock();
            for service in services {
                circuits.insert(*service, breakers.closed());
            }
        }
        breakers
    }

    pub fn policy(&self) -> CircuitPolicy {
        self.policy
    }

    fn closed(&self) -> Circuit {
        Circuit {
            phase: Phase::Closed,
            consecutive_failures: 0,
            open_for: self.policy.open_for,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Service, Circuit>> {
        self.circuits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The service answered (a success or a permanent rejection): its circuit closes.
    pub fn record_success(&self, service: Service) {
        let mut circuits = self.lock();
        let closed = self.closed();
        let circuit = circuits.entry(service).or_insert(closed);
        if !matches!(circuit.phase, Phase::Closed) {
            tracing::info!(
                service = service.as_str(),
                "circuit closed: the service answered"
            );
        }
        *circuit = closed;
    }

    /// A transient failure (throttled, unavailable, timed out).
    pub fn record_failure(&self, service: Service) {
        if self.policy.failure_threshold == 0 {
            return;
        }
        let now = Instant::now();
        let mut circuits = self.lock();
        let closed = self.closed();
        let circuit = circuits.entry(service).or_insert(closed);
        circuit.consecutive_failures = circuit.consecutive_failures.saturating_add(1);
        match circuit.phase {
            Phase::Closed if circuit.consecutive_failures >= self.policy.failure_threshold => {
                circuit.phase = Phase::Open {
                    until: now + circuit.open_for,
                };
                tracing::warn!(
                    service = service.as_str(),
                    consecutive_failures = circuit.consecutive_failures,
                    open_s = circuit.open_for.as_secs(),
                    "circuit opened: receiving paused"
                );
            }
            Phase::Closed => {}
            // Calls that were in flight when it opened: the cool-down stands.
            Phase::Open { .. } => {}
            Phase::HalfOpen { .. } => {
                circuit.open_for = (circuit.open_for * 2).min(self.policy.max_open_for);
                circuit.phase = Phase::Open {
                    until: now + circuit.open_for,
                };
                tracing::warn!(
                    service = service.as_str(),
                    open_s = circuit.open_for.as_secs(),
                    "circuit re-opened: the trial failed"
                );
            }
        }
    }

    /// Feeds one call's result: `transient_failure` or an answer.
    pub fn record(&self, service: Service, transient_failure: bool) {
        if transient_failure {
            self.record_failure(service);
        } else {
            self.record_success(service);
        }
    }

    /// One service's state (an open circuit whose cool-down is over reads as half-open).
    pub fn state(&self, service: Service) -> CircuitState {
        let now = Instant::now();
        self.lock()
            .get(&service)
            .map_or(CircuitState::Closed, |c| state_at(c, now))
    }

    /// Every known service's state, in a stable order.
    pub fn states(&self) -> Vec<(Service, CircuitState)> {
        let now = Instant::now();
        self.lock()
            .iter()
            .map(|(s, c)| (*s, state_at(c, now)))
            .collect()
    }

    /// The services whose circuit is not closed.
    pub fn tripped(&self) -> Vec<(Service, CircuitState)> {
        self.states()
            .into_iter()
            .filter(|(_, state)| state.is_tripped())
            .collect()
    }

    /// What the worker asks before each receive: `Some(pause)` while a circuit is open (or
    /// half-open with its trial batch already out), `None` to receive. Returning `None` for a
    /// half-open circuit counts as letting its trial batch through.
    pub fn pause(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut circuits = self.lock();
        for circuit in circuits.values_mut() {
            if let Phase::Open { until } = circuit.phase {
                if now >= until {
                    circuit.phase = Phase::HalfOpen { trial_until: None };
                }
            }
        }
        let open = circuits
            .values()
            .filter_map(|c| match c.phase {
                Phase::Open { until } => Some(until - now),
                _ => None,
            })
            .max();
        if let Some(remaining) = open {
            return Some(remaining.min(MAX_PAUSE_STEP));
        }
        let waiting = circuits
            .values()
            .filter_map(|c| match c.phase {
                Phase::HalfOpen {
                    trial_until: Some(t),
                } if now < t => Some(t - now),
                _ => None,
            })
            .max();
        if let Some(remaining) = waiting {
            return Some(remaining.min(MAX_PAUSE_STEP));
        }
        for (service, circuit) in circuits.iter_mut() {
            if let Phase::HalfOpen { .. } = circuit.phase {
                circuit.phase = Phase::HalfOpen {
                    trial_until: Some(now + self.policy.open_for),
                };
                tracing::info!(
                    service = service.as_str(),
                    "circuit half-open: letting one batch through"
                );
            }
        }
        None
    }

    /// [`CircuitBreakers::pause`] as the worker's pause hook.
    pub fn pause_hook(self: &Arc<Self>) -> PauseHook {
        let breakers = self.clone();
        Arc::new(move || breakers.pause())
    }
}

fn state_at(circuit: &Circuit, now: Instant) -> CircuitState {
    match circuit.phase {
        Phase::Closed => CircuitState::Closed,
        Phase::Open { until } if now < until => CircuitState::Open {
            remaining: until - now,
        },
        Phase::Open { .. } | Phase::HalfOpen { .. } => CircuitState::HalfOpen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers() -> CircuitBreakers {
        CircuitBreakers::new(
            CircuitPolicy {
                failure_threshold: 3,
                open_for: Duration::from_secs(30),
                max_open_for: Duration::from_secs(100),
            },
            &[Service::Cognito, Service::Ses, Service::DynamoDb],
        )
    }

    fn fail(b: &CircuitBreakers, service: Service, n: usize) {
        for _ in 0..n {
            b.record_failure(service);
        }
    }

    /// Calls the hook until it lets a receive through; returns the total pause.
    async fn wait_for_receive(b: &CircuitBreakers) -> Duration {
        let start = Instant::now();
        while let Some(pause) = b.pause() {
            assert!(pause <= MAX_PAUSE_STEP && !pause.is_zero(), "{pause:?}");
            tokio::time::sleep(pause).await;
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_transient_failures_only() {
        let b = breakers();
        fail(&b, Service::Cognito, 2);
        b.record_success(Service::Cognito);
        fail(&b, Service::Cognito, 2);
        assert_eq!(b.state(Service::Cognito), CircuitState::Closed);
        assert_eq!(b.pause(), None);
        fail(&b, Service::Cognito, 1);
        assert_eq!(
            b.state(Service::Cognito),
            CircuitState::Open {
                remaining: Duration::from_secs(30)
            }
        );
        assert_eq!(b.pause(), Some(MAX_PAUSE_STEP));
        assert_eq!(b.state(Service::Ses), CircuitState::Closed);
        assert_eq!(b.tripped().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_one_batch_through_and_closes_on_success() {
        let b = breakers();
        fail(&b, Service::Cognito, 3);
        assert_eq!(wait_for_receive(&b).await, Duration::from_secs(30));
        assert_eq!(b.state(Service::Cognito), CircuitState::HalfOpen);
        // The trial batch is out: the next receive waits for a verdict.
        let pause = b.pause().expect("waiting for the trial");
        assert_eq!(pause, MAX_PAUSE_STEP);
        tokio::time::advance(Duration::from_millis(300)).await;
        b.record_success(Service::Cognito);
        assert_eq!(b.state(Service::Cognito), CircuitState::Closed);
        assert_eq!(b.pause(), None);
        // Closed again: it takes the full threshold to open it.
        fail(&b, Service::Cognito, 2);
        assert_eq!(b.pause(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_doubles_the_cool_down_up_to_the_cap() {
        let b = breakers();
        fail(&b, Service::Ses, 3);
        assert_eq!(wait_for_receive(&b).await, Duration::from_secs(30));
        b.record_failure(Service::Ses);
        assert_eq!(wait_for_receive(&b).await, Duration::from_secs(60));
        b.record_failure(Service::Ses);
        assert_eq!(wait_for_receive(&b).await, Duration::from_secs(100));
        b.record_failure(Service::Ses);
        assert_eq!(wait_for_receive(&b).await, Duration::from_secs(100));
        b.record_success(Service::Ses);
        // After closing, the cool-down starts over.
        fail(&b, Service::Ses, 3);
        assert_eq!(wait_for_receive(&b).await, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_while_open_do_not_extend_it() {
        let b = breakers();
        fail(&b, Service::DynamoDb, 3);
        tokio::time::advance(Duration::from_secs(20)).await;
        fail(&b, Service::DynamoDb, 10);
        assert_eq!(
            b.state(Service::DynamoDb),
            CircuitState::Open {
                remaining: Duration::from_secs(10)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_trial_without_verdict_gets_another_batch_after_a_cool_down() {
        let b = breakers();
        fail(&b, Service::Cognito, 3);
        wait_for_receive(&b).await;
        // The trial batch happened not to touch Cognito (or the queue was empty).
        assert_eq!(wait_for_receive(&b).await, Duration::from_secs(30));
        assert_eq!(b.state(Service::Cognito), CircuitState::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_circuit_wins_over_a_half_open_one() {
        let b = breakers();
        fail(&b, Service::Cognito, 3);
        tokio::time::advance(Duration::from_secs(20)).await;
        fail(&b, Service::Ses, 3);
        tokio::time::advance(Duration::from_secs(10)).await;
        // Cognito's cool-down is over, SES's is not: still paused, for SES's remaining 20 s.
        assert_eq!(b.state(Service::Cognito), CircuitState::HalfOpen);
        assert_eq!(wait_for_receive(&b).await, Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn threshold_zero_turns_the_breakers_off() {
        let b = CircuitBreakers::new(
            CircuitPolicy {
                failure_threshold: 0,
                ..CircuitPolicy::default()
            },
            &[Service::Cognito],
        );
        fail(&b, Service::Cognito, 100);
        assert_eq!(b.state(Service::Cognito), CircuitState::Closed);
        assert_eq!(b.pause(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_hook_reports_the_breakers_pause() {
        let b = Arc::new(breakers());
        let hook = b.pause_hook();
        assert_eq!(hook(), None);
        fail(&b, Service::Cognito, 3);
        assert!(hook().is_some());
    }
}
