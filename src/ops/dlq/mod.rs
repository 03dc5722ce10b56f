//! Dead letters: look at them ([`list`]), move them back to their queue after a fix
//! ([`replay`]) or delete them for good ([`purge`]). All three walk the DLQ with a [`Scan`] that
//! consumes nothing it does not mean to.
//!
//! Our own redrive, next to SQS's `StartMessageMoveTask`: it filters by reason code and event
//! type, keeps the body and the sender's attributes, records lineage (see [`lineage`]) and works
//! on FIFO queues. `docs/operations.md` says when to use which.

pub mod filter;
pub mod lineage;
pub mod list;
pub mod purge;
pub mod replay;
pub mod scan;
pub mod view;

pub use filter::{Filter, FilterError, Filters};
pub use lineage::{replay_copy, ReplayCopy};
pub use list::{list, ListOptions, Listing};
pub use purge::{purge, PurgeOptions, PurgeSummary};
pub use replay::{
    delete_dead_letters, replay, send_copies, DlqError, ReplayEntry, ReplayOptions, ReplayOutcome,
    ReplaySummary,
};
pub use scan::{Released, Scan, ScanOptions};
pub use view::DeadLetterView;

/// Lineage: how many times a message was replayed from the DLQ (String, a whole number).
pub const ATTR_REPLAY_COUNT: &str = "invite_worker.replay_count";
/// Lineage: when it was last replayed (String, RFC 3339).
pub const ATTR_REPLAYED_AT: &str = "invite_worker.replayed_at";
