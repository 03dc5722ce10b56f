//! Application services: what happens to each event.

pub mod handler;
