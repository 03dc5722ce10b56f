//! Checks shared by every free-text field that reaches a person or a header.

/// Characters that must never reach an email, a header or a Cognito attribute: C0/C1 controls
/// (CR and LF among them), and the invisible formatting and bidirectional-override characters
/// that can make a name display as something else.
pub fn forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM/RLM
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}' // word joiner, bidi isolates, invisible operators
            | '\u{FEFF}'              // zero-width no-break space / BOM
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
        )
}

/// Checks `value` for forbidden characters and its length in characters.
pub fn check_text(value: &str, max_chars: usize) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| forbidden_char(*c)) {
        return Err(format!(
            "contains a control or invisible formatting character (U+{:04X})",
            c as u32
        ));
    }
    let n = value.chars().count();
    if n > max_chars {
        return Err(format!("is {n} characters long; the limit is {max_chars}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_controls_and_bidi() {
        for bad in [
            "a\rb",
            "a\nb",
            "a\u{0}b",
            "\u{202E}evil",
            "x\u{2066}y",
            "\u{FEFF}z",
            "a\u{85}b",
            "\u{200B}",
        ] {
            assert!(check_text(bad, 100).is_err(), "{bad:?}");
        }
        assert!(check_text("Zoë O'Brien-Łukasz 山田", 100).is_ok());
        assert!(check_text("abcd", 3).is_err());
    }
}
