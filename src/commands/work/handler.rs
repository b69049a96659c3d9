//! One running handler: the child process, the delivery it works on, and
//! its lease's heartbeat schedule.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::store::flow::LAST_ERROR_MAX;
use crate::store::{Delivery, Receipt};

/// Bodies up to this size are written to the handler's stdin at once: a
/// fresh pipe holds at least one page, so the write cannot block. Larger
/// bodies are written from a thread, so a handler that reads slowly (or not
/// at all) never stalls the others.
const INLINE_BODY: usize = 4096;

/// The most a handler may print on stdout with `work --emit`: its output
/// is held in memory until the handler ends, to be published with the ack.
/// A handler that prints more fails (nothing is emitted); the rest of its
/// output is read and dropped, so it is never blocked on a full pipe.
pub(super) const EMIT_MAX: usize = 16 << 20;

/// A handler process and the delivery it is working on.
pub(super) struct Handler {
    child: Child,
    /// The tail of what it wrote to stderr (which goes on to spool's).
    stderr: StderrTail,
    /// With `--emit`: what it writes to stdout, kept for publishing.
    stdout: Option<Captured>,
    /// The message id.
    pub id: i64,
    /// The delivery's attempt number.
    pub attempt: i64,
    /// The delivery's receipt.
    pub receipt: Receipt,
    /// How long one lease lasts; heartbeats extend by this much.
    pub lease: Duration,
    /// When the lease ends, by our clock (a little before the store's).
    pub lease_end: Instant,
    /// A heartbeat found the lease gone: the result will not be reported.
    pub lost: bool,
    /// Stopped by spool on a second signal: release rather than retry.
    pub stopped: bool,
}

impl Handler {
    /// Starts `command` for delivery `d`, whose lease of length `lease` was
    /// taken at `leased_at`.
    /// With `capture`, its stdout is kept (for `--emit`) instead of passed
    /// through.
    pub fn spawn(
        command: &[OsString],
        d: &Delivery,
        lease: Duration,
        leased_at: Instant,
        capture: bool,
    ) -> io::Result<Handler> {
        let (program, args) = command.split_first().ok_or(io::ErrorKind::NotFound)?;
        let stdout = match capture {
            true => Stdio::piped(),
            false => Stdio::inherit(),
        };
        let mut child = Command::new(program)
            .args(args)
            .env("SPOOL_QUEUE", &d.queue)
            .env("SPOOL_ID", d.id.to_string())
            .env("SPOOL_ATTEMPT", d.attempt.to_string())
            .env("SPOOL_RECEIPT", d.receipt.to_string())
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C on the terminal reaches spool
            // only, so running handlers can finish; spool decides when to
            // stop them, and then stops their children too.
            .process_group(0)
            .spawn()?;
        if let Some(stdin) = child.stdin.take() {
            feed(stdin, &d.body);
        }
        let (stderr, stdout) = StderrTail::copy(child.stderr.take(), child.stdout.take());
        Ok(Handler {
            child,
            stderr,
            stdout,
            id: d.id,
            attempt: d.attempt,
            receipt: d.receipt,
            lease,
            lease_end: leased_at + lease,
            lost: false,
            stopped: false,
        })
    }

    /// The handler's exit status, if it has ended (reaping it).
    pub fn poll(&mut self) -> Option<io::Result<ExitStatus>> {
        self.child.try_wait().transpose()
    }

    /// What a failure of this handler leaves as its message's `last_error`:
    /// how it ended, then the last 4 KiB of its stderr.
    pub fn last_error(&self, ended: &str) -> String {
        let tail = self.stderr.finish();
        let tail = crate::store::flow::error_tail(tail.trim_end());
        if tail.is_empty() {
            ended.to_owned()
        } else {
            format!("{ended}\n{tail}")
        }
    }

