//! Who may read the status page when the orchestrator has a token: a request with the token
//! in an `Authorization: Bearer` header, or in the `cutover_token` cookie that signing in
//! sets (HttpOnly, so the page's script cannot read it; SameSite=Strict, so no other site's
//! page sends it). The cookie holds the token hex-encoded, so any token is a valid cookie
//! value.

use cutover_daemon::auth::constant_time_eq;
use http::{HeaderMap, header};

const COOKIE: &str = "cutover_token";

/// The `Set-Cookie` value that signs out.
pub(super) const EXPIRED_COOKIE: &str =
    "cutover_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0";

/// The token the page requires, if any.
#[derive(Debug)]
pub(super) struct Gate {
    token: Option<String>,
}

impl Gate {
    pub(super) fn new(token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_owned),
        }
    }

    /// Whether the page needs a token.
    pub(super) fn is_set(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `token` is the one required.
    pub(super) fn accepts(&self, token: &str) -> bool {
        self.token
            .as_deref()
            .is_none_or(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
    }

    /// Whether a request with `headers` may read the page.
    pub(super) fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok()?.strip_prefix("Bearer "))
            .any(|t| constant_time_eq(t.as_bytes(), expected.as_bytes()));
        let hex = hex(expected);
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| {
                name == COOKIE && constant_time_eq(value.as_bytes(), hex.as_bytes())
            });
        bearer || cookie
    }

    /// The `Set-Cookie` value that signs in with `token`.
    pub(super) fn cookie(&self, token: &str) -> String {
        format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", hex(token))
    }
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The `token` field of a sign-in form (`application/x-www-form-urlencoded`).
pub(super) fn form_token(body: &[u8]) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "token")
        .and_then(|(_, value)| percent_decode(value))
        .map(|token| token.trim().to_owned())
}

/// Decodes `+` and `%XX` of a form value; `None` for a malformed escape or non-UTF-8.
fn percent_decode(value: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = rest.get(..2)?;
                bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                rest = &rest[2..];
            }
            _ => bytes.push(b),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name, HeaderValue::from_str(value).expect("ascii"));
        }
        map
    }

    #[test]
    fn a_bearer_header_or_the_sign_in_cookie_admits() {
        let gate = Gate::new(Some("s3 cret;"));
        assert!(!gate.admits(&HeaderMap::new()));
        assert!(gate.admits(&headers(&[(header::AUTHORIZATION, "Bearer s3 cret;")])));
        assert!(!gate.admits(&headers(&[(header::AUTHORIZATION, "Bearer s3")])));
        let cookie = gate.cookie("s3 cret;");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let value = cookie.split(';').next().expect("a pair");
        assert!(gate.admits(&headers(&[(header::COOKIE, &format!("a=b; {value}"))])));
        assert!(!gate.admits(&headers(&[(header::COOKIE, "cutover_token=s3 cret;")])));
        assert!(Gate::new(None).admits(&HeaderMap::new()));
    }

    #[test]
    fn the_form_token_is_decoded() {
        assert_eq!(form_token(b"token=a%20b%2Bc+d").as_deref(), Some("a b+c d"));
        assert_eq!(form_token(b"x=1&token=t").as_deref(), Some("t"));
        assert_eq!(form_token(b"token=%zz"), None);
        assert_eq!(form_token(b"nothing"), None);
    }
}
