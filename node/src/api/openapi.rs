//! The OpenAPI 3.1 description of the node's HTTP port, `node/openapi.json`, served at
//! [`PATH`]. It is written by hand, beside the code it describes, and checked against a
//! running node by the end-to-end tests (`tests/e2e/openapi.rs`: every status it documents
//! is produced, and every status the error mapping can answer is documented) and fuzzed by
//! `tests/schemathesis/run.sh`.
//!
//! It is served without a token, as the document API itself is: the node's token guards
//! only its gRPC `Sink` and `NodeAdmin`, and the description holds nothing that is not in
//! the repository.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, header};
use http_body_util::Full;

use super::http::{ApiError, Reply, method_not_allowed};

/// Where the description is served.
pub const PATH: &str = "/openapi.json";

/// The description, as served.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// The answer to a request for [`PATH`]: the description to `GET` and `HEAD`, `405` to
/// anything else.
pub(super) fn respond(method: &Method) -> Result<Reply, ApiError> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Err(method_not_allowed("GET, HEAD"));
    }
    let mut reply = Response::new(Full::new(Bytes::from_static(DOCUMENT.as_bytes())));
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_is_openapi_3_1_of_this_version() {
        let document: serde_json::Value =
            serde_json::from_str(DOCUMENT).expect("node/openapi.json is JSON");
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            document["paths"][PATH]["get"].is_object(),
            "it describes itself"
        );
    }

    #[test]
    fn it_is_served_to_get_and_head_only() {
        for method in [Method::GET, Method::HEAD] {
            let reply = respond(&method).expect("served");
            assert_eq!(
                reply.headers().get(header::CONTENT_TYPE),
                Some(&HeaderValue::from_static("application/json"))
            );
        }
        let refused = respond(&Method::PUT).expect_err("read only").reply();
        assert_eq!(refused.status(), http::StatusCode::METHOD_NOT_ALLOWED);
    }
}
