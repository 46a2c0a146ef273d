//! Values that came from a peer (a Call-ID, a From or Request-URI, a reason
//! phrase) written into a log line. A text log is read by people and by tools in a
//! terminal: raw control bytes in it (NUL, BEL, ESC sequences, CR/LF that forge a
//! second line) must never come from a peer. [`LogSafe`] prints such bytes as
//! `\x..` escapes, and leaves everything else, UTF-8 included, as it is. (The JSON
//! log format escapes on its own; this is for fields formatted with `%`.)

use std::fmt;

/// Display a peer's string with control characters escaped.
#[derive(Clone, Copy)]
pub struct LogSafe<'a>(pub &'a str);

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(|c: char| c.is_control()) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or('\0');
            match u8::try_from(u32::from(c)) {
                Ok(b) => write!(f, "\\x{b:02x}")?,
                Err(_) => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

impl fmt::Debug for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_are_escaped_and_text_kept() {
        let s = LogSafe("a\u{0}b\u{7}c\u{7f}\r\nfake line \u{1b}[31mred é").to_string();
        assert_eq!(s, "a\\x00b\\x07c\\x7f\\x0d\\x0afake line \\x1b[31mred é");
        assert!(!s.chars().any(|c| c.is_control()));
        assert_eq!(
            LogSafe("sip:alice@example.com").to_string(),
            "sip:alice@example.com"
        );
    }
}
