//! Is the setup right? The start-up check every command runs on the resources it needs, and what
//! a person reads when it is not: one line naming what failed, on which resource, and the next
//! step. The SDK's own error chain goes to the debug log (`RUST_LOG=debug`), never here.

use std::fmt;

use crate::adapters::probe::{AwsProbe, SesAccess};
use crate::adapters::ses::sender_address;
use crate::config::{Settings, Transport};
use crate::domain::EmailAddress;
use crate::error::{DownstreamError, Service, SetupCause};

/// Where the SDK sends its calls: for messages that name the region and endpoint.
#[derive(Clone, Debug, Default)]
pub struct AwsTarget {
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

impl AwsTarget {
    pub fn of(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            region: sdk.region().map(|r| r.to_string()),
            endpoint: sdk.endpoint_url().map(str::to_string),
        }
    }

    fn region(&self) -> &str {
        self.region.as_deref().unwrap_or("(no region)")
    }
}

/// A resource the worker's configuration names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Queue,
    DeadLetterQueue,
    Table,
    Pool,
    Sender,
    /// `events.outbound_queue_url`, when set.
    EventsQueue,
    /// `email.ses.configuration_set`, when set with the SES transport.
    ConfigurationSet,
    /// `feedback.queue_url`, when set: where SES's sending events arrive.
    FeedbackQueue,
    /// `feedback.dlq_url`, when set.
    FeedbackDeadLetterQueue,
    /// The account's suppression list, with `email.ses.check_suppression_list` and SES.
    SuppressionList,
}

impl Need {
    /// What `config check` calls it.
    pub fn label(self) -> &'static str {
        match self {
            Need::Queue => "queue",
            Need::DeadLetterQueue => "dead-letter queue",
            Need::Table => "table",
            Need::Pool => "user pool",
            Need::Sender => "ses sender identity",
            Need::EventsQueue => "outbound events",
            Need::ConfigurationSet => "ses configuration set",
            Need::FeedbackQueue => "feedback queue",
            Need::FeedbackDeadLetterQueue => "feedback dead letters",
            Need::SuppressionList => "ses suppression list",
        }
    }

    fn service(self) -> Service {
        match self {
            Need::Queue
            | Need::DeadLetterQueue
            | Need::EventsQueue
            | Need::FeedbackQueue
            | Need::FeedbackDeadLetterQueue => Service::Sqs,
            Need::Table => Service::DynamoDb,
            Need::Pool => Service::Cognito,
            Need::Sender | Need::ConfigurationSet | Need::SuppressionList => Service::Ses,
        }
    }

    /// The resource as a person names it, and the setting that names it.
    fn name_and_key(self, settings: &Settings) -> (String, &'static str) {
        match self {
            Need::Queue => (format!("queue {}", settings.queue.url), "queue.url"),
            Need::DeadLetterQueue => (
                format!("dead-letter queue {}", settings.queue.dlq_url),
                "queue.dlq_url",
            ),
            Need::Table => (format!("table {}", settings.table.name), "table.name"),
            Need::Pool => (
                format!("user pool {}", settings.cognito.user_pool_id),
                "cognito.user_pool_id",
            ),
            Need::Sender => (
                format!(
                    "SES sender identity {}",
                    sender_address(&settings.email.from)
                ),
                "email.from",
            ),
            Need::EventsQueue => (
                format!("events queue {}", settings.events.outbound_queue_url),
                "events.outbound_queue_url",
            ),
            Need::ConfigurationSet => (
                format!(
                    "SES configuration set {}",
                    settings
                        .email
                        .ses
                        .configuration_set
                        .as_deref()
                        .unwrap_or("")
                ),
                "email.ses.configuration_set",
            ),
            Need::FeedbackQueue => (
                format!("feedback queue {}", settings.feedback.queue_url),
                "feedback.queue_url",
            ),
            Need::FeedbackDeadLetterQueue => (
                format!("feedback dead-letter queue {}", settings.feedback.dlq_url),
                "feedback.dlq_url",
            ),
            Need::SuppressionList => (
                "the SES suppression list".to_string(),
                "email.ses.check_suppression_list",
            ),
        }
    }
}

