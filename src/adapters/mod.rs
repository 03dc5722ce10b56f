//! Adapters: the ports in `crate::ports` implemented on real systems, and in memory.

pub mod aws_errors;
pub mod cognito;
pub mod dynamo;
pub mod guarded;
pub mod instrumented;
pub mod limited;
pub mod memory;
pub mod no_throttle_retry;
pub mod probe;
pub mod profile_cache;
pub mod ses;
pub mod ses_suppression;
pub mod smtp;
pub mod sqs;
pub mod sqs_publisher;
