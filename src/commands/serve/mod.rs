//! `spool serve`: the same queues over HTTP/1.1, for services in any
//! language and on other machines.
//!
//! The parts: this file (arguments, the listener, the connection loop with
//! its limits, shutdown, the connection pool), `routes` (one thin handler
//! per route: parse the query, call the store on a blocking thread, render
//! the JSON of the command line), `auth` (bearer tokens), `errors` (errors
//! as `{"error","exit_code"}` with the matching status), `log` (the
//! request log and the request metrics of `/metrics`) and `tls` (the
//! certificate and key of `--tls-cert`/`--tls-key`), and `sqs` (`--sqs`:
//! the Amazon SQS JSON protocol, with its own signatures and errors).
//!
//! Publish and ack requests are written by a writer thread, `group`, which
//! commits those that arrive together in one transaction.
//!
//! Store calls block, so they run on tokio's blocking threads, each with an
//! open [`Db`] taken from a small pool of idle connections (one is opened
//! when none is idle); the runtime's own threads only parse and write HTTP.
//! The connections open at once are bounded (`MAX_WORKING` requests plus
//! `MAX_WAITING` long polls), so a crowd of clients queues for a
//! connection instead of exhausting a PostgreSQL server's
//! `max_connections`.

mod auth;
mod errors;
mod group;
mod idle;
mod log;
mod routes;
mod sqs;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::http::StatusCode;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::Context;
use crate::error::{Exit, Failure};
use crate::parse;
use crate::store::Db;

use errors::ApiError;

const EXAMPLES: &str = "\
Examples:
  spool serve                                  # http://127.0.0.1:8910, this machine only
  spool serve --listen 0.0.0.0:8910 --token-file /etc/spool/tokens
  spool serve --listen 0.0.0.0:8443 --token-file /etc/spool/tokens \\
      --tls-cert /etc/spool/cert.pem --tls-key /etc/spool/key.pem
  curl -s -X POST 'localhost:8910/v1/queues/orders/consume?wait=20s'
  spool serve --sqs --sqs-credentials /etc/spool/sqs-credentials   # AWS SDKs, `aws sqs`
  aws --endpoint-url http://localhost:8910 sqs list-queues";

/// Serve the queues over HTTP.
///
/// An HTTP/1.1 API over the same database, for producers and consumers in any
/// language and on other machines: publish, consume (with long polls), ack,
/// nack, extend, peek, stats and Prometheus metrics, with the same JSON objects
/// the command line prints. Listens on a loopback address unless `--token-file`
/// is given; with one, every request needs `Authorization: Bearer TOKEN`. With
/// `--tls-cert` and `--tls-key` it speaks HTTPS only (TLS does not replace the
/// token file beyond loopback). With `--sqs` it also answers the Amazon SQS
/// JSON protocol on the same port, for the AWS SDKs and `aws sqs`; those
/// requests are signed (SigV4) with a key pair of `--sqs-credentials`. Logs one
/// JSON line per request on stderr (`--quiet` silences them). SIGINT or SIGTERM
/// stops it after the requests in flight are answered.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Address and port to listen on (port 0 picks a free one)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8910")]
    pub listen: SocketAddr,
    /// Bearer tokens, one per line (`#` comments); needed to listen beyond loopback
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM, the server's first); needs --tls-key
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How long a client may take to send a request's headers, and may
    /// leave a request's body without sending more of it
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse::positive_duration, hide = true)]
    pub header_timeout: Duration,
    /// How long a request may take, body and answer included
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse::positive_duration, hide = true)]
    pub request_timeout: Duration,
    /// Also answer the Amazon SQS JSON protocol (AWS SDKs, `aws sqs`); needs --sqs-credentials
    #[arg(long, requires = "sqs_credentials")]
    pub sqs: bool,
    /// Key pairs SQS requests are signed with (SigV4), one `ACCESS_KEY_ID SECRET` per line
    #[arg(long, value_name = "FILE", requires = "sqs")]
    pub sqs_credentials: Option<PathBuf>,
    /// Publish each request in a transaction of its own (for comparing)
    #[arg(long, hide = true)]
    pub no_group_commit: bool,
}

/// The largest request body: a publish of up to 16 MiB.
pub const MAX_BODY: usize = 16 << 20;

/// Connections served at once, at most; more wait in the listen queue.
/// [`connection_limit`] keeps it within the open-file limit.
const MAX_CONNECTIONS: usize = 16_384;

/// File descriptors kept for everything but client connections: the
/// database and its WAL, idle PostgreSQL connections, TLS and token files.
const RESERVED_FDS: u64 = 256;

/// How many connections to serve at once: [`MAX_CONNECTIONS`], or fewer if
/// the open-file limit allows fewer. The soft limit is first raised to the
/// hard one, as servers do (it is often 1,024 with a far higher hard
/// limit): each connection takes a descriptor, and a client that opens
/// many and sends nothing must not take them all.
fn connection_limit() -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current.is_some_and(|soft| soft < hard)
    {
        limit.current = Some(hard);
        let _ = setrlimit(Resource::Nofile, limit);
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let room = soft.saturating_sub(RESERVED_FDS).max(64);
    usize::try_from(room).map_or(MAX_CONNECTIONS, |room| room.min(MAX_CONNECTIONS))
}

