//! Text from outside (item keys, errors, server messages) made safe to print on a terminal:
//! control characters and bidirectional overrides are shown escaped, so an id cannot move
//! the cursor, recolour or hide text, or forge extra lines. JSON output needs none of
//! this (serde escapes control characters itself).

use std::borrow::Cow;
use std::fmt::Write as _;

/// True for characters a terminal would act on instead of showing: C0 and C1 controls,
/// DEL, and the Unicode bidirectional embeddings, overrides and isolates.
fn acts_on_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character escaped (`\n`, `\r`, `\t`, `\0`, otherwise
/// `\u{1b}`-style); borrowed unchanged when there is none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(acts_on_terminal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if acts_on_terminal(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Like [`escape`], but keeps line breaks of multi-line text (an error with its call
/// chain), each continuation line starting with `indent`.
pub fn escape_lines(text: &str, indent: &str) -> String {
    text.lines()
        .map(|line| escape(line))
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(escape("rec-1"), "rec-1");
        assert!(matches!(escape("plain é ✓"), Cow::Borrowed(_)));
        assert_eq!(escape("a\u{1b}[31mred"), "a\\u{1b}[31mred");
        assert_eq!(escape("a\nb\r\tc\0"), "a\\nb\\r\\tc\\0");
        assert_eq!(escape("x\u{7f}\u{9b}"), "x\\u{7f}\\u{9b}");
        assert_eq!(escape("abc\u{202E}fed"), "abc\\u{202e}fed");
    }

    #[test]
    fn multi_line_text_keeps_its_lines_but_not_their_escapes() {
        assert_eq!(
            escape_lines("first \u{1b}[2J\nsecond", "  "),
            "first \\u{1b}[2J\n  second"
        );
    }
}
