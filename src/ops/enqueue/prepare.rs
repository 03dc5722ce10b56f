//! From an [`Item`] to a [`Prepared`] message: the event built around a `data` object, checked
//! by the worker's own decoder (so the rules live in one place), with a deterministic event id.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::group_id;
use super::item::{Item, Origin};
use crate::domain::event::decode;

/// Prefix of the event ids `enqueue` derives from row content.
pub const BULK_ID_PREFIX: &str = "bulk-";
/// The FIFO group of messages sent despite failing validation (`--no-validate`).
pub const INVALID_GROUP_ID: &str = "invalid";

/// One message, ready to send (or refused, with the reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub origin: Origin,
    /// The message body (empty for an unreadable item).
    pub body: String,
    /// The address: normalised when the event is valid, as written otherwise.
    pub email: Option<String>,
    pub event_id: Option<String>,
    /// `invite.requested`..., when the event is valid.
    pub event_type: Option<&'static str>,
    /// `MessageGroupId` on FIFO queues: the normalised address.
    pub group_id: String,
    /// `MessageDeduplicationId` on FIFO queues: the event id.
    pub dedup_id: String,
    /// Why it is invalid (`data.email: has no @`); `None` when valid.
    pub problem: Option<String>,
}

impl Prepared {
    /// Whether there is a body to send at all (only with `--no-validate` for invalid ones).
    pub fn sendable(&self) -> bool {
        !self.body.is_empty()
    }
}

