//! The inbound event contract, version 1 (see `docs/event-contract.md` and
//! `schemas/invite-event.v1.json`). Decoding is hand-written over `serde_json::Value` so that
//! every error names the field it is about: `data.attributes.given_name: is 2049 characters
//! long; the limit is 2048`.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::email::EmailAddress;
use super::invite::{InviteDetails, InviteId};
use super::text::{check_text, forbidden_char};

pub const CONTRACT_VERSION: u64 = 1;
/// Bodies larger than this are refused before parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 2048;
pub const MAX_ATTRIBUTE_NAME_CHARS: usize = 32;
pub const MAX_ATTRIBUTES: usize = 50;
pub const MAX_GROUPS: usize = 25;
pub const MAX_GROUP_NAME_CHARS: usize = 128;
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
pub const MAX_EXPIRES_IN_DAYS: u64 = 90;
pub const MAX_URL_CHARS: usize = 2048;

/// Attributes the worker sets itself or Cognito owns; an event may not set them. Every
/// `*_verified` attribute is reserved too (see [`reserved_attribute`]).
pub const RESERVED_ATTRIBUTES: [&str; 4] = ["email", "email_verified", "sub", "cognito:username"];

/// Why an event may not set attribute `name`, if it may not: one the worker sets itself or
/// Cognito owns ([`RESERVED_ATTRIBUTES`]), or any verification flag, standard or custom
/// (`email_verified`, `phone_number_verified`, `custom:kyc_verified`, in any letter case): a
/// producer must not mark an address or a phone number verified, a recovery and MFA route into
/// the account.
pub fn reserved_attribute(name: &str) -> Option<&'static str> {
    if name.to_ascii_lowercase().ends_with("_verified") {
        Some("is a verification flag; only invite-worker (email_verified) and Cognito set *_verified attributes")
    } else if RESERVED_ATTRIBUTES.contains(&name) {
        Some("is set by invite-worker itself; put the address in data.email")
    } else {
        None
    }
}

/// A permanent decoding error: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct DecodeError {
    pub field: String,
    pub reason: String,
}

impl DecodeError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Identifies an existing invite in resend/revoke events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InviteRef {
    Email(EmailAddress),
    Id(InviteId),
}

impl InviteRef {
    /// The person's address, when the reference names one (not for a bare invite id).
    pub fn email(&self) -> Option<&EmailAddress> {
        match self {
            InviteRef::Email(e) => Some(e),
            InviteRef::Id(_) => None,
        }
    }
}

/// The normalised email, or the invite id.
impl fmt::Display for InviteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InviteRef::Email(e) => f.write_str(e.as_str()),
            InviteRef::Id(id) => id.fmt(f),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct InviteRequest {
    pub email: EmailAddress,
    pub expires_in_days: Option<u32>,
    pub details: InviteDetails,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventBody {
    InviteRequested(Box<InviteRequest>),
    InviteResend {
        target: InviteRef,
        expires_in_days: Option<u32>,
    },
    InviteRevoke {
        target: InviteRef,
        reason: Option<String>,
    },
    RegistrationCompleted {
        email: EmailAddress,
        sub: Option<String>,
    },
}

impl EventBody {
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::InviteRequested(_) => "invite.requested",
            EventBody::InviteResend { .. } => "invite.resend",
            EventBody::InviteRevoke { .. } => "invite.revoke",
            EventBody::RegistrationCompleted { .. } => "registration.completed",
        }
    }

    /// Which person (invite) the event is about: the email it names, or the invite id a resend
    /// or revoke may name instead.
    pub fn target(&self) -> InviteRef {
        match self {
            EventBody::InviteRequested(req) => InviteRef::Email(req.email.clone()),
            EventBody::InviteResend { target, .. } | EventBody::InviteRevoke { target, .. } => {
                target.clone()
            }
            EventBody::RegistrationCompleted { email, .. } => InviteRef::Email(email.clone()),
        }
    }
}

#[derive(Clone, PartialEq)]
pub struct InboundEvent {
    pub id: String,
    pub occurred_at: Option<OffsetDateTime>,
    pub source: Option<String>,
    pub body: EventBody,
}