/// The configuration set every mail is sent with, when SES sends and one is named.
fn configuration_set(settings: &Settings) -> Option<&str> {
    match settings.email.transport {
        Transport::Ses => settings
            .email
            .ses
            .configuration_set
            .as_deref()
            .filter(|s| !s.is_empty()),
        Transport::Smtp => None,
    }
}

/// What a command that touches the worker's own resources needs checked.
pub fn needs_for_run(settings: &Settings) -> Vec<Need> {
    let mut needs = vec![Need::Queue, Need::DeadLetterQueue, Need::Table, Need::Pool];
    if settings.email.transport == Transport::Ses {
        needs.push(Need::Sender);
    }
    needs.extend(delivery_awareness_needs(settings));
    needs
}

/// What `config check` checks: everything `run` needs, and the outbound events queue.
pub fn needs_for_check(settings: &Settings) -> Vec<Need> {
    let mut needs = vec![Need::Queue, Need::DeadLetterQueue, Need::Table, Need::Pool];
    if !settings.events.outbound_queue_url.is_empty() {
        needs.push(Need::EventsQueue);
    }
    if settings.email.transport == Transport::Ses {
        needs.push(Need::Sender);
    }
    needs.extend(delivery_awareness_needs(settings));
    needs
}

/// The configuration set, the feedback queues and the suppression list, as configured.
fn delivery_awareness_needs(settings: &Settings) -> Vec<Need> {
    let mut needs = Vec::new();
    if configuration_set(settings).is_some() {
        needs.push(Need::ConfigurationSet);
    }
    if !settings.feedback.queue_url.is_empty() {
        needs.push(Need::FeedbackQueue);
    }
    if !settings.feedback.dlq_url.is_empty() {
        needs.push(Need::FeedbackDeadLetterQueue);
    }
    if settings.email.transport == Transport::Ses && settings.email.ses.check_suppression_list {
        needs.push(Need::SuppressionList);
    }
    needs
}

/// Advice on delivery awareness that is not a failure: half of it configured, or events expected
/// from a transport that sends none.
pub fn feedback_warnings(settings: &Settings) -> Vec<String> {
    let listening = !settings.feedback.queue_url.is_empty();
    let mut out = Vec::new();
    match (&settings.email.transport, listening, configuration_set(settings)) {
        (Transport::Smtp, true, _) => out.push(
            "feedback.queue_url is set but email.transport is smtp: SES sends no events for mail it did not send; bounces come back to the relay (docs/operations.md, \"Delivery awareness over SMTP\")".into(),
        ),
        (Transport::Ses, true, None) => out.push(
            "feedback.queue_url is set but email.ses.configuration_set is not: no sending events can arrive; set the configuration set whose event destination feeds that queue".into(),
        ),
        (Transport::Ses, false, Some(name)) => out.push(format!(
            "email.ses.configuration_set ({name}) is set but feedback.queue_url is not: bounces, complaints and deliveries are published but the worker does not read them; set feedback.queue_url"
        )),
        _ => {}
    }
    out
}

/// One broken thing in the setup, as one line for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupProblem {
    pub line: String,
    pub kind: ProblemKind,
}

/// What kind of problem: it decides whether a command stops, and its exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Retrying without a fix is pointless: a missing resource, access denied, no credentials.
    Setup,
    /// The endpoint does not answer: a wrong `AWS_ENDPOINT_URL`, or the network.
    Unreachable,
    /// AWS answered, but throttled or failed (5xx, timeout): an outage, which the worker's
    /// retries and circuit breakers handle. It never stops a command before it starts.
    Outage,
}

