//! One handler per route, as thin as a command: parse the path and query
//! as the command line parses its flags, call the store on a blocking
//! thread, answer with the JSON the command line prints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;

use super::errors::ApiError;
use super::{App, MAX_BODY};
use crate::commands::stats::Format;
use crate::commands::{peek, publish, receipts, stats, wait};
use crate::error::Exit;
use crate::output::{self, LineKind};
use crate::parse;
use crate::store::{self, Db, Receipt, ReceiptError, Release};

/// The longest long poll a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(20);

const NDJSON: &str = "application/x-ndjson";

/// The routes of the SPEC, with the request log, token check, body limit
/// and request timeout around them.
pub fn router(app: Arc<App>, request_timeout: Duration, body_idle: Duration) -> Router {
    Router::new()
        .route("/v1/queues/{queue}/messages", post(publish).get(peek))
        .route("/v1/queues/{queue}/consume", post(consume))
        .route("/v1/ack", post(ack))
        .route("/v1/nack", post(nack))
        .route("/v1/extend", post(extend))
        .route("/v1/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/v1/health", get(health))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // `--sqs`: SQS requests (by their X-Amz-Target) are answered
        // there, whatever their path.
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            super::sqs::intercept,
        ))
        .layer(axum::middleware::map_request_with_state(
            body_idle,
            super::idle::watch_bodies,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            super::log::around,
        ))
        .with_state(app)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        Exit::Usage,
        format!(
            "no route {method} {}: the routes are under /v1, and /metrics",
            uri.path()
        ),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        Exit::Usage,
        format!("{} does not answer {method}", uri.path()),
    )
}

/// A request's query, taken key by key; what is left at the end is refused.
struct Query(Vec<(String, String)>);

impl Query {
    /// The query's pairs, `%XX` and `+` undone. Bytes that are not UTF-8
    /// once decoded are refused (400): taken with U+FFFD in their place,
    /// two different keys (`key=%FF`, `key=%FE`) would be one.
    fn of(uri: &Uri) -> Result<Query, ApiError> {
        let mut pairs = Vec::new();
        for piece in uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            match (decoded(k), decoded(v)) {
                (Some(k), Some(v)) => pairs.push((k, v)),
                _ => {
                    return Err(ApiError::usage(format!(
                        "the query parameter `{}` is not UTF-8 once its %-escapes are undone",
                        decoded_lossy(k)
                    )));
                }
            }
        }
        Ok(Query(pairs))
    }

    /// Every value of `key`.
    fn all(&mut self, key: &str) -> Vec<String> {
        let (these, rest) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|(k, _)| k == key);
        self.0 = rest;
        these.into_iter().map(|(_, v)| v).collect()
    }

    /// The value of `key`, given at most once.
    fn one(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        let mut values = self.all(key);
        match values.len() {
            0 | 1 => Ok(values.pop()),
            _ => Err(ApiError::usage(format!(
                "`{key}` is given {} times in the query; give it once",
                values.len()
            ))),
        }
    }

    /// The value of `key`, parsed as the command line parses its flag.
    fn parsed<T>(
        &mut self,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ApiError> {
        self.one(key)?
            .map(|v| parse(&v).map_err(|e| ApiError::usage(format!("`{key}`: {e}"))))
            .transpose()
    }

    /// A `true`/`false` switch (absent: false).
    fn flag(&mut self, key: &str) -> Result<bool, ApiError> {
        self.parsed(key, |v| match v {
            "true" | "1" | "" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(format!("`{v}` is not `true` or `false`")),
        })
        .map(|v| v.unwrap_or(false))
    }

    /// Refuses the keys no one took.
    fn finish(self) -> Result<(), ApiError> {
        match self.0.first() {
            None => Ok(()),
            Some((key, _)) => Err(ApiError::usage(format!("unknown query parameter `{key}`"))),
        }
    }
}

/// `part` of a query with its `%XX` escapes and `+` (a space) undone;
/// `None` when the bytes that come out are not UTF-8.
fn decoded(part: &str) -> Option<String> {
    String::from_utf8(parse::percent_decoded(part, true)).ok()
}

/// [`decoded`], for messages: what is not UTF-8 becomes U+FFFD.
fn decoded_lossy(part: &str) -> String {
    String::from_utf8_lossy(&parse::percent_decoded(part, true)).into_owned()
}

fn queue_name(text: &str) -> Result<String, ApiError> {
    parse::queue_name(text).map_err(ApiError::usage)
}

/// The body, or why it could not be read: 413 past 16 MiB.
fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if let Some(stalled) = super::idle::stalled(&rejection) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                Exit::Busy,
                format!("{stalled}; try again"),
            )
        } else if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!(
                "request body larger than {} MiB: publish in several requests",
                MAX_BODY >> 20
            ))
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                Exit::Usage,
                format!("cannot read the request body: {}", rejection.body_text()),
            )
        }
    })
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string() + "\n",
    )
        .into_response()
}