    /// What it printed on stdout (with `--emit`), once its end of the pipe
    /// closed: an error when it printed too much, or a process it started
    /// still holds stdout open a second after it exited (its output may not
    /// be whole).
    pub fn output(&mut self) -> Result<Vec<u8>, String> {
        match self.stdout.take() {
            None => Ok(Vec::new()),
            Some(captured) => captured.finish(),
        }
    }

    /// When the next heartbeat is due: after a third of the lease, so two
    /// more tries fit before it would end.
    pub fn renew_at(&self) -> Instant {
        self.lease_end
            .checked_sub(self.lease * 2 / 3)
            .unwrap_or(self.lease_end)
    }

    /// Sends `signal` to the handler's process group (it and its children).
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_child(&self.child);
        // Fails only when the group is already gone, which is what we wanted.
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Writes the body to the handler's stdin and closes it. A handler that does
/// not read its stdin, or exits early, makes the write fail with EPIPE: that
/// is its business, not an error.
fn feed(mut stdin: ChildStdin, body: &[u8]) {
    if body.len() <= INLINE_BODY {
        let _ = stdin.write_all(body);
        return;
    }
    let body = body.to_vec();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
}

/// A handler's stderr, copied to spool's stderr as it is written while its
/// last [`LAST_ERROR_MAX`] bytes are kept; with `--emit`, its stdout too,
/// kept whole. One thread reads both pipes (polling them), so capturing
/// stdout costs no thread of its own.
struct StderrTail {
    tail: Arc<Mutex<Vec<u8>>>,
    done: Option<mpsc::Receiver<()>>,
}

/// A handler's stdout as read (with `--emit`): the bytes, or `true` when it
/// went past [`EMIT_MAX`].
type Kept = io::Result<(Vec<u8>, bool)>;

impl StderrTail {
    /// Starts reading `stderr` and, when given, `stdout` (whose bytes come
    /// through the returned [`Captured`]).
    fn copy(
        stderr: Option<ChildStderr>,
        stdout: Option<ChildStdout>,
    ) -> (StderrTail, Option<Captured>) {
        let tail = Arc::new(Mutex::new(Vec::new()));
        let (kept_tx, captured) = match stdout.is_some() {
            true => {
                let (tx, done) = mpsc::channel();
                (Some(tx), Some(Captured { done }))
            }
            false => (None, None),
        };
        if stderr.is_none() && stdout.is_none() {
            return (StderrTail { tail, done: None }, captured);
        }
        let (done_tx, done) = mpsc::channel();
        let kept = Arc::clone(&tail);
        std::thread::spawn(move || {
            pump(stderr, stdout, &kept, kept_tx);
            let _ = done_tx.send(());
        });
        (
            StderrTail {
                tail,
                done: Some(done),
            },
            captured,
        )
    }

    /// What was kept, once the handler's end of the pipe closed (or after
    /// a moment, when a process it started still holds it open).
    fn finish(&self) -> String {
        if let Some(done) = &self.done {
            let _ = done.recv_timeout(Duration::from_millis(200));
        }
        let kept = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&kept).into_owned()
    }
}

