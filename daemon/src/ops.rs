//! The operational endpoints every daemon serves: `/metrics` (Prometheus text format),
//! `/healthz` (the process is up) and `/readyz` (it can take traffic).
//! [`serve`] also serves a daemon's [`Pages`] (the orchestrator's status page).
//!
//! [`respond`] lets a daemon that already has an HTTP router (the node's document API, the
//! proxy's admin port) answer these paths the same way; [`serve`] runs them alone on a
//! listener (the orchestrator).

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Pages;

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether this daemon can take traffic; `/readyz` answers 200 only while it is set.
/// Cheap to clone: every clone sees the same flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// A flag that starts not ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the daemon ready (listeners bound, state loaded).
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Marks the daemon not ready (starting, or draining on shutdown).
    pub fn set_not_ready(&self) {
        self.0.store(false, Ordering::Release);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Whether `path` is one of the operational endpoints, which every client may reach (a
/// mutual-TLS port admits clients without a certificate to them).
pub fn is_ops_path(path: &str) -> bool {
    matches!(path, "/metrics" | "/healthz" | "/readyz")
}

/// The answer to an operational path, or `None` when `path` is not one of them so the caller
/// routes it itself. Only `GET` and `HEAD` are answered; other methods get 405.
pub fn respond(
    method: &Method,
    path: &str,
    readiness: &Readiness,
) -> Option<Response<Full<Bytes>>> {
    let (status, content_type, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            PROMETHEUS_CONTENT_TYPE,
            Bytes::from(crate::metrics::render()),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        "/readyz" if readiness.is_ready() => {
            (StatusCode::OK, "text/plain", Bytes::from_static(b"ready\n"))
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            Bytes::from_static(b"not ready\n"),
        ),
        _ => return None,
    };
    if method != Method::GET && method != Method::HEAD {
        return Some(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Bytes::from_static(b"only GET and HEAD\n"),
        ));
    }
    Some(plain(status, content_type, body))
}

fn plain(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

async fn handle(
    request: Request<Incoming>,
    readiness: Readiness,
    pages: Option<Arc<dyn Pages>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(answer) = respond(request.method(), request.uri().path(), &readiness) {
        return Ok(answer);
    }
    if let Some(pages) = pages.filter(|p| p.serves(request.uri().path())) {
        return Ok(crate::pages::respond(pages.as_ref(), request).await);
    }
    Ok(plain(
        StatusCode::NOT_FOUND,
        "text/plain",
        Bytes::from_static(b"not found: try /, /metrics, /healthz or /readyz\n"),
    ))
}

/// Serves the operational endpoints, and `pages` if given, on `listener` (HTTP/1.1 and h2c)
/// until `cancel` fires, then lets open connections finish their current request and returns.
pub async fn serve(
    listener: TcpListener,
    bounds: crate::Bounds,
    readiness: Readiness,
    pages: Option<Arc<dyn Pages>>,
    tls: Option<crate::tls::Tls>,
    cancel: CancellationToken,
) {
    crate::serve::serve_http(listener, "http", bounds, tls, cancel, move |request| {
        handle(request, readiness.clone(), pages.clone())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_flips_readyz() {
        let readiness = Readiness::new();
        let status = |r: &Readiness| {
            respond(&Method::GET, "/readyz", r)
                .expect("readyz is an ops path")
                .status()
        };
        assert_eq!(status(&readiness), StatusCode::SERVICE_UNAVAILABLE);
        readiness.set_ready();
        assert_eq!(status(&readiness), StatusCode::OK);
        readiness.set_not_ready();
        assert_eq!(status(&readiness), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn leaves_other_paths_to_the_caller_and_refuses_writes() {
        let readiness = Readiness::new();
        assert!(respond(&Method::GET, "/v1/users/1", &readiness).is_none());
        let response = respond(&Method::POST, "/healthz", &readiness).expect("ops path");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
