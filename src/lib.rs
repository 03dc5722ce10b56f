//! invite-worker: turns invite events on SQS into Cognito users and branded invitation emails,
//! keeping each invite's state in DynamoDB. See ARCHITECTURE.md for the map.

pub mod adapters;
pub mod app;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod feedback;
pub mod lifecycle;
pub mod mail;
pub mod observe;
pub mod ops;
pub mod ports;
pub mod ratelimit;
pub mod setup;
pub mod telemetry;
pub mod wiring;
pub mod worker;
