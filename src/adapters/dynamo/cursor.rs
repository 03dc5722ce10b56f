//! Opaque page cursors: the hex of a small JSON document naming the query it belongs to, the
//! shard (for sharded indexes) and DynamoDB's `LastEvaluatedKey` (key attributes are only ever
//! `S` or `N`). Hex keeps the cursor safe in URLs and command lines; it is not a secret, and a
//! cursor from another query is refused rather than silently misused.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

/// A position in a query: where the next page starts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Which query issued it (`open`, `status:pending`...).
    pub query: String,
    /// The shard to continue in, for sharded indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    /// `ExclusiveStartKey`; empty means "from the start of the shard".
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key: BTreeMap<String, KeyValue>,
}

/// A key attribute's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyValue {
    S(String),
    N(String),
}

impl Cursor {
    pub fn new(
        query: impl Into<String>,
        shard: Option<u32>,
        last_key: Option<&HashMap<String, AttributeValue>>,
    ) -> Result<Self, String> {
        let mut key = BTreeMap::new();
        for (name, value) in last_key.into_iter().flatten() {
            let v = match value {
                AttributeValue::S(s) => KeyValue::S(s.clone()),
                AttributeValue::N(n) => KeyValue::N(n.clone()),
                _ => return Err(format!("key attribute {name} is neither S nor N")),
            };
            key.insert(name.clone(), v);
        }
        Ok(Self {
            query: query.into(),
            shard,
            key,
        })
    }

    pub fn encode(&self) -> String {
        // Serialising strings and maps of strings cannot fail.
        hex::encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes `text` and checks it was issued by `query`.
    pub fn decode(text: &str, query: &str) -> Result<Self, String> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| "is not a cursor this store issued (not hex)".to_string())?;
        let cursor: Cursor = serde_json::from_slice(&bytes)
            .map_err(|e| format!("is not a cursor this store issued ({e})"))?;
        if cursor.query != query {
            return Err(format!(
                "belongs to query {:?}, not {query:?}",
                cursor.query
            ));
        }
        Ok(cursor)
    }

    /// The `ExclusiveStartKey` to resume from, if any.
    pub fn start_key(&self) -> Option<HashMap<String, AttributeValue>> {
        if self.key.is_empty() {
            return None;
        }
        Some(
            self.key
                .iter()
                .map(|(k, v)| {
                    let av = match v {
                        KeyValue::S(s) => AttributeValue::S(s.clone()),
                        KeyValue::N(n) => AttributeValue::N(n.clone()),
                    };
                    (k.clone(), av)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_the_query() {
        let lek = HashMap::from([
            ("pk".to_string(), AttributeValue::S("INVITE#x".into())),
            (
                "open_expires_at".to_string(),
                AttributeValue::N("17".into()),
            ),
        ]);
        let c = Cursor::new("open", Some(3), Some(&lek)).unwrap();
        let text = c.encode();
        assert!(text.chars().all(|ch| ch.is_ascii_hexdigit()));
        let back = Cursor::decode(&text, "open").unwrap();
        assert_eq!(back, c);
        assert_eq!(back.start_key().unwrap(), lek);
        assert!(Cursor::decode(&text, "status:sent")
            .unwrap_err()
            .contains("belongs to query"));
        assert!(Cursor::decode("zz", "open").is_err());
        assert!(Cursor::decode(&hex::encode(b"{}"), "open").is_err());
    }

    #[test]
    fn empty_key_means_start_of_shard() {
        let c = Cursor::new("open", Some(1), None).unwrap();
        assert_eq!(
            Cursor::decode(&c.encode(), "open").unwrap().start_key(),
            None
        );
    }
}
