//! The status page: what an operator watches during an upgrade, served by the orchestrator
//! on its HTTP port (and by a green node running the engine, on its document API's port).
//!
//! - `GET /`: the page, rendered on the server from the engine's status, so it reads whole
//!   without JavaScript; its script polls `/api/status` every second and, when the status
//!   changed, swaps in `/fragment` (the same rendering of the page's body), so it follows the
//!   upgrade without a reload.
//! - `GET /api/status`: the status as JSON, the same document as
//!   `cutover upgrade status --output json`.
//! - `GET /assets/page.css`, `/assets/page.js`: embedded in the binary; nothing is loaded from
//!   anywhere else (the Content-Security-Policy says so to the browser too).
//! - With a token configured (`--token-file`), every page but the assets needs it: in an
//!   `Authorization: Bearer` header, or signed in with a form (`POST /login`), which sets an
//!   HttpOnly cookie of a random session id (never the token). Never in the URL: a query
//!   string is ignored. A wrong token is answered after a second, to slow guessing.

mod auth;
mod chart;
mod html;

use std::sync::Arc;

use bytes::Bytes;
use cutover_daemon::Pages;
use http::{HeaderValue, Method, Response, StatusCode, header, request::Parts};
use http_body_util::Full;

use self::auth::Gate;
use crate::engine::Engine;

const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// Where the page gets the status it shows.
pub trait StatusSource: Send + Sync + std::fmt::Debug {
    /// The upgrade's current status.
    fn status(&self) -> cutover_proto::v1::UpgradeStatus;
}

impl StatusSource for Engine {
    fn status(&self) -> cutover_proto::v1::UpgradeStatus {
        Engine::status(self)
    }
}

/// The status page of one engine.
#[derive(Debug)]
pub struct StatusPage {
    source: Arc<dyn StatusSource>,
    gate: Gate,
}

impl StatusPage {
    /// The page of `source`, behind `token` when one is set.
    pub fn new(source: Arc<dyn StatusSource>, token: Option<&str>) -> Arc<Self> {
        Arc::new(Self {
            source,
            gate: Gate::new(token),
        })
    }

    fn get(&self, path: &str, head: &Parts) -> Response<Full<Bytes>> {
        match path {
            "/assets/page.css" => asset("text/css; charset=utf-8", CSS),
            "/assets/page.js" => asset("text/javascript; charset=utf-8", JS),
            _ if !self.gate.admits(&head.headers) => match path {
                "/" => reply(StatusCode::UNAUTHORIZED, HTML, html::sign_in(None).into()),
                "/api/status" => {
                    let mut refused = reply(
                        StatusCode::UNAUTHORIZED,
                        JSON,
                        r#"{"error":"unauthenticated","detail":"send the orchestrator's token: Authorization: Bearer <token>"}"#.into(),
                    );
                    refused
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    refused
                }
                _ => reply(
                    StatusCode::UNAUTHORIZED,
                    TEXT,
                    "sign in at / first\n".into(),
                ),
            },
            "/" => reply(
                StatusCode::OK,
                HTML,
                html::page(&self.source.status(), self.gate.is_set()).into(),
            ),
            "/fragment" => reply(
                StatusCode::OK,
                HTML,
                html::main(&self.source.status()).into(),
            ),
            _ => {
                let json = crate::cli::json::status(&self.source.status());
                reply(StatusCode::OK, JSON, json.to_string().into())
            }
        }
    }

    fn sign_in(&self, body: &[u8]) -> Response<Full<Bytes>> {
        if !self.gate.is_set() {
            return see_other("/", None);
        }
        match auth::form_token(body) {
            Some(token) if self.gate.accepts(&token) => {
                see_other("/", Some(self.gate.sign_in_cookie()))
            }
            _ => reply(
                StatusCode::UNAUTHORIZED,
                HTML,
                html::sign_in(Some("That is not the orchestrator's token.")).into(),
            ),
        }
    }
}

const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// Every path the page answers, and the methods each takes.
const PATHS: &[(&str, &[Method])] = &[
    ("/", &[Method::GET, Method::HEAD]),
    ("/fragment", &[Method::GET, Method::HEAD]),
    ("/api/status", &[Method::GET, Method::HEAD]),
    ("/assets/page.css", &[Method::GET, Method::HEAD]),
    ("/assets/page.js", &[Method::GET, Method::HEAD]),
    ("/login", &[Method::POST]),
    ("/logout", &[Method::POST]),
];

impl Pages for StatusPage {
    fn serves(&self, path: &str) -> bool {
        PATHS.iter().any(|(p, _)| *p == path)
    }

    fn answer(&self, head: &Parts, body: &[u8]) -> Response<Full<Bytes>> {
        let path = head.uri.path();
        let Some((_, methods)) = PATHS.iter().find(|(p, _)| *p == path) else {
            return reply(StatusCode::NOT_FOUND, TEXT, "not found\n".into());
        };
        if !methods.contains(&head.method) {
            let allowed: Vec<&str> = methods.iter().map(Method::as_str).collect();
            let mut refused = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                TEXT,
                format!("{path} takes {}\n", allowed.join(", ")).into(),
            );
            if let Ok(value) = HeaderValue::try_from(allowed.join(", ")) {
                refused.headers_mut().insert(header::ALLOW, value);
            }
            return refused;
        }
        let mut answer = match path {
            "/login" => self.sign_in(body),
            "/logout" => see_other("/", Some(self.gate.sign_out_cookie())),
            _ => self.get(path, head),
        };
        if head.method == Method::HEAD {
            *answer.body_mut() = Full::new(Bytes::new());
        }
        answer
    }
}

fn asset(content_type: &'static str, text: &'static str) -> Response<Full<Bytes>> {
    let mut answer = reply(
        StatusCode::OK,
        content_type,
        Bytes::from_static(text.as_bytes()),
    );
    answer.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    answer
}

fn see_other(location: &'static str, cookie: Option<String>) -> Response<Full<Bytes>> {
    let mut answer = reply(StatusCode::SEE_OTHER, TEXT, Bytes::new());
    answer
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(location));
    if let Some(value) = cookie.and_then(|c| HeaderValue::try_from(c).ok()) {
        answer.headers_mut().insert(header::SET_COOKIE, value);
    }
    answer
}

/// A response with the page's security headers: nothing from elsewhere, no framing, no
/// caching of the status.
fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut answer = Response::new(Full::new(body));
    *answer.status_mut() = status;
    let headers = answer.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    answer
}

#[cfg(test)]
mod tests;