impl SetupProblem {
    pub fn is_permanent(&self) -> bool {
        self.kind == ProblemKind::Setup
    }
}

impl fmt::Display for SetupProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

/// Problems found before a command did any work: printed one per line; the exit status is 2
/// when any is permanent (a setup error), 1 when AWS could not be reached.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.lines().join("\n"))]
pub struct SetupFailure {
    pub problems: Vec<SetupProblem>,
}

impl SetupFailure {
    pub fn lines(&self) -> Vec<String> {
        self.problems.iter().map(|p| p.line.clone()).collect()
    }

    pub fn is_permanent(&self) -> bool {
        self.problems.iter().any(SetupProblem::is_permanent)
    }

    /// 2: the setup is wrong; 1: AWS could not be reached (maybe an outage).
    pub fn exit_status(&self) -> u8 {
        if self.is_permanent() {
            2
        } else {
            1
        }
    }
}

fn service_name(service: Service) -> &'static str {
    match service {
        Service::Sqs => "SQS",
        Service::DynamoDb => "DynamoDB",
        Service::Cognito => "Cognito",
        Service::Ses => "SES",
        Service::Smtp => "the SMTP server",
    }
}

/// The line for `err`, met while using `need`.
pub fn explain(
    need: Need,
    err: &DownstreamError,
    settings: &Settings,
    target: &AwsTarget,
) -> SetupProblem {
    let (resource, key) = need.name_and_key(settings);
    let region = target.region();
    let permanent = |line: String| SetupProblem {
        line,
        kind: ProblemKind::Setup,
    };
    match err.setup {
        Some(SetupCause::NoCredentials) => permanent(
            "no AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or run with a role".into(),
        ),
        Some(SetupCause::Unreachable) => SetupProblem {
            line: format!(
                "cannot reach {} at {} ({resource}): {}; check AWS_ENDPOINT_URL and AWS_REGION, or the network",
                service_name(need.service()),
                target
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| format!("its {region} endpoint")),
                unreachable_reason(&err.message),
            ),
            kind: ProblemKind::Unreachable,
        },
        Some(SetupCause::AccessDenied) if need == Need::SuppressionList => permanent(format!(
            "access denied to {resource} in {region} ({}): grant ses:GetSuppressedDestination (resource \"*\") to the worker's role (WorkerPolicy in deploy/cloudformation.yaml), or set {key} = false",
            err.operation
        )),
        Some(SetupCause::AccessDenied) => permanent(format!(
            "access denied to {resource} in {region} ({}): grant the worker's role the actions in deploy/cloudformation.yaml (WorkerPolicy), or check AWS_PROFILE and the credentials",
            err.operation
        )),
        Some(SetupCause::NotFound) if need == Need::Sender => permanent(format!(
            "{resource} does not exist in {region}: SES rejects every invitation from it; verify the address or domain (`invite-worker bootstrap`, or the SES console) or set {key}"
        )),
        Some(SetupCause::NotFound) => permanent(format!(
            "{resource} does not exist in {region}{}: run `invite-worker bootstrap` or set {key}",
            region_hint(need, settings, target)
        )),
        None => SetupProblem {
            line: format!("{resource}: {}", err.message),
            kind: match err.is_transient() {
                true => ProblemKind::Outage,
                false => ProblemKind::Setup,
            },
        },
    }
}

/// `could not reach the service: tcp connect error: Connection refused (os error 111)` ->
/// `connection refused`.
fn unreachable_reason(message: &str) -> String {
    let text = message
        .strip_prefix("could not reach the service: ")
        .unwrap_or(message);
    let lower = text.to_ascii_lowercase();
    for known in [
        "connection refused",
        "timed out",
        "dns error",
        "failed to lookup address",
        "certificate",
    ] {
        if lower.contains(known) {
            return known.to_string();
        }
    }
    text.to_string()
}

