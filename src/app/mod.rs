//! Application services: what happens to each event.

pub mod compose;
pub mod handler;
pub mod template_composer;
#[cfg(test)]
mod handler_tests;
