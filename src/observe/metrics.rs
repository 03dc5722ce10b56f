//! The `/metrics` page: OpenMetrics text, encoded by `prometheus-client` from the worker's
//! [`WorkerStats`], the downstream call counters the instrumented adapters keep
//! ([`DownstreamMetrics`]) and the circuit breakers. The counters stay plain atomics (the run
//! summary and the tests read them too); each scrape copies them into a [`Page`], which the
//! crate's encoder writes (names, `# HELP`/`# TYPE`, label escaping, cumulative buckets,
//! `# EOF`). Every label value is a code from this crate (service, operation, outcome, reason,
//! status): never an address, a name or a secret.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::circuit::CircuitBreakers;
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::worker::stats::{LatencyHistogram, StatsSnapshot, WorkerStats};

/// The `Content-Type` of the exposition (OpenMetrics 1.0 text; Prometheus reads it natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Every metric's name starts with this.
pub const PREFIX: &str = "invite_worker_";
/// Label values longer than this are cut (they are codes; this only guards against surprises).
const MAX_LABEL_LEN: usize = 100;

/// How one downstream call ended, as the `result` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallResult {
    Ok,
    /// A conditional write lost a race (DynamoDB answered).
    Conflict,
    /// The service answered with data this worker cannot read (a corrupt record).
    Corrupt,
    /// A permanent refusal (`ErrorKind::Rejected`).
    Rejected,
    Throttled,
    Unavailable,
    Timeout,
}

impl CallResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CallResult::Ok => "ok",
            CallResult::Conflict => "conflict",
            CallResult::Corrupt => "corrupt",
            CallResult::Rejected => "rejected",
            CallResult::Throttled => "throttled",
            CallResult::Unavailable => "unavailable",
            CallResult::Timeout => "timeout",
        }
    }

    pub fn of_error(error: &DownstreamError) -> Self {
        match error.kind {
            ErrorKind::Throttled => CallResult::Throttled,
            ErrorKind::Unavailable => CallResult::Unavailable,
            ErrorKind::Timeout => CallResult::Timeout,
            ErrorKind::Rejected(_) => CallResult::Rejected,
        }
    }

    /// Throttled, unavailable or timed out: what opens a circuit. Everything else means the
    /// service answered.
    pub fn is_transient_failure(self) -> bool {
        matches!(
            self,
            CallResult::Throttled | CallResult::Unavailable | CallResult::Timeout
        )
    }
}

type CallKey = (Service, &'static str);

/// Calls to downstream services (counted and timed by the instrumented adapters) and the invite
/// status changes written to the store.
#[derive(Debug, Default)]
pub struct DownstreamMetrics {
    calls: Mutex<BTreeMap<(Service, &'static str, CallResult), u64>>,
    durations: Mutex<BTreeMap<CallKey, LatencyHistogram>>,
    transitions: Mutex<BTreeMap<&'static str, u64>>,
    feedback: Mutex<BTreeMap<FeedbackKey, u64>>,
}

/// `mail_feedback_total`'s labels: event type, bounce type, sub-type (codes; see
/// `crate::feedback::handler::metric_labels`).
type FeedbackKey = (&'static str, &'static str, &'static str);

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DownstreamMetrics {
    /// Counts and times one call of `operation` on `service`.
    pub fn record_call(
        &self,
        service: Service,
        operation: &'static str,
        result: CallResult,
        elapsed: Duration,
    ) {
        *locked(&self.calls)
            .entry((service, operation, result))
            .or_default() += 1;
        locked(&self.durations)
            .entry((service, operation))
            .or_default()
            .observe(elapsed);
    }

    /// Counts an invite status change written to the store.
    pub fn record_transition(&self, to: &'static str) {
        *locked(&self.transitions).entry(to).or_default() += 1;
    }

    /// Counts one SES sending event applied to an invite.
    pub fn record_feedback(
        &self,
        event_type: &'static str,
        bounce_type: &'static str,
        sub_type: &'static str,
    ) {
        *locked(&self.feedback)
            .entry((event_type, bounce_type, sub_type))
            .or_default() += 1;
    }

    /// Mail feedback so far per (event type, bounce type, sub-type).
    pub fn feedback(&self) -> BTreeMap<FeedbackKey, u64> {
        locked(&self.feedback).clone()
    }

    /// Calls so far per (service, operation, result).
    pub fn calls(&self) -> BTreeMap<(Service, &'static str, CallResult), u64> {
        locked(&self.calls).clone()
    }

    /// Calls of one service with one result, over all operations.
    pub fn calls_of(&self, service: Service, result: CallResult) -> u64 {
        locked(&self.calls)
            .iter()
            .filter(|((s, _, r), _)| *s == service && *r == result)
            .map(|(_, n)| n)
            .sum()
    }

    /// Status changes so far per new status.
    pub fn transitions(&self) -> BTreeMap<&'static str, u64> {
        locked(&self.transitions).clone()
    }
}

/// Everything `/metrics` shows.
pub struct MetricsSources<'a> {
    pub stats: &'a WorkerStats,
    pub downstream: &'a DownstreamMetrics,
    pub circuits: &'a CircuitBreakers,
    pub version: &'a str,
    /// Seconds since the poll loop last made progress (or since start, before the first time).
    pub seconds_since_progress: f64,
}

/// Renders the whole exposition, ending with `# EOF`.
pub fn render(src: &MetricsSources<'_>) -> String {
    let mut registry = Registry::with_prefix(PREFIX.trim_end_matches('_'));
    registry.register_collector(Box::new(Page::capture(src)));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        // Only a bug in the encoding can get here; serve what was written rather than nothing.
        tracing::error!(error = %e, "encoding the metrics page failed");
    }
    out
}

