//! An in-memory [`Mailer`] that keeps every mail it was asked to send, like lettre's stub transport.

use std::sync::Mutex;

use async_trait::async_trait;

use super::Faults;
use crate::error::{DownstreamError, Service};
use crate::ports::{Mailer, OutgoingMail};

#[derive(Debug, Default)]
pub struct MemoryMailer {
    sent: Mutex<Vec<OutgoingMail>>,
    pub faults: Faults,
}

impl MemoryMailer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn sent(&self) -> Vec<OutgoingMail> {
        self.sent.lock().expect("mailer lock").clone()
    }

    pub fn sent_to(&self, address: &str) -> Vec<OutgoingMail> {
        self.sent()
            .into_iter()
            .filter(|m| m.to.as_str() == address)
            .collect()
    }

    pub fn count(&self) -> usize {
        self.sent.lock().expect("mailer lock").len()
    }
}

#[async_trait]
impl Mailer for MemoryMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<String, DownstreamError> {
        self.faults.before(Service::Ses, "SendEmail").await?;
        let mut sent = self.sent.lock().expect("mailer lock");
        sent.push(mail.clone());
        Ok(format!("memory-{}", sent.len()))
    }
}
