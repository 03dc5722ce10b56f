//! Contract decoding: the good shapes, and every kind of bad input named by its field.

use serde_json::json;

use super::event::{decode, EventBody, InviteRef, MAX_BODY_BYTES};

fn requested(data: serde_json::Value) -> String {
    json!({"version": 1, "type": "invite.requested", "id": "evt-1", "data": data}).to_string()
}

#[test]
fn decodes_a_full_invite_request() {
    let body = std::fs::read_to_string("examples/invites/01-jane.json").unwrap();
    let e = decode(&body).unwrap();
    assert_eq!(e.id, "5b0e2a9c-6f7d-4a43-9c0e-0d6f3c1a0001");
    assert_eq!(e.source.as_deref(), Some("workday"));
    let EventBody::InviteRequested(r) = e.body else {
        panic!()
    };
    assert_eq!(r.email.as_str(), "jane.doe@example.com");
    assert_eq!(r.details.attributes["custom:test_attribute1"], "blue");
    assert_eq!(r.details.groups, vec!["employees"]);
    assert_eq!(r.expires_in_days, Some(7));
    assert_eq!(r.details.metadata["department"], "Engineering");
}

#[test]
fn every_example_decodes_or_fails_as_documented() {
    for entry in std::fs::read_dir("examples/invites")
        .unwrap()
        .chain(std::fs::read_dir("examples/lifecycle").unwrap())
    {
        let path = entry.unwrap().path();
        let body = std::fs::read_to_string(&path).unwrap();
        let result = decode(&body);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.contains("bad-email") {
            assert_eq!(result.unwrap_err().field, "data.email", "{name}");
        } else {
            assert!(result.is_ok(), "{name}: {result:?}");
        }
    }
}

#[test]
fn decodes_lifecycle_events() {
    let e = decode(&json!({"version": 1, "type": "invite.resend", "id": "r", "data": {"invite_id": "6f1c2a7e-8a8d-4c41-9e57-1d3b5f0a9c21", "expires_in_days": 3}}).to_string()).unwrap();
    assert!(matches!(
        e.body,
        EventBody::InviteResend {
            target: InviteRef::Id(_),
            expires_in_days: Some(3)
        }
    ));
    let e = decode(&json!({"version": 1, "type": "invite.revoke", "id": "v", "data": {"email": "a@b.co", "reason": "left"}}).to_string()).unwrap();
    assert!(matches!(
        e.body,
        EventBody::InviteRevoke {
            target: InviteRef::Email(_),
            reason: Some(_)
        }
    ));
    let e = decode(&json!({"version": 1, "type": "registration.completed", "id": "c", "data": {"email": "a@b.co", "sub": "abc"}}).to_string()).unwrap();
    assert!(matches!(e.body, EventBody::RegistrationCompleted { .. }));
}

