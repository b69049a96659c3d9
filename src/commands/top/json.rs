//! Bodies for people: JSON re-indented token by token with syntax colour.
//!
//! The body is never parsed into a map and printed back: keys stay in their
//! order and numbers keep their exact text (`1.50`, `1e3`), as `peek --json`
//! and `consume` give them.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

/// One JSON token, borrowing the body's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Open(&'a str),
    Close(&'a str),
    Colon,
    Comma,
    Str(&'a str),
    Scalar(&'a str),
}

/// Splits JSON text into tokens; `None` when it is not JSON (raw text, or
/// an unterminated string).
fn tokens(text: &str) -> Option<Vec<Tok<'_>>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        i += 1;
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'{' | b'[' => out.push(Tok::Open(&text[start..i])),
            b'}' | b']' => out.push(Tok::Close(&text[start..i])),
            b':' => out.push(Tok::Colon),
            b',' => out.push(Tok::Comma),
            b'"' => {
                loop {
                    match bytes.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
                out.push(Tok::Str(text.get(start..i)?));
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                while i < bytes.len() && !b" \t\n\r{}[]:,\"".contains(&bytes[i]) {
                    i += 1;
                }
                out.push(Tok::Scalar(&text[start..i]));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Styles of the token kinds; all plain without colour.
struct Palette {
    key: Style,
    string: Style,
    number: Style,
    literal: Style,
}

impl Palette {
    fn new(color: bool) -> Palette {
        let fg = |c: Color| {
            if color {
                Style::new().fg(c)
            } else {
                Style::new()
            }
        };
        Palette {
            key: fg(Color::Cyan).add_modifier(Modifier::BOLD),
            string: fg(Color::Green),
            number: fg(Color::Yellow),
            literal: fg(Color::Magenta),
        }
    }
}

/// Builds lines of spans with an indentation level.
struct Printer {
    lines: Vec<Line<'static>>,
    current: Vec<Span<'static>>,
    depth: usize,
}

impl Printer {
    fn push(&mut self, text: &str, style: Style) {
        self.current.push(Span::styled(text.to_owned(), style));
    }

    fn newline(&mut self) {
        let spans = std::mem::take(&mut self.current);
        self.lines.push(Line::from(spans));
        if self.depth > 0 {
            self.current.push(Span::raw("  ".repeat(self.depth)));
        }
    }
}

/// A JSON body pretty-printed with two-space indentation, at most
/// `max_lines` lines (a last line says what was cut); `None` when the text is
/// not JSON.
pub fn pretty(text: &str, color: bool, max_lines: usize) -> Option<Vec<Line<'static>>> {
    let toks = tokens(text)?;
    let palette = Palette::new(color);
    let mut p = Printer {
        lines: Vec::new(),
        current: Vec::new(),
        depth: 0,
    };
    let mut i = 0;
    while i < toks.len() {
        if p.lines.len() >= max_lines {
            p.current.clear();
            p.lines.push(Line::from(format!(
                "… cut after {max_lines} lines; see the whole body with `spool peek QUEUE --id ID`"
            )));
            return Some(p.lines);
        }
        let next = toks.get(i + 1).copied();
        match toks[i] {
            Tok::Open(c) => {
                p.push(c, Style::new());
                if let Some(Tok::Close(close)) = next {
                    p.push(close, Style::new());
                    i += 1;
                } else {
                    p.depth += 1;
                    p.newline();
                }
            }
            Tok::Close(c) => {
                p.depth = p.depth.saturating_sub(1);
                p.newline();
                p.push(c, Style::new());
            }
            Tok::Comma => {
                p.push(",", Style::new());
                p.newline();
            }
            Tok::Colon => p.push(": ", Style::new()),
            Tok::Str(s) if next == Some(Tok::Colon) => p.push(s, palette.key),
            Tok::Str(s) => p.push(s, palette.string),
            Tok::Scalar(s)
                if s.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) =>
            {
                p.push(s, palette.number)
            }
            Tok::Scalar(s) => p.push(s, palette.literal),
        }
        i += 1;
    }
    if !p.current.is_empty() {
        p.newline();
    }
    Some(p.lines)
}

/// A raw text body as lines, control characters other than tabs escaped.
pub fn text_lines(text: &str, max_lines: usize) -> Vec<Line<'static>> {
    let mut lines: Vec<Line<'static>> = text
        .lines()
        .take(max_lines)
        .map(|l| {
            let mut out = String::with_capacity(l.len());
            for c in l.chars() {
                match c {
                    '\t' => out.push_str("    "),
                    c if c.is_control() => out.extend(c.escape_default()),
                    c => out.push(c),
                }
            }
            Line::from(out)
        })
        .collect();
    if text.lines().nth(max_lines).is_some() {
        lines.push(Line::from(format!("… cut after {max_lines} lines")));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(lines: &[Line<'_>]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn pretty_keeps_key_order_and_number_text() {
        let lines = pretty(
            r#"{"z":1.50,"a":[1e3,true,null],"e":{},"s":"x,\"y\":"}"#,
            false,
            100,
        )
        .expect("json");
        assert_eq!(
            plain(&lines),
            [
                "{",
                "  \"z\": 1.50,",
                "  \"a\": [",
                "    1e3,",
                "    true,",
                "    null",
                "  ],",
                "  \"e\": {},",
                "  \"s\": \"x,\\\"y\\\":\"",
                "}"
            ]
        );
    }

    #[test]
    fn pretty_colours_keys_strings_numbers_and_literals_only_when_allowed() {
        let lines = pretty(r#"{"k":"v","n":2,"b":false}"#, true, 100).expect("json");
        let style_of = |text: &str| {
            lines
                .iter()
                .flat_map(|l| l.spans.iter())
                .find(|s| s.content == text)
                .map(|s| s.style.fg)
                .expect("span")
        };
        assert_eq!(style_of("\"k\""), Some(Color::Cyan));
        assert_eq!(style_of("\"v\""), Some(Color::Green));
        assert_eq!(style_of("2"), Some(Color::Yellow));
        assert_eq!(style_of("false"), Some(Color::Magenta));
        let plain = pretty(r#"{"k":"v"}"#, false, 100).expect("json");
        assert!(
            plain
                .iter()
                .flat_map(|l| l.spans.iter())
                .all(|s| s.style.fg.is_none())
        );
    }

    #[test]
    fn scalars_and_long_bodies() {
        assert_eq!(plain(&pretty(" 42 ", false, 10).expect("json")), ["42"]);
        assert_eq!(
            plain(&pretty("\"a b\"", false, 10).expect("json")),
            ["\"a b\""]
        );
        assert!(pretty("not json", false, 10).is_none());
        assert!(pretty("\"unterminated", false, 10).is_none());
        let long = format!("[{}1]", "1,".repeat(100));
        let lines = pretty(&long, false, 5).expect("json");
        assert_eq!(lines.len(), 6);
        assert!(lines[5].to_string().starts_with("… cut after 5 lines"));
        assert_eq!(
            plain(&text_lines("a\tb\u{1b}\nc", 10)),
            ["a    b\\u{1b}", "c"]
        );
    }
}
