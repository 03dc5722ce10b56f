//! [`DynamoInviteStore`]: the invite store on one DynamoDB table.
//!
//! # Table layout
//!
//! One item per invite. Key: `pk` (S) = `INVITE#<invite_id>`, `sk` (S) = `INVITE`; the table's
//! key schema is `pk` HASH, `sk` RANGE. The record's fields are stored as native attributes
//! (objects as `M`, arrays as `L`, numbers as `N`, see [`to_attribute_value`]), so the item is
//! readable in the console and `status`/`version` are usable in expressions.
//!
//! Written alongside the record, derived from it on every save:
//!
//! | attribute         | type | present when            | value                                    |
//! |-------------------|------|-------------------------|------------------------------------------|
//! | `open_shard`      | S    | status pending or sent  | `OPEN#<n>`, n = [`item::shard_of`] (FNV-1a of the id) % shards |
//! | `open_expires_at` | N    | status pending or sent  | `expires_at`, unix seconds               |
//! | `updated_ms`      | N    | always                  | `updated_at`, unix milliseconds          |
//! | `outbox_shard`    | S    | outbox not empty        | `OUTBOX`                                 |
//! | `ttl`             | N    | status closed           | `updated_at` + [`RETENTION_DAYS`], unix seconds (enable TTL on `ttl`) |
//!
//! Global secondary indexes:
//!
//! | index            | hash           | range             | projection | holds                 |
//! |------------------|----------------|-------------------|------------|-----------------------|
//! | `open-by-expiry` | `open_shard`   | `open_expires_at` | KEYS_ONLY  | open invites only (sparse) |
//! | `by-status`      | `status`       | `updated_ms`      | ALL        | every invite          |
//! | `unpublished`    | `outbox_shard` | `updated_ms`      | KEYS_ONLY  | invites with an outbox (sparse) |
//!
//! The open index is sharded so that expiry sweeps over many open invites do not pile onto one
//! partition; [`DynamoInviteStore::open_expired`] queries shard after shard (oldest first within
//! a shard), reading only invites already past expiry, never scanning. Closed invites leave the
//! open index the moment they are saved and leave the table a year later through TTL.
//!
//! # Writes
//!
//! `save` is a PutItem conditional on the previous version (`attribute_not_exists(pk)` for
//! version 1, `version = :prev` otherwise): a lost race is [`StoreError::Conflict`]. Every
//! expression names attributes through `ExpressionAttributeNames` (`status` and `ttl` are
//! reserved words).
//!
//! # Rate budgets
//!
//! The fleet's shared rate budgets live in the same table under their own partition keys
//! (`BUDGET#<name>`, one item per one-second window, with a `ttl`): see [`budget`].
//!
//! # Cursors
//!
//! Page cursors are opaque strings: hex of a JSON document with the query they belong to, the
//! shard to continue in (open index) and DynamoDB's `LastEvaluatedKey`. See [`cursor`].

mod attributes;
pub mod budget;
pub mod cursor;
pub mod item;

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use time::OffsetDateTime;

pub use attributes::{
    from_attribute_map, from_attribute_value, to_attribute_map, to_attribute_value,
};
use cursor::Cursor;

use crate::adapters::aws_errors::classify;
use crate::domain::{Invite, InviteId, InviteStatus};
use crate::error::{DownstreamError, ErrorKind, Service};
use crate::ports::{InviteStore, Page, StoreError};

