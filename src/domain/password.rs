//! Temporary passwords: a secret type that cannot be logged or serialised, and a generator that
//! satisfies a Cognito password policy using the operating system's CSPRNG.

use std::fmt;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use zeroize::Zeroize;

/// The parts of a user pool's password policy that a generated password must satisfy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub require_uppercase: bool,
    pub require_lowercase: bool,
    pub require_numbers: bool,
    pub require_symbols: bool,
    /// `TemporaryPasswordValidityDays`: how long Cognito accepts a temporary password.
    pub temporary_password_validity_days: u32,
}

impl Default for PasswordPolicy {
    /// Cognito's own default policy.
    fn default() -> Self {
        Self {
            min_length: 8,
            require_uppercase: true,
            require_lowercase: true,
            require_numbers: true,
            require_symbols: true,
            temporary_password_validity_days: 7,
        }
    }
}

/// A generated temporary password. `Debug` and `Display` print `[redacted]`; it has no
/// `Serialize`; its memory is wiped on drop. Read it only with [`TemporaryPassword::expose`],
/// at the two places that need it: the Cognito call and the email template.
#[derive(Clone, PartialEq, Eq)]
pub struct TemporaryPassword(String);

impl TemporaryPassword {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Wraps a known value; for tests and for parsing a password out of a received email.
    pub fn from_known(value: impl Into<String>) -> Self {
        Self(value.into())
    }
}

impl fmt::Debug for TemporaryPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TemporaryPassword([redacted])")
    }
}