impl fmt::Debug for InboundEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundEvent")
            .field("id", &self.id)
            .field("type", &self.body.type_name())
            .finish_non_exhaustive()
    }
}

pub const EVENT_TYPES: [&str; 4] = [
    "invite.requested",
    "invite.resend",
    "invite.revoke",
    "registration.completed",
];

/// Decodes a message body. Never panics; every failure names a field.
pub fn decode(body: &str) -> Result<InboundEvent, DecodeError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(DecodeError::new(
            "body",
            format!("is {} bytes; the limit is {MAX_BODY_BYTES}", body.len()),
        ));
    }
    let value: Value = serde_json::from_str(body)
        .map_err(|e| DecodeError::new("body", format!("is not valid JSON ({e})")))?;
    let mut top = Fields::object(value, "")?;
    let version = top.required("version", as_u64)?;
    if version != CONTRACT_VERSION {
        return Err(DecodeError::new(
            "version",
            format!("is {version}; this worker understands version {CONTRACT_VERSION}"),
        ));
    }
    let kind = top.required("type", as_string)?;
    if !EVENT_TYPES.contains(&kind.as_str()) {
        return Err(DecodeError::new(
            "type",
            format!(
                "{:?} is not one of {}",
                printable(&kind),
                EVENT_TYPES.join(", ")
            ),
        ));
    }
    let id = top.required("id", event_id)?;
    let occurred_at = top.optional("occurred_at", |v, f| {
        let s = as_string(v, f)?;
        OffsetDateTime::parse(&s, &Rfc3339)
            .map_err(|_| DecodeError::new(f, "is not an RFC 3339 timestamp"))
    })?;
    let source = top.optional("source", |v, f| text(v, f, 128))?;
    let data = top.required("data", |v, _| Ok(v))?;
    top.finish()?;
    let mut data = Fields::object(data, "data")?;
    let body = match kind.as_str() {
        "invite.requested" => {
            EventBody::InviteRequested(Box::new(invite_request(&mut data, source.clone())?))
        }
        "invite.resend" => EventBody::InviteResend {
            target: invite_ref(&mut data)?,
            expires_in_days: data.optional("expires_in_days", expires_in_days)?,
        },
        "invite.revoke" => EventBody::InviteRevoke {
            target: invite_ref(&mut data)?,
            reason: data.optional("reason", |v, f| text(v, f, 256))?,
        },
        "registration.completed" => EventBody::RegistrationCompleted {
            email: data.required("email", email)?,
            sub: data.optional("sub", |v, f| text(v, f, 128))?,
        },
        _ => unreachable!("checked against EVENT_TYPES"),
    };
    data.finish()?;
    Ok(InboundEvent {
        id,
        occurred_at,
        source,
        body,
    })
}

fn invite_request(data: &mut Fields, source: Option<String>) -> Result<InviteRequest, DecodeError> {
    let email = data.required("email", email)?;
    let attributes = data.optional("attributes", attributes)?.unwrap_or_default();
    let groups = data.optional("groups", groups)?.unwrap_or_default();
    let locale = data.optional("locale", locale)?;
    let expires_in_days = data.optional("expires_in_days", expires_in_days)?;
    let invited_by = data.optional("invited_by", |v, f| text(v, f, 256))?;
    let external_id = data.optional("external_id", |v, f| text(v, f, 256))?;
    let redirect_url = data.optional("redirect_url", redirect_url)?;
    let metadata = data.optional("metadata", metadata)?.unwrap_or_default();
    Ok(InviteRequest {
        email,
        expires_in_days,
        details: InviteDetails {
            attributes,
            groups,
            locale,
            invited_by,
            external_id,
            redirect_url,
            metadata,
            source,
        },
    })
}

fn invite_ref(data: &mut Fields) -> Result<InviteRef, DecodeError> {
    let email = data.optional("email", email)?;
    let id = data.optional("invite_id", |v, f| {
        let s = as_string(v, f)?;
        InviteId::parse(&s).map_err(|r| DecodeError::new(f, r))
    })?;
    match (email, id) {
        (Some(e), None) => Ok(InviteRef::Email(e)),
        (None, Some(i)) => Ok(InviteRef::Id(i)),
        (None, None) => Err(DecodeError::new(
            "data.email",
            "is required (or data.invite_id)",
        )),
        (Some(_), Some(_)) => Err(DecodeError::new(
            "data.invite_id",
            "give either data.email or data.invite_id, not both",
        )),
    }
}