/// (body, field the error must name, a word the reason must contain)
fn bad_cases() -> Vec<(String, &'static str, &'static str)> {
    let long = "x".repeat(2049);
    vec![
        ("".into(), "body", "JSON"),
        ("{".into(), "body", "JSON"),
        ("[]".into(), "body", "object"),
        ("null".into(), "body", "object"),
        (json!({"type": "invite.requested", "id": "a", "data": {}}).to_string(), "version", "required"),
        (json!({"version": "1", "type": "invite.requested", "id": "a", "data": {}}).to_string(), "version", "number"),
        (json!({"version": 2, "type": "invite.requested", "id": "a", "data": {}}).to_string(), "version", "version 1"),
        (json!({"version": 1.5, "type": "invite.requested", "id": "a", "data": {}}).to_string(), "version", "whole"),
        (json!({"version": 1, "type": "invite.exploded", "id": "a", "data": {}}).to_string(), "type", "not one of"),
        (json!({"version": 1, "id": "a", "data": {}}).to_string(), "type", "required"),
        (json!({"version": 1, "type": 7, "id": "a", "data": {}}).to_string(), "type", "string"),
        (json!({"version": 1, "type": "invite.requested", "data": {}}).to_string(), "id", "required"),
        (json!({"version": 1, "type": "invite.requested", "id": "", "data": {}}).to_string(), "id", "1 to 128"),
        (json!({"version": 1, "type": "invite.requested", "id": "a b", "data": {}}).to_string(), "id", "only"),
        (json!({"version": 1, "type": "invite.requested", "id": "a"}).to_string(), "data", "required"),
        (json!({"version": 1, "type": "invite.requested", "id": "a", "data": []}).to_string(), "data", "object"),
        (json!({"version": 1, "type": "invite.requested", "id": "a", "data": {}, "extra": 1}).to_string(), "extra", "not a field"),
        (json!({"version": 1, "type": "invite.requested", "id": "a", "occurred_at": "yesterday", "data": {}}).to_string(), "occurred_at", "RFC 3339"),
        (json!({"version": 1, "type": "invite.requested", "id": "a", "source": "hr\r\nX: y", "data": {}}).to_string(), "source", "control"),
        (requested(json!({})), "data.email", "required"),
        (requested(json!({"email": 5})), "data.email", "string"),
        (requested(json!({"email": "jane"})), "data.email", "@"),
        (requested(json!({"email": "jane@example.com."})), "data.email", "trailing dot"),
        (requested(json!({"email": "\"j d\"@example.com"})), "data.email", "quoted"),
        (requested(json!({"email": "jane@bücher.de"})), "data.email", "ASCII"),
        (requested(json!({"email": "jane@example.com\r\nBcc: x@y.z"})), "data.email", "control"),
        (requested(json!({"email": format!("{}@example.com", "a".repeat(250))})), "data.email", "longer"),
        (requested(json!({"email": "a@b.co", "emial": "x"})), "data.emial", "not a field"),
        (requested(json!({"email": "a@b.co", "attributes": []})), "data.attributes", "object"),
        (requested(json!({"email": "a@b.co", "attributes": {"given_name": 5}})), "data.attributes.given_name", "string"),
        (requested(json!({"email": "a@b.co", "attributes": {"given_name": long}})), "data.attributes.given_name", "limit"),
        (requested(json!({"email": "a@b.co", "attributes": {"given_name": "A\u{202E}B"}})), "data.attributes.given_name", "formatting"),
        (requested(json!({"email": "a@b.co", "attributes": {"given_name": "A\nB"}})), "data.attributes.given_name", "control"),
        (requested(json!({"email": "a@b.co", "attributes": {"email": "b@b.co"}})), "data.attributes.email", "data.email"),
        (requested(json!({"email": "a@b.co", "attributes": {"custom:": "x"}})), "data.attributes.custom:", "empty"),
        (requested(json!({"email": "a@b.co", "attributes": {"custom:this_name_is_far_too_long_for_cognito": "x"}})), "data.attributes.custom:this_name_is_far_too_long_for_cognito", "32"),
        (requested(json!({"email": "a@b.co", "attributes": {"bad name": "x"}})), "data.attributes.bad name", "character"),
        (requested(json!({"email": "a@b.co", "groups": "employees"})), "data.groups", "array"),
        (requested(json!({"email": "a@b.co", "groups": ["a", "a"]})), "data.groups[1]", "repeats"),
        (requested(json!({"email": "a@b.co", "groups": ["has space"]})), "data.groups[0]", "white space"),
        (requested(json!({"email": "a@b.co", "groups": [1]})), "data.groups[0]", "string"),
        (requested(json!({"email": "a@b.co", "locale": "english!"})), "data.locale", "language tag"),
        (requested(json!({"email": "a@b.co", "expires_in_days": 0})), "data.expires_in_days", "between"),
        (requested(json!({"email": "a@b.co", "expires_in_days": 365})), "data.expires_in_days", "between"),
        (requested(json!({"email": "a@b.co", "expires_in_days": -1})), "data.expires_in_days", "whole"),
        (requested(json!({"email": "a@b.co", "invited_by": ""})), "data.invited_by", "empty"),
        (requested(json!({"email": "a@b.co", "invited_by": "HR\r\nBcc: evil@x.com"})), "data.invited_by", "control"),
        (requested(json!({"email": "a@b.co", "redirect_url": "javascript:alert(1)"})), "data.redirect_url", "https"),
        (requested(json!({"email": "a@b.co", "redirect_url": "not a url"})), "data.redirect_url", "URL"),
        (requested(json!({"email": "a@b.co", "redirect_url": "https://u:p@x.com/"})), "data.redirect_url", "credentials"),
        (requested(json!({"email": "a@b.co", "metadata": "x"})), "data.metadata", "object"),
        (requested(json!({"email": "a@b.co", "metadata": {"blob": "y".repeat(9000)}})), "data.metadata", "limit"),
        (json!({"version": 1, "type": "invite.resend", "id": "a", "data": {}}).to_string(), "data.email", "required"),
        (json!({"version": 1, "type": "invite.resend", "id": "a", "data": {"email": "a@b.co", "invite_id": "6f1c2a7e-8a8d-4c41-9e57-1d3b5f0a9c21"}}).to_string(), "data.invite_id", "not both"),
        (json!({"version": 1, "type": "invite.revoke", "id": "a", "data": {"invite_id": "nope"}}).to_string(), "data.invite_id", "UUID"),
        (json!({"version": 1, "type": "registration.completed", "id": "a", "data": {}}).to_string(), "data.email", "required"),
        ("x".repeat(MAX_BODY_BYTES + 1), "body", "limit"),
    ]
}

