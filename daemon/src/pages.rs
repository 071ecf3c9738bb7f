//! Pages a daemon serves on its HTTP port besides its own API: the orchestrator's status
//! page, which the orchestrator serves on its port and a green node running the engine
//! (`--orchestrate`) on its document API's port. The daemon that owns the port asks
//! [`Pages::serves`] before routing a path itself.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

/// Largest request body a page takes (a sign-in form).
pub const MAX_BODY: usize = 16 * 1024;

/// How long a `POST` answered `401` (a refused sign-in) waits before it is sent.
pub const REFUSED_SIGN_IN_DELAY: Duration = Duration::from_secs(1);

/// A set of pages behind one HTTP port.
pub trait Pages: Send + Sync + std::fmt::Debug {
    /// Whether `path` is one of its pages.
    fn serves(&self, path: &str) -> bool;

    /// The answer to a request for one of its pages, with its whole body.
    fn answer(&self, head: &Parts, body: &[u8]) -> Response<Full<Bytes>>;
}

/// Reads the request's body (at most [`MAX_BODY`], else `413`) and answers it from `pages`;
/// a `POST` refused with `401` is answered after [`REFUSED_SIGN_IN_DELAY`].
pub async fn respond(pages: &dyn Pages, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (head, body) = request.into_parts();
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => {
            let answer = pages.answer(&head, &body.to_bytes());
            if head.method == Method::POST && answer.status() == StatusCode::UNAUTHORIZED {
                // A refused sign-in: slow down whoever guesses tokens.
                tokio::time::sleep(REFUSED_SIGN_IN_DELAY).await;
            }
            answer
        }
        Err(error) => {
            let too_large = error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            let (status, text) = if too_large {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a page takes a body of at most {MAX_BODY} bytes\n"),
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {error}\n"),
                )
            };
            let mut response = Response::new(Full::new(Bytes::from(text)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
    }
}
