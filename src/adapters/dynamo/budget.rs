//! [`DynamoRateBudget`]: the fleet's rate budgets as counters in the invite table.
//!
//! One item per budget and one-second window: `pk = BUDGET#<budget>`, `sk = <unix second>`, with
//! `granted` (N, tickets asked for so far, may pass the limit) and `ttl` (N, an hour after the
//! window). The item has none of the index attributes (`status`, `open_shard`, `outbox_shard`),
//! so it never appears in an index, and its key never starts with `INVITE#`.
//!
//! A lease is one `UpdateItem` with `ADD granted :want` and `ReturnValues = UPDATED_NEW`: an
//! atomic fetch-and-add, no condition, no read, never a conflict to retry. The caller gets the
//! ticket numbers `new - want .. new` and keeps those under the window's limit.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;

use super::{ATTR_PK, ATTR_SK, ATTR_TTL};
use crate::adapters::aws_errors::classify;
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::ports::RateBudget;

/// Prefix of a budget item's partition key; the budget's name follows.
pub const BUDGET_PK_PREFIX: &str = "BUDGET#";
/// Tickets asked for in the window (N).
pub const ATTR_GRANTED: &str = "granted";
/// How long a window item is kept (TTL) after its window.
pub const BUDGET_TTL_SECONDS: u64 = 3600;

/// Rate budgets in `table` (the invite table). Cheap to clone.
#[derive(Clone, Debug)]
pub struct DynamoRateBudget {
    client: Client,
    table: String,
}

impl DynamoRateBudget {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl RateBudget for DynamoRateBudget {
    async fn take(&self, budget: &str, window: u64, want: u32) -> Result<u64, DownstreamError> {
        let op = "UpdateItem";
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                ATTR_PK,
                AttributeValue::S(format!("{BUDGET_PK_PREFIX}{budget}")),
            )
            .key(ATTR_SK, AttributeValue::S(window.to_string()))
            .update_expression("SET #ttl = :ttl ADD #granted :want")
            .expression_attribute_names("#ttl", ATTR_TTL)
            .expression_attribute_names("#granted", ATTR_GRANTED)
            .expression_attribute_values(
                ":ttl",
                AttributeValue::N((window + BUDGET_TTL_SECONDS).to_string()),
            )
            .expression_attribute_values(":want", AttributeValue::N(want.to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| {
                let mut e = classify(Service::DynamoDb, op, &e, |_| None);
                if matches!(e.kind, ErrorKind::Rejected(_)) {
                    // A missing table or permission is the operator's to fix, not a reason to
                    // give up on the work: the limiter falls back to its local rate meanwhile.
                    e.kind = ErrorKind::Unavailable;
                }
                e
            })?;
        let after = out
            .attributes()
            .and_then(|a| a.get(ATTR_GRANTED))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                DownstreamError::new(
                    Service::DynamoDb,
                    op,
                    ErrorKind::Unavailable,
                    format!("budget item {budget}/{window} came back without a number in {ATTR_GRANTED}"),
                )
            })?;
        Ok(after.saturating_sub(u64::from(want)))
    }
}