/// The names of every metric family the page declares (without the prefix, with the suffix a
/// sample carries: `_total` for counters, `_info` for the build info). The dashboard test
/// checks its queries against this list.
pub const FAMILIES: &[&str] = &[
    "build_info",
    "messages_received_total",
    "empty_receives_total",
    "receive_errors_total",
    "in_flight",
    "messages_processed_total",
    "handler_duration_seconds",
    "retries_total",
    "dead_letters_total",
    "dead_letter_failures_total",
    "messages_released_total",
    "visibility_extensions_total",
    "delete_failures_total",
    "handler_panics_total",
    "handler_timeouts_total",
    "seconds_since_progress",
    "downstream_calls_total",
    "downstream_call_duration_seconds",
    "downstream_throttles_total",
    "invite_transitions_total",
    "mail_feedback_total",
    "circuit_open",
];

/// A histogram's values at one moment: non-cumulative `(upper bound in seconds, count)` buckets
/// ending with `+Inf`, the sum in seconds and the count.
#[derive(Clone, Debug, Default, PartialEq)]
struct HistogramValues {
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

impl HistogramValues {
    fn of(h: &LatencyHistogram) -> Self {
        let buckets: Vec<(f64, u64)> = h
            .buckets()
            .into_iter()
            .map(|(bound_ms, n)| (bound_ms.map_or(f64::INFINITY, |ms| ms as f64 / 1000.0), n))
            .collect();
        Self {
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
            sum: h.sum_ms() as f64 / 1000.0,
        }
    }
}

/// A copy of every value on the page, taken once per scrape.
#[derive(Debug)]
struct Page {
    version: String,
    stats: StatsSnapshot,
    ack_outcomes: BTreeMap<&'static str, u64>,
    retry_causes: BTreeMap<&'static str, u64>,
    dead_letter_reasons: BTreeMap<String, u64>,
    handler_duration: HistogramValues,
    seconds_since_progress: f64,
    calls: BTreeMap<(Service, &'static str, CallResult), u64>,
    durations: Vec<(CallKey, HistogramValues)>,
    transitions: BTreeMap<&'static str, u64>,
    feedback: BTreeMap<FeedbackKey, u64>,
    circuits: Vec<(Service, bool)>,
}

impl Page {
    fn capture(src: &MetricsSources<'_>) -> Self {
        let durations = locked(&src.downstream.durations)
            .iter()
            .map(|(key, h)| (*key, HistogramValues::of(h)))
            .collect();
        Self {
            version: src.version.to_string(),
            stats: src.stats.snapshot(),
            ack_outcomes: src.stats.ack_outcomes(),
            retry_causes: src.stats.retry_causes(),
            dead_letter_reasons: src.stats.dead_letter_reasons(),
            handler_duration: HistogramValues::of(&src.stats.latency),
            seconds_since_progress: src.seconds_since_progress,
            calls: src.downstream.calls(),
            durations,
            transitions: src.downstream.transitions(),
            feedback: src.downstream.feedback(),
            circuits: src
                .circuits
                .states()
                .into_iter()
                .map(|(service, state)| (service, state.is_tripped()))
                .collect(),
        }
    }

