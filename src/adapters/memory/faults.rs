//! Latency and failure injection shared by the in-memory fakes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{DownstreamError, ErrorKind, Service};

/// Per-operation scripted failures plus a fixed latency for every call.
#[derive(Debug, Default)]
pub struct Faults {
    latency: Mutex<Duration>,
    scripted: Mutex<HashMap<&'static str, Vec<Option<ErrorKind>>>>,
}

impl Faults {
    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().expect("faults lock") = latency;
    }

    /// The next `n` calls of `operation` fail with `kind`.
    pub fn fail_next(&self, operation: &'static str, n: usize, kind: ErrorKind) {
        let mut s = self.scripted.lock().expect("faults lock");
        let list = s.entry(operation).or_default();
        list.extend(std::iter::repeat_n(Some(kind), n));
    }

    /// The `nth` call (1-based, counted from now) of `operation` fails with `kind`.
    pub fn fail_nth(&self, operation: &'static str, nth: usize, kind: ErrorKind) {
        let mut s = self.scripted.lock().expect("faults lock");
        let list = s.entry(operation).or_default();
        list.extend(std::iter::repeat_n(None, nth.saturating_sub(1)));
        list.push(Some(kind));
    }

    /// Waits the configured latency, then returns the scripted failure for `operation`, if any.
    pub async fn before(
        &self,
        service: Service,
        operation: &'static str,
    ) -> Result<(), DownstreamError> {
        let latency = *self.latency.lock().expect("faults lock");
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let next = {
            let mut s = self.scripted.lock().expect("faults lock");
            s.get_mut(operation)
                .and_then(|l| if l.is_empty() { None } else { l.remove(0) })
        };
        match next {
            Some(kind) => Err(DownstreamError::new(
                service,
                operation,
                kind,
                "injected failure",
            )),
            None => Ok(()),
        }
    }
}
