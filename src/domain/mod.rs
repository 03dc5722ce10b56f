//! The domain: values, the invite record and the pure state machine. No I/O happens here.

pub mod email;
pub mod event;
#[cfg(test)]
mod event_tests;
pub mod feedback;
pub mod invite;
pub mod password;
pub mod pool;
pub mod record;
#[cfg(test)]
mod record_tests;
pub mod redirect;
pub mod standing;
pub mod state;
pub mod text;

pub use email::EmailAddress;
pub use event::{DecodeError, EventBody, InboundEvent, InviteRef, InviteRequest};
pub use invite::{
    BounceDetail, Complaint, HistoryEntry, Invite, InviteDetails, InviteId, InviteStatus, Lease,
    MailFacts, Replay,
};
pub use password::{PasswordPolicy, TemporaryPassword};
pub use pool::PoolProfile;
pub use redirect::RedirectHosts;
pub use standing::{UserStanding, UserStatus};
pub use state::{Effect, Fact, Outcome, Trigger};