    /// Throttled calls per service, 0 for every service with a breaker.
    fn throttles(&self) -> BTreeMap<Service, u64> {
        let mut throttles: BTreeMap<Service, u64> = self
            .circuits
            .iter()
            .map(|(service, _)| (*service, 0))
            .collect();
        for ((service, _, result), n) in &self.calls {
            if *result == CallResult::Throttled {
                *throttles.entry(*service).or_default() += n;
            }
        }
        throttles
    }
}

impl prometheus_client::collector::Collector for Page {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let s = &self.stats;
        e.encode_descriptor(
            "build",
            "Always 1; the version label says which build is running.",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("version", self.version.as_str())])?;

        counter(
            &mut e,
            "messages_received",
            "Messages received from the inbound queue.",
            s.received,
        )?;
        counter(
            &mut e,
            "empty_receives",
            "Receives that returned no message.",
            s.empty_receives,
        )?;
        counter(
            &mut e,
            "receive_errors",
            "Receives that failed (the worker backs off and tries again).",
            s.receive_errors,
        )?;
        e.encode_descriptor(
            "in_flight",
            "Messages being handled right now.",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&s.in_flight)?;

        let processed = self
            .ack_outcomes
            .iter()
            .map(|(outcome, n)| (*outcome, *n))
            .chain([("retry", s.retried), ("dead_letter", s.dead_lettered)]);
        labelled_counter(
            &mut e,
            "messages_processed",
            "Handler answers the worker carried out, one per answer: an ack outcome code, retry or dead_letter.",
            processed.map(|(outcome, n)| ([("outcome", outcome)], n)),
        )?;

        encode_histogram(
            &mut e.encode_descriptor(
                "handler_duration_seconds",
                "Time from a handler's start to its answer.",
                None,
                MetricType::Histogram,
            )?,
            &self.handler_duration,
        )?;

        labelled_counter(
            &mut e,
            "retries",
            "Messages left on the queue with a backoff delay, by the downstream service whose failure caused it (none: busy invite, lost write race, handler timeout or panic).",
            self.retry_causes.iter().map(|(cause, n)| ([("downstream", *cause)], *n)),
        )?;
        labelled_counter(
            &mut e,
            "dead_letters",
            "Messages sent to the dead-letter queue, by reason code.",
            self.dead_letter_reasons
                .iter()
                .map(|(reason, n)| ([("reason", cut(reason))], *n)),
        )?;
        counter(
            &mut e,
            "dead_letter_failures",
            "Dead-letter sends that failed (the message stays on the queue and comes back).",
            s.dead_letter_failures,
        )?;
        counter(
            &mut e,
            "messages_released",
            "Messages handed back unhandled: FIFO followers of a failure, work abandoned at shutdown.",
            s.released,
        )?;
        counter(
            &mut e,
            "visibility_extensions",
            "Heartbeats that extended a message's visibility while it was handled.",
            s.visibility_extensions,
        )?;
        counter(
            &mut e,
            "delete_failures",
            "Handled messages whose delete failed (they will be delivered again).",
            s.delete_failures,
        )?;
        counter(
            &mut e,
            "handler_panics",
            "Handlers that panicked (each message is retried).",
            s.handler_panics,
        )?;
        counter(
            &mut e,
            "handler_timeouts",
            "Handlers that ran past worker.handler_timeout_seconds (each message is retried).",
            s.handler_timeouts,
        )?;
        e.encode_descriptor(
            "seconds_since_progress",
            "Seconds since the poll loop last made progress (a receive answered, a message settled, a deliberate pause).",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&self.seconds_since_progress)?;

        labelled_counter(
            &mut e,
            "downstream_calls",
            "Calls to Cognito, SES/SMTP and DynamoDB by operation and result.",
            self.calls.iter().map(|((service, operation, result), n)| {
                (
                    [
                        ("service", service.as_str()),
                        ("operation", *operation),
                        ("result", result.as_str()),
                    ],
                    *n,
                )
            }),
        )?;
        histogram(
            &mut e,
            "downstream_call_duration_seconds",
            "Duration of calls to Cognito, SES/SMTP and DynamoDB (after any rate-limit wait).",
            self.durations.iter().map(|((service, operation), h)| {
                (
                    [("service", service.as_str()), ("operation", *operation)],
                    h,
                )
            }),
        )?;
        labelled_counter(
            &mut e,
            "downstream_throttles",
            "Calls a downstream service refused because of throttling or a quota.",
            self.throttles()
                .into_iter()
                .map(|(service, n)| ([("service", service.as_str())], n)),
        )?;
        labelled_counter(
            &mut e,
            "invite_transitions",
            "Invite status changes written to the store, by new status.",
            self.transitions.iter().map(|(to, n)| ([("to", *to)], *n)),
        )?;
        labelled_counter(
            &mut e,
            "mail_feedback",
            "SES sending events about invitation emails, applied to their invites, by event type, bounce type and sub-type (a complaint's feedback type).",
            self.feedback.iter().map(|((event, bounce, sub), n)| {
                (
                    [
                        ("event_type", *event),
                        ("bounce_type", *bounce),
                        ("sub_type", *sub),
                    ],
                    *n,
                )
            }),
        )?;

