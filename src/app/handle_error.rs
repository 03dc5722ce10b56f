//! Why handling an event failed, and so what the worker does next with its message: retry it
//! (after a wait, or at once), or dead-letter it with a reason code.

use std::time::Duration;

use time::OffsetDateTime;

use crate::domain::event::DecodeError;
use crate::domain::InviteId;
use crate::error::{Disposition, DownstreamError, ErrorKind, Service};
use crate::ports::{left_on_hold, StoreError};

/// Why handling failed, and so what the worker does next (see [`HandleError::disposition`]).
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("{0}")]
    Invalid(DecodeError),
    #[error("{0}")]
    InvalidAttributes(DecodeError),
    #[error("{message}")]
    Rejected { code: String, message: String },
    #[error(transparent)]
    Transient(DownstreamError),
    /// Another worker holds the invite's lease until `.1`; look again in `.2`.
    #[error("invite {0} is being handled by another worker until {1}")]
    Busy(InviteId, OffsetDateTime, Duration),
    #[error("invite {0} kept changing during this write; will retry")]
    Contended(InviteId),
    #[error("{0}")]
    Corrupt(String),
}

impl HandleError {
    pub fn disposition(&self) -> Disposition {
        match self {
            HandleError::Invalid(e) => Disposition::DeadLetter {
                code: "invalid_event".into(),
                reason: e.to_string(),
            },
            HandleError::InvalidAttributes(e) => Disposition::DeadLetter {
                code: "invalid_attributes".into(),
                reason: e.to_string(),
            },
            HandleError::Rejected { code, message } => Disposition::DeadLetter {
                code: code.clone(),
                reason: message.clone(),
            },
            HandleError::Corrupt(m) => Disposition::DeadLetter {
                code: "corrupt_record".into(),
                reason: m.clone(),
            },
            HandleError::Transient(e) => Disposition::Retry {
                reason: e.to_string(),
                after: e.retry_after,
                downstream: Some(e.service),
            },
            HandleError::Busy(_, _, wait) => Disposition::Retry {
                reason: self.to_string(),
                after: Some(*wait),
                downstream: None,
            },
            HandleError::Contended(_) => Disposition::Retry {
                reason: self.to_string(),
                after: None,
                downstream: None,
            },
        }
    }

    /// Whether a guarded Cognito operation failed in a way that may leave the user disabled.
    pub fn leaves_user_on_hold(&self) -> bool {
        matches!(self, HandleError::Transient(d) if left_on_hold(d))
    }

    /// The reason code of a permanent rejection (the message is dead-lettered).
    pub fn rejection_code(&self) -> Option<String> {
        match self {
            HandleError::Rejected { code, .. } => Some(code.clone()),
            _ => None,
        }
    }

    fn from_downstream(e: DownstreamError) -> Self {
        match e.rejection_code() {
            Some(code) => HandleError::Rejected {
                code: code.to_string(),
                message: e.to_string(),
            },
            None => HandleError::Transient(e),
        }
    }
}

impl From<DownstreamError> for HandleError {
    fn from(e: DownstreamError) -> Self {
        HandleError::from_downstream(e)
    }
}

impl From<StoreError> for HandleError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => HandleError::Transient(DownstreamError::new(
                Service::DynamoDb,
                "PutItem",
                ErrorKind::Unavailable,
                "unexpected version conflict",
            )),
            StoreError::Corrupt { key, reason } => {
                HandleError::Corrupt(format!("stored invite {key} cannot be read: {reason}"))
            }
            StoreError::Downstream(d) => HandleError::from_downstream(d),
        }
    }
}