fn ndjson(lines: Vec<u8>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, NDJSON)], lines).into_response()
}

fn not_both(a: &str, b: &str) -> ApiError {
    ApiError::usage(format!("`{a}` and `{b}` cannot be given together"))
}

/// `POST /v1/queues/{queue}/messages`: publish's flags from the query, its
/// stdin from the body; all or nothing.
async fn publish(
    State(app): State<Arc<App>>,
    Path(queue): Path<String>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let queue = queue_name(&queue)?;
    let mut q = Query::of(&uri)?;
    let delay = q.parsed("delay", parse::duration)?;
    let at = q.parsed("at", parse::deliver_at)?;
    if delay.is_some() && at.is_some() {
        return Err(not_both("delay", "at"));
    }
    let priority = q
        .parsed("priority", |v| match v.parse::<i64>() {
            Ok(p) if (-100..=100).contains(&p) => Ok(p),
            _ => Err(format!("`{v}` is not a whole number from -100 to 100")),
        })?
        .unwrap_or(0);
    let headers = q
        .all("header")
        .iter()
        .map(|h| publish::header(h).map_err(ApiError::usage))
        .collect::<Result<Vec<_>, _>>()?;
    let args = publish::Args {
        queue,
        body: None,
        single: false,
        stream: false,
        raw: q.flag("raw")?,
        key: q.one("key")?,
        key_from: None,
        delay,
        at,
        ttl: q.parsed("ttl", parse::positive_duration)?,
        priority,
        group: q.one("group")?,
        group_from: None,
        headers,
        ack: q.one("ack")?,
    };
    q.finish()?;
    let body = body_of(body)?;
    let ids = match &app.group {
        None => {
            app.blocking(move |db| publish::publish_input(db, args, &body))
                .await?
        }
        Some(_) => {
            // Read and checked on a blocking thread, written with the
            // other requests of its group.
            let ready = app
                .blocking(move |db| publish::prepare_input(db, args, &body))
                .await?;
            match &app.group {
                Some(group) if !ready.is_empty() => group.publish(ready).await?,
                _ => Vec::new(),
            }
        }
    };
    app.news.tell();
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({ "ids": ids }),
    ))
}

/// Sets its flag when dropped: the request's future is dropped when its
/// client goes away.
struct Gone(Arc<AtomicBool>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `POST /v1/queues/{queue}/consume`: leases up to `n`, waiting up to `wait`
/// for the first ([`lease_waiting`]).
async fn consume(
    State(app): State<Arc<App>>,
    Path(queue): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let queue = queue_name(&queue)?;
    let mut q = Query::of(&uri)?;
    let n = q
        .parsed("n", |v| match v.parse::<usize>() {
            Ok(n) if (1..=100_000).contains(&n) => Ok(n),
            _ => Err(format!("`{v}` is not a whole number from 1 to 100000")),
        })?
        .unwrap_or(1);
    let visibility = q.parsed("visibility", parse::positive_duration)?;
    let wait = q.parsed("wait", parse::duration)?.unwrap_or(Duration::ZERO);
    if wait > MAX_WAIT {
        return Err(ApiError::usage(format!(
            "`wait` is at most {}s; poll again for longer",
            MAX_WAIT.as_secs()
        )));
    }
    q.finish()?;
    let batch = lease_waiting(&app, queue, n, visibility, wait).await?;
    if batch.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut lines = Vec::new();
    for d in &batch {
        output::write_delivery(&mut lines, d, LineKind::Consumed)
            .map_err(|e| ApiError::from(anyhow::Error::from(e)))?;
    }
    Ok(ndjson(lines))
}

/// Leases up to `n` of `queue` for `visibility`, waiting up to `wait` for
/// the first, on a blocking thread: what `consume` (and SQS's
/// ReceiveMessage) answers with. The deliveries are handed to the request
/// through a channel; when it is gone (its client left), they are released
/// at once, their attempt not counted, as `consume` releases what it could
/// not print.
pub(super) async fn lease_waiting(
    app: &Arc<App>,
    queue: String,
    n: usize,
    visibility: Option<Duration>,
    wait: Duration,
) -> Result<Vec<store::Delivery>, ApiError> {
    // A long poll waits on a connection of its own, if one of the waiting
    // places is free; while they are all taken it waits for one without a
    // connection, and one whose whole wait passes so claims once.
    let started = tokio::time::Instant::now();
    let (slot, wait) = if wait.is_zero() {
        (app.working_slot().await?, wait)
    } else {
        match app.waiting_slot(started + wait).await {
            Some(slot) => (slot, wait.saturating_sub(started.elapsed())),
            None => (app.working_slot().await?, Duration::ZERO),
        }
    };
    let gone = Arc::new(AtomicBool::new(false));
    let _gone_on_drop = Gone(Arc::clone(&gone));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let worker = Arc::clone(app);
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut db = match worker.db() {
            Ok(db) => db,
            Err(e) => {
                let _ = tx.send(Err(ApiError::from(e)));
                return;
            }
        };
        let outcome = long_poll(&worker, &mut db, &queue, n, visibility, wait, &gone);
        let broken = match outcome {
            Ok(batch) => match tx.send(Ok(batch)) {
                Ok(()) | Err(Err(_)) => false,
                // The request is gone: what it would have got goes back.
                Err(Ok(unsent)) => {
                    let receipts: Vec<Receipt> = unsent.iter().map(|d| d.receipt).collect();
                    let released = db.release(&receipts);
                    worker.news.tell();
                    released.is_err()
                }
            },
            Err(e) => {
                let broken = super::broken(&e);
                let _ = tx.send(Err(ApiError::from(e)));
                broken
            }
        };
        worker.put_back(db, broken);
    });
    let batch = match rx.await {
        Ok(result) => result?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                Exit::IoErr,
                "internal error: the consume ended without an answer",
            ));
        }
    };
    Ok(batch)
}

