//! Adapters: the ports in `crate::ports` implemented on real systems, and in memory.

pub mod aws_errors;
