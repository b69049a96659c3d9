//! What goes to stdout and stderr, and how: the terminal and colour policy,
//! messages for people, and the JSON lines of deliveries.

use std::io::{self, IsTerminal, Write};

use crate::store::Delivery;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal, unless `NO_COLOR` is set or `TERM=dumb`.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// The output policy of one command run.
#[derive(Debug, Clone)]
pub struct Output {
    /// `--json`: machine output even on a terminal.
    pub json: bool,
    /// `--quiet`: no ids, counts, progress or summaries.
    pub quiet: bool,
    /// Colour in tables.
    pub color: bool,
    /// Stdout is a terminal.
    pub stdout_tty: bool,
    /// Stderr is a terminal.
    pub stderr_tty: bool,
}

/// Which streams count as terminals. Tests set `SPOOL_TEST_TERMINAL` to
/// `stdout`, `stderr` or `both` to see what a person would, since a test
/// harness never runs on a real terminal.
fn terminals() -> (bool, bool) {
    match test_terminal() {
        Some(which) => match which.to_str() {
            Some("stdout") => (true, false),
            Some("stderr") => (false, true),
            Some("both") => (true, true),
            _ => (false, false),
        },
        None => (io::stdout().is_terminal(), io::stderr().is_terminal()),
    }
}

/// `SPOOL_TEST_TERMINAL`, read only by a build for the test suite (the
/// `test-hooks` feature, which `cargo test` turns on); a release build
/// ignores it.
fn test_terminal() -> Option<std::ffi::OsString> {
    #[cfg(feature = "test-hooks")]
    let which = std::env::var_os("SPOOL_TEST_TERMINAL");
    #[cfg(not(feature = "test-hooks"))]
    let which = None;
    which
}

impl Output {
    /// The policy for these flags and this environment.
    pub fn new(json: bool, quiet: bool, color: ColorChoice) -> Output {
        let (stdout_tty, stderr_tty) = terminals();
        let env_allows = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::env::var("TERM").as_deref() != Ok("dumb");
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => stdout_tty && env_allows && !json,
        };
        Output {
            json,
            quiet,
            color,
            stdout_tty,
            stderr_tty,
        }
    }

    /// True when output is for a person: stdout is a terminal and `--json` is off.
    pub fn human(&self) -> bool {
        self.stdout_tty && !self.json
    }

    /// True when a progress bar may be drawn on stderr.
    pub fn progress(&self) -> bool {
        self.stderr_tty && !self.quiet && !self.json
    }

    /// A warning for people on stderr (shown even with `--quiet`).
    pub fn warn(&self, message: &str) {
        eprintln!("spool: warning: {message}");
    }

    /// A summary or note for people on stderr (hidden by `--quiet`).
    pub fn note(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }
}

/// A progress bar on stderr for long work, shown only where [`Output::progress`]
/// allows and only once the work turns out to be long (past `after` items or
/// half a second), so short commands never flash a bar. Cleared when dropped.
pub struct Progress {
    enabled: bool,
    fake_terminal: bool,
    message: &'static str,
    total: Option<u64>,
    after: u64,
    count: u64,
    started: std::time::Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// A progress counter for `message` ("published", "replayed" …), of
    /// `total` items when known.
    pub fn new(out: &Output, message: &'static str, total: Option<u64>, after: u64) -> Progress {
        Progress {
            enabled: out.progress(),
            fake_terminal: test_terminal().is_some(),
            message,
            total,
            after,
            count: 0,
            started: std::time::Instant::now(),
            bar: None,
        }
    }

