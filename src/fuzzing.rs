//! Entry points for fuzzing and property tests of the parsers that take
//! untrusted input: the NDJSON line reader and checker of `publish`, the
//! receipt parser, and the duration, time and size parsers.
//!
//! Each function runs the real code and panics if an invariant breaks, so a
//! fuzzer (`fuzz/`), the property tests and the corpus replay in
//! `tests/integration/fuzz.rs` all check the same things. Not a stable API,
//! and not in the shipped library: compiled only with the `fuzzing` feature,
//! which `fuzz/Cargo.toml` and `cargo test` (through the crate's
//! dev-dependency on itself) turn on.

use std::io::BufRead;

use clap::Parser;

use crate::commands::publish;
use crate::input::{self, Line};
use crate::parse;
use crate::store::Receipt;

/// One line as the reader returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadLine {
    /// A line without its terminator.
    Text(Vec<u8>),
    /// A line longer than the limit (reading stops there).
    TooLong,
}

/// Reads `input` with publish's line reader through a buffer of `capacity`
/// bytes (small ones split lines across reads), stopping after a line that
/// is too long, and checks the result against a plain model of NDJSON line
/// splitting.
pub fn read_lines(input: &[u8], limit: u64, capacity: usize) -> Vec<ReadLine> {
    let mut reader = std::io::BufReader::with_capacity(capacity.max(1), input);
    let mut got = Vec::new();
    while let Some(line) = input::read_line(&mut reader, limit).expect("reading a slice") {
        match line {
            Line::Text(bytes) => got.push(ReadLine::Text(bytes)),
            Line::TooLong => {
                got.push(ReadLine::TooLong);
                break;
            }
        }
    }
    let expected = model_lines(input, limit);
    assert_eq!(got, expected, "read_line disagrees with the model");
    if got.last() != Some(&ReadLine::TooLong) {
        assert!(
            reader.fill_buf().expect("slice").is_empty(),
            "input left unread"
        );
    }
    got
}

/// Lines split at `\n`, one `\r` before it removed, a last line without
/// `\n` kept as it is; a line over `limit` ends the list as `TooLong`.
fn model_lines(input: &[u8], limit: u64) -> Vec<ReadLine> {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (mut line, terminated) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = &rest[..i];
                rest = &rest[i + 1..];
                (line, true)
            }
            None => {
                let line = rest;
                rest = &[];
                (line, false)
            }
        };
        if terminated && line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.len() as u64 > limit {
            out.push(ReadLine::TooLong);
            break;
        }
        out.push(ReadLine::Text(line.to_vec()));
    }
    out
}

/// What publish made of one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The body as it would be stored.
    pub body: Vec<u8>,
    /// The deduplication key.
    pub key: Option<String>,
    /// The ordered group.
    pub group: Option<String>,
}

#[derive(Parser)]
struct PublishFlags {
    #[command(flatten)]
    args: publish::Args,
}

/// Checks `line` as `spool publish QUEUE FLAGS…` does with a queue whose
/// max_size is `max_size`. `Ok(None)` is a skipped blank line; `Err` is the
/// message of a refused line (exit 65). Panics if an accepted body breaks an
/// invariant: JSON bodies must parse, be trimmed, and nest at most 128 deep.
pub fn check_line(flags: &[&str], max_size: u64, line: Vec<u8>) -> Result<Option<Checked>, String> {
    let argv = ["publish", "q"].iter().chain(flags);
    let args = PublishFlags::try_parse_from(argv)
        .expect("valid flags")
        .args;
    let preparer = publish::Preparer {
        args: &args,
        limit: crate::store::BodyLimit::new(max_size, "q"),
    };
    let original = line.clone();
    match publish::check_line(&preparer, 7, Line::Text(line)) {
        Ok(None) => {
            assert!(!args.raw, "raw lines are never skipped");
            assert!(
                original.iter().all(|b| b" \t\r\n".contains(b)),
                "only blank lines are skipped"
            );
            Ok(None)
        }
        Ok(Some(p)) => {
            assert!(
                p.body.len() as u64 <= max_size,
                "body over max_size accepted"
            );
            let text = std::str::from_utf8(&p.body).expect("accepted bodies are UTF-8");
            if args.raw {
                assert_eq!(p.body, original, "raw bodies are kept as they are");
            } else {
                assert_eq!(
                    text,
                    text.trim_matches([' ', '\t', '\r', '\n']),
                    "JSON bodies are trimmed"
                );
                if let Some(value) = json_value(text.as_bytes()) {
                    check_pointers(&args, &value, &p);
                }
            }
            Ok(Some(Checked {
                body: p.body,
                key: p.key,
                group: p.group,
            }))
        }
        Err(f) => {
            assert!(
                f.message.starts_with("line 7: "),
                "refusals name the line: {}",
                f.message
            );
            if f.message.contains("points at no string or number") {
                check_missing(&args, &original, &f.message);
            }
            Err(f.message)
        }
    }
}