/// A user pool id starts with its region: say so when it is not the region in use.
fn region_hint(need: Need, settings: &Settings, target: &AwsTarget) -> String {
    let pool_region = settings
        .cognito
        .user_pool_id
        .split('_')
        .next()
        .unwrap_or("");
    match (need, target.region.as_deref()) {
        (Need::Pool, Some(region)) if !pool_region.is_empty() && pool_region != region => {
            format!(" (the pool id names {pool_region}: is AWS_REGION right?)")
        }
        _ => String::new(),
    }
}

/// The result of checking one resource.
#[derive(Clone, Debug)]
pub struct Finding {
    pub need: Need,
    pub result: Result<String, SetupProblem>,
    /// Advice that is not a failure (the SES sandbox, an expiry longer than the password).
    pub warnings: Vec<String>,
}

/// Checks each resource in `needs` (at the same time) and says what it found.
pub async fn check(
    probe: &AwsProbe,
    settings: &Settings,
    target: &AwsTarget,
    needs: &[Need],
) -> Vec<Finding> {
    let checks = needs
        .iter()
        .map(|need| check_one(probe, settings, target, *need));
    futures::future::join_all(checks).await
}

/// Checks `needs`; the problems found, each cause said once (no credentials reads the same for
/// every resource), as an error.
pub async fn preflight(
    probe: &AwsProbe,
    settings: &Settings,
    target: &AwsTarget,
    needs: &[Need],
) -> Result<(), SetupFailure> {
    if target.region.is_none() {
        return Err(SetupFailure {
            problems: vec![SetupProblem {
                line: "no AWS region: set AWS_REGION, or a region in the AWS_PROFILE's profile"
                    .into(),
                kind: ProblemKind::Setup,
            }],
        });
    }
    let problems = problems_that_stop(check(probe, settings, target, needs).await);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SetupFailure { problems })
    }
}

/// The problems that stop a command before it starts, each said once.
fn problems_that_stop(findings: Vec<Finding>) -> Vec<SetupProblem> {
    let checked = findings.len();
    let unreachable = findings
        .iter()
        .filter(|f| matches!(&f.result, Err(p) if p.kind == ProblemKind::Unreachable))
        .count();
    let mut problems: Vec<SetupProblem> = Vec::new();
    for p in findings.into_iter().filter_map(|f| f.result.err()) {
        let stops = match p.kind {
            ProblemKind::Setup => true,
            // Nothing answering is a wrong endpoint or no network; one service not answering
            // while the others do is that service's outage.
            ProblemKind::Unreachable => unreachable == checked,
            ProblemKind::Outage => false,
        };
        if !stops {
            tracing::warn!(problem = %p, "start-up check: an outage, not a setup problem; going on");
        } else if !problems.contains(&p) {
            problems.push(p);
        }
    }
    // When nothing answers, one line says it: the rest would repeat it per resource.
    if problems.iter().all(|p| !p.is_permanent()) {
        problems.truncate(1);
    }
    problems
}