/// The event id for a `data` object: `bulk-` and the first 32 hex digits of the SHA-256 of its
/// canonical JSON (keys sorted, the address trimmed and lower-cased), after `salt` if given.
/// The same row gives the same id in any file and on any run, so sending a file again is a
/// redelivery the worker ignores.
pub fn event_id_for(data: &Map<String, Value>, salt: Option<&str>) -> String {
    let mut normalised = data.clone();
    if let Some(Value::String(email)) = normalised.get_mut("email") {
        *email = email.trim().to_ascii_lowercase();
    }
    let mut canonical = String::new();
    write_canonical(&Value::Object(normalised), &mut canonical);
    let mut hasher = Sha256::new();
    if let Some(salt) = salt {
        hasher.update(salt.as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(canonical.as_bytes());
    let digest = hex::encode(hasher.finalize());
    format!("{BULK_ID_PREFIX}{}", &digest[..32])
}

/// JSON with object keys sorted at every level, whatever serde_json's map order is.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The address a raw body names in `data.email`, if any.
fn raw_email(value: Option<&Value>) -> Option<String> {
    value?
        .get("data")?
        .get("email")?
        .as_str()
        .map(str::to_string)
}

/// Checks an item and builds its message.
pub fn prepare(item: Item, salt: Option<&str>) -> Prepared {
    match item {
        Item::Data { origin, data } => {
            let id = event_id_for(&data, salt);
            let event = json!({
                "version": 1,
                "type": "invite.requested",
                "id": id,
                "data": Value::Object(data),
            });
            let body = event.to_string();
            checked(origin, body, Some(&event), Some(id.clone()), id)
        }
        Item::Event { origin, text } => {
            let raw: Option<Value> = serde_json::from_str(&text).ok();
            let raw_id = raw
                .as_ref()
                .and_then(|v| v.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let dedup = sha256_hex(&text);
            checked(origin, text, raw.as_ref(), raw_id, dedup)
        }
        Item::Unreadable {
            origin,
            reason,
            email,
        } => Prepared {
            origin,
            body: String::new(),
            email,
            event_id: None,
            event_type: None,
            group_id: INVALID_GROUP_ID.into(),
            dedup_id: String::new(),
            problem: Some(reason),
        },
    }
}

/// Decodes `body`: a valid event gets its own id, address and group; an invalid one keeps what
/// can be read from the raw JSON and the decoder's reason.
fn checked(
    origin: Origin,
    body: String,
    raw: Option<&Value>,
    raw_id: Option<String>,
    fallback_dedup: String,
) -> Prepared {
    match decode(&body) {
        Ok(event) => Prepared {
            origin,
            email: event.body.target().email().map(|e| e.as_str().to_string()),
            event_type: Some(event.body.type_name()),
            group_id: group_id(&event.body),
            dedup_id: event.id.clone(),
            event_id: Some(event.id),
            problem: None,
            body,
        },
        Err(e) => Prepared {
            origin,
            email: raw_email(raw),
            event_id: raw_id,
            event_type: None,
            group_id: INVALID_GROUP_ID.into(),
            dedup_id: fallback_dedup,
            problem: Some(e.to_string()),
            body,
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn data(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn row(line: u64, v: Value) -> Item {
        Item::Data {
            origin: Origin::new("new.csv", line),
            data: data(v),
        }
    }

    #[test]
    fn ids_are_deterministic_and_insensitive_to_key_order_and_address_case() {
        let a = data(
            json!({"email": "Jane@Example.com", "attributes": {"given_name": "Jane", "family_name": "Doe"}}),
        );
        let b = data(
            json!({"attributes": {"family_name": "Doe", "given_name": "Jane"}, "email": "jane@example.com"}),
        );
        let id = event_id_for(&a, None);
        assert_eq!(id, event_id_for(&b, None));
        assert!(id.starts_with("bulk-"));
        assert_eq!(id.len(), 5 + 32);
        assert!(id[5..].chars().all(|c| c.is_ascii_hexdigit()));
        let c = data(
            json!({"email": "jane@example.com", "attributes": {"given_name": "Janet", "family_name": "Doe"}}),
        );
        assert_ne!(
            id,
            event_id_for(&c, None),
            "different content, different id"
        );
        assert_ne!(
            id,
            event_id_for(&a, Some("2026-12")),
            "a salt makes new ids"
        );
        assert_eq!(event_id_for(&a, Some("x")), event_id_for(&b, Some("x")));
    }

    #[test]
    fn a_good_row_becomes_a_valid_event_with_its_group() {
        let p = prepare(
            row(
                2,
                json!({"email": "Jane@Example.com", "attributes": {"given_name": "Jane", "family_name": "Doe"}}),
            ),
            None,
        );
        assert_eq!(p.problem, None);
        assert_eq!(p.email.as_deref(), Some("jane@example.com"));
        assert_eq!(p.group_id, "jane@example.com");
        assert_eq!(p.event_id.as_deref(), Some(p.dedup_id.as_str()));
        let event = decode(&p.body).unwrap();
        assert_eq!(event.body.type_name(), "invite.requested");
        assert_eq!(Some(event.id), p.event_id);
    }

    #[test]
    fn bad_rows_are_named_by_field_and_reason() {
        for (v, want) in [
            (json!({"email": "jane.example.com"}), "data.email: has no @"),
            (json!({"attributes": {"given_name": "x"}}), "data.email: is required"),
            (
                json!({"email": "a@example.com", "expires_in_days": "soon"}),
                "data.expires_in_days: must be a number, not a string",
            ),
            (
                json!({"email": "a@example.com", "expires_in_days": 365}),
                "data.expires_in_days: must be between 1 and 90",
            ),
            (
                json!({"email": "a@example.com", "attributes": {"email_verified": "true"}}),
                "data.attributes.email_verified: is a verification flag; only invite-worker (email_verified) and Cognito set *_verified attributes",
            ),
            (
                json!({"email": "a@example.com", "groups": ["new starters"]}),
                "data.groups[0]: contains white space, which Cognito group names do not allow",
            ),
        ] {
            let p = prepare(row(7, v), None);
            assert_eq!(p.problem.as_deref(), Some(want));
            assert_eq!(p.group_id, INVALID_GROUP_ID);
            assert!(p.event_id.is_some(), "an id even for a bad row (the results file shows it)");
        }
        let p = prepare(row(7, json!({"email": "jane.example.com"})), None);
        assert_eq!(p.email.as_deref(), Some("jane.example.com"));
        assert_eq!(
            format!("{}: {}", p.origin.label(false), p.problem.unwrap()),
            "line 7: data.email: has no @"
        );
    }

    #[test]
    fn whole_events_keep_their_own_id_and_text() {
        let text = "{\"version\": 1, \"type\": \"invite.revoke\", \"id\": \"evt-9\", \"data\": {\"email\": \"Max@Example.com\"}}";
        let p = prepare(
            Item::Event {
                origin: Origin::new("events.jsonl", 3),
                text: text.into(),
            },
            None,
        );
        assert_eq!(p.problem, None);
        assert_eq!(p.body, text);
        assert_eq!(p.event_id.as_deref(), Some("evt-9"));
        assert_eq!(p.dedup_id, "evt-9");
        assert_eq!(p.group_id, "max@example.com");

        let p = prepare(
            Item::Event {
                origin: Origin::new("bad.json", 0),
                text: "{\"version\": 1, \"type\": \"invite.requested\"".into(),
            },
            None,
        );
        assert!(p
            .problem
            .as_deref()
            .unwrap()
            .starts_with("body: is not valid JSON"));
        assert_eq!(p.event_id, None);
        assert_eq!(p.dedup_id.len(), 64);
        assert!(p.sendable(), "--no-validate can still send it");
    }

    #[test]
    fn unreadable_rows_cannot_be_sent() {
        let p = prepare(
            Item::Unreadable {
                origin: Origin::new("f.csv", 4),
                reason: "row: has 3 cells but the header names 2 columns".into(),
                email: Some("a@example.com".into()),
            },
            None,
        );
        assert!(!p.sendable());
        assert_eq!(p.email.as_deref(), Some("a@example.com"));
    }
}
