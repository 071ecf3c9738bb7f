//! Bearer-token authentication of control-plane gRPC calls (`authorization: Bearer <token>`).

use std::{path::Path, sync::Arc};

use tonic::{Request, Status, service::Interceptor};

/// Why a token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("cannot read token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file holds no token.
    #[error("token file {path} is empty; put the bearer token on its first line")]
    Empty {
        /// The file.
        path: String,
    },
}

/// Reads a bearer token: the file's content without surrounding white space.
pub fn read_token_file(path: &Path) -> Result<String, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::Empty {
            path: path.display().to_string(),
        });
    }
    Ok(token.to_owned())
}

/// A tonic interceptor that admits a call only with the configured bearer token; with no
/// token configured it admits every call. Comparison takes the same time wherever the first
/// differing byte is, so the token cannot be guessed byte by byte from response times.
#[derive(Debug, Clone, Default)]
pub struct BearerAuth {
    expected: Option<Arc<str>>,
}

impl BearerAuth {
    /// Requires `token` when it is `Some`.
    pub fn new(token: Option<String>) -> Self {
        Self {
            expected: token.map(Arc::from),
        }
    }

    /// Checks one call's metadata.
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <token>`"))?;
        if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
            Ok(())
        } else {
            Err(Status::unauthenticated("wrong bearer token"))
        }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(&request)?;
        Ok(request)
    }
}

/// Whether `a` equals `b`, in a time that does not depend on where they first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(value: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = value {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("ascii"));
        }
        request
    }

    #[test]
    fn admits_only_the_right_token() {
        let auth = BearerAuth::new(Some("s3cret".to_owned()));
        assert!(auth.check(&with_header(Some("Bearer s3cret"))).is_ok());
        for bad in [
            None,
            Some("Bearer wrong!"),
            Some("s3cret"),
            Some("Bearer s3cre"),
        ] {
            let status = auth.check(&with_header(bad)).expect_err("refused");
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
        assert!(BearerAuth::new(None).check(&with_header(None)).is_ok());
    }

    #[test]
    fn token_files_are_trimmed_and_must_not_be_empty() {
        let dir = std::env::temp_dir().join(format!("cutover-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        std::fs::write(&file, "  abc \n").expect("write");
        assert_eq!(read_token_file(&file).expect("token"), "abc");
        std::fs::write(&file, "\n").expect("write");
        assert!(matches!(
            read_token_file(&file),
            Err(TokenError::Empty { .. })
        ));
        assert!(matches!(
            read_token_file(&dir.join("missing")),
            Err(TokenError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