/// An object whose fields are taken one by one; `finish` rejects whatever is left over.
struct Fields {
    map: Map<String, Value>,
    prefix: String,
}

impl Fields {
    fn object(value: Value, path: &str) -> Result<Self, DecodeError> {
        match value {
            Value::Object(map) => Ok(Self {
                map,
                prefix: path.to_string(),
            }),
            other => Err(DecodeError::new(
                if path.is_empty() { "body" } else { path },
                format!("must be a JSON object, not {}", type_name(&other)),
            )),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn required<T>(
        &mut self,
        key: &str,
        f: impl FnOnce(Value, &str) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let path = self.path(key);
        match self.map.remove(key) {
            None | Some(Value::Null) => Err(DecodeError::new(path, "is required")),
            Some(v) => f(v, &path),
        }
    }

    fn optional<T>(
        &mut self,
        key: &str,
        f: impl FnOnce(Value, &str) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        let path = self.path(key);
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => f(v, &path).map(Some),
        }
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(DecodeError::new(
                self.path(&key_name(k)),
                "is not a field of this contract",
            )),
        }
    }
}

/// An object key as it appears in a field path: [`printable`], and `""` for the empty key, so
/// that an error about it still names a field.
fn key_name(key: &str) -> String {
    if key.is_empty() {
        "\"\"".to_string()
    } else {
        printable(key)
    }
}

/// Input echoed in an error (a field name, an unknown type): at most 64 characters, with
/// control and invisible formatting characters shown as `?`, so that a reason stays short and
/// safe for a DLQ message attribute and a log line.
fn printable(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .take(64)
        .map(|c| if forbidden_char(c) { '?' } else { c })
        .collect();
    cleaned
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn as_string(v: Value, field: &str) -> Result<String, DecodeError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(DecodeError::new(
            field,
            format!("must be a string, not {}", type_name(&other)),
        )),
    }
}

fn as_u64(v: Value, field: &str) -> Result<u64, DecodeError> {
    match &v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| DecodeError::new(field, "must be a whole number")),
        other => Err(DecodeError::new(
            field,
            format!("must be a number, not {}", type_name(other)),
        )),
    }
}

fn text(v: Value, field: &str, max: usize) -> Result<String, DecodeError> {
    let s = as_string(v, field)?;
    if s.trim().is_empty() {
        return Err(DecodeError::new(field, "is empty"));
    }
    check_text(&s, max).map_err(|r| DecodeError::new(field, r))?;
    Ok(s)
}

