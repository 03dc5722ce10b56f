//! The `/metrics` page: Prometheus text exposition format 0.0.4, written by hand from the
//! worker's [`WorkerStats`], the downstream call counters the instrumented adapters keep
//! ([`DownstreamMetrics`]) and the circuit breakers. Every label value is a code from this crate
//! (service, operation, outcome, reason, status): never an address, a name or a secret.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use super::circuit::CircuitBreakers;
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::worker::stats::{LatencyHistogram, WorkerStats};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
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
}

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

/// Renders the whole exposition.
pub fn render(src: &MetricsSources<'_>) -> String {
    let mut out = Exposition::default();
    let s = src.stats.snapshot();

    out.family(
        "build_info",
        "gauge",
        "Always 1; the version label says which build is running.",
    );
    out.sample("build_info", &[("version", src.version)], 1);

    out.counter(
        "messages_received_total",
        "Messages received from the inbound queue.",
        s.received,
    );
    out.counter(
        "empty_receives_total",
        "Receives that returned no message.",
        s.empty_receives,
    );
    out.counter(
        "receive_errors_total",
        "Receives that failed (the worker backs off and tries again).",
        s.receive_errors,
    );
    out.gauge_value(
        "in_flight",
        "Messages being handled right now.",
        s.in_flight as f64,
    );

    out.family(
        "messages_processed_total",
        "counter",
        "Handled messages by outcome: an ack outcome code, retry or dead_letter.",
    );
    for (outcome, n) in src.stats.ack_outcomes() {
        out.sample("messages_processed_total", &[("outcome", outcome)], n);
    }
    out.sample(
        "messages_processed_total",
        &[("outcome", "retry")],
        s.retried,
    );
    out.sample(
        "messages_processed_total",
        &[("outcome", "dead_letter")],
        s.dead_lettered,
    );

    out.histogram(
        "handler_duration_seconds",
        "Time from a handler's start to its answer.",
        &[],
        &src.stats.latency,
    );

    out.counter(
        "retries_total",
        "Messages left on the queue to be retried after a backoff delay.",
        s.retried,
    );
    out.family(
        "dead_letters_total",
        "counter",
        "Messages sent to the dead-letter queue, by reason code.",
    );
    for (reason, n) in &src.stats.dead_letter_reasons() {
        out.sample("dead_letters_total", &[("reason", reason)], *n);
    }
    out.counter(
        "dead_letter_failures_total",
        "Dead-letter sends that failed (the message stays on the queue and comes back).",
        s.dead_letter_failures,
    );
    out.counter(
        "messages_released_total",
        "Messages handed back unhandled: FIFO followers of a failure, work abandoned at shutdown.",
        s.released,
    );
    out.counter(
        "visibility_extensions_total",
        "Heartbeats that extended a message's visibility while it was handled.",
        s.visibility_extensions,
    );
    out.counter(
        "delete_failures_total",
        "Handled messages whose delete failed (they will be delivered again).",
        s.delete_failures,
    );
    out.counter(
        "handler_panics_total",
        "Handlers that panicked (each message is retried).",
        s.handler_panics,
    );
    out.counter(
        "handler_timeouts_total",
        "Handlers that ran past worker.handler_timeout_seconds (each message is retried).",
        s.handler_timeouts,
    );
    out.gauge_value(
        "seconds_since_progress",
        "Seconds since the poll loop last made progress (a receive answered, a message settled, a deliberate pause).",
        src.seconds_since_progress,
    );

    let calls = src.downstream.calls();
    out.family(
        "downstream_calls_total",
        "counter",
        "Calls to Cognito, SES/SMTP and DynamoDB by operation and result.",
    );
    for ((service, operation, result), n) in &calls {
        out.sample(
            "downstream_calls_total",
            &[
                ("service", service.as_str()),
                ("operation", operation),
                ("result", result.as_str()),
            ],
            *n,
        );
    }
    out.family(
        "downstream_call_duration_seconds",
        "histogram",
        "Duration of calls to Cognito, SES/SMTP and DynamoDB (after any rate-limit wait).",
    );
    for ((service, operation), histogram) in locked(&src.downstream.durations).iter() {
        out.histogram_samples(
            "downstream_call_duration_seconds",
            &[("service", service.as_str()), ("operation", operation)],
            histogram,
        );
    }
    out.family(
        "downstream_throttles_total",
        "counter",
        "Calls a downstream service refused because of throttling or a quota.",
    );
    let mut throttles: BTreeMap<Service, u64> = src
        .circuits
        .states()
        .into_iter()
        .map(|(service, _)| (service, 0))
        .collect();
    for ((service, _, result), n) in &calls {
        if *result == CallResult::Throttled {
            *throttles.entry(*service).or_default() += n;
        }
    }
    for (service, n) in throttles {
        out.sample(
            "downstream_throttles_total",
            &[("service", service.as_str())],
            n,
        );
    }

    out.family(
        "invite_transitions_total",
        "counter",
        "Invite status changes written to the store, by new status.",
    );
    for (to, n) in src.downstream.transitions() {
        out.sample("invite_transitions_total", &[("to", to)], n);
    }

    out.family(
        "circuit_open",
        "gauge",
        "1 while a service's circuit breaker is open or half-open (receiving paused), else 0.",
    );
    for (service, state) in src.circuits.states() {
        out.sample(
            "circuit_open",
            &[("service", service.as_str())],
            u64::from(state.is_tripped()),
        );
    }
    out.finish()
}