async fn check_one(
    probe: &AwsProbe,
    settings: &Settings,
    target: &AwsTarget,
    need: Need,
) -> Finding {
    let explain = |e: DownstreamError| explain(need, &e, settings, target);
    let mut warnings = Vec::new();
    let result = match need {
        Need::Queue
        | Need::DeadLetterQueue
        | Need::EventsQueue
        | Need::FeedbackQueue
        | Need::FeedbackDeadLetterQueue => {
            let url = match need {
                Need::Queue => &settings.queue.url,
                Need::DeadLetterQueue => &settings.queue.dlq_url,
                Need::FeedbackQueue => &settings.feedback.queue_url,
                Need::FeedbackDeadLetterQueue => &settings.feedback.dlq_url,
                _ => &settings.events.outbound_queue_url,
            };
            if url.is_empty() {
                Err(not_configured(need))
            } else {
                probe
                    .queue(url)
                    .await
                    .map(|n| format!("{url} ({n} visible)"))
                    .map_err(explain)
            }
        }
        Need::Table => probe
            .table(&settings.table.name)
            .await
            .map(|status| format!("{} ({status})", settings.table.name))
            .map_err(explain),
        Need::Pool if settings.cognito.user_pool_id.is_empty() => Err(not_configured(need)),
        Need::Pool => match probe.pool(&settings.cognito.user_pool_id).await {
            Ok(p) => {
                let days = p.password_policy.temporary_password_validity_days;
                if settings.invites.default_expiry_days > days {
                    warnings.push(format!(
                        "invites.default_expiry_days ({}) is longer than the pool's TemporaryPasswordValidityDays ({days}): an invite would outlive its password (a resend issues a new one); raise the pool setting or lower the expiry",
                        settings.invites.default_expiry_days
                    ));
                }
                Ok(format!(
                    "{} ({} attributes, temporary passwords valid {days} days)",
                    p.user_pool_id,
                    p.attributes.len()
                ))
            }
            Err(e) => Err(explain(e)),
        },
        Need::Sender => {
            let sender = sender_address(&settings.email.from);
            match probe.sender_verified(&sender).await {
                Ok(true) => {
                    let account = match probe.ses_access().await {
                        SesAccess::Production => "production access",
                        SesAccess::Sandbox => {
                            warnings.push("the SES account is in the sandbox: it sends only to verified addresses; request production access in the SES console".into());
                            "in the sandbox"
                        }
                        SesAccess::Unknown => "sandbox status unknown: GetAccount unavailable here",
                    };
                    Ok(format!("{sender} (verified; SES account {account})"))
                }
                Ok(false) => Err(unverified(&sender, target)),
                Err(e) => Err(explain(e)),
            }
        }
        Need::ConfigurationSet => match configuration_set(settings) {
            None => Err(not_configured(need)),
            Some(name) => probe
                .configuration_set(name)
                .await
                .map(|()| format!("{name} (every mail is sent with it)"))
                .map_err(explain),
        },
        Need::SuppressionList => {
            let sender = sender_address(&settings.email.from);
            match EmailAddress::parse(&sender) {
                Err(e) => Err(SetupProblem {
                    line: format!("email.from: {sender:?} is not an address: {e}"),
                    kind: ProblemKind::Setup,
                }),
                Ok(address) => probe
                    .suppression_list(&address)
                    .await
                    .map(|()| "readable (GetSuppressedDestination answers)".to_string())
                    .map_err(explain),
            }
        }
    };
    Finding {
        need,
        result,
        warnings,
    }
}

fn not_configured(need: Need) -> SetupProblem {
    let (key, env) = match need {
        Need::Queue => ("queue.url", "INVITE_WORKER__QUEUE__URL"),
        Need::DeadLetterQueue => ("queue.dlq_url", "INVITE_WORKER__QUEUE__DLQ_URL"),
        Need::EventsQueue => (
            "events.outbound_queue_url",
            "INVITE_WORKER__EVENTS__OUTBOUND_QUEUE_URL",
        ),
        Need::FeedbackQueue => ("feedback.queue_url", "INVITE_WORKER__FEEDBACK__QUEUE_URL"),
        Need::FeedbackDeadLetterQueue => ("feedback.dlq_url", "INVITE_WORKER__FEEDBACK__DLQ_URL"),
        Need::ConfigurationSet => (
            "email.ses.configuration_set",
            "INVITE_WORKER__EMAIL__SES__CONFIGURATION_SET",
        ),
        _ => (
            "cognito.user_pool_id",
            "INVITE_WORKER__COGNITO__USER_POOL_ID",
        ),
    };
    SetupProblem {
        line: format!(
            "{key} is not set: run `invite-worker bootstrap`, or set it in config/ or with {env}"
        ),
        kind: ProblemKind::Setup,
    }
}