#[test]
fn bad_input_names_the_field_and_the_reason() {
    let cases = bad_cases();
    assert!(cases.len() >= 50);
    for (body, field, word) in cases {
        let err = decode(&body).expect_err(&body.chars().take(120).collect::<String>());
        assert_eq!(err.field, field, "{err}");
        assert!(
            err.reason.contains(word),
            "{field}: {:?} should mention {word:?}",
            err.reason
        );
    }
}

#[test]
fn no_verified_flag_can_be_set_by_a_producer() {
    for name in [
        "email_verified",
        "phone_number_verified",
        "custom:phone_verified",
        "custom:Identity_Verified",
        "dev:custom:kyc_verified",
    ] {
        let body = requested(json!({"email": "a@b.co", "attributes": {name: "true"}}));
        let err = decode(&body).expect_err(name);
        assert_eq!(err.field, format!("data.attributes.{name}"), "{err}");
        assert!(err.reason.contains("verified"), "{name}: {err}");
    }
    // A name that merely contains the word is an ordinary attribute.
    let body = requested(json!({"email": "a@b.co", "attributes": {"custom:verified_by": "HR"}}));
    assert!(decode(&body).is_ok());
}

#[test]
fn a_redirect_url_must_be_https() {
    let body = requested(json!({"email": "a@b.co", "redirect_url": "http://app.example.com/"}));
    let err = decode(&body).unwrap_err();
    assert_eq!(err.field, "data.redirect_url");
    assert!(err.reason.contains("https"), "{err}");
    let body = requested(json!({"email": "a@b.co", "redirect_url": "https://app.example.com/"}));
    assert!(decode(&body).is_ok());
}

#[test]
fn every_event_names_the_invite_it_is_about() {
    let id = "6f1c2a7e-8a8d-4c41-9e57-1d3b5f0a9c21";
    let cases = [
        (requested(json!({"email": "Jane@Example.com"})), "jane@example.com", true),
        (
            json!({"version": 1, "type": "invite.resend", "id": "e", "data": {"email": "a@example.com"}}).to_string(),
            "a@example.com",
            true,
        ),
        (
            json!({"version": 1, "type": "invite.revoke", "id": "e", "data": {"invite_id": id}}).to_string(),
            id,
            false,
        ),
        (
            json!({"version": 1, "type": "registration.completed", "id": "e", "data": {"email": "b@example.com"}}).to_string(),
            "b@example.com",
            true,
        ),
    ];
    for (body, named, has_email) in cases {
        let target = decode(&body).unwrap().body.target();
        assert_eq!(target.to_string(), named, "{body}");
        assert_eq!(target.email().is_some(), has_email, "{body}");
    }
}
