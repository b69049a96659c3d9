//! Errors as HTTP answers: `{"error":"…","exit_code":N}`, with the status
//! that goes with the exit code the command line would give.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{self, Exit};

/// How long a client told 503 should wait before it tries again.
const RETRY_AFTER_SECONDS: &str = "1";

/// A refused or failed request.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The exit code the command line would give.
    pub exit: Exit,
    /// What went wrong and what to do, as `spool: error:` would say it.
    pub message: String,
}

impl ApiError {
    /// An error with this status, exit code and message.
    pub fn new(status: StatusCode, exit: Exit, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            exit,
            message: message.into(),
        }
    }

    /// A bad request: a query or path the command line would refuse (exit 2).
    pub fn usage(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, Exit::Usage, message)
    }

    /// A body over 16 MiB or over the queue's `max_size` (exit 65).
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, Exit::DataErr, message)
    }
}

/// The status for an exit code: 400 (2), 404 (3), 422 (65), 503 (75), 500
/// (74 and anything else).
pub fn status_of(exit: Exit) -> StatusCode {
    match exit {
        Exit::Usage => StatusCode::BAD_REQUEST,
        Exit::NotFound => StatusCode::NOT_FOUND,
        Exit::DataErr => StatusCode::UNPROCESSABLE_ENTITY,
        Exit::Busy => StatusCode::SERVICE_UNAVAILABLE,
        Exit::Ok | Exit::Empty | Exit::HandlerFailed | Exit::IoErr => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> ApiError {
        let exit = error::exit_code(&err);
        let status = if err
            .chain()
            .any(|c| c.is::<crate::commands::publish::BodyTooLarge>())
        {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            status_of(exit)
        };
        ApiError::new(status, exit, crate::chain(&err))
    }
}

impl From<crate::store::Error> for ApiError {
    fn from(err: crate::store::Error) -> ApiError {
        ApiError::from(anyhow::Error::from(err))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.message,
            "exit_code": self.exit as u8,
        });
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string() + "\n",
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // What a 401 must say (RFC 9110): the scheme that is wanted.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"spool\""),
            );
        }
        response
    }
}
