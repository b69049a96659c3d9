//! Bearer tokens from `--token-file`: one per line, `#` comments, compared
//! in constant time and never logged.

use std::path::Path;

use anyhow::Context as _;
use axum::http::{HeaderMap, StatusCode, header};
use subtle::ConstantTimeEq;

use super::errors::ApiError;
use crate::error::{Exit, Failure};

/// The tokens a request may present.
pub struct Tokens(Vec<Vec<u8>>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} hidden)", self.0.len())
    }
}

impl Tokens {
    /// Reads a token file: one token per line; blank lines and lines that
    /// start with `#` are skipped, blanks around a token are not part of it.
    /// A file without any token is refused (exit 2): it would lock everyone
    /// out.
    pub fn load(path: &Path) -> anyhow::Result<Tokens> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))
            .map_err(|e| Failure::usage(format!("{e:#}")))?;
        let tokens = Tokens::parse(&text);
        if tokens.0.is_empty() {
            return Err(Failure::usage(format!(
                "the token file {} holds no token: write one per line (`#` starts a comment)",
                path.display()
            ))
            .into());
        }
        Ok(tokens)
    }

    fn parse(text: &str) -> Tokens {
        Tokens(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(|line| line.as_bytes().to_vec())
                .collect(),
        )
    }

    /// True when `presented` is one of the tokens. Every token is compared,
    /// each in constant time, whatever matched before.
    fn accepts(&self, presented: &[u8]) -> bool {
        let mut found = subtle::Choice::from(0);
        for token in &self.0 {
            found |= token.as_slice().ct_eq(presented);
        }
        found.into()
    }

    /// Checks a request's `Authorization: Bearer TOKEN` header.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        // The scheme's name is case-insensitive (RFC 9110); the token is not.
        let presented = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .and_then(|v| v.split_at_checked(7))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, token)| token.trim_ascii());
        match presented {
            Some(token) if self.accepts(token) => Ok(()),
            Some(_) => Err(unauthorized(
                "the bearer token is not one of the server's tokens",
            )),
            None => Err(unauthorized(
                "this server needs `Authorization: Bearer TOKEN`, with a token from its --token-file",
            )),
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, Exit::Usage, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_blanks_are_not_tokens() {
        let tokens = Tokens::parse("# ops\n  alpha  \n\n#beta\nga#mma\n");
        assert!(tokens.accepts(b"alpha"));
        assert!(tokens.accepts(b"ga#mma"));
        for refused in [&b"beta"[..], b"#beta", b"", b"alph", b"alphaa", b"# ops"] {
            assert!(!tokens.accepts(refused), "{refused:?}");
        }
    }

    #[test]
    fn the_header_must_name_a_bearer_token() {
        let tokens = Tokens::parse("s3cret\n");
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().expect("header"));
            tokens.check(&headers).is_ok()
        };
        assert!(with("Bearer s3cret"));
        assert!(with("bearer  s3cret"));
        assert!(!with("Bearer S3CRET"));
        assert!(!with("Bearer s3cre"));
        assert!(!with("Basic s3cret"));
        assert!(!with("s3cret"));
        assert!(tokens.check(&HeaderMap::new()).is_err());
    }
}
