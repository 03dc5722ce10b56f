//! Mail feedback: SES sending events (bounces, complaints, deliveries, rejects, delays) read off
//! the feedback queue and applied to the invite each one is about (docs/lifecycle.md, "Delivery
//! awareness").
//!
//! - [`parse`]: a queue message body (an SNS notification, raw message delivery or an
//!   EventBridge event) into a [`MailFeedback`], an ignorable message, or an error naming the
//!   field. Pure.
//! - [`handler`]: the [`crate::worker::MessageHandler`] for the feedback queue: parse, count
//!   (`mail_feedback_total`), hand the feedback to a [`FeedbackTarget`], turn the answer into a
//!   disposition.

use async_trait::async_trait;

use crate::app::handle_error::HandleError;
use crate::app::handler::Handled;
use crate::domain::feedback::MailFeedback;

mod document;
pub mod handler;
pub mod parse;
#[cfg(test)]
mod parse_tests;

pub use document::{HEADER_GENERATION, HEADER_INVITE_ID, MAX_TEXT_CHARS};
pub use handler::FeedbackHandler;
pub use parse::{parse, ParseError, Parsed};

/// What applies one mail feedback to its invite (the invite service does).
#[async_trait]
pub trait FeedbackTarget: Send + Sync {
    async fn apply_feedback(&self, feedback: &MailFeedback) -> Result<Handled, HandleError>;
}