/// Reads both pipes until both end: stderr passed on and its tail kept in
/// `tail`, stdout kept whole and sent through `kept_tx` when it ends.
fn pump(
    mut stderr: Option<ChildStderr>,
    mut stdout: Option<ChildStdout>,
    tail: &Mutex<Vec<u8>>,
    kept_tx: Option<mpsc::Sender<Kept>>,
) {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut out = Vec::new();
    let mut over = false;
    let mut buf = [0u8; 8192];
    while stderr.is_some() || stdout.is_some() {
        let (err_ready, out_ready) = {
            let mut fds = Vec::with_capacity(2);
            fds.extend(stderr.as_ref().map(|e| PollFd::new(e, PollFlags::IN)));
            let err_at = stderr.as_ref().map(|_| 0);
            fds.extend(stdout.as_ref().map(|o| PollFd::new(o, PollFlags::IN)));
            let out_at = stdout.as_ref().map(|_| fds.len() - 1);
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    if let Some(tx) = &kept_tx {
                        let _ = tx.send(Err(e.into()));
                    }
                    return;
                }
            }
            let ready = |at: Option<usize>| at.is_some_and(|i| !fds[i].revents().is_empty());
            (ready(err_at), ready(out_at))
        };
        if err_ready && let Some(from) = &mut stderr {
            match from.read(&mut buf) {
                Ok(n @ 1..) => {
                    // Passed on as it comes, as if the handler wrote there itself.
                    let _ = io::stderr().write_all(&buf[..n]);
                    let mut kept = tail.lock().unwrap_or_else(|e| e.into_inner());
                    kept.extend_from_slice(&buf[..n]);
                    let over = kept.len().saturating_sub(2 * LAST_ERROR_MAX);
                    if over > 0 {
                        kept.drain(..over);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => stderr = None,
            }
        }
        if out_ready && let Some(from) = &mut stdout {
            match from.read(&mut buf) {
                Ok(0) => {
                    stdout = None;
                    if let Some(tx) = &kept_tx {
                        let _ = tx.send(Ok((std::mem::take(&mut out), over)));
                    }
                }
                Ok(n) if !over && out.len() + n <= EMIT_MAX => out.extend_from_slice(&buf[..n]),
                Ok(_) => {
                    over = true;
                    out = Vec::new();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    stdout = None;
                    if let Some(tx) = &kept_tx {
                        let _ = tx.send(Err(e));
                    }
                }
            }
        }
    }
}

/// A handler's stdout (with `--emit`), read to its end by the thread that
/// reads its stderr.
struct Captured {
    done: mpsc::Receiver<Kept>,
}

impl Captured {
    fn finish(self) -> Result<Vec<u8>, String> {
        match self.done.recv_timeout(Duration::from_secs(1)) {
            Ok(Ok((_, true))) => Err(format!(
                "it printed more than {} on stdout, the most `--emit` holds for one message",
                crate::parse::format_size(EMIT_MAX as u64)
            )),
            Ok(Ok((kept, false))) => Ok(kept),
            Ok(Err(e)) => Err(format!("cannot read its stdout: {e}")),
            Err(_) => Err(
                "its stdout was still open a second after it exited (a process it started holds it), so its output may not be whole".to_owned(),
            ),
        }
    }
}

/// How a handler's end reads for people: `exit status 3`, `killed by signal 9`.
pub(super) fn describe(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Checks before claiming anything that `program` can be started, the way
/// the operating system will look it up: as a path when it has a `/`, else
/// in `PATH`. The spawn itself is the final word; this only spares a
/// mistyped command from claiming a message first, and reports it even when
/// the queue is empty (a cron job with a typo fails on its first run).
pub(super) fn check_program(program: &OsStr) -> io::Result<()> {
    let candidates: Vec<PathBuf> = if program.as_encoded_bytes().contains(&b'/') {
        vec![PathBuf::from(program)]
    } else {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/bin:/usr/bin".into());
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .collect()
    };
    let mut not_executable = false;
    for candidate in &candidates {
        match executable(candidate) {
            Some(true) => return Ok(()),
            Some(false) => not_executable = true,
            None => {}
        }
    }
    Err(if not_executable {
        io::ErrorKind::PermissionDenied.into()
    } else {
        io::ErrorKind::NotFound.into()
    })
}

/// `Some(true)`: an executable file; `Some(false)`: a file without any
/// execute bit (or a folder); `None`: nothing there.
fn executable(path: &Path) -> Option<bool> {
    let meta = std::fs::metadata(path).ok()?;
    Some(meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_path_or_by_path() {
        assert!(check_program(OsStr::new("sh")).is_ok());
        assert!(check_program(OsStr::new("/bin/sh")).is_ok());
        let missing = check_program(OsStr::new("spool-no-such-handler")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let folder = check_program(OsStr::new("/")).unwrap_err();
        assert_eq!(folder.kind(), io::ErrorKind::PermissionDenied);
    }
}
