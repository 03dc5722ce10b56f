//! In-memory fakes of every port, for unit tests and the benchmark. Each can add latency per
//! call and inject failures.

pub mod budget;
pub mod clock;
pub mod directory;
pub mod faults;
pub mod mailer;
pub mod publisher;
pub mod queue;
pub mod queues;
pub mod store;
pub mod suppression;

pub use budget::MemoryRateBudget;
pub use clock::ManualClock;
pub use directory::MemoryDirectory;
pub use faults::Faults;
pub use mailer::MemoryMailer;
pub use publisher::MemoryPublisher;
pub use queues::MemoryQueues;
pub use store::MemoryStore;
pub use suppression::MemorySuppressionList;
