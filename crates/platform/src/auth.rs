//! Bearer-token authentication and scope checks, shared by the HTTP roles.
//!
//! Tokens are configured by the SHA-256 of their value, so the configuration never holds a
//! usable token. A request's token is hashed and compared in constant time.

use actix_web::HttpRequest;
use actix_web::http::header;
use sha2::{Digest, Sha256};

use crate::session::{self, Session, SessionKeys};

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
    #[error("the dashboard session expired or is not valid here; log in again")]
    Session,
    #[error("a request made with the dashboard's session must carry its X-CSRF-Token")]
    Csrf,
}

impl AuthError {
    /// 401 for who-are-you failures, 403 for not-allowed.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Forbidden(_) | AuthError::Csrf => 403,
            _ => 401,
        }
    }

    pub fn metric_label(&self) -> &'static str {
        match self {
            AuthError::Missing => "auth_missing",
            AuthError::Malformed => "auth_malformed",
            AuthError::Unknown => "auth_unknown",
            AuthError::Forbidden(_) => "auth_forbidden",
            AuthError::Session => "auth_session",
            AuthError::Csrf => "auth_csrf",
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
    /// The dashboard session the request came with, when it came with one.
    pub session: Option<Session>,
}

impl Principal {
    /// Whether the principal may do what `scope` allows (what the dashboard shows).
    pub fn allows(&self, scope: Scope) -> bool {
        self.require(scope).is_ok()
    }

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
    /// Lowercase hex of `digest`, for binding sessions.
    hex: String,
    scopes: Vec<Scope>,
}

/// The configured tokens, ready to check requests against.
pub struct Authenticator {
    enabled: bool,
    tokens: Vec<Token>,
    sessions: SessionKeys,
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
                    hex: hex::encode(digest),
                    scopes: t.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
                })
            })
            .collect();
        Self {
            enabled: api.auth_enabled,
            tokens,
            sessions: SessionKeys::new(api.session_key.as_ref(), api.session_ttl),
        }
    }

    /// How long a dashboard session lasts.
    pub fn session_ttl(&self) -> std::time::Duration {
        self.sessions.ttl()
    }

    /// The principal of an HTTP request: its bearer token when it has an `Authorization`
    /// header, else its dashboard session cookie. A session request that changes something
    /// (any method but GET, HEAD and OPTIONS) must carry the session's CSRF value in
    /// `X-CSRF-Token`.
    pub fn from_request(&self, req: &HttpRequest) -> Result<Principal, AuthError> {
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if authorization.is_some() || !self.enabled {
            return self.authenticate(authorization);
        }
        let Some(cookie) = req.cookie(session::COOKIE) else {
            return Err(AuthError::Missing);
        };
        let principal = self
            .session(cookie.value(), crate::now_ms())
            .ok_or(AuthError::Session)?;
        if !req.method().is_safe() {
            let offered = req
                .headers()
                .get(session::CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let expected = principal.session.as_ref().map_or("", |s| s.csrf.as_str());
            if !session::same(offered, expected) {
                return Err(AuthError::Csrf);
            }
        }
        Ok(principal)
    }

    /// The principal of a session cookie's value, while its token is still configured.
    pub fn session(&self, value: &str, now_ms: i64) -> Option<Principal> {
        let session = self.sessions.verify(value, now_ms)?;
        let token = self
            .tokens
            .iter()
            .find(|t| t.name == session.token_name && t.hex.starts_with(&session.token_digest))?;
        Some(Principal {
            name: Some(token.name.clone()),
            scopes: token.scopes.clone(),
            unrestricted: false,
            session: Some(session),
        })
    }

    /// Logs a token in: its principal and the value of the session cookie to set.
    pub fn login(&self, token: &str, now_ms: i64) -> Result<(Principal, String), AuthError> {
        let principal = self.authenticate(Some(&format!("Bearer {}", token.trim())))?;
        let name = principal.name.clone().unwrap_or_default();
        let hex = self
            .tokens
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.hex.clone())
            .unwrap_or_default();
        let (session, cookie) = self.sessions.issue(&name, &hex, now_ms);
        Ok((
            Principal {
                session: Some(session),
                ..principal
            },
            cookie,
        ))
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
                session: None,
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
            session: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenSettings;

    fn auth(enabled: bool) -> Authenticator {
        Authenticator::new(&api(enabled))
    }

    fn api(enabled: bool) -> ApiSettings {
        ApiSettings {
            listen: "127.0.0.1:0".into(),
            auth_enabled: enabled,
            session_key: None,
            session_ttl: std::time::Duration::from_secs(60),
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
        }
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
    fn a_session_stands_for_its_token_and_writes_need_its_csrf_value() {
        use actix_web::test::TestRequest;
        let key = || Some(secrecy::SecretString::from("ab".repeat(32)));
        let a = Authenticator::new(&ApiSettings {
            session_key: key(),
            ..api(true)
        });
        let (principal, cookie) = a.login("w-token", crate::now_ms()).unwrap();
        let csrf = principal.session.clone().unwrap().csrf;
        let session = actix_web::cookie::Cookie::new(session::COOKIE, cookie.clone());
        let read = TestRequest::get().cookie(session.clone()).to_http_request();
        assert_eq!(
            a.from_request(&read).unwrap().name.as_deref(),
            Some("writer")
        );
        let forged = TestRequest::post()
            .cookie(session.clone())
            .to_http_request();
        assert_eq!(a.from_request(&forged), Err(AuthError::Csrf));
        let wrong = TestRequest::post()
            .cookie(session.clone())
            .insert_header((session::CSRF_HEADER, "0".repeat(32)))
            .to_http_request();
        assert_eq!(a.from_request(&wrong), Err(AuthError::Csrf));
        let write = TestRequest::post()
            .cookie(session)
            .insert_header((session::CSRF_HEADER, csrf))
            .to_http_request();
        let principal = a.from_request(&write).unwrap();
        assert!(principal.allows(Scope::ScansWrite));
        assert!(!principal.allows(Scope::ScansRead));
        // Another process with another key, or without the token, does not accept the session.
        let revoked = Authenticator::new(&ApiSettings {
            tokens: Vec::new(),
            session_key: key(),
            ..api(true)
        });
        assert_eq!(revoked.session(&cookie, crate::now_ms()), None);
        assert_eq!(
            auth(true).session(&cookie, crate::now_ms()),
            None,
            "a random key"
        );
        assert_eq!(a.login("nope", 0).err(), Some(AuthError::Unknown));
    }

    #[test]
    fn disabled_auth_allows_everything() {
        let p = auth(false).authenticate(None).unwrap();
        assert!(p.require(Scope::Admin).is_ok());
        assert_eq!(p.name, None);
    }
}
