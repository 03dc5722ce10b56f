//! Operating the service: the logic behind `invite-worker dlq ...` (look at, replay and purge dead
//! letters) and `invite-worker enqueue` (validate and send invites in bulk from CSV or JSON
//! Lines). The CLI files in `crate::cli` only parse arguments and print; everything here works
//! over the queue port ([`crate::ports::Queue`], found by URL through [`crate::ports::Queues`]),
//! so it is unit-tested with the in-memory fake ([`crate::adapters::memory::MemoryQueues`]).
//!
//! See `docs/operations.md` for the operator's view.

pub mod dlq;
pub mod enqueue;
pub mod send;
