//! The HTTP roles' settings: listening and tokens, and what ingest accepts.

use std::time::Duration;

use serde::Deserialize;
use serde_with::{DurationMilliSeconds, DurationSeconds, serde_as};

use super::{ConfigError, invalid};

/// Settings of the HTTP roles.
#[serde_as]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub listen: String,
    pub auth_enabled: bool,
    pub tokens: Vec<TokenSettings>,
    /// Signs the dashboard's session cookies (64 hex characters, 32 bytes). Every process that
    /// serves the dashboard or the API it calls (ingest, aggregator) needs the same key; unset,
    /// each process makes its own, so a session works only where it was made.
    #[serde(default)]
    pub session_key: Option<secrecy::SecretString>,
    /// How long a dashboard session lasts after its login.
    #[serde(rename = "session_ttl_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub session_ttl: Duration,
}

/// One API token. Only its SHA-256 is configured, so a leaked configuration leaks no token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Who holds the token; recorded as `requested_by` on what it submits.
    pub name: String,
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
    pub scopes: Vec<String>,
}

#[serde_as]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    pub repo_template: String,
    pub engines: Vec<String>,
    pub default_engines: Vec<String>,
    pub file_roots: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub body_limit_bytes: usize,
    /// Longest a request body may take to arrive, from the end of its headers; a slower body
    /// is answered `408` (`scanstream_platform::http::BodyReadTimeout`).
    #[serde(rename = "body_read_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub body_read_timeout: Duration,
    #[serde(rename = "write_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub write_timeout: Duration,
    #[serde(rename = "retry_after_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub retry_after: Duration,
    pub batch_max_requests: usize,
    #[serde(rename = "batch_linger_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub batch_linger: Duration,
    pub writers: usize,
    #[serde(rename = "idempotency_ttl_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub idempotency_ttl: Duration,
    pub idempotency_capacity: usize,
}

impl ApiSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let listen: std::net::SocketAddr = self.listen.parse().map_err(|_| {
            invalid(
                "api.listen",
                "must be an IP address and port, e.g. 0.0.0.0:8080",
            )
        })?;
        if !self.auth_enabled && !listen.ip().is_loopback() {
            return Err(invalid(
                "api.auth_enabled",
                "auth may be turned off only when api.listen is a loopback address",
            ));
        }
        if let Some(key) = &self.session_key {
            use secrecy::ExposeSecret;
            let key = key.expose_secret();
            if key.len() != 64 || !key.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(
                    "api.session_key",
                    "must be 64 hex characters (32 random bytes, e.g. `openssl rand -hex 32`)",
                ));
            }
        }
        if self.session_ttl.is_zero() {
            return Err(invalid("api.session_ttl_seconds", "must be positive"));
        }
        for token in &self.tokens {
            validate_token(token).map_err(|problem| ConfigError::Invalid {
                key: "api.tokens",
                problem,
            })?;
        }
        Ok(())
    }
}

impl IngestSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for engine in &self.default_engines {
            if !self.engines.contains(engine) {
                return Err(invalid(
                    "ingest.default_engines",
                    "every default engine must be listed in ingest.engines",
                ));
            }
        }
        if !self.repo_template.is_empty() && !self.repo_template.contains("{name}") {
            return Err(invalid("ingest.repo_template", "must contain {name}"));
        }
        if self.body_read_timeout.is_zero() {
            return Err(invalid("ingest.body_read_timeout_ms", "must be positive"));
        }
        if self.write_timeout.is_zero() || self.batch_max_requests == 0 || self.writers == 0 {
            return Err(invalid(
                "ingest.write_timeout_ms",
                "write_timeout_ms, batch_max_requests and writers must be positive",
            ));
        }
        Ok(())
    }
}

/// What a token may do. `admin` implies every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    ScansWrite,
    ScansRead,
    /// Triage inventory items (`PATCH /findings/{id}`).
    FindingsTriage,
    Admin,
}

impl Scope {
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "scans:write" => Some(Scope::ScansWrite),
            "scans:read" => Some(Scope::ScansRead),
            "findings:triage" => Some(Scope::FindingsTriage),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ScansWrite => "scans:write",
            Scope::ScansRead => "scans:read",
            Scope::FindingsTriage => "findings:triage",
            Scope::Admin => "admin",
        }
    }
}

/// Checks a configured token entry; the error says what is wrong with it.
fn validate_token(token: &TokenSettings) -> Result<(), String> {
    if token.name.trim().is_empty() {
        return Err("a token has an empty name".to_owned());
    }
    let hash_ok = token.sha256.len() == 64 && token.sha256.chars().all(|c| c.is_ascii_hexdigit());
    if !hash_ok {
        return Err(format!(
            "token {:?}: sha256 must be 64 hex characters (the SHA-256 of the token)",
            token.name
        ));
    }
    if token.scopes.is_empty() {
        return Err(format!("token {:?} has no scopes", token.name));
    }
    for scope in &token.scopes {
        if Scope::parse(scope).is_none() {
            return Err(format!(
                "token {:?}: unknown scope {scope:?} (scans:write, scans:read, findings:triage, admin)",
                token.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_entries_are_validated() {
        let good = TokenSettings {
            name: "x".into(),
            sha256: crate::auth::hash_token("t"),
            scopes: vec!["scans:read".into()],
        };
        assert!(validate_token(&good).is_ok());
        let bad_hash = TokenSettings {
            sha256: "plaintext-token".into(),
            ..good.clone()
        };
        assert!(validate_token(&bad_hash).is_err());
        let bad_scope = TokenSettings {
            scopes: vec!["scans:delete".into()],
            ..good
        };
        assert!(
            validate_token(&bad_scope)
                .err()
                .unwrap_or_default()
                .contains("scans:delete")
        );
    }
}
