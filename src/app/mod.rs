//! Application services: what happens to each event.

pub mod compose;
pub mod handler;
#[cfg(test)]
mod handler_tests;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod replay_tests;
pub mod template_composer;
#[cfg(test)]
mod test_world;