fn event_id(v: Value, field: &str) -> Result<String, DecodeError> {
    let s = as_string(v, field)?;
    if s.is_empty() || s.len() > 128 {
        return Err(DecodeError::new(field, "must be 1 to 128 characters"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(DecodeError::new(
            field,
            "may contain only letters, digits, '-', '_', '.' and ':'",
        ));
    }
    Ok(s)
}

fn email(v: Value, field: &str) -> Result<EmailAddress, DecodeError> {
    let s = as_string(v, field)?;
    EmailAddress::parse(&s).map_err(|r| DecodeError::new(field, r))
}

fn expires_in_days(v: Value, field: &str) -> Result<u32, DecodeError> {
    let n = as_u64(v, field)?;
    if n == 0 || n > MAX_EXPIRES_IN_DAYS {
        return Err(DecodeError::new(
            field,
            format!("must be between 1 and {MAX_EXPIRES_IN_DAYS}"),
        ));
    }
    Ok(n as u32)
}

fn attributes(v: Value, field: &str) -> Result<BTreeMap<String, String>, DecodeError> {
    let Value::Object(map) = v else {
        return Err(DecodeError::new(
            field,
            format!("must be an object, not {}", type_name(&v)),
        ));
    };
    if map.len() > MAX_ATTRIBUTES {
        return Err(DecodeError::new(
            field,
            format!(
                "has {} attributes; the limit is {MAX_ATTRIBUTES}",
                map.len()
            ),
        ));
    }
    let mut out = BTreeMap::new();
    for (name, value) in map {
        let path = format!("{field}.{}", key_name(&name));
        check_attribute_name(&name).map_err(|r| DecodeError::new(&path, r))?;
        if let Some(why) = reserved_attribute(&name) {
            return Err(DecodeError::new(&path, why));
        }
        let value = match value {
            Value::String(s) => s,
            other => {
                return Err(DecodeError::new(
                    &path,
                    format!(
                        "must be a string, not {} (Cognito attribute values are strings)",
                        type_name(&other)
                    ),
                ))
            }
        };
        check_text(&value, MAX_ATTRIBUTE_VALUE_CHARS).map_err(|r| DecodeError::new(&path, r))?;
        out.insert(name, value);
    }
    Ok(out)
}

fn check_attribute_name(name: &str) -> Result<(), String> {
    let bare = name.strip_prefix("custom:").unwrap_or(name);
    if bare.is_empty() {
        return Err("is an empty attribute name".into());
    }
    if name.chars().count() > MAX_ATTRIBUTE_NAME_CHARS {
        return Err(format!(
            "is longer than Cognito's {MAX_ATTRIBUTE_NAME_CHARS}-character attribute name limit"
        ));
    }
    if !bare
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ':')
    {
        return Err(
            "has a character not allowed in an attribute name (letters, digits, '_', '-', ':')"
                .into(),
        );
    }
    Ok(())
}

fn groups(v: Value, field: &str) -> Result<Vec<String>, DecodeError> {
    let Value::Array(items) = v else {
        return Err(DecodeError::new(
            field,
            format!("must be an array, not {}", type_name(&v)),
        ));
    };
    if items.len() > MAX_GROUPS {
        return Err(DecodeError::new(
            field,
            format!("has {} groups; the limit is {MAX_GROUPS}", items.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("{field}[{i}]");
        let name = text(item, &path, MAX_GROUP_NAME_CHARS)?;
        if name.chars().any(char::is_whitespace) {
            return Err(DecodeError::new(
                path,
                "contains white space, which Cognito group names do not allow",
            ));
        }
        if out.contains(&name) {
            return Err(DecodeError::new(
                path,
                format!("repeats the group {name:?}"),
            ));
        }
        out.push(name);
    }
    Ok(out)
}

fn locale(v: Value, field: &str) -> Result<String, DecodeError> {
    let s = as_string(v, field)?;
    let mut parts = s.split(['-', '_']);
    let lang = parts.next().unwrap_or_default();
    let ok_lang = (2..=3).contains(&lang.len()) && lang.chars().all(|c| c.is_ascii_alphabetic());
    let ok_rest =
        parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if !ok_lang || !ok_rest || s.len() > 35 {
        return Err(DecodeError::new(
            field,
            "is not a language tag such as \"en\" or \"pt-BR\"",
        ));
    }
    Ok(s.replace('_', "-"))
}

fn redirect_url(v: Value, field: &str) -> Result<String, DecodeError> {
    let s = as_string(v, field)?;
    check_text(&s, MAX_URL_CHARS).map_err(|r| DecodeError::new(field, r))?;
    let url =
        url::Url::parse(&s).map_err(|e| DecodeError::new(field, format!("is not a URL ({e})")))?;
    if url.scheme() != "https" {
        return Err(DecodeError::new(field, "must be an https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(DecodeError::new(field, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(DecodeError::new(field, "must not carry credentials"));
    }
    Ok(url.to_string())
}

fn metadata(v: Value, field: &str) -> Result<Map<String, Value>, DecodeError> {
    let Value::Object(map) = v else {
        return Err(DecodeError::new(
            field,
            format!("must be an object, not {}", type_name(&v)),
        ));
    };
    let size = serde_json::to_vec(&map)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    if size > MAX_METADATA_BYTES {
        return Err(DecodeError::new(
            field,
            format!("is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}"),
        ));
    }
    Ok(map)
}
