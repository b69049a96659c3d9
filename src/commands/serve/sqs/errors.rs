//! SQS errors as SQS sends them over its JSON protocol: a status, a body
//! `{"__type":"…#Shape","message":"…"}` and the header
//! `x-amzn-query-error: CODE;Sender` that carries the classic (query API)
//! code, which the SDKs report as the error's code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::super::errors::ApiError;
use crate::error::Exit;

/// The namespace of SQS's own error shapes.
const SQS: &str = "com.amazonaws.sqs#";

/// The namespace of the errors every AWS JSON service shares (signing,
/// parameters, unknown operations).
const CORAL: &str = "com.amazon.coral.service#";

/// A refused or failed SQS request.
#[derive(Debug)]
pub struct SqsError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON `__type`: a namespace and a shape name.
    pub shape: String,
    /// The classic code of `x-amzn-query-error`.
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
    /// The database failed (exit 74): the connection is not kept.
    pub broken: bool,
}

impl std::fmt::Display for SqsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for SqsError {}

fn error(status: StatusCode, shape: String, code: &'static str, message: String) -> SqsError {
    SqsError {
        status,
        shape,
        code,
        message,
        broken: false,
    }
}

/// An error of SQS's own (`com.amazonaws.sqs#SHAPE`), status 400.
fn sqs(shape: &str, code: &'static str, message: impl Into<String>) -> SqsError {
    error(
        StatusCode::BAD_REQUEST,
        format!("{SQS}{shape}"),
        code,
        message.into(),
    )
}

/// A common error of AWS services (`com.amazon.coral.service#SHAPE`).
fn coral(
    status: StatusCode,
    shape: &str,
    code: &'static str,
    message: impl Into<String>,
) -> SqsError {
    error(status, format!("{CORAL}{shape}"), code, message.into())
}

impl SqsError {
    /// `QueueDoesNotExist` (`AWS.SimpleQueueService.NonExistentQueue`).
    pub fn no_queue(name: &str) -> SqsError {
        sqs(
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            format!("The specified queue does not exist: `{name}`."),
        )
    }

    /// `QueueNameExists` (`QueueAlreadyExists`): CreateQueue of an
    /// existing queue with other attributes.
    pub fn queue_exists(name: &str) -> SqsError {
        sqs(
            "QueueNameExists",
            "QueueAlreadyExists",
            format!(
                "A queue named `{name}` already exists with different attributes; change them with SetQueueAttributes."
            ),
        )
    }

    /// `QueueNameExists` for the name of a spool topic, which SQS does not
    /// see (it lists, reads and changes queues only).
    pub fn name_is_topic(name: &str) -> SqsError {
        sqs(
            "QueueNameExists",
            "QueueAlreadyExists",
            format!(
                "`{name}` is the name of a spool topic, which the SQS API cannot use as a queue; pick another name, or publish to the topic with spool itself."
            ),
        )
    }

    /// `ReceiptHandleIsInvalid` (404, as the SQS API reference gives it).
    pub fn bad_receipt(message: impl Into<String>) -> SqsError {
        let mut e = sqs("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", message);
        e.status = StatusCode::NOT_FOUND;
        e
    }

    /// `MessageNotInflight`: the lease behind a receipt has ended.
    pub fn not_inflight() -> SqsError {
        sqs(
            "MessageNotInflight",
            "AWS.SimpleQueueService.MessageNotInflight",
            "The message referred to is not in flight: its visibility timeout has ended or it was deleted.",
        )
    }

    /// `InvalidMessageContents`: a body with a character SQS refuses.
    pub fn bad_contents(found: char) -> SqsError {
        sqs(
            "InvalidMessageContents",
            "InvalidMessageContents",
            format!(
                "Invalid binary character '#x{:X}' was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
                found as u32
            ),
        )
    }

    /// `BatchRequestTooLong`: a batch's bodies and attributes together
    /// over the largest message.
    pub fn batch_too_long(size: usize, limit: usize) -> SqsError {
        sqs(
            "BatchRequestTooLong",
            "AWS.SimpleQueueService.BatchRequestTooLong",
            format!(
                "Batch requests cannot be longer than {limit} bytes. You have sent {size} bytes."
            ),
        )
    }

    /// `InvalidParameterValue`.
    pub fn invalid(message: impl Into<String>) -> SqsError {
        coral(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            "InvalidParameterValue",
            message,
        )
    }

    /// `MissingParameter`: a required member is absent.
    pub fn missing(name: &str) -> SqsError {
        coral(
            StatusCode::BAD_REQUEST,
            "MissingParameterException",
            "MissingParameter",
            format!("The request must contain the parameter {name}."),
        )
    }

    /// `InvalidAttributeName`: an attribute SQS or spool has no place for.
    pub fn attribute_name(message: impl Into<String>) -> SqsError {
        sqs("InvalidAttributeName", "InvalidAttributeName", message)
    }

    /// `InvalidAttributeValue`.
    pub fn attribute_value(message: impl Into<String>) -> SqsError {
        sqs("InvalidAttributeValue", "InvalidAttributeValue", message)
    }

    /// `UnsupportedOperation`: an SQS action or feature spool does not offer.
    pub fn unsupported(message: impl Into<String>) -> SqsError {
        sqs(
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            message,
        )
    }

    /// `InvalidAction`: not an SQS action at all.
    pub fn unknown_action(action: &str) -> SqsError {
        coral(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "InvalidAction",
            format!("The action `{action}` is not valid for this endpoint."),
        )
    }