    /// Counts `n` more items done.
    pub fn inc(&mut self, n: u64) {
        self.count += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
            return;
        }
        let long = self.count >= self.after
            || (self.count.is_multiple_of(1024) && self.started.elapsed().as_millis() >= 500);
        if self.enabled && long {
            self.bar = Some(self.start());
        }
    }

    fn start(&self) -> indicatif::ProgressBar {
        use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
        let target = if self.fake_terminal {
            ProgressDrawTarget::term_like(Box::new(StderrTerm))
        } else {
            ProgressDrawTarget::stderr()
        };
        let (bar, template) = match self.total {
            Some(total) => (
                ProgressBar::with_draw_target(Some(total), target),
                "{msg} {human_pos}/{human_len} [{bar:30}] {eta} left",
            ),
            None => (
                ProgressBar::with_draw_target(None, target),
                "{msg} {human_pos} messages [{elapsed}]",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(self.message);
        bar.set_position(self.count);
        bar
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Stderr as a terminal of 80 columns, for tests that fake a terminal.
#[derive(Debug)]
struct StderrTerm;

impl indicatif::TermLike for StderrTerm {
    fn width(&self) -> u16 {
        80
    }
    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.write_str(&format!("\x1b[{n}A"))
    }
    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.write_str(&format!("\x1b[{n}B"))
    }
    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.write_str(&format!("\x1b[{n}C"))
    }
    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.write_str(&format!("\x1b[{n}D"))
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        self.write_str(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        io::stderr().write_all(s.as_bytes())
    }
    fn clear_line(&self) -> io::Result<()> {
        self.write_str("\r\x1b[2K")
    }
    fn flush(&self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Locked, buffered stdout. Write data with `?`, so a closed pipe ends the
/// command quietly instead of panicking; any other failure names stdout
/// (`cannot write to stdout: No space left on device`), not to be taken
/// for the database's.
pub fn stdout() -> io::BufWriter<NamedStdout> {
    io::BufWriter::with_capacity(64 * 1024, NamedStdout(io::stdout().lock()))
}

/// Stdout whose errors say they are stdout's (see [`stdout`]); a closed pipe
/// keeps its kind, so it still ends a command quietly.
pub struct NamedStdout(io::StdoutLock<'static>);

impl NamedStdout {
    fn named(err: io::Error) -> io::Error {
        match err.kind() {
            io::ErrorKind::BrokenPipe => err,
            kind => io::Error::new(kind, format!("cannot write to stdout: {err}")),
        }
    }
}

impl Write for NamedStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(NamedStdout::named)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(NamedStdout::named)
    }
}

/// Lines for stdout, counted: which of them the operating system took.
///
/// A `BufWriter` (or the line buffer inside `std::io::Stdout`) accepts bytes
/// that may fail to reach the pipe later, so it cannot tell which lines a
/// reader could have seen. This writes its own chunks straight to the file
/// descriptor and counts a line as written once every byte of it was
/// accepted by `write(2)`: in a pipe's buffer, a line counts as seen. Used by
/// `consume`, which acks (or leaves leased) only the lines written and hands
/// the rest back.
pub struct CountedLines {
    out: std::fs::File,
    buf: Vec<u8>,
    /// End offset in `buf` of each line not yet written.
    ends: Vec<usize>,
    written: usize,
}

/// Bytes gathered before a write, as a `BufWriter` on stdout would.
const CHUNK: usize = 64 * 1024;

impl CountedLines {
    /// Counted lines on this process's stdout.
    pub fn stdout() -> io::Result<CountedLines> {
        use std::os::fd::AsFd;
        io::stdout().flush()?;
        let fd = io::stdout().as_fd().try_clone_to_owned()?;
        Ok(CountedLines {
            out: std::fs::File::from(fd),
            buf: Vec::with_capacity(CHUNK),
            ends: Vec::new(),
            written: 0,
        })
    }

    /// Adds one line, which `fill` writes (ending in a newline); writes the
    /// gathered lines out once they pass a chunk.
    pub fn line(&mut self, fill: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<()> {
        fill(&mut self.buf)?;
        self.ends.push(self.buf.len());
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every gathered line. On an error, the lines fully written
    /// before it still count.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut done = 0;
        let result = loop {
            if done == self.buf.len() {
                break Ok(());
            }
            match self.out.write(&self.buf[done..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.written += self.ends.iter().take_while(|&&end| end <= done).count();
        self.ends.clear();
        self.buf.clear();
        result
    }

    /// How many lines were fully written so far.
    pub fn written(&self) -> usize {
        self.written
    }
}

/// Formats ms since the epoch as RFC 3339 UTC with milliseconds.
pub fn time(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => ms.to_string(),
    }
}

/// Writes `text` as a JSON string.
fn json_str(w: &mut impl Write, text: &str) -> io::Result<()> {
    serde_json::to_writer(&mut *w, text).map_err(io::Error::other)
}

fn json_opt_str(w: &mut impl Write, text: Option<&str>) -> io::Result<()> {
    match text {
        Some(t) => json_str(w, t),
        None => w.write_all(b"null"),
    }
}

/// Writes a body as a JSON value on one line: a JSON body as stored (with
/// whitespace outside strings removed if it spans lines), raw text as a string.
pub fn write_body_json(w: &mut impl Write, body: &[u8], raw: bool) -> io::Result<()> {
    if raw {
        return json_str(w, &String::from_utf8_lossy(body));
    }
    if body.contains(&b'\n') || body.contains(&b'\r') {
        w.write_all(&compact_json(body))
    } else {
        w.write_all(body)
    }
}

/// Removes whitespace outside strings from valid JSON, keeping every other
/// byte (numbers, escapes, key order) exactly as it was.
pub fn compact_json(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            in_string = b == b'"';
            out.push(b);
        }
    }
    out
}

/// Which optional fields a delivery line carries: `consume` prints the
/// receipt, `peek` the state instead.
#[derive(Debug, Clone, Copy)]
pub enum LineKind<'a> {
    /// A delivery from `consume`, with its receipt.
    Consumed,
    /// A message seen by `peek`.
    Peeked {
        /// Its state.
        state: &'a str,
        /// Its lease end, if leased.
        lease_end: Option<i64>,
        /// Why it died, if dead.
        dead_reason: Option<&'a str>,
        /// Its last failure, if any.
        last_error: Option<&'a str>,
    },
}

/// Writes one delivery as a JSON line in the field order of the SPEC.
pub fn write_delivery(w: &mut impl Write, d: &Delivery, kind: LineKind<'_>) -> io::Result<()> {
    write!(w, "{{\"id\":{},\"queue\":", d.id)?;
    json_str(w, &d.queue)?;
    let lease_end = match kind {
        LineKind::Consumed => {
            write!(w, ",\"receipt\":\"{}\"", d.receipt)?;
            Some(d.lease_expires_at)
        }
        LineKind::Peeked {
            state, lease_end, ..
        } => {
            write!(w, ",\"state\":\"{state}\"")?;
            lease_end
        }
    };
    write!(
        w,
        ",\"attempt\":{},\"published_at\":\"{}\",\"lease_expires_at\":",
        d.attempt,
        time(d.published_at)
    )?;
    match lease_end {
        Some(t) => write!(w, "\"{}\"", time(t))?,
        None => w.write_all(b"null")?,
    }
    w.write_all(b",\"key\":")?;
    json_opt_str(w, d.key.as_deref())?;
    w.write_all(b",\"group\":")?;
    json_opt_str(w, d.group.as_deref())?;
    write!(w, ",\"priority\":{},\"headers\":", d.priority)?;
    w.write_all(d.headers.as_deref().unwrap_or("{}").as_bytes())?;
    match d.schema_version {
        Some(v) => write!(w, ",\"schema_version\":{v}")?,
        None => w.write_all(b",\"schema_version\":null")?,
    }
    if let LineKind::Peeked {
        dead_reason,
        last_error,
        ..
    } = kind
    {
        w.write_all(b",\"dead_reason\":")?;
        json_opt_str(w, dead_reason)?;
        w.write_all(b",\"last_error\":")?;
        json_opt_str(w, last_error)?;
    }
    w.write_all(b",\"body\":")?;
    write_body_json(w, &d.body, d.raw)?;
    w.write_all(b"}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings_and_numbers() {
        let pretty = b"{\n  \"a b\": \"x\\\" y\",\n  \"n\": 1.50e3\n}";
        assert_eq!(
            compact_json(pretty),
            b"{\"a b\":\"x\\\" y\",\"n\":1.50e3}".to_vec()
        );
    }

    #[test]
    fn times_are_rfc3339_with_millis() {
        assert_eq!(time(1_000), "1970-01-01T00:00:01.000Z");
        assert_eq!(time(1_764_234_000_123), "2025-11-27T09:00:00.123Z");
    }
}
