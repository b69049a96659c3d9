//! Reading messages from stdin: NDJSON lines and whole bodies, bounded by
//! the queue's `max_size` so that an endless line costs bounded memory.
//!
//! A JSON body is stored without the whitespace around it, so that
//! whitespace does not count against the limit (and is not kept past it); a
//! `--raw` body is kept as given, less the line terminator of line input.
//! `publish` turns what these return into messages; the fuzz targets check
//! [`read_line`] against a simple model.

use std::io::{self, BufRead, Read};

/// One line of input: its bytes without the terminator, or a line longer
/// than the limit (not read to its end).
pub enum Line {
    /// The line, without its terminator.
    Text(Vec<u8>),
    /// A line over the limit, not read to its end.
    TooLong,
}

/// Reads the next line, at most `limit` bytes before its terminator (`\n`
/// or `\r\n`). `None` at the end of input.
pub fn read_line(input: &mut impl BufRead, limit: u64) -> io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut saw_any = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        saw_any = true;
        let (used, done) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        line.extend_from_slice(&chunk[..used]);
        input.consume(used);
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            break;
        }
        if line.len() as u64 > limit.saturating_add(1) {
            return Ok(Some(Line::TooLong));
        }
    }
    if !saw_any {
        return Ok(None);
    }
    if line.len() as u64 > limit {
        return Ok(Some(Line::TooLong));
    }
    Ok(Some(Line::Text(line)))
}

/// Like [`read_line`], for a JSON line (`raw` false): the whitespace
/// around the body is not counted against `limit`, as it is trimmed before
/// the body is stored (see [`Trimmed`]). A raw line is read by [`read_line`].
pub fn read_body_line(input: &mut impl BufRead, limit: u64, raw: bool) -> io::Result<Option<Line>> {
    if raw {
        return read_line(input, limit);
    }
    let mut body = Trimmed::new(limit);
    let mut saw_any = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        saw_any = true;
        let (part, used, done) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        let fits = body.push(part);
        input.consume(used);
        if !fits {
            return Ok(Some(Line::TooLong));
        }
        if done {
            break;
        }
    }
    Ok(saw_any.then_some(Line::Text(body.bytes)))
}

/// Reads all of `input` as one body: with `raw`, as it is; otherwise (JSON)
/// without the whitespace around it, which is not counted against `limit`.
/// `None` when the body is over `limit` bytes (not read to its end).
pub fn read_whole(input: &mut impl BufRead, limit: u64, raw: bool) -> io::Result<Option<Vec<u8>>> {
    if !raw {
        let mut body = Trimmed::new(limit);
        loop {
            let chunk = input.fill_buf()?;
            if chunk.is_empty() {
                return Ok(Some(body.bytes));
            }
            let (fits, used) = (body.push(chunk), chunk.len());
            if !fits {
                return Ok(None);
            }
            input.consume(used);
        }
    }
    let mut bytes = Vec::new();
    input
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// Whitespace around a JSON body, trimmed before it is stored.
pub fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// `bytes` without the whitespace around them.
pub fn trim_blank(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_blank(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_blank(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// A JSON body read piece by piece, whose size without the whitespace
/// around it must stay within `limit` (that is what is stored). Leading
/// whitespace is dropped. Trailing whitespace is kept up to `limit` bytes
/// only: past that it is either trimmed at the end, or more text follows
/// and makes the body too large anyway.
struct Trimmed {
    bytes: Vec<u8>,
    limit: u64,
    /// The length of `bytes` up to its last byte that is not whitespace.
    content: u64,
}

impl Trimmed {
    fn new(limit: u64) -> Self {
        Trimmed {
            bytes: Vec::new(),
            limit,
            content: 0,
        }
    }

    /// Adds the next piece; false when the body is now over the limit.
    fn push(&mut self, mut part: &[u8]) -> bool {
        if self.bytes.is_empty() {
            let start = part
                .iter()
                .position(|&b| !is_blank(b))
                .unwrap_or(part.len());
            part = &part[start..];
        }
        if let Some(last) = part.iter().rposition(|&b| !is_blank(b)) {
            self.content = self.bytes.len() as u64 + last as u64 + 1;
        }
        if self.content > self.limit {
            return false;
        }
        let cap = self.content.saturating_add(self.limit).saturating_add(1);
        let room = cap.saturating_sub(self.bytes.len() as u64);
        let keep = part.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        self.bytes.extend_from_slice(&part[..keep]);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_line_without_its_newline_is_read_whatever_the_limit() {
        for limit in [7, 100, u64::MAX] {
            let mut input: &[u8] = b"{\"c\":1}\n{\"c\":2}";
            let mut got = Vec::new();
            while let Some(line) = read_line(&mut input, limit).expect("read") {
                match line {
                    Line::Text(text) => got.push(text),
                    Line::TooLong => panic!("limit {limit}: a line was too long"),
                }
            }
            assert_eq!(
                got,
                vec![b"{\"c\":1}".to_vec(), b"{\"c\":2}".to_vec()],
                "limit {limit}"
            );
        }
    }

    #[test]
    fn json_lines_are_measured_without_the_whitespace_around_them() {
        let body = b"{\"a\": [1, 2]}";
        let lines: Vec<Vec<u8>> = vec![
            body.to_vec(),
            [b"   ".as_slice(), body, b"  \t\r"].concat(),
            [b"\t".as_slice(), body, &[b' '; 40]].concat(),
            [body.as_slice(), &[b' '; 40], b"x"].concat(),
            [b"[".as_slice(), &[b' '; 6], b"]"].concat(),
            b"   ".to_vec(),
            Vec::new(),
        ];
        for limit in [0, 8, 13, 14, 15, 100] {
            for capacity in 1..=7 {
                let input: Vec<u8> = lines
                    .iter()
                    .flat_map(|l| [l.as_slice(), b"\n"].concat())
                    .collect();
                let mut reader = io::BufReader::with_capacity(capacity, input.as_slice());
                let mut ended_early = false;
                for line in &lines {
                    let got = read_body_line(&mut reader, limit, false).unwrap().unwrap();
                    let trimmed = trim_blank(line);
                    match got {
                        Line::TooLong => {
                            assert!(trimmed.len() as u64 > limit, "{line:?} at {limit}");
                            ended_early = true;
                            break;
                        }
                        Line::Text(text) => {
                            assert!(trimmed.len() as u64 <= limit, "{line:?} at {limit}");
                            assert_eq!(trim_blank(&text), trimmed);
                            assert!(text.starts_with(trimmed));
                            assert!(text.len() as u64 <= 2 * limit + 1);
                        }
                    }
                }
                if !ended_early {
                    assert!(read_body_line(&mut reader, limit, false).unwrap().is_none());
                }
            }
        }
    }

    #[test]
    fn trailing_whitespace_is_not_kept_past_the_limit() {
        let mut body = Trimmed::new(4);
        assert!(body.push(b"  \"ab\""));
        assert!(body.push(&[b' '; 1000]));
        assert!(body.bytes.len() <= 4 + 4 + 1, "{}", body.bytes.len());
        assert!(
            !body.push(b"1"),
            "text after the whitespace is over the limit"
        );
    }
}
