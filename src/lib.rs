//! invite-worker: turns invite events on SQS into Cognito users and branded invitation emails,
//! keeping each invite's state in DynamoDB. See ARCHITECTURE.md for the map.

pub mod domain;
pub mod adapters;
pub mod config;
pub mod error;
pub mod ports;
