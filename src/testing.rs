//! What the unit tests and the integration tests share about the services
//! they need, so the rule is written once: a PostgreSQL test never counts as
//! passed without running. Compiled only for tests (the `test-hooks`
//! feature, which `cargo test` turns on); not part of the shipped library.

use std::fmt::Display;
use std::io::Write;

/// The variable naming the PostgreSQL server of the tests.
pub const PG_VAR: &str = "SPOOL_TEST_PG";

/// The server used when [`PG_VAR`] is not set.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL server of the tests: `SPOOL_TEST_PG`, else
/// [`DEFAULT_PG_URL`].
pub fn pg_url() -> String {
    std::env::var(PG_VAR).unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// Says on stderr that a test did not run, and why. Written to stderr
/// directly: the test harness swallows `eprintln!` of passing tests, and a
/// skip must be seen in `cargo test`'s output.
pub fn skipped(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// For a test that needs PostgreSQL and found no server at `url`. With
/// `SPOOL_TEST_PG` set (CI sets it) that is a failure: this panics, naming
/// the server. Without it the test is skipped: a line on stderr, and the
/// caller returns.
#[track_caller]
pub fn no_pg_server(url: &str, reason: impl Display) {
    if std::env::var_os(PG_VAR).is_some() {
        panic!("{PG_VAR} is set, but PostgreSQL does not answer at {url}: {reason}");
    }
    skipped(&format!(
        "PostgreSQL does not answer at {url} ({reason}); set {PG_VAR} to make this a failure"
    ));
}

/// `url` with one more query parameter (`?` or `&` as the URL needs).
pub fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}
