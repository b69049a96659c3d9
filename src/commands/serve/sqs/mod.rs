//! `spool serve --sqs`: the Amazon SQS JSON protocol on the same port as
//! the native API, so the AWS SDKs and the `aws` command line work against
//! spool's queues with an endpoint URL.
//!
//! A request is SQS's when it is a POST with `X-Amz-Target: AmazonSQS.*`
//! (to `/` or to a queue URL). It is checked here (SigV4, `sigv4`), its JSON
//! read, and handed to its action: the queue actions in `queues`, the
//! message actions in `messages`. Those call the store as the native
//! routes and the command line do (the same publish preparation and group
//! commit, the same long poll, `ack`, `nack`, `extend`, `purge`,
//! `delete_queue`), so a queue is the same queue whichever way it is used.
//! Errors are SQS's (`errors`); attributes and digests in `attributes`.

mod attributes;
mod errors;
mod messages;
mod queues;
mod sigv4;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::{App, MAX_BODY};
use crate::store::{Db, Receipt};
use errors::SqsError;

/// The content type of SQS's JSON protocol.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// The account id in queue URLs and ARNs.
const ACCOUNT: &str = "000000000000";

/// What `--sqs` adds to the server.
#[derive(Debug)]
pub struct Sqs {
    credentials: sigv4::Credentials,
    /// `https` when the server speaks TLS.
    scheme: &'static str,
    /// False when the server listens beyond loopback with SQS credentials
    /// but no token file: the native API, which no one could authenticate
    /// to, answers 401.
    native_open: bool,
    /// The id of each queue by name, as its receipts carry it (see
    /// [`Call::issued_by`]).
    queue_ids: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl Sqs {
    /// Reads `--sqs-credentials` (exit 2 when it cannot be used).
    pub fn load(path: &Path, tls: bool, native_open: bool) -> anyhow::Result<Sqs> {
        Ok(Sqs {
            credentials: sigv4::Credentials::load(path)?,
            scheme: if tls { "https" } else { "http" },
            native_open,
            queue_ids: Default::default(),
        })
    }
}

/// True for a request of the SQS protocol (by its `X-Amz-Target`).
pub fn is_sqs(headers: &HeaderMap) -> bool {
    headers
        .get("x-amz-target")
        .is_some_and(|v| v.as_bytes().starts_with(b"AmazonSQS."))
}

/// The middleware that takes SQS requests before the native routes see
/// them (and closes the native API when no one could authenticate to it).
pub async fn intercept(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(sqs) = &app.sqs else {
        return next.run(req).await;
    };
    if is_sqs(req.headers()) {
        if req.method() != Method::POST {
            return SqsError::invalid("SQS requests are POSTs").into_response();
        }
        return handle(Arc::clone(&app), req).await;
    }
    if !sqs.native_open {
        return super::errors::ApiError::new(
            StatusCode::UNAUTHORIZED,
            crate::error::Exit::Usage,
            "this server listens beyond loopback with --sqs-credentials only: its native API needs --token-file",
        )
        .into_response();
    }
    next.run(req).await
}

async fn handle(app: Arc<App>, req: Request) -> Response {
    let request_id = request_id();
    let mut response = match call(app, req).await {
        Ok(value) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            value.to_string(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    };
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}

/// A request id in the shape of SQS's (a UUID).
fn request_id() -> String {
    let mut bytes = [0u8; 16];
    // Only a label for logs: zeros will do if the generator fails.
    let _ = getrandom::fill(&mut bytes);
    let h = sigv4::hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// One SQS request, signed and read.
pub struct Call {
    app: Arc<App>,
    /// The request's members.
    input: Map<String, Value>,
    /// `HOST:PORT` as the client named the server, for queue URLs.
    host: String,
    /// The signing region, for ARNs.
    region: String,
}

async fn call(app: Arc<App>, req: Request) -> Result<Value, SqsError> {
    let (parts, body) = req.into_parts();
    let body = read_body(body).await?;
    let sqs = app
        .sqs
        .as_ref()
        .ok_or_else(|| SqsError::internal("SQS is not enabled"))?;
    let signer = sigv4::verify(
        &sqs.credentials,
        &sigv4::Request {
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            body: &body,
            now_ms: crate::store::now_ms(),
        },
    )?;
    let action = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("AmazonSQS."))
        .unwrap_or("")
        .to_owned();
    let input = if body.is_empty() {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(SqsError::serialization(
                    "the request body must be a JSON object",
                ));
            }
            Err(e) => {
                return Err(SqsError::serialization(format!(
                    "the request body is not JSON: {e}"
                )));
            }
        }
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into());
    let call = Call {
        app,
        input,
        host,
        region: signer.region,
    };
    dispatch(&action, call).await
}