/// `--key-from`/`--group-from` agree with serde_json's own pointer lookup
/// wherever that one is exact (strings, and numbers that fit 64 bits).
fn check_pointers(args: &publish::Args, value: &serde_json::Value, p: &publish::Prepared) {
    for (pointer, got, flag) in [
        (&args.key_from, &p.key, "--key-from"),
        (&args.group_from, &p.group, "--group-from"),
    ] {
        let Some(pointer) = pointer else { continue };
        match value.pointer(pointer) {
            Some(serde_json::Value::String(s)) => {
                assert_eq!(got.as_deref(), Some(s.as_str()), "{flag} {pointer}");
            }
            Some(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => {
                let got = got.as_deref().and_then(|k| k.parse::<i128>().ok());
                assert_eq!(
                    got.map(|k| k.to_string()),
                    Some(n.to_string()),
                    "{flag} {pointer}"
                );
            }
            Some(serde_json::Value::Number(_)) => assert!(got.is_some(), "{flag} {pointer}"),
            _ => assert_eq!(
                got, &None,
                "{flag} {pointer} found something serde_json does not"
            ),
        }
    }
}

/// Accepted JSON as a `serde_json::Value`: it must parse (so it is JSON, at
/// most 128 deep), except that `Value` cannot hold numbers beyond `f64`
/// (`1e999`), which spool keeps byte for byte like any other: `None` then.
fn json_value(text: &[u8]) -> Option<serde_json::Value> {
    match serde_json::from_slice(text) {
        Ok(value) => Some(value),
        Err(e) if e.to_string().starts_with("number out of range") => None,
        Err(e) => panic!("accepted JSON does not parse: {e}"),
    }
}

/// A pointer reported as finding nothing finds no string or number for
/// serde_json either.
fn check_missing(args: &publish::Args, line: &[u8], message: &str) {
    let Some(value) = json_value(line) else {
        return;
    };
    for (pointer, flag) in [
        (&args.key_from, "--key-from"),
        (&args.group_from, "--group-from"),
    ] {
        if let Some(pointer) = pointer.as_deref().filter(|_| message.contains(flag)) {
            let found = value.pointer(pointer);
            assert!(
                !matches!(
                    found,
                    Some(serde_json::Value::String(_) | serde_json::Value::Number(_))
                ),
                "{flag} {pointer} missed {found:?}"
            );
        }
    }
}

/// The flag sets the fuzz targets choose from with their first byte.
pub const FLAG_SETS: &[&[&str]] = &[
    &[],
    &["--raw"],
    &["--key-from", "/id"],
    &["--key-from", "/a/0"],
    &["--group-from", "/g", "--key-from", "/a~1b"],
    &["--key-from", ""],
    &["--group-from", "/0/1/2"],
];

/// Fuzz target: publish's line reader. Byte 0 is the line limit, byte 1 the
/// read buffer's size, the rest the input.
pub fn fuzz_read_lines(data: &[u8]) {
    if let [limit, capacity, input @ ..] = data {
        read_lines(input, u64::from(*limit), usize::from(*capacity % 32) + 1);
    }
}

/// Fuzz target: publish's check of one line. Byte 0 picks the flags and the
/// max_size, the rest is the line.
pub fn fuzz_check_line(data: &[u8]) {
    if let [pick, line @ ..] = data {
        let flags = FLAG_SETS[usize::from(*pick) % FLAG_SETS.len()];
        let max_size = if pick & 0x80 != 0 { 64 } else { 1 << 20 };
        let _ = check_line(flags, max_size, line.to_vec());
    }
}

/// Fuzz target: the receipt, duration, time and size parsers on one text.
pub fn fuzz_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    receipt(&text);
    duration(&text);
    time(&text);
    size(&text);
}

/// Parses a receipt; an accepted one prints back to a text that parses to
/// the same receipt.
pub fn receipt(text: &str) -> Option<Receipt> {
    let r: Receipt = text.parse().ok()?;
    let again: Receipt = r.to_string().parse().expect("a printed receipt parses");
    assert_eq!(again, r, "receipt does not survive printing");
    Some(r)
}

/// Parses a duration; an accepted one is at most 100 years and survives
/// formatting and parsing again.
pub fn duration(text: &str) -> Option<std::time::Duration> {
    let d = parse::duration(text).ok()?;
    assert!(d <= parse::MAX_DURATION, "{text:?} gave {d:?}");
    let shown = parse::format_duration(d);
    assert_eq!(parse::duration(&shown), Ok(d), "{text:?} → {shown:?}");
    if let Ok(p) = parse::positive_duration(text) {
        assert!(!p.is_zero());
    }
    Some(d)
}

/// Parses a time (and a `--since` value); an accepted time survives printing
/// as RFC 3339 when it is in the range spool prints.
pub fn time(text: &str) -> Option<i64> {
    let _ = parse::since(text);
    let ms = parse::time_ms(text).ok()?;
    let shown = crate::output::time(ms);
    if shown.ends_with('Z') {
        assert_eq!(parse::time_ms(&shown), Ok(ms), "{text:?} → {shown:?}");
    }
    Some(ms)
}

/// Parses a size; an accepted one fits a signed 64-bit column.
pub fn size(text: &str) -> Option<u64> {
    let n = parse::size(text).ok()?;
    assert!(n <= i64::MAX as u64);
    Some(n)
}