        let mut open = e.encode_descriptor(
            "circuit_open",
            "1 while a service's circuit breaker is open or half-open (receiving paused), else 0.",
            None,
            MetricType::Gauge,
        )?;
        for (service, tripped) in &self.circuits {
            open.encode_family(&[("service", service.as_str())])?
                .encode_gauge(&u64::from(*tripped))?;
        }
        Ok(())
    }
}

/// A counter family with one unlabelled sample (`name` without `_total`: the encoder adds it).
fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// A counter family with one sample per label set.
fn labelled_counter<L: EncodeLabelSet>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        family
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
    }
    Ok(())
}

/// A histogram family with one series per label set.
fn histogram<'h, L: EncodeLabelSet>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, &'h HistogramValues)>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in series {
        encode_histogram(&mut family.encode_family(&labels)?, h)?;
    }
    Ok(())
}

fn encode_histogram(m: &mut MetricEncoder<'_>, h: &HistogramValues) -> fmt::Result {
    m.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)
}

/// A label value cut to [`MAX_LABEL_LEN`] characters (they are codes; this only guards against
/// surprises such as a long rejection code from a service).
fn cut(value: &str) -> &str {
    match value.char_indices().nth(MAX_LABEL_LEN) {
        Some((end, _)) => &value[..end],
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::circuit::CircuitPolicy;

    fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        let full = format!("{PREFIX}{name}");
        text.lines()
            .filter(|l| {
                l.strip_prefix(&full)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .collect()
    }

    fn page(stats: &WorkerStats, downstream: &DownstreamMetrics) -> String {
        let circuits = CircuitBreakers::new(
            CircuitPolicy::default(),
            &[Service::Cognito, Service::Ses, Service::DynamoDb],
        );
        render(&MetricsSources {
            stats,
            downstream,
            circuits: &circuits,
            version: "1.2.3",
            seconds_since_progress: 1.5,
        })
    }

    #[test]
    fn label_values_are_escaped_and_cut() {
        let stats = WorkerStats::default();
        stats.record_dead_letter("bad \"quote\" \\ and\nnewline");
        stats.record_dead_letter(&"x".repeat(500));
        let text = page(&stats, &DownstreamMetrics::default());
        assert!(
            text.contains(
                "invite_worker_dead_letters_total{reason=\"bad \\\"quote\\\" \\\\ and\\nnewline\"} 1\n"
            ),
            "{text}"
        );
        let long = format!(
            "invite_worker_dead_letters_total{{reason=\"{}\"}} 1\n",
            "x".repeat(MAX_LABEL_LEN)
        );
        assert!(text.contains(&long), "{text}");
    }

    #[test]
    fn histogram_buckets_are_cumulative_in_seconds_and_end_with_inf() {
        let stats = WorkerStats::default();
        for ms in [3, 7, 7, 400, 90_000] {
            stats.latency.observe(Duration::from_millis(ms));
        }
        let text = page(&stats, &DownstreamMetrics::default());
        let buckets = lines_of(&text, "handler_duration_seconds_bucket");
        assert_eq!(buckets.len(), 14);
        assert_eq!(
            buckets[0],
            "invite_worker_handler_duration_seconds_bucket{le=\"0.005\"} 1"
        );
        assert_eq!(
            buckets[1],
            "invite_worker_handler_duration_seconds_bucket{le=\"0.01\"} 3"
        );
        assert!(buckets.contains(&"invite_worker_handler_duration_seconds_bucket{le=\"0.5\"} 4"));
        assert!(buckets.contains(&"invite_worker_handler_duration_seconds_bucket{le=\"1.0\"} 4"));
        assert_eq!(
            buckets[13],
            "invite_worker_handler_duration_seconds_bucket{le=\"+Inf\"} 5"
        );
        let counts: Vec<u64> = buckets
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        assert!(text.contains("invite_worker_handler_duration_seconds_sum 90.417\n"));
        assert!(text.contains("invite_worker_handler_duration_seconds_count 5\n"));
    }

    #[test]
    fn call_results_classify_downstream_errors() {
        let err = |kind| DownstreamError::new(Service::Cognito, "AdminCreateUser", kind, "m");
        assert_eq!(
            CallResult::of_error(&err(ErrorKind::Throttled)),
            CallResult::Throttled
        );
        assert_eq!(
            CallResult::of_error(&err(ErrorKind::Unavailable)),
            CallResult::Unavailable
        );
        assert_eq!(
            CallResult::of_error(&err(ErrorKind::Timeout)),
            CallResult::Timeout
        );
        let rejected = CallResult::of_error(&err(ErrorKind::Rejected("invalid_parameter".into())));
        assert_eq!(rejected, CallResult::Rejected);
        assert!(!rejected.is_transient_failure());
        assert!(CallResult::Timeout.is_transient_failure());
        assert!(!CallResult::Conflict.is_transient_failure());
    }

    #[test]
    fn the_page_has_every_family_once_with_help_and_type() {
        let stats = WorkerStats::default();
        stats.record_ack("sent");
        stats.record_ack("sent");
        stats.record_ack("redelivered");
        stats.record_retry(Some(Service::Cognito));
        stats.record_dead_letter("invalid_event");
        WorkerStats::add(&stats.received, 4);
        stats.latency.observe(Duration::from_millis(20));
        let downstream = DownstreamMetrics::default();
        downstream.record_call(
            Service::Cognito,
            "create_user",
            CallResult::Ok,
            Duration::from_millis(30),
        );
        downstream.record_call(
            Service::Ses,
            "send",
            CallResult::Throttled,
            Duration::from_millis(5),
        );
        downstream.record_transition("sent");
        downstream.record_feedback("Bounce", "Permanent", "General");
        let text = page(&stats, &downstream);
        for expected in [
            "invite_worker_build_info{version=\"1.2.3\"} 1",
            "invite_worker_messages_received_total 4",
            "invite_worker_in_flight 0",
            "invite_worker_messages_processed_total{outcome=\"sent\"} 2",
            "invite_worker_messages_processed_total{outcome=\"redelivered\"} 1",
            "invite_worker_messages_processed_total{outcome=\"retry\"} 1",
            "invite_worker_messages_processed_total{outcome=\"dead_letter\"} 1",
            "invite_worker_retries_total{downstream=\"cognito\"} 1",
            "invite_worker_dead_letters_total{reason=\"invalid_event\"} 1",
            "invite_worker_handler_duration_seconds_count 1",
            "invite_worker_handler_duration_seconds_bucket{le=\"0.025\"} 1",
            "invite_worker_downstream_calls_total{service=\"cognito\",operation=\"create_user\",result=\"ok\"} 1",
            "invite_worker_downstream_calls_total{service=\"ses\",operation=\"send\",result=\"throttled\"} 1",
            "invite_worker_downstream_call_duration_seconds_count{service=\"cognito\",operation=\"create_user\"} 1",
            "invite_worker_downstream_throttles_total{service=\"ses\"} 1",
            "invite_worker_downstream_throttles_total{service=\"dynamodb\"} 0",
            "invite_worker_invite_transitions_total{to=\"sent\"} 1",
            "invite_worker_mail_feedback_total{event_type=\"Bounce\",bounce_type=\"Permanent\",sub_type=\"General\"} 1",
            "invite_worker_circuit_open{service=\"cognito\"} 0",
            "invite_worker_seconds_since_progress 1.5",
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "missing {expected:?} in\n{text}"
            );
        }
        // Each family is declared exactly once, before its samples, and is one of FAMILIES.
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(!declared.contains(&name), "{name} declared twice");
                declared.push(name);
                let sample = match kind {
                    "counter" => format!("{name}_total"),
                    "info" => format!("{name}_info"),
                    _ => name.to_string(),
                };
                let bare = sample.strip_prefix(PREFIX).unwrap();
                assert!(FAMILIES.contains(&bare), "{bare} missing from FAMILIES");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(
                    declared.iter().any(|family| name.starts_with(family)),
                    "{line} before its TYPE"
                );
            }
        }
        assert_eq!(declared.len(), FAMILIES.len());
        assert!(text.ends_with("# EOF\n"));
    }
}
