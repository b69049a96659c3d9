//! One log line per request on stderr, and the request counts and
//! latencies of `/metrics`. Neither ever holds a body, a query or a token.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Body as _;

use super::errors::ApiError;
use super::{App, MAX_BODY};
use crate::error::Exit;
use crate::output;

/// Log lines waiting for the writer thread, past which new ones are dropped.
const LOG_BACKLOG: usize = 4096;

/// The request log: lines go to a thread that writes them on stderr, so a
/// stderr that blocks (a full pipe) never holds up a request; while it is
/// stuck, lines past [`LOG_BACKLOG`] are dropped.
#[derive(Debug)]
pub struct Logger {
    lines: Mutex<Option<SyncSender<String>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Logger {
    /// A logger writing on stderr, or one that writes nothing (`--quiet`).
    pub fn new(quiet: bool) -> Logger {
        if quiet {
            return Logger {
                lines: Mutex::new(None),
                writer: Mutex::new(None),
            };
        }
        let (tx, rx) = sync_channel::<String>(LOG_BACKLOG);
        let writer = std::thread::Builder::new()
            .name("spool-serve-log".into())
            .spawn(move || {
                use std::io::Write as _;
                for line in rx {
                    let _ = writeln!(std::io::stderr().lock(), "{line}");
                }
            })
            .ok();
        Logger {
            lines: Mutex::new(writer.as_ref().map(|_| tx)),
            writer: Mutex::new(writer),
        }
    }

    fn line(&self, line: String) {
        if let Some(tx) = &*self.lines.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = tx.try_send(line);
        }
    }

    /// Writes the lines still waiting, then stops the writer.
    pub fn close(&self) {
        drop(self.lines.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

/// Requests answered so far, by method, route and status.
#[derive(Debug, Default)]
pub struct Metrics(Mutex<BTreeMap<(String, String), Route>>);

/// The counts of one method and route.
#[derive(Debug, Default)]
struct Route {
    by_status: BTreeMap<u16, u64>,
    count: u64,
    seconds: f64,
}

impl Metrics {
    fn record(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        // Methods a client makes up would each make new series.
        let method = match *method {
            Method::GET | Method::POST | Method::HEAD | Method::PUT | Method::DELETE => {
                method.as_str()
            }
            _ => "other",
        };
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        *entry.by_status.entry(status).or_default() += 1;
        entry.count += 1;
        entry.seconds += seconds;
    }

    /// The Prometheus text of the request metrics.
    pub fn prometheus(&self) -> String {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        text.push_str("# HELP spool_http_requests_total HTTP requests answered by spool serve, by method, route and status.\n");
        text.push_str("# TYPE spool_http_requests_total counter\n");
        for ((method, route), r) in map.iter() {
            for (status, n) in &r.by_status {
                let _ = writeln!(
                    text,
                    "spool_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        text.push_str("# HELP spool_http_request_duration_seconds Time from a request's headers to its answer (long polls included).\n");
        text.push_str("# TYPE spool_http_request_duration_seconds summary\n");
        for ((method, route), r) in map.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            let _ = writeln!(
                text,
                "spool_http_request_duration_seconds_sum{{{labels}}} {}",
                r.seconds
            );
            let _ = writeln!(
                text,
                "spool_http_request_duration_seconds_count{{{labels}}} {}",
                r.count
            );
        }
        text
    }
}

/// Refuses at once (413) a body whose declared length is over the limit,
/// before a byte of it is read.
fn declared_size(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY as u64 => Err(ApiError::too_large(format!(
            "request body of {n} bytes is larger than {} MiB: publish in several requests",
            MAX_BODY >> 20
        ))),
        _ => Ok(()),
    }
}

/// Refuses a body in a coding spool cannot read, rather than take the
/// coded bytes for the body: a `Content-Encoding` other than `identity`
/// (415), a `Transfer-Encoding` other than `chunked` (501, RFC 9112).
fn plain_body(headers: &HeaderMap) -> Result<(), ApiError> {
    let codings = |name| {
        headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
    };
    if let Some(c) = codings(header::CONTENT_ENCODING)
        .into_iter()
        .find(|c| c != "identity")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Exit::Usage,
            format!("Content-Encoding `{c}` is not supported: send the body as it is"),
        ));
    }
    if let Some(c) = codings(header::TRANSFER_ENCODING)
        .into_iter()
        .find(|c| c != "chunked")
    {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            Exit::Usage,
            format!("Transfer-Encoding `{c}` is not supported: only `chunked` is"),
        ));
    }
    Ok(())
}

/// The middleware around every route: checks the bearer token (when the
/// server has tokens), then logs and counts the answer.
pub async fn around(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // The route's pattern, not its path: queue names do not make new series.
    // Written `:queue`, as braces confuse some readers of the text format.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .replace('{', ":")
        .replace('}', "");
    // SQS requests are signed instead (see `sqs`), and counted as one route.
    let sqs = app.sqs.is_some() && super::sqs::is_sqs(req.headers());
    let route = if sqs { "sqs".to_owned() } else { route };
    let checked = match &app.tokens {
        Some(tokens) if !sqs => tokens.check(req.headers()),
        _ => Ok(()),
    };
    let mut response = match checked
        .and_then(|()| declared_size(req.headers()))
        .and_then(|()| plain_body(req.headers()))
    {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    if response.status() == StatusCode::REQUEST_TIMEOUT
        && response.body().size_hint().exact() == Some(0)
    {
        // The timeout layer answers with an empty body; every error here
        // is the JSON of the others.
        response = ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            Exit::Busy,
            "the request took too long (a body sent too slowly, or a store call that did not finish); try again",
        )
        .into_response();
    }
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    app.metrics
        .record(&method, &route, status, elapsed.as_secs_f64());
    {
        let bytes = response.body().size_hint().exact();
        let line = serde_json::json!({
            "time": output::time(crate::store::now_ms()),
            "method": method.as_str(),
            "path": path,
            "status": status,
            "ms": (elapsed.as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
            "bytes": bytes,
        });
        app.log.line(line.to_string());
    }
    response
}
