//! Dashboard sessions: a signed, expiring cookie that stands for an API token.
//!
//! The cookie holds no token: it names the token, binds to a prefix of its SHA-256 (so a
//! rotated token ends its sessions), carries the session's CSRF value and its expiry, and is
//! signed with HMAC-SHA256 under `api.session_key`. Whoever checks it looks the token up again
//! in its own configuration, so a revoked token ends its sessions everywhere. The same key on
//! ingest and aggregator lets the dashboard's requests land on either.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;

/// The session cookie's name.
pub const COOKIE: &str = "scanstream_session";
/// The header a cookie-authenticated request that changes something carries its session's
/// CSRF value in (a custom header also forces a CORS preflight on any cross-origin attempt).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Hex characters of the token's SHA-256 a session is bound to.
const DIGEST_PREFIX: usize = 16;
/// Domain separation of the signature.
const CONTEXT: &[u8] = b"scanstream-session-v1|";

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The configured name of the token that logged in.
    pub token_name: String,
    /// The first hex characters of the token's SHA-256.
    pub token_digest: String,
    /// What forms and `X-CSRF-Token` headers must carry.
    pub csrf: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// The signing key and lifetime of sessions.
pub struct SessionKeys {
    key: [u8; 32],
    ttl: Duration,
}

impl SessionKeys {
    /// From `api.session_key` (already validated as 64 hex characters), or a random key of this
    /// process when none is configured.
    pub fn new(configured: Option<&secrecy::SecretString>, ttl: Duration) -> Self {
        let mut key = [0u8; 32];
        let decoded = configured
            .and_then(|k| hex::decode_to_slice(k.expose_secret(), &mut key).ok())
            .is_some();
        if !decoded {
            key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
            key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        Self { key, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        #[allow(clippy::expect_used)]
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(CONTEXT);
        mac.update(payload.as_bytes());
        mac
    }

    /// A new session for a token, and the cookie value that carries it.
    pub fn issue(&self, token_name: &str, token_sha256: &str, now_ms: i64) -> (Session, String) {
        let session = Session {
            token_name: token_name.to_owned(),
            token_digest: token_sha256
                .chars()
                .take(DIGEST_PREFIX)
                .collect::<String>()
                .to_ascii_lowercase(),
            csrf: uuid::Uuid::new_v4().simple().to_string(),
            expires_at: now_ms.saturating_add(i64::try_from(self.ttl.as_millis()).unwrap_or(0)),
        };
        let payload = format!(
            "{}|{}|{}|{}",
            session.expires_at, session.csrf, session.token_digest, session.token_name
        );
        let signature = hex::encode(self.mac(&payload).finalize().into_bytes());
        (session, format!("{}.{signature}", hex::encode(payload)))
    }

    /// The session a cookie value carries, if its signature is ours and it has not expired.
    pub fn verify(&self, value: &str, now_ms: i64) -> Option<Session> {
        let (payload, signature) = value.trim().split_once('.')?;
        let payload = String::from_utf8(hex::decode(payload).ok()?).ok()?;
        let signature = hex::decode(signature).ok()?;
        // Constant-time comparison of the signature.
        self.mac(&payload).verify_slice(&signature).ok()?;
        let mut parts = payload.splitn(4, '|');
        let expires_at: i64 = parts.next()?.parse().ok()?;
        let csrf = parts.next()?.to_owned();
        let token_digest = parts.next()?.to_owned();
        let token_name = parts.next()?.to_owned();
        (expires_at > now_ms).then_some(Session {
            token_name,
            token_digest,
            csrf,
            expires_at,
        })
    }
}

/// Whether `offered` equals `expected`, in time independent of where they differ.
pub fn same(offered: &str, expected: &str) -> bool {
    offered.len() == expected.len()
        && offered
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        let key = secrecy::SecretString::from("ab".repeat(32));
        SessionKeys::new(Some(&key), Duration::from_secs(60))
    }

    #[test]
    fn a_session_round_trips_until_it_expires() {
        let keys = keys();
        let (session, cookie) = keys.issue("alice|ops", &"f".repeat(64), 1_000);
        assert_eq!(session.token_digest, "ffffffffffffffff");
        assert_eq!(keys.verify(&cookie, 1_001), Some(session.clone()));
        assert_eq!(keys.verify(&cookie, session.expires_at), None);
        assert!(
            !cookie.contains("alice"),
            "the cookie is encoded, not plain"
        );
    }

    #[test]
    fn a_tampered_or_foreign_cookie_is_refused() {
        let keys = keys();
        let (_, cookie) = keys.issue("alice", &"f".repeat(64), 1_000);
        let (payload, signature) = cookie.split_once('.').unwrap();
        let forged = String::from_utf8(hex::decode(payload).unwrap())
            .unwrap()
            .replace("alice", "admin");
        assert_eq!(
            keys.verify(&format!("{}.{signature}", hex::encode(forged)), 1_001),
            None
        );
        let other = SessionKeys::new(None, Duration::from_secs(60));
        assert_eq!(other.verify(&cookie, 1_001), None);
        for junk in ["", ".", "zz.zz", "abc", &cookie[..cookie.len() - 2]] {
            assert_eq!(keys.verify(junk, 1_001), None, "{junk:?}");
        }
    }

    #[test]
    fn csrf_values_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("ab", "abc"));
    }
}