/// Partition key attribute (S).
pub const ATTR_PK: &str = "pk";
/// Sort key attribute (S).
pub const ATTR_SK: &str = "sk";
/// Prefix of the partition key; the invite id follows.
pub const PK_PREFIX: &str = "INVITE#";
/// Sort key of the invite item.
pub const SK_INVITE: &str = "INVITE";
/// The record's optimistic-concurrency counter (N), a field of the record.
pub const ATTR_VERSION: &str = "version";
/// The record's status (S), a field of the record; hash key of [`INDEX_STATUS`].
pub const ATTR_STATUS: &str = "status";
/// Hash key of [`INDEX_OPEN`] (S, `OPEN#<n>`), present only on open invites.
pub const ATTR_OPEN_SHARD: &str = "open_shard";
/// Prefix of [`ATTR_OPEN_SHARD`] values.
pub const OPEN_SHARD_PREFIX: &str = "OPEN#";
/// Range key of [`INDEX_OPEN`] (N, unix seconds of `expires_at`), present only on open invites.
pub const ATTR_OPEN_EXPIRES_AT: &str = "open_expires_at";
/// Range key of [`INDEX_STATUS`] and [`INDEX_UNPUBLISHED`] (N, unix millis of `updated_at`).
pub const ATTR_UPDATED_MS: &str = "updated_ms";
/// Hash key of [`INDEX_UNPUBLISHED`] (S, always [`OUTBOX_SHARD`]), present only with an outbox.
pub const ATTR_OUTBOX_SHARD: &str = "outbox_shard";
/// The one value of [`ATTR_OUTBOX_SHARD`].
pub const OUTBOX_SHARD: &str = "OUTBOX";
/// Expiry time for DynamoDB TTL (N, unix seconds), present only on closed invites.
pub const ATTR_TTL: &str = "ttl";
/// Sparse index of open invites by expiry. Projection KEYS_ONLY.
pub const INDEX_OPEN: &str = "open-by-expiry";
/// Index of invites by status, newest update last. Projection ALL.
pub const INDEX_STATUS: &str = "by-status";
/// Sparse index of invites with unpublished lifecycle events. Projection KEYS_ONLY.
pub const INDEX_UNPUBLISHED: &str = "unpublished";
/// How long a closed invite stays before TTL removes it.
pub const RETENTION_DAYS: i64 = 365;

/// The invite store on DynamoDB. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DynamoInviteStore {
    client: Client,
    table: String,
    open_index_shards: u32,
}

impl DynamoInviteStore {
    /// A store on `table`, with `open_index_shards` shards in the open index (at least 1; it must
    /// match what existing items were written with).
    pub fn new(client: Client, table: impl Into<String>, open_index_shards: u32) -> Self {
        Self {
            client,
            table: table.into(),
            open_index_shards: open_index_shards.max(1),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Maps an SDK error. A missing table or index is an operator's problem, not the message's:
    /// it is reported as unavailable (transient), like a permissions error.
    fn downstream<E>(
        &self,
        operation: &'static str,
        err: &SdkError<E, HttpResponse>,
    ) -> DownstreamError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let mut e = classify(Service::DynamoDb, operation, err, |_| None);
        if e.kind == ErrorKind::Rejected("resource_not_found".into()) {
            e.kind = ErrorKind::Unavailable;
            e.message = format!(
                "{}; does table {} exist (run bootstrap)?",
                e.message, self.table
            );
        }
        e
    }

    fn query(&self, index: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(index)
    }

    /// One Query page: the items and the `LastEvaluatedKey`.
    async fn query_page(&self, query: QueryFluentBuilder) -> Result<QueryPage, StoreError> {
        let out = query
            .send()
            .await
            .map_err(|e| self.downstream("Query", &e))?;
        Ok((out.items().to_vec(), out.last_evaluated_key().cloned()))
    }
}

type Item = HashMap<String, AttributeValue>;
type QueryPage = (Vec<Item>, Option<Item>);

fn invalid_cursor(reason: String) -> StoreError {
    StoreError::Downstream(DownstreamError::new(
        Service::DynamoDb,
        "Query",
        ErrorKind::Rejected("invalid_cursor".into()),
        format!("cursor {reason}"),
    ))
}

fn encode_cursor(
    query: &str,
    shard: Option<u32>,
    key: Option<&Item>,
) -> Result<String, StoreError> {
    Cursor::new(query, shard, key)
        .map(|c| c.encode())
        .map_err(|reason| StoreError::Corrupt {
            key: "LastEvaluatedKey".into(),
            reason,
        })
}

/// The invite id in a keys-only index item.
fn id_of(item: &Item) -> Result<InviteId, StoreError> {
    match item.get(ATTR_PK) {
        Some(AttributeValue::S(pk)) => item::id_from_pk(pk).map_err(|reason| StoreError::Corrupt {
            key: pk.clone(),
            reason,
        }),
        _ => Err(StoreError::Corrupt {
            key: "(index item without a pk)".into(),
            reason: "no string pk".into(),
        }),
    }
}

fn page_limit(remaining: usize) -> i32 {
    i32::try_from(remaining).unwrap_or(i32::MAX)
}

const OPEN_QUERY: &str = "open";

#[async_trait]
impl InviteStore for DynamoInviteStore {
    async fn load(&self, id: &InviteId) -> Result<Option<Invite>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(item::key_for(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.downstream("GetItem", &e))?;
        match out.item() {
            None => Ok(None),
            Some(found) if found.is_empty() => Ok(None),
            Some(found) => item::from_item(found).map(Some),
        }
    }

