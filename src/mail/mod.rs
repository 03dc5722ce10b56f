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
    let cleaned: String = value
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|c| !forbidden_char(*c))
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::single_line;

    #[test]
    fn single_line_collapses_and_strips() {
        assert_eq!(
            single_line("  a\r\n b\tc\u{85}d\u{2028}e\u{202E}f  "),
            "a b c d ef"
        );
        assert_eq!(single_line("\r\n"), "");
    }
}
