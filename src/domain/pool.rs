//! What the worker knows about the user pool: its attribute schema and password policy, read once
//! with `DescribeUserPool`. Cognito enforces these rules, but moto does not, and a rejected
//! `AdminCreateUser` is a poor error message: so the worker checks an invite against them first
//! and names the offending attribute.

use std::collections::BTreeMap;

use super::event::{reserved_attribute, DecodeError};
use super::password::PasswordPolicy;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttributeKind {
    String,
    Number,
    DateTime,
    Boolean,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributeSpec {
    /// Full name as the API uses it: `given_name`, `custom:test_attribute1`.
    pub name: String,
    pub kind: AttributeKind,
    pub required: bool,
    pub mutable: bool,
    /// Writable only with developer credentials (`dev:custom:`); never set by invites.
    pub developer_only: bool,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub min_value: Option<i64>,
    pub max_value: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolProfile {
    pub user_pool_id: String,
    pub attributes: BTreeMap<String, AttributeSpec>,
    pub password_policy: PasswordPolicy,
}

/// Attributes the worker itself sets on every user.
const SET_BY_WORKER: [&str; 2] = ["email", "email_verified"];

/// Cognito's standard (OpenID Connect) attributes. Every user pool has all of them, optional and
/// mutable unless its schema says otherwise, whether or not `DescribeUserPool` lists them.
pub const STANDARD_ATTRIBUTES: [&str; 19] = [
    "address",
    "birthdate",
    "email",
    "email_verified",
    "family_name",
    "gender",
    "given_name",
    "locale",
    "middle_name",
    "name",
    "nickname",
    "phone_number",
    "phone_number_verified",
    "picture",
    "preferred_username",
    "profile",
    "updated_at",
    "website",
    "zoneinfo",
];

/// Attributes Cognito maintains itself; they appear in schemas but are never set by invites.
pub const SYSTEM_ATTRIBUTES: [&str; 2] = ["identities", "sub"];

fn standard_spec(name: &str) -> AttributeSpec {
    AttributeSpec {
        name: name.to_string(),
        kind: AttributeKind::String,
        required: false,
        mutable: true,
        developer_only: false,
        min_length: None,
        max_length: Some(2048),
        min_value: None,
        max_value: None,
    }
}

impl PoolProfile {
    /// Checks an invite's attributes against the pool's schema. Errors name the field as
    /// `data.attributes.<name>`.
    pub fn check_attributes(
        &self,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), DecodeError> {
        for (name, value) in attributes {
            let field = format!("data.attributes.{name}");
            if let Some(why) = reserved_attribute(name) {
                return Err(DecodeError::new(field, why));
            }
            let standard;
            let spec = match self.attributes.get(name) {
                Some(spec) => Some(spec),
                None if STANDARD_ATTRIBUTES.contains(&name.as_str()) => {
                    standard = standard_spec(name);
                    Some(&standard)
                }
                None => None,
            };
            let Some(spec) = spec else {
                let hint = if !name.starts_with("custom:")
                    && self.attributes.contains_key(&format!("custom:{name}"))
                {
                    format!("; did you mean custom:{name}?")
                } else {
                    String::new()
                };
                return Err(DecodeError::new(
                    field,
                    format!("is not in the user pool's schema{hint}"),
                ));
            };
            if spec.developer_only {
                return Err(DecodeError::new(
                    field,
                    "is a developer-only attribute and cannot be set by an invite",
                ));
            }
            check_value(spec, value).map_err(|r| DecodeError::new(&field, r))?;
        }
        for spec in self.attributes.values() {
            if spec.required
                && !SET_BY_WORKER.contains(&spec.name.as_str())
                && !attributes.contains_key(&spec.name)
            {
                return Err(DecodeError::new(
                    format!("data.attributes.{}", spec.name),
                    "is required by the user pool",
                ));
            }
        }
        Ok(())
    }
}

fn check_value(spec: &AttributeSpec, value: &str) -> Result<(), String> {
    match spec.kind {
        AttributeKind::String => {
            let n = value.chars().count();
            if let Some(min) = spec.min_length {
                if n < min {
                    return Err(format!(
                        "is {n} characters long; the pool requires at least {min}"
                    ));
                }
            }
            let max = spec.max_length.unwrap_or(2048);
            if n > max {
                return Err(format!(
                    "is {n} characters long; the pool allows at most {max}"
                ));
            }
        }
        AttributeKind::Number => {
            let v: i64 = value
                .parse()
                .map_err(|_| "must be a whole number".to_string())?;
            if spec.min_value.is_some_and(|m| v < m) || spec.max_value.is_some_and(|m| v > m) {
                return Err(format!(
                    "is outside the pool's range {:?}..={:?}",
                    spec.min_value, spec.max_value
                ));
            }
        }
        AttributeKind::Boolean => {
            if value != "true" && value != "false" {
                return Err("must be \"true\" or \"false\"".into());
            }
        }
        AttributeKind::DateTime => {
            if value.is_empty() {
                return Err("is empty".into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn spec(name: &str, required: bool, mutable: bool) -> AttributeSpec {
        AttributeSpec {
            name: name.into(),
            kind: AttributeKind::String,
            required,
            mutable,
            developer_only: false,
            min_length: None,
            max_length: None,
            min_value: None,
            max_value: None,
        }
    }

    /// The reference deployment's pool.
    pub fn reference_pool() -> PoolProfile {
        let mut attributes = BTreeMap::new();
        for s in [
            spec("email", true, false),
            spec("email_verified", false, true),
            spec("family_name", true, true),
            spec("given_name", false, true),
            spec("name", false, true),
            AttributeSpec {
                max_length: Some(256),
                ..spec("custom:test_attribute1", false, true)
            },
            AttributeSpec {
                developer_only: true,
                ..spec("dev:custom:secret", false, true)
            },
            AttributeSpec {
                kind: AttributeKind::Number,
                min_value: Some(0),
                max_value: Some(10),
                ..spec("custom:level", false, true)
            },
        ] {
            attributes.insert(s.name.clone(), s);
        }
        PoolProfile {
            user_pool_id: "us-east-1_test".into(),
            attributes,
            password_policy: PasswordPolicy::default(),
        }
    }

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn accepts_schema_attributes() {
        let pool = reference_pool();
        assert!(pool
            .check_attributes(&attrs(&[
                ("family_name", "Doe"),
                ("custom:test_attribute1", "blue")
            ]))
            .is_ok());
    }

    #[test]
    fn names_the_attribute_in_each_rejection() {
        let pool = reference_pool();
        let cases: Vec<(BTreeMap<String, String>, &str)> = vec![
            (
                attrs(&[("given_name", "Jane")]),
                "data.attributes.family_name",
            ),
            (
                attrs(&[("family_name", "Doe"), ("favourite_colour", "J")]),
                "data.attributes.favourite_colour",
            ),
            (
                attrs(&[("family_name", "Doe"), ("test_attribute1", "x")]),
                "data.attributes.test_attribute1",
            ),
            (
                attrs(&[
                    ("family_name", "Doe"),
                    ("custom:test_attribute1", &"x".repeat(257)),
                ]),
                "data.attributes.custom:test_attribute1",
            ),
            (
                attrs(&[("family_name", "Doe"), ("custom:level", "eleven")]),
                "data.attributes.custom:level",
            ),
            (
                attrs(&[("family_name", "Doe"), ("custom:level", "11")]),
                "data.attributes.custom:level",
            ),
            (
                attrs(&[("family_name", "Doe"), ("dev:custom:secret", "x")]),
                "data.attributes.dev:custom:secret",
            ),
            (
                attrs(&[("family_name", "Doe"), ("phone_number_verified", "true")]),
                "data.attributes.phone_number_verified",
            ),
        ];
        for (a, field) in cases {
            let err = pool.check_attributes(&a).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
        let err = pool
            .check_attributes(&attrs(&[("family_name", "Doe"), ("test_attribute1", "x")]))
            .unwrap_err();
        assert!(err.reason.contains("custom:test_attribute1"), "{err}");
    }
}