/// Claims, waiting for news as `consume --wait` does, until something is
/// leased, `wait` passes, the server stops or the client leaves. An
/// unknown queue is empty, as for `consume`.
fn long_poll(
    app: &App,
    db: &mut Db,
    queue: &str,
    n: usize,
    visibility: Option<Duration>,
    wait: Duration,
    gone: &AtomicBool,
) -> anyhow::Result<Vec<store::Delivery>> {
    let deadline = Instant::now() + wait;
    let over = || gone.load(Ordering::Relaxed) || app.stopping();
    loop {
        if gone.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        let mut told = app.news.seen();
        let version = db.data_version()?;
        // Where the group takes claims (SQLite), claimed with the other
        // claims that arrive together (one commit); this connection only
        // waits.
        let claimed = match &app.group {
            Some(group) if group.takes_claims() => group.claim_blocking(queue, n, visibility)?,
            _ => db.claim(queue, n, visibility, false),
        };
        match claimed {
            Ok(batch) if !batch.is_empty() => return Ok(batch),
            Ok(_) | Err(store::Error::UnknownQueue { .. } | store::Error::NameIsTopic { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if over() || Instant::now() >= deadline {
            return Ok(Vec::new());
        }
        wait::for_news(db, queue, version, Some(deadline), |nap| {
            told = app.news.wait(told, nap);
            over()
        })?;
    }
}

/// The receipts of a body: one per line, bare or as consume's JSON lines.
fn receipts_of(body: &[u8]) -> Vec<(String, Result<Receipt, ReceiptError>)> {
    String::from_utf8_lossy(body)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let text = receipts::receipt_of_line(line);
            let parsed = text.parse();
            (text, parsed)
        })
        .collect()
}

type Outcomes = store::Result<Vec<Result<(), ReceiptError>>>;

/// Settles the body's receipts with `op`: `{"done":N,"refused":[…]}`, each
/// receipt judged on its own as `spool ack` judges it.
async fn settle(
    app: Arc<App>,
    body: Bytes,
    op: impl FnOnce(&mut Db, &[Receipt]) -> Outcomes + Send + 'static,
) -> Result<Response, ApiError> {
    let worker = Arc::clone(&app);
    settle_with(app, body, move |valid| async move {
        worker
            .blocking(move |db| op(db, &valid).map_err(anyhow::Error::from))
            .await
    })
    .await
}

/// [`settle`], the receipts settled by `run`.
async fn settle_with<F>(
    app: Arc<App>,
    body: Bytes,
    run: impl FnOnce(Vec<Receipt>) -> F,
) -> Result<Response, ApiError>
where
    F: Future<Output = Result<Vec<Result<(), ReceiptError>>, ApiError>>,
{
    let parsed = receipts_of(&body);
    let valid: Vec<Receipt> = parsed.iter().filter_map(|(_, r)| r.ok()).collect();
    let outcomes = if valid.is_empty() {
        Vec::new()
    } else {
        let outcomes = run(valid).await?;
        // A nack makes a message deliverable again; an ack or an extend
        // may free a place under a queue's in-flight cap.
        app.news.tell();
        outcomes
    };
    let mut outcomes = outcomes.into_iter();
    let (mut done, mut refused) = (0, Vec::new());
    for (text, parsed) in &parsed {
        let outcome = match parsed {
            Ok(_) => outcomes.next().unwrap_or(Ok(())),
            Err(e) => Err(*e),
        };
        match outcome {
            Ok(()) => done += 1,
            Err(e) => refused.push(serde_json::json!({
                "receipt": text,
                "error": e.to_string(),
            })),
        }
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "done": done, "refused": refused }),
    ))
}

