//! Who may read the status page when the orchestrator has a token: a request with the token
//! in an `Authorization: Bearer` header, or with the session cookie that signing in with the
//! token sets. The cookie never holds the token (which also steers upgrades over gRPC): it
//! holds a random session id, drawn when the daemon starts and good only for reading this
//! daemon's page until it restarts. Browsers send a host's cookies to every port of it, so
//! the cookie's name is random too: two daemons on one host keep their own sessions. It is
//! HttpOnly (the page's script cannot read it) and SameSite=Strict (no other site's page
//! sends it).

use std::io::Read as _;

use cutover_daemon::auth::constant_time_eq;
use http::{HeaderMap, header};

/// The token the page requires, if any, and the session a sign-in grants.
#[derive(Debug)]
pub(super) struct Gate {
    token: Option<String>,
    /// The session cookie's name (`cutover_page_` and 8 random hex digits).
    cookie: String,
    /// The session id a signed-in browser presents (64 random hex digits).
    session: String,
}

impl Gate {
    pub(super) fn new(token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_owned),
            cookie: format!("cutover_page_{}", hex(&random::<4>())),
            session: hex(&random::<32>()),
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
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| {
                name == self.cookie && constant_time_eq(value.as_bytes(), self.session.as_bytes())
            });
        bearer || cookie
    }

    /// The `Set-Cookie` value that signs in.
    pub(super) fn sign_in_cookie(&self) -> String {
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie, self.session
        )
    }

    /// The `Set-Cookie` value that signs out.
    pub(super) fn sign_out_cookie(&self) -> String {
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
            self.cookie
        )
    }
}

/// `N` bytes from the kernel's random source; if it cannot be read, from the standard
/// library's randomly keyed hasher (seeded from the OS too).
fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            let value = std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                i,
            );
            chunk.copy_from_slice(&value.to_le_bytes()[..chunk.len()]);
        }
    }
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    fn a_bearer_header_or_the_session_cookie_admits_and_the_cookie_is_not_the_token() {
        let gate = Gate::new(Some("s3 cret;"));
        assert!(!gate.admits(&HeaderMap::new()));
        assert!(gate.admits(&headers(&[(header::AUTHORIZATION, "Bearer s3 cret;")])));
        assert!(!gate.admits(&headers(&[(header::AUTHORIZATION, "Bearer s3")])));
        let cookie = gate.sign_in_cookie();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        let pair = cookie.split(';').next().expect("a pair");
        let (name, value) = pair.split_once('=').expect("name=value");
        assert!(
            name.starts_with("cutover_page_") && name.len() == 21,
            "{name}"
        );
        assert_eq!(value.len(), 64);
        assert!(
            !value.contains(&hex(b"s3 cret;")),
            "the token is not in the cookie"
        );
        assert!(gate.admits(&headers(&[(header::COOKIE, &format!("a=b; {pair}"))])));
        let wrong = format!("{name}={}", "0".repeat(64));
        assert!(!gate.admits(&headers(&[(header::COOKIE, &wrong)])));
        let other = Gate::new(Some("s3 cret;"));
        assert!(
            !other.admits(&headers(&[(header::COOKIE, pair)])),
            "another daemon's session is not this one's"
        );
        assert!(gate.sign_out_cookie().contains("Max-Age=0"));
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
