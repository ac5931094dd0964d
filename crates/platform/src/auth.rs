//! Bearer-token authentication and scope checks, shared by the HTTP roles.
//!
//! Tokens are configured by the SHA-256 of their value, so the configuration never holds a
//! usable token. A request's token is hashed and compared in constant time.

use sha2::{Digest, Sha256};

use crate::config::ApiSettings;
pub use crate::config::Scope;

/// Lowercase hex SHA-256 of a token, as configured in `api.tokens`.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("the Authorization header is not a bearer token")]
    Malformed,
    #[error("unknown or revoked token")]
    Unknown,
    #[error("this token lacks the {0} scope")]
    Forbidden(&'static str),
}

impl AuthError {
    /// 401 for who-are-you failures, 403 for not-allowed.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Forbidden(_) => 403,
            _ => 401,
        }
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            AuthError::Missing => "auth_missing",
            AuthError::Malformed => "auth_malformed",
            AuthError::Unknown => "auth_unknown",
            AuthError::Forbidden(_) => "auth_forbidden",
        }
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's configured name; `None` when auth is off.
    pub name: Option<String>,
    scopes: Vec<Scope>,
    unrestricted: bool,
}

impl Principal {
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.unrestricted || self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
        {
            Ok(())
        } else {
            Err(AuthError::Forbidden(scope.as_str()))
        }
    }
}

struct Token {
    name: String,
    digest: [u8; 32],
    scopes: Vec<Scope>,
}

/// The configured tokens, ready to check requests against.
pub struct Authenticator {
    enabled: bool,
    tokens: Vec<Token>,
}

impl Authenticator {
    /// Built from settings already validated by [`crate::Settings::load`].
    pub fn new(api: &ApiSettings) -> Self {
        let tokens = api
            .tokens
            .iter()
            .filter_map(|t| {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(t.sha256.to_ascii_lowercase(), &mut digest).ok()?;
                Some(Token {
                    name: t.name.clone(),
                    digest,
                    scopes: t.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
                })
            })
            .collect();
        Self {
            enabled: api.auth_enabled,
            tokens,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The principal for an `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        if !self.enabled {
            return Ok(Principal {
                name: None,
                scopes: Vec::new(),
                unrestricted: true,
            });
        }
        let header = authorization.ok_or(AuthError::Missing)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::Malformed);
        }
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let mut found = None;
        for candidate in &self.tokens {
            // Constant-time comparison; every token is compared so timing reveals nothing.
            let diff = candidate
                .digest
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(candidate);
            }
        }
        let token = found.ok_or(AuthError::Unknown)?;
        Ok(Principal {
            name: Some(token.name.clone()),
            scopes: token.scopes.clone(),
            unrestricted: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenSettings;

    fn auth(enabled: bool) -> Authenticator {
        Authenticator::new(&ApiSettings {
            listen: "127.0.0.1:0".into(),
            auth_enabled: enabled,
            tokens: vec![
                TokenSettings {
                    name: "writer".into(),
                    sha256: hash_token("w-token"),
                    scopes: vec!["scans:write".into()],
                },
                TokenSettings {
                    name: "root".into(),
                    sha256: hash_token("a-token"),
                    scopes: vec!["admin".into()],
                },
            ],
        })
    }

    #[test]
    fn tokens_map_to_their_scopes() {
        let a = auth(true);
        let writer = a.authenticate(Some("Bearer w-token")).unwrap();
        assert_eq!(writer.name.as_deref(), Some("writer"));
        assert!(writer.require(Scope::ScansWrite).is_ok());
        assert_eq!(
            writer.require(Scope::ScansRead),
            Err(AuthError::Forbidden("scans:read"))
        );
        let root = a.authenticate(Some("bearer a-token")).unwrap();
        assert!(root.require(Scope::ScansRead).is_ok());
    }

    #[test]
    fn bad_credentials_are_told_apart() {
        let a = auth(true);
        assert_eq!(a.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            a.authenticate(Some("Basic dXNlcjpwYXNz")),
            Err(AuthError::Malformed)
        );
        assert_eq!(a.authenticate(Some("Bearer ")), Err(AuthError::Malformed));
        assert_eq!(a.authenticate(Some("Bearer nope")), Err(AuthError::Unknown));
    }

    #[test]
    fn disabled_auth_allows_everything() {
        let p = auth(false).authenticate(None).unwrap();
        assert!(p.require(Scope::Admin).is_ok());
        assert_eq!(p.name, None);
    }
}