/// `POST /v1/ack`.
async fn ack(
    State(app): State<Arc<App>>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    Query::of(&uri)?.finish()?;
    let body = body_of(body)?;
    let Some(group) = app.group.clone() else {
        return settle(app, body, |db, r| db.ack(r)).await;
    };
    // Settled together with the other acks of its group.
    settle_with(app, body, move |receipts| async move {
        group.ack(receipts).await.map_err(ApiError::from)
    })
    .await
}

/// `POST /v1/nack?delay=|backoff=true|dead=true&reason=`.
async fn nack(
    State(app): State<Arc<App>>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut q = Query::of(&uri)?;
    let delay = q.parsed("delay", parse::duration)?;
    let backoff = q.flag("backoff")?;
    let dead = q.flag("dead")?;
    let reason = q.one("reason")?;
    q.finish()?;
    let release = match (delay, backoff, dead) {
        (Some(_), true, _) => return Err(not_both("delay", "backoff")),
        (Some(_), _, true) => return Err(not_both("delay", "dead")),
        (None, true, true) => return Err(not_both("backoff", "dead")),
        (_, _, true) => Release::Dead,
        (_, true, false) => Release::Backoff,
        (Some(d), false, false) => Release::After(d),
        (None, false, false) => Release::Now,
    };
    let body = body_of(body)?;
    settle(app, body, move |db, r| {
        db.nack(r, release, reason.as_deref())
    })
    .await
}

/// `POST /v1/extend?by=`.
async fn extend(
    State(app): State<Arc<App>>,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut q = Query::of(&uri)?;
    let by = q.parsed("by", parse::positive_duration)?.ok_or_else(|| {
        ApiError::usage("`by` is required: how long from now the leases end, like `by=5m`")
    })?;
    q.finish()?;
    let body = body_of(body)?;
    settle(app, body, move |db, r| db.extend(r, by)).await
}

/// `GET /v1/queues/{queue}/messages?state=&n=&id=`: peek's JSON lines.
async fn peek(
    State(app): State<Arc<App>>,
    Path(queue): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    use clap::ValueEnum as _;
    let queue = queue_name(&queue)?;
    let mut q = Query::of(&uri)?;
    let n = q
        .parsed("n", |v| match v.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("`{v}` is not a whole number from 1")),
        })?
        .unwrap_or(10);
    let mut state = Vec::new();
    for value in q.all("state") {
        for name in value.split(',').filter(|s| !s.is_empty()) {
            state.push(peek::StateArg::from_str(name, false).map_err(|_| {
                ApiError::usage(format!(
                    "`state`: unknown state `{name}`: use ready, delayed, leased, acked, dead or all"
                ))
            })?);
        }
    }
    let id = q.parsed("id", |v| {
        v.parse::<i64>()
            .map_err(|_| format!("`{v}` is not a message id"))
    })?;
    q.finish()?;
    if id.is_some() && !state.is_empty() {
        return Err(not_both("id", "state"));
    }
    let args = peek::Args {
        queue,
        n,
        state,
        id,
    };
    let lines = app
        .blocking(move |db| {
            let messages = match args.id {
                Some(id) => vec![peek::one(db, &args.queue, id)?],
                None => db.peek(&args.queue, &peek::query(&args))?,
            };
            let mut lines = Vec::new();
            peek::write_json(&mut lines, &messages)?;
            Ok(lines)
        })
        .await?;
    Ok(ndjson(lines))
}

/// `GET /v1/stats`: the JSON of `spool stats`.
async fn stats(State(app): State<Arc<App>>, uri: Uri) -> Result<Response, ApiError> {
    Query::of(&uri)?.finish()?;
    let ctx = app.ctx.clone();
    let text = app
        .off_runtime(move || stats::text(&ctx, Format::Json))
        .await?;
    Ok(text_response("application/json", text))
}

/// `GET /metrics`: `stats --format prometheus`, then the request counts and
/// latencies of this server.
async fn metrics(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let ctx = app.ctx.clone();
    let mut text = app
        .off_runtime(move || stats::text(&ctx, Format::Prometheus))
        .await?;
    text.push_str(&app.metrics.prometheus());
    Ok(text_response("text/plain; version=0.0.4", text))
}

/// A 200 answer of `text` as `content_type`.
fn text_response(content_type: &'static str, text: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// `GET /v1/health`: 200 when the database answers.
async fn health(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    app.blocking(|db| Ok(db.data_version()?)).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "status": "ok" })))
}
