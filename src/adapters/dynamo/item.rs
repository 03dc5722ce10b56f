//! One invite <-> one DynamoDB item: the record's fields as native attributes, plus the key and
//! index attributes derived from them at save time (see the layout in [`super`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use super::attributes::{from_attribute_map, to_attribute_map};
use super::*;
use crate::domain::{Invite, InviteId};
use crate::ports::StoreError;

/// The attributes this module derives; stripped before an item is read back as an [`Invite`].
const DERIVED: [&str; 7] = [
    ATTR_PK,
    ATTR_SK,
    ATTR_OPEN_SHARD,
    ATTR_OPEN_EXPIRES_AT,
    ATTR_UPDATED_MS,
    ATTR_OUTBOX_SHARD,
    ATTR_TTL,
];

/// `INVITE#<invite_id>`.
pub fn pk_for(id: &InviteId) -> String {
    format!("{PK_PREFIX}{id}")
}

/// The invite id in a partition key, or why it is not one.
pub fn id_from_pk(pk: &str) -> Result<InviteId, String> {
    let raw = pk
        .strip_prefix(PK_PREFIX)
        .ok_or_else(|| format!("partition key {pk:?} does not start with {PK_PREFIX}"))?;
    InviteId::parse(raw).map_err(|e| format!("partition key {pk:?}: invite id {e}"))
}

/// The key of an invite's item.
pub fn key_for(id: &InviteId) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (ATTR_PK.to_string(), AttributeValue::S(pk_for(id))),
        (
            ATTR_SK.to_string(),
            AttributeValue::S(SK_INVITE.to_string()),
        ),
    ])
}

/// The `open-by-expiry` shard of an invite: FNV-1a (64-bit) of the id's text, modulo `shards`.
/// Stable across processes and releases; changing `shards` needs a backfill of `open_shard`.
pub fn shard_of(id: &InviteId, shards: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(shards.max(1))) as u32
}

/// `OPEN#<n>`.
pub fn shard_name(shard: u32) -> String {
    format!("{OPEN_SHARD_PREFIX}{shard}")
}

/// Unix milliseconds, the sort key of the status and outbox indexes.
pub fn unix_millis(at: OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos() / 1_000_000
}

/// The full item for `invite`.
pub fn to_item(invite: &Invite, shards: u32) -> Result<HashMap<String, AttributeValue>, String> {
    let Value::Object(fields) =
        serde_json::to_value(invite).map_err(|e| format!("cannot serialise the record: {e}"))?
    else {
        return Err("the record does not serialise to an object".into());
    };
    let mut item = to_attribute_map(&fields);
    item.extend(key_for(&invite.invite_id));
    item.insert(
        ATTR_UPDATED_MS.into(),
        AttributeValue::N(unix_millis(invite.updated_at).to_string()),
    );
    if invite.status.is_open() {
        let shard = shard_of(&invite.invite_id, shards);
        item.insert(ATTR_OPEN_SHARD.into(), AttributeValue::S(shard_name(shard)));
        item.insert(
            ATTR_OPEN_EXPIRES_AT.into(),
            AttributeValue::N(invite.expires_at.unix_timestamp().to_string()),
        );
    } else {
        let ttl = invite.updated_at + Duration::days(RETENTION_DAYS);
        item.insert(
            ATTR_TTL.into(),
            AttributeValue::N(ttl.unix_timestamp().to_string()),
        );
    }
    if !invite.outbox.is_empty() {
        item.insert(
            ATTR_OUTBOX_SHARD.into(),
            AttributeValue::S(OUTBOX_SHARD.into()),
        );
    }
    Ok(item)
}

/// Reads an item back as an invite; anything unreadable is [`StoreError::Corrupt`] naming the key.
pub fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Invite, StoreError> {
    let key = match item.get(ATTR_PK) {
        Some(AttributeValue::S(pk)) => pk.clone(),
        _ => "(item without a pk)".to_string(),
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.clone(),
        reason,
    };
    let mut fields = from_attribute_map(item).map_err(corrupt)?;
    for name in DERIVED {
        fields.remove(name);
    }
    let invite: Invite =
        serde_json::from_value(Value::Object(fields)).map_err(|e| corrupt(e.to_string()))?;
    if pk_for(&invite.invite_id) != key {
        return Err(corrupt(format!(
            "invite_id {} does not match the key",
            invite.invite_id
        )));
    }
    Ok(invite)
}
