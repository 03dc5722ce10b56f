//! Rendering and building email.

pub mod message;
pub mod templates;