/// A writer for the text format: `# HELP` and `# TYPE` once per family, then its samples.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a metric family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {PREFIX}{name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {PREFIX}{name} {kind}");
    }

    /// One sample line of an integer value.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.line(name, labels, &value.to_string());
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.out.push_str(PREFIX);
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label_value(v));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(value);
        self.out.push('\n');
    }

    /// A counter family with one unlabelled sample.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    /// A gauge family with one unlabelled sample.
    pub fn gauge_value(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help);
        self.line(name, &[], &float(value));
    }

    /// A histogram family with one series.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        histogram: &LatencyHistogram,
    ) {
        self.family(name, "histogram", help);
        self.histogram_samples(name, labels, histogram);
    }

    /// One histogram series: cumulative `_bucket`s in seconds ending with `+Inf`, `_sum`, `_count`.
    pub fn histogram_samples(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        histogram: &LatencyHistogram,
    ) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (bound_ms, n) in histogram.buckets() {
            cumulative += n;
            let le = match bound_ms {
                Some(ms) => float(ms as f64 / 1000.0),
                None => "+Inf".to_string(),
            };
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative);
        }
        self.line(
            &format!("{name}_sum"),
            labels,
            &float(histogram.sum_ms() as f64 / 1000.0),
        );
        self.sample(&format!("{name}_count"), labels, cumulative);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value with `\`, `"` and line feeds escaped, as the text format requires.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars().take(MAX_LABEL_LEN) {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text with `\` and line feeds escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float as Prometheus reads it (`1`, `0.005`, `NaN`, `+Inf`).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
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

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("line\nbreak"), "line\\nbreak");
        assert_eq!(escape_label_value(&"x".repeat(500)).len(), MAX_LABEL_LEN);
        let mut e = Exposition::default();
        e.family("t_total", "counter", "Help with \\ and\nnewline.");
        e.sample("t_total", &[("reason", "bad \"quote\"")], 3);
        assert_eq!(
            e.finish(),
            "# HELP invite_worker_t_total Help with \\\\ and\\nnewline.\n\
             # TYPE invite_worker_t_total counter\n\
             invite_worker_t_total{reason=\"bad \\\"quote\\\"\"} 3\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_in_seconds_and_end_with_inf() {
        let h = LatencyHistogram::default();
        for ms in [3, 7, 7, 400, 90_000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut e = Exposition::default();
        e.histogram("d_seconds", "Durations.", &[("service", "ses")], &h);
        let text = e.finish();
        let buckets = lines_of(&text, "d_seconds_bucket");
        assert_eq!(buckets.len(), 14);
        assert_eq!(
            buckets[0],
            "invite_worker_d_seconds_bucket{service=\"ses\",le=\"0.005\"} 1"
        );
        assert_eq!(
            buckets[1],
            "invite_worker_d_seconds_bucket{service=\"ses\",le=\"0.01\"} 3"
        );
        assert!(buckets.contains(&"invite_worker_d_seconds_bucket{service=\"ses\",le=\"0.5\"} 4"));
        assert!(buckets.contains(&"invite_worker_d_seconds_bucket{service=\"ses\",le=\"1\"} 4"));
        assert_eq!(
            buckets[13],
            "invite_worker_d_seconds_bucket{service=\"ses\",le=\"+Inf\"} 5"
        );
        let counts: Vec<u64> = buckets
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        assert!(text.contains("invite_worker_d_seconds_sum{service=\"ses\"} 90.417\n"));
        assert!(text.contains("invite_worker_d_seconds_count{service=\"ses\"} 5\n"));
        assert_eq!(text.matches("# TYPE").count(), 1);
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
        let circuits = CircuitBreakers::new(
            CircuitPolicy::default(),
            &[Service::Cognito, Service::Ses, Service::DynamoDb],
        );
        let text = render(&MetricsSources {
            stats: &stats,
            downstream: &downstream,
            circuits: &circuits,
            version: "1.2.3",
            seconds_since_progress: 1.5,
        });
        for expected in [
            "invite_worker_build_info{version=\"1.2.3\"} 1",
            "invite_worker_messages_received_total 4",
            "invite_worker_in_flight 0",
            "invite_worker_messages_processed_total{outcome=\"sent\"} 2",
            "invite_worker_messages_processed_total{outcome=\"redelivered\"} 1",
            "invite_worker_messages_processed_total{outcome=\"retry\"} 0",
            "invite_worker_messages_processed_total{outcome=\"dead_letter\"} 1",
            "invite_worker_dead_letters_total{reason=\"invalid_event\"} 1",
            "invite_worker_handler_duration_seconds_count 1",
            "invite_worker_handler_duration_seconds_bucket{le=\"0.025\"} 1",
            "invite_worker_downstream_calls_total{service=\"cognito\",operation=\"create_user\",result=\"ok\"} 1",
            "invite_worker_downstream_calls_total{service=\"ses\",operation=\"send\",result=\"throttled\"} 1",
            "invite_worker_downstream_call_duration_seconds_count{service=\"cognito\",operation=\"create_user\"} 1",
            "invite_worker_downstream_throttles_total{service=\"ses\"} 1",
            "invite_worker_downstream_throttles_total{service=\"dynamodb\"} 0",
            "invite_worker_invite_transitions_total{to=\"sent\"} 1",
            "invite_worker_circuit_open{service=\"cognito\"} 0",
            "invite_worker_seconds_since_progress 1.5",
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "missing {expected:?} in\n{text}"
            );
        }
        // Each family is declared exactly once, before its samples.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_string()), "{name} declared twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f)))
                    .unwrap_or(name);
                assert!(declared.contains(family), "{line} before its TYPE");
            }
        }
        assert!(text.ends_with('\n'));
    }
}