fn unverified(sender: &str, target: &AwsTarget) -> SetupProblem {
    SetupProblem {
        line: format!(
            "SES sender identity {sender} is not verified in {}: SES rejects every invitation until it is; finish the verification (DNS records or the confirmation email) or set email.from to a verified address",
            target.region()
        ),
        kind: ProblemKind::Setup,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn settings() -> Settings {
        let mut s = crate::bootstrap::test_support::settings();
        s.queue.url = "http://localhost/123456789012/q".into();
        s.table.name = "invites-t".into();
        s.cognito.user_pool_id = "us-east-1_abc".into();
        s
    }

    fn target(region: &str) -> AwsTarget {
        AwsTarget {
            region: Some(region.into()),
            endpoint: Some("http://127.0.0.1:1".into()),
        }
    }

    fn err(cause: SetupCause, message: &str) -> DownstreamError {
        DownstreamError::new(Service::DynamoDb, "Query", ErrorKind::Unavailable, message)
            .with_setup(Some(cause))
    }

    #[test]
    fn each_cause_reads_as_one_line_with_the_resource_and_the_fix() {
        let s = settings();
        let t = target("us-east-1");
        let cases = [
            (Need::Table, SetupCause::NoCredentials, "x", "no AWS credentials: set AWS_PROFILE", true),
            (
                Need::Table,
                SetupCause::Unreachable,
                "could not reach the service: tcp connect error: Connection refused (os error 111)",
                "cannot reach DynamoDB at http://127.0.0.1:1 (table invites-t): connection refused; check AWS_ENDPOINT_URL",
                false,
            ),
            (Need::Table, SetupCause::NotFound, "x", "table invites-t does not exist in us-east-1: run `invite-worker bootstrap` or set table.name", true),
            (Need::Queue, SetupCause::AccessDenied, "x", "access denied to queue http://localhost/123456789012/q in us-east-1", true),
            (Need::Sender, SetupCause::NotFound, "x", "SES sender identity no-reply@example.com does not exist in us-east-1", true),
        ];
        for (need, cause, message, expected, permanent) in cases {
            let p = explain(need, &err(cause, message), &s, &t);
            assert!(p.line.starts_with(expected), "{cause:?}: {}", p.line);
            assert!(!p.line.contains('\n'), "{}", p.line);
            assert_eq!(p.is_permanent(), permanent, "{cause:?}");
        }
    }

    #[test]
    fn only_a_setup_problem_or_nothing_answering_stops_a_command() {
        let finding = |need, kind: Option<ProblemKind>| Finding {
            need,
            result: match kind {
                None => Ok("fine".into()),
                Some(kind) => Err(SetupProblem {
                    line: format!("{need:?} {kind:?}"),
                    kind,
                }),
            },
            warnings: vec![],
        };
        use ProblemKind::*;
        // Cognito throttled or down, the rest fine: an outage; the worker goes on.
        let outage = vec![
            finding(Need::Queue, None),
            finding(Need::Pool, Some(Outage)),
            finding(Need::Sender, Some(Unreachable)),
        ];
        assert_eq!(problems_that_stop(outage), vec![]);
        // Nothing answers: one line.
        let nothing = vec![
            finding(Need::Queue, Some(Unreachable)),
            finding(Need::Table, Some(Unreachable)),
        ];
        let stop = problems_that_stop(nothing);
        assert_eq!(stop.len(), 1);
        assert_eq!(stop[0].line, "Queue Unreachable");
        // A missing table stops it whatever else happens.
        let missing = vec![
            finding(Need::Table, Some(Setup)),
            finding(Need::Pool, Some(Outage)),
        ];
        assert_eq!(problems_that_stop(missing).len(), 1);
    }

    #[test]
    fn delivery_awareness_is_checked_as_configured() {
        let mut s = settings();
        s.email.transport = Transport::Ses;
        s.email.ses.check_suppression_list = false;
        assert!(!needs_for_run(&s).contains(&Need::ConfigurationSet));
        s.email.ses.configuration_set = Some("invites".into());
        s.feedback.queue_url = "http://localhost/1/fb".into();
        s.email.ses.check_suppression_list = true;
        let needs = needs_for_check(&s);
        for need in [
            Need::ConfigurationSet,
            Need::FeedbackQueue,
            Need::SuppressionList,
        ] {
            assert!(needs.contains(&need), "{need:?} in {needs:?}");
            assert!(needs_for_run(&s).contains(&need), "{need:?}");
        }
        assert!(!needs.contains(&Need::FeedbackDeadLetterQueue));
        s.email.transport = Transport::Smtp;
        let needs = needs_for_check(&s);
        assert!(!needs.contains(&Need::ConfigurationSet));
        assert!(!needs.contains(&Need::SuppressionList));
        assert!(needs.contains(&Need::FeedbackQueue));
    }

    #[test]
    fn a_missing_configuration_set_and_a_denied_suppression_list_read_with_their_fix() {
        let mut s = settings();
        s.email.ses.configuration_set = Some("invites".into());
        let t = target("us-east-1");
        let missing = explain(
            Need::ConfigurationSet,
            &err(SetupCause::NotFound, "x"),
            &s,
            &t,
        );
        assert_eq!(missing.line, "SES configuration set invites does not exist in us-east-1: run `invite-worker bootstrap` or set email.ses.configuration_set");
        assert!(missing.is_permanent());
        let denied = explain(
            Need::SuppressionList,
            &DownstreamError::new(
                Service::Ses,
                "GetSuppressedDestination",
                ErrorKind::Unavailable,
                "x",
            )
            .with_setup(Some(SetupCause::AccessDenied)),
            &s,
            &t,
        );
        assert!(
            denied.line.contains("grant ses:GetSuppressedDestination"),
            "{}",
            denied.line
        );
        assert!(
            denied
                .line
                .ends_with("or set email.ses.check_suppression_list = false"),
            "{}",
            denied.line
        );
    }

    #[test]
    fn half_configured_delivery_awareness_is_a_warning() {
        let mut s = settings();
        s.email.transport = Transport::Ses;
        s.email.ses.configuration_set = None;
        s.feedback.queue_url = String::new();
        assert!(feedback_warnings(&s).is_empty());
        s.feedback.queue_url = "http://localhost/1/fb".into();
        let w = feedback_warnings(&s);
        assert!(w[0].contains("no sending events can arrive"), "{w:?}");
        s.feedback.queue_url = String::new();
        s.email.ses.configuration_set = Some("invites".into());
        let w = feedback_warnings(&s);
        assert!(w[0].contains("feedback.queue_url is not"), "{w:?}");
        s.feedback.queue_url = "http://localhost/1/fb".into();
        assert!(feedback_warnings(&s).is_empty());
        s.email.transport = Transport::Smtp;
        let w = feedback_warnings(&s);
        assert!(w[0].contains("email.transport is smtp"), "{w:?}");
    }

    #[test]
    fn a_pool_in_another_region_is_named() {
        let p = explain(
            Need::Pool,
            &err(SetupCause::NotFound, "x"),
            &settings(),
            &target("eu-west-1"),
        );
        assert!(p.line.contains("does not exist in eu-west-1"), "{}", p.line);
        assert!(p.line.contains("the pool id names us-east-1"), "{}", p.line);
    }

    #[test]
    fn a_failure_exits_2_when_the_setup_is_wrong_and_1_when_aws_is_unreachable() {
        let p = |kind| SetupProblem {
            line: "x".into(),
            kind,
        };
        assert_eq!(
            SetupFailure {
                problems: vec![p(ProblemKind::Unreachable)]
            }
            .exit_status(),
            1
        );
        assert_eq!(
            SetupFailure {
                problems: vec![p(ProblemKind::Unreachable), p(ProblemKind::Setup)]
            }
            .exit_status(),
            2
        );
    }
}
