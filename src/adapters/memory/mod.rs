//! In-memory fakes of every port, for unit tests and the benchmark. Each can add latency per
//! call and inject failures.

pub mod directory;
pub mod mailer;
pub mod queue;
pub mod store;