async fn read_body(body: Body) -> Result<axum::body::Bytes, SqsError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        if let Some(stalled) = super::idle::stalled(&e) {
            return SqsError::stalled(stalled.to_string());
        }
        SqsError::invalid(format!(
            "the request body could not be read, or is larger than {} MiB",
            MAX_BODY >> 20
        ))
    })
}

async fn dispatch(action: &str, call: Call) -> Result<Value, SqsError> {
    match action {
        "CreateQueue" => queues::create(call).await,
        "GetQueueUrl" => queues::url(call).await,
        "ListQueues" => queues::list(call).await,
        "DeleteQueue" => queues::delete(call).await,
        "PurgeQueue" => queues::purge(call).await,
        "GetQueueAttributes" => queues::get_attributes(call).await,
        "SetQueueAttributes" => queues::set_attributes(call).await,
        "SendMessage" => messages::send(call).await,
        "SendMessageBatch" => messages::send_batch(call).await,
        "ReceiveMessage" => messages::receive(call).await,
        "DeleteMessage" => messages::delete(call).await,
        "DeleteMessageBatch" => messages::delete_batch(call).await,
        "ChangeMessageVisibility" => messages::change_visibility(call).await,
        "ChangeMessageVisibilityBatch" => messages::change_visibility_batch(call).await,
        "AddPermission"
        | "RemovePermission"
        | "TagQueue"
        | "UntagQueue"
        | "ListQueueTags"
        | "ListDeadLetterSourceQueues"
        | "StartMessageMoveTask"
        | "CancelMessageMoveTask"
        | "ListMessageMoveTasks" => Err(SqsError::unsupported(format!(
            "spool does not support {action}; see the guide's SQS chapter for what it offers"
        ))),
        other => Err(SqsError::unknown_action(other)),
    }
}