    async fn save(&self, invite: &Invite) -> Result<(), StoreError> {
        let key = item::pk_for(&invite.invite_id);
        if invite.version == 0 {
            return Err(StoreError::Corrupt {
                key,
                reason: "version 0 is not a record version (the first is 1)".into(),
            });
        }
        let record = item::to_item(invite, self.open_index_shards)
            .map_err(|reason| StoreError::Corrupt { key, reason })?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(record));
        let put = if invite.version == 1 {
            put.condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", ATTR_PK)
        } else {
            put.condition_expression("#v = :prev")
                .expression_attribute_names("#v", ATTR_VERSION)
                .expression_attribute_values(
                    ":prev",
                    AttributeValue::N((invite.version - 1).to_string()),
                )
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict)
            }
            Err(e) => Err(self.downstream("PutItem", &e).into()),
        }
    }

    async fn open_expired(
        &self,
        now: OffsetDateTime,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<InviteId>, StoreError> {
        let (mut shard, mut start) = match cursor.as_deref() {
            Some(text) => {
                let c = Cursor::decode(text, OPEN_QUERY).map_err(invalid_cursor)?;
                (c.shard.unwrap_or(0), c.start_key())
            }
            None => (0, None),
        };
        let mut items = Vec::new();
        if limit == 0 {
            return Ok(Page {
                items,
                next: cursor,
            });
        }
        while shard < self.open_index_shards {
            let query = self
                .query(INDEX_OPEN)
                .key_condition_expression("#shard = :shard AND #exp <= :now")
                .expression_attribute_names("#shard", ATTR_OPEN_SHARD)
                .expression_attribute_names("#exp", ATTR_OPEN_EXPIRES_AT)
                .expression_attribute_values(":shard", AttributeValue::S(item::shard_name(shard)))
                .expression_attribute_values(
                    ":now",
                    AttributeValue::N(now.unix_timestamp().to_string()),
                )
                .scan_index_forward(true)
                .limit(page_limit(limit - items.len()))
                .set_exclusive_start_key(start.take());
            let (found, last) = self.query_page(query).await?;
            for it in &found {
                items.push(id_of(it)?);
            }
            match last {
                Some(last) => {
                    if items.len() >= limit {
                        return Ok(Page {
                            items,
                            next: Some(encode_cursor(OPEN_QUERY, Some(shard), Some(&last))?),
                        });
                    }
                    start = Some(last);
                }
                None => {
                    shard += 1;
                    if items.len() >= limit && shard < self.open_index_shards {
                        return Ok(Page {
                            items,
                            next: Some(encode_cursor(OPEN_QUERY, Some(shard), None)?),
                        });
                    }
                }
            }
        }
        Ok(Page { items, next: None })
    }

    async fn list_by_status(
        &self,
        status: InviteStatus,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<Page<Invite>, StoreError> {
        let query_name = format!("status:{status}");
        let start = match cursor.as_deref() {
            Some(text) => Cursor::decode(text, &query_name)
                .map_err(invalid_cursor)?
                .start_key(),
            None => None,
        };
        if limit == 0 {
            return Ok(Page {
                items: Vec::new(),
                next: cursor,
            });
        }
        let query = self
            .query(INDEX_STATUS)
            .key_condition_expression("#status = :status")
            .expression_attribute_names("#status", ATTR_STATUS)
            .expression_attribute_values(":status", AttributeValue::S(status.as_str().into()))
            .scan_index_forward(false)
            .limit(page_limit(limit))
            .set_exclusive_start_key(start);
        let (found, last) = self.query_page(query).await?;
        let items = found
            .iter()
            .map(item::from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match last {
            Some(last) => Some(encode_cursor(&query_name, None, Some(&last))?),
            None => None,
        };
        Ok(Page { items, next })
    }

    async fn with_unpublished(&self, limit: usize) -> Result<Vec<InviteId>, StoreError> {
        let mut ids = Vec::new();
        let mut start = None;
        while ids.len() < limit {
            let query = self
                .query(INDEX_UNPUBLISHED)
                .key_condition_expression("#outbox = :outbox")
                .expression_attribute_names("#outbox", ATTR_OUTBOX_SHARD)
                .expression_attribute_values(":outbox", AttributeValue::S(OUTBOX_SHARD.into()))
                .scan_index_forward(true)
                .limit(page_limit(limit - ids.len()))
                .set_exclusive_start_key(start.take());
            let (found, last) = self.query_page(query).await?;
            for it in &found {
                ids.push(id_of(it)?);
            }
            match last {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests;