    /// A body that is not a JSON object.
    pub fn serialization(message: impl Into<String>) -> SqsError {
        coral(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "MalformedInput",
            message,
        )
    }

    /// `EmptyBatchRequest`.
    pub fn empty_batch() -> SqsError {
        sqs(
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "There should be at least one entry in the request.",
        )
    }

    /// `TooManyEntriesInBatchRequest`.
    pub fn too_many_entries(n: usize) -> SqsError {
        sqs(
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            format!("Maximum number of entries per request are 10. You have sent {n}."),
        )
    }

    /// `BatchEntryIdsNotDistinct`.
    pub fn ids_not_distinct(id: &str) -> SqsError {
        sqs(
            "BatchEntryIdsNotDistinct",
            "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            format!("Id `{id}` is repeated."),
        )
    }

    /// `InvalidBatchEntryId`.
    pub fn bad_entry_id(id: &str) -> SqsError {
        sqs(
            "InvalidBatchEntryId",
            "AWS.SimpleQueueService.InvalidBatchEntryId",
            format!(
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores, 1 to 80 of them: `{id}` is not one."
            ),
        )
    }

    /// `MissingAuthenticationToken` (403): an unsigned request.
    pub fn unsigned() -> SqsError {
        coral(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            "MissingAuthenticationToken",
            "Request is missing Authentication Token: sign it with SigV4 and a key pair of the server's --sqs-credentials.",
        )
    }

    /// `IncompleteSignature` (400): an `Authorization` header that cannot
    /// be read.
    pub fn incomplete(message: impl Into<String>) -> SqsError {
        coral(
            StatusCode::BAD_REQUEST,
            "IncompleteSignatureException",
            "IncompleteSignature",
            message,
        )
    }

    /// `InvalidClientTokenId` (403): an access key the server does not know.
    pub fn unknown_key() -> SqsError {
        coral(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "The security token included in the request is invalid: the access key id is not in the server's --sqs-credentials.",
        )
    }

    /// `SignatureDoesNotMatch` (403).
    pub fn bad_signature(message: impl Into<String>) -> SqsError {
        coral(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            "SignatureDoesNotMatch",
            message,
        )
    }

    /// `RequestExpired` (400): signed more than 15 minutes away from now.
    pub fn expired(message: impl Into<String>) -> SqsError {
        coral(
            StatusCode::BAD_REQUEST,
            "RequestExpired",
            "RequestExpired",
            message,
        )
    }

    /// `ServiceUnavailable` (503): a full queue or a busy database; SDKs
    /// retry it.
    pub fn unavailable(message: impl Into<String>) -> SqsError {
        coral(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableException",
            "ServiceUnavailable",
            message,
        )
    }

    /// `RequestTimeout` (408): the request body stopped arriving.
    pub fn stalled(message: impl Into<String>) -> SqsError {
        coral(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeoutException",
            "RequestTimeout",
            message,
        )
    }

    /// `InternalError` (500).
    pub fn internal(message: impl Into<String>) -> SqsError {
        coral(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "InternalError",
            message,
        )
    }

    /// The SQS error for what the command line would exit with: an unknown
    /// queue, a busy database or full queue, bad input, a failing database.
    pub fn of_exit(exit: Exit, message: String) -> SqsError {
        match exit {
            Exit::NotFound => sqs(
                "QueueDoesNotExist",
                "AWS.SimpleQueueService.NonExistentQueue",
                message,
            ),
            Exit::Busy => SqsError::unavailable(message),
            Exit::Usage | Exit::DataErr => SqsError::invalid(message),
            Exit::Ok | Exit::Empty | Exit::HandlerFailed | Exit::IoErr => {
                let mut e = SqsError::internal(message);
                e.broken = exit == Exit::IoErr;
                e
            }
        }
    }

    /// An error of the native API's handlers (the shared long poll).
    pub fn of_api(e: ApiError) -> SqsError {
        SqsError::of_exit(e.exit, e.message)
    }

    /// True for a client's fault (`Sender`), false for the server's.
    pub fn sender_fault(&self) -> bool {
        self.status.is_client_error()
    }

    /// A failed entry of a batch answer.
    pub fn entry(&self, id: &str) -> serde_json::Value {
        serde_json::json!({
            "Id": id,
            "SenderFault": self.sender_fault(),
            "Code": self.code,
            "Message": self.message,
        })
    }
}

impl From<anyhow::Error> for SqsError {
    fn from(e: anyhow::Error) -> SqsError {
        if let Some(sqs) = e.downcast_ref::<SqsError>() {
            return SqsError {
                status: sqs.status,
                shape: sqs.shape.clone(),
                code: sqs.code,
                message: sqs.message.clone(),
                broken: sqs.broken,
            };
        }
        SqsError::of_exit(crate::error::exit_code(&e), crate::chain(&e))
    }
}

impl From<crate::store::Error> for SqsError {
    fn from(e: crate::store::Error) -> SqsError {
        SqsError::from(anyhow::Error::from(e))
    }
}

impl IntoResponse for SqsError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "__type": self.shape, "message": self.message });
        let fault = if self.sender_fault() {
            "Sender"
        } else {
            "Receiver"
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, super::CONTENT_TYPE)],
            body.to_string(),
        )
            .into_response();
        if let Ok(value) = HeaderValue::from_str(&format!("{};{fault}", self.code)) {
            response.headers_mut().insert("x-amzn-query-error", value);
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