impl fmt::Display for TemporaryPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Drop for TemporaryPassword {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

// Alphabets without look-alike characters, so a person can type from a phone what they read:
// no I l 1 | (one stroke), no O o 0 (a ring), and no symbols that hide on a phone keyboard or
// pass for another (^ ~ ` ' " , . ; : _ -). 24 + 24 + 8 + 7 = 63 characters, about 5.98 bits each.
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijkmnpqrstuvwxyz";
const DIGITS: &[u8] = b"23456789";
// A subset of Cognito's accepted symbols that survives copy and paste, URLs and HTML.
const SYMBOLS: &[u8] = b"!#%+=?@";
/// Characters a generated password never holds: they pass for one another when read.
pub const LOOK_ALIKES: &str = "Il1|Oo0^~`'\",.;:_-";

/// The length we generate: the policy's minimum, but never fewer than 16 characters
/// (about 95 bits from this alphabet), and never more than Cognito's maximum of 256.
pub fn generated_length(policy: &PasswordPolicy) -> usize {
    policy.min_length.clamp(16, 256)
}

/// Generates a password that satisfies `policy`: one character from each required class, the
/// rest from all classes, shuffled, every draw from a CSPRNG freshly seeded by the OS.
pub fn generate(policy: &PasswordPolicy) -> TemporaryPassword {
    // A ChaCha12 CSPRNG seeded with 32 bytes from the operating system for each password: the
    // same construction as `rand::rng()`, without ~30 system calls per password.
    let mut rng = StdRng::from_os_rng();
    let len = generated_length(policy);
    let classes: [(&[u8], bool); 4] = [
        (UPPER, policy.require_uppercase),
        (LOWER, policy.require_lowercase),
        (DIGITS, policy.require_numbers),
        (SYMBOLS, policy.require_symbols),
    ];
    let all: Vec<u8> = classes
        .iter()
        .flat_map(|(c, _)| c.iter().copied())
        .collect();
    let mut out: Vec<u8> = Vec::with_capacity(len);
    for (class, required) in classes {
        if required {
            out.push(*class.choose(&mut rng).expect("class is not empty"));
        }
    }
    while out.len() < len {
        out.push(*all.choose(&mut rng).expect("alphabet is not empty"));
    }
    out.shuffle(&mut rng);
    TemporaryPassword(String::from_utf8(out).expect("alphabets are ASCII"))
}

/// Checks a password against a policy the way Cognito does; used by tests and fakes.
pub fn satisfies(policy: &PasswordPolicy, password: &str) -> Result<(), String> {
    if password.chars().count() < policy.min_length {
        return Err(format!("shorter than {}", policy.min_length));
    }
    let has = |f: fn(&char) -> bool| password.chars().any(|c| f(&c));
    if policy.require_uppercase && !has(char::is_ascii_uppercase) {
        return Err("no uppercase letter".into());
    }
    if policy.require_lowercase && !has(char::is_ascii_lowercase) {
        return Err("no lowercase letter".into());
    }
    if policy.require_numbers && !has(char::is_ascii_digit) {
        return Err("no number".into());
    }
    if policy.require_symbols && !has(|c| "^$*.[]{}()?\"!@#%&/\\,><':;|_~`=+-".contains(*c)) {
        return Err("no symbol".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn policies() -> Vec<PasswordPolicy> {
        let mut out = vec![PasswordPolicy::default()];
        for min_length in [6, 8, 16, 20, 64, 99] {
            for bits in 0..16u8 {
                out.push(PasswordPolicy {
                    min_length,
                    require_uppercase: bits & 1 != 0,
                    require_lowercase: bits & 2 != 0,
                    require_numbers: bits & 4 != 0,
                    require_symbols: bits & 8 != 0,
                    temporary_password_validity_days: 7,
                });
            }
        }
        out
    }

    #[test]
    fn ten_thousand_samples_satisfy_every_policy_shape() {
        let all = policies();
        let mut seen = HashSet::new();
        for i in 0..10_000 {
            let policy = &all[i % all.len()];
            let pw = generate(policy);
            let s = pw.expose();
            assert!(
                satisfies(policy, s).is_ok(),
                "{policy:?}: {:?}",
                satisfies(policy, s)
            );
            assert_eq!(s.len(), generated_length(policy));
            assert!(s.bytes().all(|b| UPPER.contains(&b)
                || LOWER.contains(&b)
                || DIGITS.contains(&b)
                || SYMBOLS.contains(&b)));
            seen.insert(s.to_owned());
        }
        assert_eq!(seen.len(), 10_000, "generated passwords repeat");
    }

    #[test]
    fn no_look_alike_ever_appears_and_every_policy_is_met() {
        for (i, policy) in policies().iter().cycle().take(20_000).enumerate() {
            let pw = generate(policy);
            let s = pw.expose();
            assert!(satisfies(policy, s).is_ok(), "sample {i}: {policy:?}");
            assert!(s.len() >= policy.min_length.max(16), "sample {i}");
            if let Some(c) = s.chars().find(|c| LOOK_ALIKES.contains(*c)) {
                panic!("sample {i} holds the look-alike {c:?}");
            }
        }
    }

    #[test]
    fn every_class_can_still_be_met_and_the_entropy_is_as_documented() {
        for class in [UPPER, LOWER, DIGITS, SYMBOLS] {
            assert!(class.len() >= 7, "a class must keep choices");
            assert!(class.iter().all(|b| !LOOK_ALIKES.as_bytes().contains(b)));
        }
        let alphabet = (UPPER.len() + LOWER.len() + DIGITS.len() + SYMBOLS.len()) as f64;
        assert_eq!(alphabet, 63.0);
        let bits = alphabet.log2() * generated_length(&PasswordPolicy::default()) as f64;
        // docs/reliability.md: about 95 bits for 16 characters (the policy minimum of 8 gives 47).
        assert!((95.0..96.0).contains(&bits), "{bits}");
        for c in SYMBOLS {
            assert!(satisfies(
                &PasswordPolicy::default(),
                &format!("Ab3{}xyzw", *c as char)
            )
            .is_ok());
        }
    }

    #[test]
    fn never_printed() {
        let pw = generate(&PasswordPolicy::default());
        assert_eq!(format!("{pw:?}"), "TemporaryPassword([redacted])");
        assert_eq!(format!("{pw}"), "[redacted]");
    }

    #[test]
    fn satisfies_rejects_what_cognito_rejects() {
        let p = PasswordPolicy::default();
        assert!(satisfies(&p, "short1!A").is_ok());
        assert!(satisfies(&p, "Aa1!").is_err());
        assert!(satisfies(&p, "alllower1!").is_err());
        assert!(satisfies(&p, "ALLUPPER1!").is_err());
        assert!(satisfies(&p, "NoDigits!!").is_err());
        assert!(satisfies(&p, "NoSymbols11").is_err());
    }
}
