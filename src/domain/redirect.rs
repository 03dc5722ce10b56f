//! Where an invite's `redirect_url` may send a person: the email that carries the temporary
//! password links there, so only `https` URLs on hosts the operator listed
//! (`email.redirect_hosts`; by default the host of `email.sign_in_url`) are accepted. The decoder
//! checks the URL's shape without configuration; this allow-list is configuration, built and
//! validated once at start-up, and checked before any side effect.

use super::event::DecodeError;

/// The field an error about the URL names.
const FIELD: &str = "data.redirect_url";
/// The configuration key the allow-list comes from.
pub const REDIRECT_HOSTS_KEY: &str = "email.redirect_hosts";

/// The hosts a `redirect_url` may point to, lower-cased; matched exactly (a subdomain must be
/// listed itself), on any port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectHosts {
    hosts: Vec<String>,
}

impl RedirectHosts {
    /// The allow-list from `email.redirect_hosts` (`entries`); when that is empty, the host of
    /// `sign_in_url`. An error names the key and the entry.
    pub fn new(entries: &[String], sign_in_url: &str) -> Result<Self, String> {
        if entries.is_empty() {
            let host = url::Url::parse(sign_in_url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .filter(|h| !h.is_empty())
                .ok_or_else(|| {
                    format!(
                        "email.sign_in_url: {sign_in_url:?} has no host, so {REDIRECT_HOSTS_KEY} cannot default to it; set {REDIRECT_HOSTS_KEY}"
                    )
                })?;
            return Ok(Self { hosts: vec![host] });
        }
        let mut hosts = Vec::with_capacity(entries.len());
        for entry in entries {
            let host = entry.trim().to_ascii_lowercase();
            if !is_host_name(&host) {
                return Err(format!(
                    "{REDIRECT_HOSTS_KEY}: {entry:?} is not a host name (write it as app.example.com: no scheme, port, path or wildcard)"
                ));
            }
            hosts.push(host);
        }
        Ok(Self { hosts })
    }

    /// Allows exactly these hosts (tests).
    pub fn only(hosts: &[&str]) -> Self {
        Self {
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Checks an invite's `redirect_url`: `https`, on a listed host. The error names the field
    /// (`data.redirect_url`) and is permanent: the message is dead-lettered.
    pub fn check(&self, redirect_url: &str) -> Result<(), DecodeError> {
        let url = url::Url::parse(redirect_url)
            .map_err(|e| DecodeError::new(FIELD, format!("is not a URL ({e})")))?;
        if url.scheme() != "https" {
            return Err(DecodeError::new(FIELD, "must be an https URL"));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if !self.hosts.contains(&host) {
            return Err(DecodeError::new(
                FIELD,
                format!(
                    "points to {:?}, which is not on the allow-list ({REDIRECT_HOSTS_KEY}: {})",
                    host.chars().take(64).collect::<String>(),
                    self.hosts.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

/// A DNS host name: dot-separated labels of letters, digits and inner hyphens, at most 253
/// characters.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_to_the_sign_in_host() {
        let hosts = RedirectHosts::new(&[], "https://App.Example.com/sign-in").unwrap();
        assert_eq!(hosts.hosts(), ["app.example.com"]);
        assert!(hosts.check("https://app.example.com/welcome?x=1").is_ok());
        assert!(hosts.check("https://APP.example.com:8443/").is_ok());
        let err = RedirectHosts::new(&[], "not a url").unwrap_err();
        assert!(err.contains("email.sign_in_url"), "{err}");
    }

    #[test]
    fn only_https_urls_on_listed_hosts_pass() {
        let hosts =
            RedirectHosts::new(&strings(&["app.example.com", "login.example.org"]), "").unwrap();
        assert!(hosts.check("https://login.example.org/").is_ok());
        for bad in [
            "http://app.example.com/",
            "https://evil.example/",
            "https://app.example.com.evil.example/",
            "https://sub.app.example.com/",
            "https://example.com/",
            "https://app.example.com@evil.example/",
            "ftp://app.example.com/",
            "not a url",
        ] {
            let err = hosts.check(bad).expect_err(bad);
            assert_eq!(err.field, "data.redirect_url", "{bad}");
        }
        let err = hosts.check("https://evil.example/").unwrap_err();
        assert!(err.reason.contains("evil.example"), "{err}");
        assert!(err.reason.contains("email.redirect_hosts"), "{err}");
    }

    #[test]
    fn a_malformed_entry_is_refused_naming_the_key() {
        for bad in [
            "https://app.example.com",
            "app.example.com/",
            "app.example.com:443",
            "*.example.com",
            "",
            "app..example.com",
            "-app.example.com",
            "app example.com",
        ] {
            let err = RedirectHosts::new(&strings(&[bad]), "https://x.example/").expect_err(bad);
            assert!(err.starts_with("email.redirect_hosts: "), "{err}");
        }
    }
}
