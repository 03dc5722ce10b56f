//! `--filter KEY=VALUE[,VALUE...]`: which dead letters a command acts on. Several values of one
//! filter are alternatives (OR); several filters must all match (AND).

use std::fmt;
use std::str::FromStr;

use crate::domain::EmailAddress;
use crate::ops::dlq::view::DeadLetterView;

/// What a filter looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKey {
    /// The event type (`invite.requested`), decoded or raw.
    Type,
    /// The reason code (`user_pool_not_found`); `-` matches dead letters without one (moved by
    /// the redrive policy's maxReceiveCount rather than by the worker).
    Reason,
    /// The event id.
    EventId,
    /// The person's address (compared normalised).
    Email,
    /// The source queue: its URL or its name.
    Source,
    /// The message id on the DLQ.
    MessageId,
}

impl FilterKey {
    pub const NAMES: &'static str = "type, reason, event_id, email, source, message_id";

    fn parse(key: &str) -> Option<Self> {
        Some(match key {
            "type" => Self::Type,
            "reason" | "reason_code" => Self::Reason,
            "event_id" | "id" => Self::EventId,
            "email" => Self::Email,
            "source" | "source_queue" => Self::Source,
            "message_id" => Self::MessageId,
            _ => return None,
        })
    }
}

/// A filter that cannot be understood, with what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--filter {input:?}: {reason}")]
pub struct FilterError {
    pub input: String,
    pub reason: String,
}

/// One `KEY=VALUE[,VALUE...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub key: FilterKey,
    pub values: Vec<String>,
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| FilterError {
            input: input.to_string(),
            reason,
        };
        let (key, values) = input
            .split_once('=')
            .ok_or_else(|| err("expected KEY=VALUE, e.g. reason=user_pool_not_found".into()))?;
        let key = FilterKey::parse(key.trim()).ok_or_else(|| {
            err(format!(
                "unknown key {:?}; use one of {}",
                key.trim(),
                FilterKey::NAMES
            ))
        })?;
        let mut parsed = Vec::new();
        for value in values.split(',').map(str::trim) {
            if value.is_empty() {
                return Err(err("has an empty value".into()));
            }
            parsed.push(if key == FilterKey::Email {
                EmailAddress::parse(value)
                    .map_err(|r| err(format!("{value:?} {r}")))?
                    .as_str()
                    .to_string()
            } else {
                value.to_string()
            });
        }
        Ok(Self {
            key,
            values: parsed,
        })
    }
}

impl Filter {
    pub fn matches(&self, v: &DeadLetterView) -> bool {
        let any = |field: Option<&str>| match field {
            Some(f) => self.values.iter().any(|want| want == f),
            None => false,
        };
        match self.key {
            FilterKey::Type => any(v.event_type.as_deref()),
            FilterKey::Reason => match v.reason_code.as_deref() {
                Some(code) => self.values.iter().any(|want| want == code),
                None => self.values.iter().any(|want| want == "-"),
            },
            FilterKey::EventId => any(v.event_id.as_deref()),
            FilterKey::Email => any(v.email.as_deref()),
            FilterKey::MessageId => {
                any(Some(v.message_id.as_str())) || any(v.original_message_id.as_deref())
            }
            FilterKey::Source => v.source_queue.as_deref().is_some_and(|url| {
                let name = url.rsplit('/').next().unwrap_or(url);
                self.values.iter().any(|want| want == url || want == name)
            }),
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = match self.key {
            FilterKey::Type => "type",
            FilterKey::Reason => "reason",
            FilterKey::EventId => "event_id",
            FilterKey::Email => "email",
            FilterKey::Source => "source",
            FilterKey::MessageId => "message_id",
        };
        write!(f, "{key}={}", self.values.join(","))
    }
}

/// All the filters of one command; no filters match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters(pub Vec<Filter>);

impl Filters {
    pub fn parse<S: AsRef<str>>(inputs: &[S]) -> Result<Self, FilterError> {
        inputs
            .iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, v: &DeadLetterView) -> bool {
        self.0.iter().all(|f| f.matches(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> DeadLetterView {
        DeadLetterView {
            message_id: "dlq-1".into(),
            event_type: Some("invite.requested".into()),
            event_id: Some("e-1".into()),
            email: Some("jane@example.com".into()),
            decodes: true,
            reason_code: Some("user_pool_not_found".into()),
            reason: None,
            attempts: Some(1),
            dead_lettered_at: None,
            source_queue: Some("https://sqs.us-east-1.amazonaws.com/123/invite-events".into()),
            original_message_id: Some("m-0".into()),
            replay_count: 0,
            group_id: None,
        }
    }

    #[test]
    fn filters_parse_and_match() {
        let v = view();
        for (input, want) in [
            ("type=invite.requested", true),
            ("type=invite.resend", false),
            ("type=invite.resend,invite.requested", true),
            ("reason=user_pool_not_found", true),
            ("reason_code=invalid_event", false),
            ("reason=-", false),
            ("email=Jane@EXAMPLE.com", true),
            ("email=max@example.com", false),
            ("source=invite-events", true),
            (
                "source=https://sqs.us-east-1.amazonaws.com/123/invite-events",
                true,
            ),
            ("source=other", false),
            ("id=e-1", true),
            ("message_id=m-0", true),
            ("message_id=dlq-1", true),
        ] {
            let f: Filter = input.parse().unwrap();
            assert_eq!(f.matches(&v), want, "{input}");
        }
    }

    #[test]
    fn all_filters_must_match_and_none_match_everything() {
        let v = view();
        assert!(Filters::default().matches(&v));
        let both =
            Filters::parse(&["type=invite.requested", "reason=user_pool_not_found"]).unwrap();
        assert!(both.matches(&v));
        let one_off = Filters::parse(&["type=invite.requested", "reason=invalid_event"]).unwrap();
        assert!(!one_off.matches(&v));
    }

    #[test]
    fn a_missing_reason_code_matches_dash() {
        let mut v = view();
        v.reason_code = None;
        assert!("reason=-".parse::<Filter>().unwrap().matches(&v));
        assert!(!"reason=user_pool_not_found"
            .parse::<Filter>()
            .unwrap()
            .matches(&v));
    }

    #[test]
    fn bad_filters_say_why() {
        let e = "reason".parse::<Filter>().unwrap_err();
        assert!(e.to_string().contains("expected KEY=VALUE"), "{e}");
        let e = "colour=blue".parse::<Filter>().unwrap_err();
        assert!(e.to_string().contains("unknown key \"colour\""), "{e}");
        let e = "type=".parse::<Filter>().unwrap_err();
        assert!(e.to_string().contains("empty value"), "{e}");
        let e = "email=nope".parse::<Filter>().unwrap_err();
        assert!(e.to_string().contains("has no @"), "{e}");
    }
}
