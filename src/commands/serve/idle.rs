//! Request bodies that must keep arriving. A client that sends its headers
//! and then part of a body, or nothing, would otherwise hold its connection
//! for the whole request timeout (60 s); enough of them would take every
//! connection the server has. A body that brings no data for the header
//! timeout (10 s) ends the request with 408 and closes its connection.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Wraps each request's body in an [`IdleBody`] (a middleware).
pub async fn watch_bodies(State(idle): State<Duration>, req: Request) -> Request {
    req.map(|body| Body::new(IdleBody::new(body, idle)))
}

/// The error of a body that stopped arriving.
#[derive(Debug)]
pub struct Stalled(Duration);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body stopped arriving: nothing came for {} s",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for Stalled {}

/// The [`Stalled`] that `err` is or wraps, if any.
pub fn stalled<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Stalled> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(stalled) = e.downcast_ref::<Stalled>() {
            return Some(stalled);
        }
        cause = e.source();
    }
    None
}

/// A body that fails with [`Stalled`] once no frame came for `idle`.
struct IdleBody {
    inner: Body,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl IdleBody {
    fn new(inner: Body, idle: Duration) -> IdleBody {
        IdleBody {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl HttpBody for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.deadline.as_mut().reset(Instant::now() + this.idle);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(Stalled(this.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
