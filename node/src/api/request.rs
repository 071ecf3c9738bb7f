//! What a document request asks, parsed: path segments, preconditions, listing queries.

use cutover_daemon::ErrorCode;
use http::{HeaderMap, header};
use percent_encoding::percent_decode_str;

use super::http::ApiError;
use crate::store::Precondition;

/// Default page size of a listing.
const DEFAULT_LIMIT: usize = 100;
/// Largest page size of a listing.
const MAX_LIMIT: usize = 1_000;

/// Percent-decodes one path segment into UTF-8.
pub(super) fn decode(segment: &str, name: &'static str) -> Result<String, ApiError> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidArgument,
                name,
                format!("{segment:?} does not percent-decode to UTF-8"),
            )
        })
}

/// `If-Match` / `If-None-Match: *` as a store precondition.
pub(super) fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let bad = |what: &str| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            "bad_precondition",
            format!("{what}: use If-Match: \"<version>\"[, …] or *, or If-None-Match: *"),
        )
    };
    if let Some(value) = headers.get(header::IF_NONE_MATCH) {
        return match value.to_str().map(str::trim) {
            Ok("*") => Ok(Precondition::IfAbsent),
            _ => Err(bad("If-None-Match supports only *")),
        };
    }
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(Precondition::Always);
    };
    let text = value
        .to_str()
        .map_err(|_| bad("If-Match is not ASCII"))?
        .trim();
    if text == "*" {
        return Ok(Precondition::IfExists);
    }
    text.split(',')
        .map(|tag| {
            let tag = tag.trim();
            tag.strip_prefix("W/")
                .unwrap_or(tag)
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| bad(&format!("If-Match tag {tag:?} is not a version")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Precondition::IfMatch)
}

/// `after` and `limit` of a listing query.
pub(super) fn list_query(query: &str) -> Result<(Option<String>, usize), ApiError> {
    let mut after = None;
    let mut limit = DEFAULT_LIMIT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(&value.replace('+', " "), "bad_query")?;
        match key {
            "after" => after = Some(value),
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::InvalidArgument,
                            "bad_query",
                            format!("limit={value:?}: use a whole number from 1 to {MAX_LIMIT}"),
                        )
                    })?;
            }
            other => {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    "bad_query",
                    format!("unknown query parameter {other:?}: use after and limit"),
                ));
            }
        }
    }
    Ok((after, limit))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn parses_preconditions() {
        let mut headers = HeaderMap::new();
        assert_eq!(precondition(&headers).ok(), Some(Precondition::Always));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("\"3\", W/\"5\""));
        assert_eq!(
            precondition(&headers).ok(),
            Some(Precondition::IfMatch(vec![3, 5]))
        );
        headers.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        assert_eq!(precondition(&headers).ok(), Some(Precondition::IfExists));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("3"));
        assert!(precondition(&headers).is_err(), "unquoted tag");
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert_eq!(precondition(&headers).ok(), Some(Precondition::IfAbsent));
    }

    #[test]
    fn parses_listing_queries() {
        assert_eq!(list_query("").ok(), Some((None, DEFAULT_LIMIT)));
        assert_eq!(
            list_query("after=a%2Fb&limit=5").ok(),
            Some((Some("a/b".to_owned()), 5))
        );
        for bad in ["limit=0", "limit=1001", "limit=x", "colour=blue"] {
            assert!(list_query(bad).is_err(), "{bad}");
        }
    }
}
