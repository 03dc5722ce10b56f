//! Arbitrary bytes as an SQS message body. If they are UTF-8 they go through `decode`; a decoded
//! `invite.requested` is also checked against the reference pool's schema, and its address must
//! survive a second parse unchanged (normalisation is idempotent). The input string is also fed
//! to `EmailAddress::parse` directly, since random bytes rarely decode into a whole event.
//!
//! Nothing here may panic: every outcome is `Ok` or an error naming a field.

#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use invite_worker::domain::event::decode;
use invite_worker::domain::pool::{AttributeKind, AttributeSpec};
use invite_worker::domain::{EmailAddress, EventBody, PasswordPolicy, PoolProfile};
use libfuzzer_sys::fuzz_target;

fn spec(name: &str, required: bool, mutable: bool, max_length: Option<usize>) -> AttributeSpec {
    AttributeSpec {
        name: name.into(),
        kind: AttributeKind::String,
        required,
        mutable,
        developer_only: false,
        min_length: None,
        max_length,
        min_value: None,
        max_value: None,
    }
}

/// The reference deployment's pool: email (required, immutable), family_name (required),
/// given_name, custom:test_attribute1 (max 256).
fn reference_pool() -> &'static PoolProfile {
    static POOL: OnceLock<PoolProfile> = OnceLock::new();
    POOL.get_or_init(|| {
        let attributes: BTreeMap<String, AttributeSpec> = [
            spec("email", true, false, None),
            spec("email_verified", false, true, None),
            spec("family_name", true, true, None),
            spec("given_name", false, true, None),
            spec("custom:test_attribute1", false, true, Some(256)),
        ]
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
        PoolProfile {
            user_pool_id: "us-east-1_fuzz".into(),
            attributes,
            password_policy: PasswordPolicy::default(),
        }
    })
}

/// `parse(normalised) == normalised`, and every error is a non-empty reason.
fn check_email_round_trip(input: &str) {
    match EmailAddress::parse(input) {
        Ok(address) => {
            let normalised = address.as_str();
            match EmailAddress::parse(normalised) {
                Ok(again) => assert_eq!(again.as_str(), normalised, "normalisation is idempotent"),
                Err(why) => panic!("the normalised address {normalised:?} does not parse: {why}"),
            }
        }
        Err(why) => assert!(!why.is_empty(), "an email error must give a reason"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    if body.len() <= 512 {
        check_email_round_trip(body);
    }
    match decode(body) {
        Ok(event) => {
            if let EventBody::InviteRequested(request) = &event.body {
                if let Err(e) = reference_pool().check_attributes(&request.details.attributes) {
                    assert!(e.field.starts_with("data.attributes."), "{e}");
                }
                check_email_round_trip(request.email.as_str());
            }
        }
        Err(e) => {
            assert!(!e.field.is_empty(), "a decode error must name a field");
            assert!(!e.reason.is_empty(), "a decode error must give a reason");
        }
    }
});