/// Headers a request may carry (more: 431).
const MAX_HEADERS: usize = 100;

/// Requests that use the database at once, long polls aside; more wait
/// for one of them to finish.
const MAX_WORKING: usize = 16;

/// Long polls that wait for news at once, each on a connection of its own;
/// more wait (holding no connection) for one of them to answer, and claim
/// once when their own `wait` is over.
const MAX_WAITING: usize = 32;

/// How long a request waits for a free connection before it is answered 503
/// (with `Retry-After`): only a database that stays locked holds them that
/// long.
const SLOT_WAIT: Duration = Duration::from_secs(10);

/// Idle database connections kept for the next requests.
const MAX_IDLE: usize = 16;

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What every request handler shares.
pub(crate) struct App {
    ctx: Context,
    tokens: Option<auth::Tokens>,
    /// Open database connections not in use.
    idle: Mutex<Vec<Db>>,
    /// Set on SIGINT/SIGTERM: long polls answer at once with what they have.
    stopping: AtomicBool,
    metrics: log::Metrics,
    log: log::Logger,
    /// The writer that commits concurrent publish requests together
    /// (none with `--no-group-commit`).
    group: Option<Arc<group::Group>>,
    /// Leave to use a database connection ([`MAX_WORKING`]).
    working: Arc<Semaphore>,
    /// Leave to wait for news on a connection ([`MAX_WAITING`]).
    waiting: Arc<Semaphore>,
    /// This server's own commits, which wake its long polls at once.
    news: News,
    /// `--sqs`: the SQS protocol's credentials.
    sqs: Option<sqs::Sqs>,
}

/// Counts the commits of this server's requests, so that its long polls
/// wake as soon as one of them may have made a message deliverable (on
/// SQLite they would otherwise see it at their next poll of the data
/// version; on PostgreSQL a notification wakes them anyway).
#[derive(Default)]
pub(crate) struct News {
    count: Mutex<u64>,
    changed: Condvar,
}

impl News {
    /// Says that a request committed something.
    pub(crate) fn tell(&self) {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.changed.notify_all();
    }

    /// The commits told so far.
    pub(crate) fn seen(&self) -> u64 {
        *self.count.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `nap` for a commit told after `seen`; returns the
    /// commits told by then (the next call's `seen`).
    pub(crate) fn wait(&self, seen: u64, nap: Duration) -> u64 {
        let count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        let (count, _) = self
            .changed
            .wait_timeout_while(count, nap, |count| *count == seen)
            .unwrap_or_else(|e| e.into_inner());
        *count
    }
}

impl App {
    /// An open database connection: an idle one, or a new one.
    fn db(&self) -> anyhow::Result<Db> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(db) => Ok(db),
            None => self.ctx.store(),
        }
    }

    /// Gives a connection back to the pool, unless it is `broken` (see
    /// [`broken`]).
    fn put_back(&self, db: Db, broken: bool) {
        // Past shutdown the pool is closed (see `run`): dropped here, on
        // the blocking thread.
        if broken || self.stopping() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(db);
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Leave to use a connection: waits for one of the [`MAX_WORKING`] to
    /// be free, at most [`SLOT_WAIT`] (then 503).
    async fn working_slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let slot = Arc::clone(&self.working).acquire_owned();
        match tokio::time::timeout(SLOT_WAIT, slot).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Exit::Busy,
                format!(
                    "the server is busy: its {MAX_WORKING} database connections stayed in use for {}s; try again",
                    SLOT_WAIT.as_secs()
                ),
            )),
        }
    }

    /// Leave to wait for news on a connection of its own, if one of the
    /// [`MAX_WAITING`] comes free before `deadline`.
    async fn waiting_slot(&self, deadline: tokio::time::Instant) -> Option<OwnedSemaphorePermit> {
        let slot = Arc::clone(&self.waiting).acquire_owned();
        match tokio::time::timeout_at(deadline, slot).await {
            Ok(Ok(permit)) => Some(permit),
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// Runs `f`, which opens a connection of its own, on a blocking thread
    /// (it counts as one of the [`MAX_WORKING`]).
    async fn off_runtime<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let slot = self.working_slot().await?;
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = f();
            drop(slot);
            outcome
        });
        match outcome.await {
            Ok(result) => result.map_err(ApiError::from),
            Err(e) => Err(internal(e)),
        }
    }

    /// Runs `f` on a blocking thread with an open connection.
    async fn blocking<T: Send + 'static>(
        self: &Arc<App>,
        f: impl FnOnce(&mut Db) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let slot = self.working_slot().await?;
        let app = Arc::clone(self);
        let outcome = tokio::task::spawn_blocking(move || {
            let mut db = app.db()?;
            let outcome = f(&mut db);
            app.put_back(db, outcome.as_ref().is_err_and(broken));
            drop(slot);
            outcome
        })
        .await;
        match outcome {
            Ok(result) => result.map_err(ApiError::from),
            Err(e) => Err(internal(e)),
        }
    }
}

