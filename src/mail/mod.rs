//! Rendering and building email: templates with locale fallback ([`templates`]), the context
//! they see ([`context`]), and the MIME message that both transports send ([`message`]).

pub mod context;
pub mod message;
pub mod templates;

pub use context::EmailContext;
pub use templates::{RenderedEmail, TemplateError, TemplateKind, Templates};

use crate::domain::text::forbidden_char;

/// A header-safe single line: white-space runs (CR and LF among them) become one space, other
/// control and invisible formatting characters are dropped, and the ends are trimmed.
pub fn single_line(value: &str) -> String {
    if is_single_line(value) {
        return value.to_owned();
    }
    collapse(value)
}

/// Whether `value` is already what [`single_line`] makes of it (the common case for a subject):
/// no forbidden character, and no white space but single spaces between words.
fn is_single_line(value: &str) -> bool {
    !value.starts_with(' ')
        && !value.ends_with(' ')
        && !value.contains("  ")
        && value
            .chars()
            .all(|c| c == ' ' || !(c.is_whitespace() || forbidden_char(c)))
}

fn collapse(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|c| !forbidden_char(*c))
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::{collapse, is_single_line, single_line};

    #[test]
    fn the_shortcut_agrees_with_the_general_rule() {
        for value in [
            "",
            " ",
            "a",
            "You're invited to Acme",
            "Zoë ünï 日本 😀 invited you",
            " leading",
            "trailing ",
            "two  spaces",
            "tab\there",
            "line\nbreak",
            "nbsp\u{a0}here",
            "zero\u{200B}width",
            "bidi\u{202E}override",
            "bell\u{7}",
            "a \u{200B} b",
        ] {
            assert_eq!(single_line(value), collapse(value), "{value:?}");
        }
        assert!(is_single_line("You're invited to Acme"));
        assert!(!is_single_line("two  spaces"));
        assert!(!is_single_line("nbsp\u{a0}here"));
    }

    #[test]
    fn single_line_collapses_and_strips() {
        assert_eq!(
            single_line("  a\r\n b\tc\u{85}d\u{2028}e\u{202E}f  "),
            "a b c d ef"
        );
        assert_eq!(single_line("\r\n"), "");
    }
}