impl Call {
    /// A string member, if given.
    fn text(&self, name: &str) -> Result<Option<&str>, SqsError> {
        match self.input.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(SqsError::invalid(format!("{name} must be a string"))),
        }
    }

    /// A required string member.
    fn required(&self, name: &str) -> Result<&str, SqsError> {
        self.text(name)?.ok_or_else(|| SqsError::missing(name))
    }

    /// An integer member in `range`, if given.
    fn int(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>, SqsError> {
        int_of(self.input.get(name), name, range)
    }

    /// A list of strings, if given.
    fn strings(&self, name: &str) -> Result<Vec<String>, SqsError> {
        strings_of(self.input.get(name), name)
    }

    /// The queue named by the `QueueUrl` member.
    fn queue(&self) -> Result<String, SqsError> {
        queue_of_url(self.required("QueueUrl")?)
    }

    /// The URL of queue `name` on this server.
    fn url(&self, name: &str) -> String {
        let scheme = self.app.sqs.as_ref().map_or("http", |s| s.scheme);
        format!("{scheme}://{}/{ACCOUNT}/{name}", self.host)
    }

    /// The ARN of queue `name`.
    fn arn(&self, name: &str) -> String {
        format!("arn:aws:sqs:{}:{ACCOUNT}:{name}", self.region)
    }

    /// Whether each receipt was handed out by queue `name`: SQS refuses a
    /// receipt handle used with another queue's URL, and a receipt names
    /// its queue by id. Ids are never reused, so a cached id that matches
    /// is the answer; any other id looks the queue up again (it may have
    /// been deleted and made again). A queue that does not exist is
    /// `NonExistentQueue`.
    async fn issued_by(&self, name: &str, receipts: &[Receipt]) -> Result<Vec<bool>, SqsError> {
        let Some(sqs) = self.app.sqs.as_ref() else {
            return Err(SqsError::internal("SQS call without --sqs"));
        };
        let cache = || sqs.queue_ids.lock().unwrap_or_else(|e| e.into_inner());
        let cached = cache().get(name).copied();
        if let Some(id) = cached
            && receipts.iter().all(|r| r.queue_id == id)
        {
            return Ok(vec![true; receipts.len()]);
        }
        let owned = name.to_owned();
        let found = self.on_db(move |db| Ok(db.queue_id(&owned)?)).await?;
        let Some(id) = found else {
            cache().remove(name);
            return Err(SqsError::no_queue(name));
        };
        cache().insert(name.to_owned(), id);
        Ok(receipts.iter().map(|r| r.queue_id == id).collect())
    }

    /// Runs `f` on a blocking thread with a database connection.
    async fn on_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Db) -> Result<T, SqsError> + Send + 'static,
    ) -> Result<T, SqsError> {
        let outcome = self
            .app
            .blocking(move |db| match f(db) {
                // Returned as an error, so the connection is not kept.
                Err(e) if e.broken => Err(anyhow::Error::from(e)),
                other => Ok(other),
            })
            .await;
        match outcome {
            Ok(result) => result,
            Err(e) => Err(SqsError::of_api(e)),
        }
    }
}

fn int_of(
    value: Option<&Value>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, SqsError> {
    let n = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    match n {
        Some(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(SqsError::invalid(format!(
            "Value {} for parameter {name} is invalid. Reason: it must be a whole number from {} to {}.",
            value.map(Value::to_string).unwrap_or_default(),
            range.start(),
            range.end()
        ))),
    }
}

fn strings_of(value: Option<&Value>, name: &str) -> Result<Vec<String>, SqsError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| SqsError::invalid(format!("{name} must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(SqsError::invalid(format!(
            "{name} must be a list of strings"
        ))),
    }
}

/// The queue name of a queue URL (`SCHEME://HOST/ACCOUNT/NAME`, or its
/// path), or of a bare name.
fn queue_of_url(url: &str) -> Result<String, SqsError> {
    let text = url.split(['?', '#']).next().unwrap_or("");
    let path = match text.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => text,
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let name = match segments[..] {
        [_account, name] => name,
        [name] if !text.contains("://") && !path.starts_with('/') => name,
        _ => "",
    };
    match crate::parse::queue_name(name) {
        Ok(name) => Ok(name),
        Err(_) => Err(SqsError::no_queue(url)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_name_their_queue() {
        assert_eq!(
            queue_of_url("http://127.0.0.1:8910/000000000000/orders").expect("url"),
            "orders"
        );
        assert_eq!(queue_of_url("orders.fifo").expect("name"), "orders.fifo");
        assert_eq!(
            queue_of_url("http://h/000000000000/q/").expect("slash"),
            "q"
        );
        assert_eq!(queue_of_url("/000000000000/q").expect("path"), "q");
        assert!(queue_of_url("http://h/a/b/c").is_err());
        let e = queue_of_url("http://h/000000000000/").expect_err("no name");
        assert_eq!(e.code, "AWS.SimpleQueueService.NonExistentQueue");
    }

    #[test]
    fn numbers_come_as_numbers_or_text() {
        let v = serde_json::json!(5);
        assert_eq!(int_of(Some(&v), "n", 1..=10).expect("n"), Some(5));
        let v = serde_json::json!("7");
        assert_eq!(int_of(Some(&v), "n", 1..=10).expect("n"), Some(7));
        let v = serde_json::json!(11);
        assert!(int_of(Some(&v), "n", 1..=10).is_err());
        assert_eq!(int_of(None, "n", 1..=10).expect("none"), None);
    }
}
