//! A validated, normalised email address: the only way to get one is [`EmailAddress::parse`].

use std::fmt;

/// Longest address SMTP allows in a path (RFC 5321 §4.5.3.1.3), which Cognito also enforces.
pub const MAX_EMAIL_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;

/// An email address that passed our rules, normalised: the domain lower-cased and the local part
/// lower-cased too (Cognito pools configured with case-insensitive usernames, the default, treat
/// `Jane@X` and `jane@x` as one user; we key invites the same way).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses and normalises `input`. The error is a short reason, for a message that names
    /// the field (`data.email: <reason>`).
    ///
    /// Deliberately stricter than RFC 5322: no quoted local parts, no comments, no IP-literal
    /// domains, ASCII only (an IDN domain must arrive in its `xn--` form). These are the
    /// addresses that every mail system and Cognito accept alike.
    pub fn parse(input: &str) -> Result<Self, String> {
        if input.is_empty() {
            return Err("is empty".into());
        }
        if input.chars().any(|c| c.is_control()) {
            return Err("contains control characters".into());
        }
        if input.trim() != input {
            return Err("has leading or trailing white space".into());
        }
        if input.len() > MAX_EMAIL_LEN {
            return Err(format!("is longer than {MAX_EMAIL_LEN} characters"));
        }
        if !input.is_ascii() {
            return Err(
                "must be ASCII (write an internationalised domain in its xn-- form)".into(),
            );
        }
        let (local, domain) = match input.rsplit_once('@') {
            Some(parts) => parts,
            None => return Err("has no @".into()),
        };
        if local.is_empty() {
            return Err("has an empty local part".into());
        }
        if local.len() > MAX_LOCAL_LEN {
            return Err(format!(
                "has a local part longer than {MAX_LOCAL_LEN} characters"
            ));
        }
        if local.contains('"') || local.contains('@') {
            return Err("has a quoted or unusual local part, which is not accepted".into());
        }
        const LOCAL_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~.";
        if let Some(c) = local
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(*c)))
        {
            return Err(format!(
                "has a character not allowed in the local part: {c:?}"
            ));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err("has a misplaced dot in the local part".into());
        }
        validate_domain(domain)?;
        Ok(Self(format!(
            "{}@{}",
            local.to_ascii_lowercase(),
            domain.to_ascii_lowercase()
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }

    /// `j***@example.com`: for logs and listings, where the full address is not needed.
    pub fn masked(&self) -> String {
        mask_email(&self.0)
    }
}

/// Masks any string that looks like an address; used for values that never parsed too.
pub fn mask_email(raw: &str) -> String {
    match raw.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// Masks every address-like token inside free text (a service's error message, say):
/// `Email address is not verified: jane@example.com` -> `... j***@example.com`.
pub fn mask_emails_in(text: &str) -> String {
    if !text.contains('@') {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let local_char = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' {
            // Walk back over the local part already copied to `out`.
            let mut start = i;
            while start > 0 && local_char(chars[start - 1]) {
                start -= 1;
            }
            let domain_ok = chars.get(i + 1).is_some_and(|c| c.is_alphanumeric());
            if start < i && domain_ok {
                let local_len: usize = chars[start..i].iter().map(|c| c.len_utf8()).sum();
                out.truncate(out.len() - local_len);
                out.push(chars[start]);
                out.push_str("***");
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn validate_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("has an empty domain".into());
    }
    if domain.ends_with('.') {
        return Err("has a trailing dot in the domain".into());
    }
    if domain.starts_with('[') {
        return Err("has an IP-literal domain, which is not accepted".into());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("has a domain without a dot".into());
    }
    for label in &labels {
        if label.is_empty() {
            return Err("has an empty label in the domain".into());
        }
        if label.len() > 63 {
            return Err("has a domain label longer than 63 characters".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("has a domain label that starts or ends with a hyphen".into());
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("has a character not allowed in the domain".into());
        }
    }
    let tld = labels.last().copied().unwrap_or_default();
    if tld.chars().all(|c| c.is_ascii_digit()) {
        return Err("has a numeric top-level domain".into());
    }
    Ok(())
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.masked())
    }
}

impl<'de> serde::Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EmailAddress::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises_ordinary_addresses() {
        for (input, want) in [
            ("jane.doe@example.com", "jane.doe@example.com"),
            ("Jane.Doe@Example.COM", "jane.doe@example.com"),
            ("a+tag@sub.example.co.uk", "a+tag@sub.example.co.uk"),
            (
                "o'brien@xn--bcher-kva.example",
                "o'brien@xn--bcher-kva.example",
            ),
        ] {
            assert_eq!(
                EmailAddress::parse(input).unwrap().as_str(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_bad_addresses_with_a_reason() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_total = format!("a@{}.com", "b.".repeat(130));
        for input in [
            "",
            "plain",
            "@example.com",
            "jane@",
            "jane@example",
            "jane@example.com.",
            "jane@@example.com",
            "\"jane doe\"@example.com",
            "jane..doe@example.com",
            ".jane@example.com",
            "jane@-example.com",
            "jane@exa_mple.com",
            "jane@[127.0.0.1]",
            "jane@bücher.example",
            "jane\r\nBcc: x@evil.com@example.com",
            " jane@example.com",
            "jane@example.123",
            "jane doe@example.com",
            long_local.as_str(),
            long_total.as_str(),
        ] {
            let err = EmailAddress::parse(input).expect_err(input);
            assert!(!err.is_empty());
        }
    }

    #[test]
    fn masks_addresses_inside_text() {
        assert_eq!(
            mask_emails_in(
                "MessageRejected: Email address is not verified: jane.doe@example.com, bob@x.org"
            ),
            "MessageRejected: Email address is not verified: j***@example.com, b***@x.org"
        );
        assert_eq!(mask_emails_in("no address @ here"), "no address @ here");
        assert_eq!(mask_emails_in("Zoë@exämple.com"), "Z***@exämple.com");
    }

    #[test]
    fn masks_for_logs() {
        let e = EmailAddress::parse("jane@example.com").unwrap();
        assert_eq!(e.masked(), "j***@example.com");
        assert_eq!(format!("{e:?}"), "EmailAddress(j***@example.com)");
    }
}
