//! Shared rendering for the commands that show tables to people (`peek`,
//! `stats`, `queue list`): table style, terminal width, ages and sizes.

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, CellAlignment, Color, ColumnConstraint, ContentArrangement, Table};

use crate::output::Output;
use crate::store::State;

/// The width tables are fitted to when it cannot be found out.
const DEFAULT_WIDTH: u16 = 100;

/// The terminal's width: `$COLUMNS` when set (as shells and tests do), else
/// asked from the terminal, else 100. A terminal that says it has fewer
/// than 20 columns (a pseudo-terminal of size 0, as under `script`) counts
/// as unknown.
pub fn terminal_width() -> u16 {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|c| *c >= 20)
    {
        return cols;
    }
    Table::new()
        .width()
        .filter(|w| *w >= 20)
        .unwrap_or(DEFAULT_WIDTH)
}

/// A borderless table with a header, fitted to the terminal's width, coloured
/// only when the output policy allows it. Only the `flexible` columns (by
/// index) may be narrowed or wrapped to fit; the others keep their width.
pub fn table(out: &Output, header: &[&str], flexible: &[usize]) -> Table {
    let mut table = Table::new();
    table
        .load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(terminal_width())
        .force_no_tty()
        .set_header(header.iter().map(Cell::new));
    for (i, column) in table.column_iter_mut().enumerate() {
        if !flexible.contains(&i) {
            column.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
    if out.color {
        table.enforce_styling();
        table.style_text_only();
    }
    table
}

/// A right-aligned number cell.
pub fn number(n: impl ToString) -> Cell {
    Cell::new(n).set_alignment(CellAlignment::Right)
}

/// A state cell: dead in red, leased in yellow (when colour is on).
pub fn state_cell(state: State) -> Cell {
    let cell = Cell::new(state.name());
    match state {
        State::Dead => cell.fg(Color::Red),
        State::Leased => cell.fg(Color::Yellow),
        _ => cell,
    }
}

/// An age for people, in its largest unit: `850ms`, `42s`, `5m`, `3h`, `12d`.
pub fn age(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}s", ms / 1_000),
        60_000..3_600_000 => format!("{}m", ms / 60_000),
        3_600_000..86_400_000 => format!("{}h", ms / 3_600_000),
        _ => format!("{}d", ms / 86_400_000),
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A body on one line for a table cell: JSON without line breaks, raw text
/// with control characters escaped.
pub fn body_line(body: &[u8], raw: bool) -> String {
    let multiline = body.contains(&b'\n') || body.contains(&b'\r');
    let text = if !raw && multiline {
        String::from_utf8_lossy(&crate::output::compact_json(body)).into_owned()
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    text_line(&text)
}

/// Text from a message (a key, a group, a header) for a terminal: control
/// characters escaped (`\u{1b}`), so that a message can never send escape
/// sequences to the viewer's terminal (clear the screen, set the title).
pub fn text_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        crate::Cli::definition().debug_assert();
    }

    /// The texts the variant gave a subcommand's help are the same before
    /// its arguments are built and after (see `commands::defer_arguments`):
    /// its about texts, and any text after the help (else the `Args`
    /// struct's, as without deferral).
    #[test]
    fn building_a_subcommand_keeps_its_help_texts() {
        fn texts(cmd: &clap::Command) -> [Option<String>; 4] {
            [
                cmd.get_about(),
                cmd.get_long_about(),
                cmd.get_after_help(),
                cmd.get_after_long_help(),
            ]
            .map(|t| t.map(ToString::to_string))
        }
        fn check(parent: &clap::Command) {
            for sub in parent.get_subcommands() {
                let before = texts(sub);
                let mut built = sub.clone();
                built.build();
                let after = texts(&built);
                for (i, text) in before.iter().enumerate() {
                    if i < 2 || text.is_some() {
                        assert_eq!(&after[i], text, "`{}`", sub.get_name());
                    }
                }
                check(&built);
            }
        }
        check(&crate::Cli::definition());
    }

    #[test]
    fn ages_use_the_largest_unit() {
        assert_eq!(age(-5), "0ms");
        assert_eq!(age(850), "850ms");
        assert_eq!(age(42_000), "42s");
        assert_eq!(age(5 * 60_000 + 1), "5m");
        assert_eq!(age(3 * 3_600_000), "3h");
        assert_eq!(age(12 * 86_400_000), "12d");
    }

    #[test]
    fn sizes_are_binary() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 << 20), "12.0 MiB");
    }

    #[test]
    fn bodies_fit_one_line() {
        assert_eq!(body_line(b"{\n \"a\": 1\n}", false), "{\"a\":1}");
        assert_eq!(body_line(b"two\nlines\t", true), "two\\nlines\\t");
        assert_eq!(body_line(b"{\"a\": 1}", false), "{\"a\": 1}");
    }
}
