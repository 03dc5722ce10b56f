//! Application services: what happens to each event.

pub mod compose;
mod effects;
mod feedback;
#[cfg(test)]
mod feedback_tests;
pub mod handle_error;
pub mod handler;
#[cfg(test)]
mod handler_tests;
#[cfg(test)]
mod lifecycle_tests;
pub mod outbox;
#[cfg(test)]
mod race_tests;
#[cfg(test)]
mod replay_tests;
pub mod template_composer;
#[cfg(test)]
mod test_world;