/// True for an error after which a connection is not kept: the database
/// could not be reached or failed (exit 74).
fn broken(e: &anyhow::Error) -> bool {
    crate::error::exit_code(e) == Exit::IoErr
}

/// A blocking call that panicked or was cancelled.
fn internal(e: tokio::task::JoinError) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        Exit::IoErr,
        format!("internal error: {e}"),
    )
}

/// Runs `spool serve`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<Exit> {
    let tokens = match &args.token_file {
        Some(path) => Some(auth::Tokens::load(path)?),
        None => None,
    };
    let loopback = args.listen.ip().is_loopback();
    let sqs = match (&args.sqs_credentials, args.sqs) {
        (Some(path), true) => Some(sqs::Sqs::load(
            path,
            args.tls_cert.is_some(),
            tokens.is_some() || loopback,
        )?),
        _ => None,
    };
    // SQS credentials authenticate SQS requests; the native API then stays
    // closed beyond loopback unless a token file opens it (see `sqs`).
    if tokens.is_none() && sqs.is_none() && !loopback {
        // TLS hides the traffic; it does not say who may send it.
        let tls = if args.tls_cert.is_some() {
            " (TLS encrypts, it does not authenticate clients)"
        } else {
            ""
        };
        return Err(Failure::usage(format!(
            "refusing to listen on {} without authentication{tls}: anyone who can reach it could read and delete messages. Pass --token-file FILE (one token per line) or --sqs --sqs-credentials FILE, or listen on a loopback address such as 127.0.0.1",
            args.listen
        ))
        .into());
    }
    // Read before listening: a bad certificate or key stops the server at
    // once (exit 2), not at the first client.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    // Opened (and created) before listening: a database that cannot be
    // opened stops the server at once, with its exit code.
    let db = ctx.store()?;
    let group = if args.no_group_commit {
        None
    } else {
        Some(Arc::new(group::Group::start(ctx, ctx.store()?)?))
    };
    let app = Arc::new(App {
        ctx: ctx.clone(),
        tokens,
        idle: Mutex::new(vec![db]),
        stopping: AtomicBool::new(false),
        metrics: log::Metrics::default(),
        log: log::Logger::new(ctx.out.quiet),
        group,
        working: Arc::new(Semaphore::new(MAX_WORKING)),
        waiting: Arc::new(Semaphore::new(MAX_WAITING)),
        news: News::default(),
        sqs,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("spool-serve")
        .build()
        .context("cannot start the HTTP server's threads")?;
    let served = runtime.block_on(serve(Arc::clone(&app), &args, tls));
    app.stopping.store(true, Ordering::Relaxed);
    // The publishes handed to the writer are committed and answered before
    // its connection closes.
    if let Some(group) = &app.group {
        group.close();
    }
    // Closed here, outside the runtime: a PostgreSQL connection runs its own
    // small runtime, which must not be dropped inside another.
    drop(std::mem::take(
        &mut *app.idle.lock().unwrap_or_else(|e| e.into_inner()),
    ));
    app.log.close();
    drop(app);
    // Blocking threads still running (a store call whose client left) are
    // not waited for past this.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served.map(|()| Exit::Ok)
}

/// Accepts connections until SIGINT or SIGTERM, then finishes the requests
/// in flight.
async fn serve(app: Arc<App>, args: &Args, tls: Option<TlsAcceptor>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::usage(format!("cannot listen on {}: {e}", args.listen)))?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let router = routes::router(Arc::clone(&app), args.request_timeout, args.header_timeout);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(args.header_timeout)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(connection_limit()));
    let mut stop = Box::pin(shutdown_signal());
    // Always shown, also with --quiet: it is how a caller learns the port.
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("spool: listening on {scheme}://{local}");
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.context("connection limit closed")?,
            () = &mut stop => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // Out of file descriptors and the like: wait and go on.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let (http, router, watcher) = (http.clone(), router.clone(), graceful.watcher());
        let tls = tls.clone();
        let handshake_timeout = args.header_timeout;
        tokio::spawn(async move {
            // A connection that fails (reset, timed out, bad request line,
            // no TLS handshake) is only that client's business.
            match tls {
                None => serve_io(&http, stream, router, watcher).await,
                Some(tls) => {
                    // The handshake gets the time the request's headers
                    // get: a client that says nothing is dropped.
                    let accepted = tokio::time::timeout(handshake_timeout, tls.accept(stream));
                    if let Ok(Ok(stream)) = accepted.await {
                        serve_io(&http, stream, router, watcher).await;
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    app.stopping.store(true, Ordering::Relaxed);
    if !app.ctx.out.quiet {
        eprintln!("spool: stopping: finishing the requests in flight");
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    Ok(())
}

/// Answers the requests of one connection, plain or TLS, until it closes
/// (shutdown closes it once its request in flight is answered).
async fn serve_io<I>(http: &http1::Builder, io: I, router: axum::Router, watcher: Watcher)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    let _ = watcher.watch(conn).await;
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without handlers the default action (ending the process) stays.
        _ => std::future::pending().await,
    }
}
