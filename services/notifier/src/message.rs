//! Which inventory changes notify, and what a notification is.
//!
//! An item **becomes open** when its first record is open (a new secret) or when its
//! `reopened` count grows while it is open (a resolved secret seen somewhere new: re-leaked).
//! A person setting an item back to open does not notify, and ignored or resolved items never do.
//! The notification's idempotency key is derived from the item and its `reopened` count, so the
//! same opening always has the same key, however often it is delivered.

use hmac::{Hmac, KeyInit, Mac};
use scanstream_contracts::finding::Severity;
use scanstream_contracts::inventory::{InventoryItem, ItemStatus};
use scanstream_platform::config::{DestinationKind, DestinationSettings, SEVERITY_NAMES};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::Sha256;

/// The header carrying a webhook body's signature: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Scanstream-Signature";
/// The header carrying the notification's idempotency key (also in the body).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// The notification type, in the body and in the `X-Scanstream-Event` header.
pub const EVENT: &str = "inventory.item.opened";

/// Why an item became open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Opened {
    /// First seen.
    New,
    /// Seen somewhere new after it was resolved.
    ReLeaked,
}

/// Whether `item`'s record calls for a notification, given the `reopened` count of the item's
/// last record handled before (`None`: none was).
pub fn opened(previous: Option<i32>, item: &InventoryItem) -> Option<Opened> {
    if item.status != ItemStatus::Open {
        return None;
    }
    match previous {
        None if item.reopened == 0 => Some(Opened::New),
        None => Some(Opened::ReLeaked),
        Some(n) if item.reopened > n => Some(Opened::ReLeaked),
        Some(_) => None,
    }
}

/// One destination, ready to filter and sign.
pub struct Destination {
    pub name: String,
    pub kind: DestinationKind,
    pub url: String,
    secret: Option<SecretString>,
    min_severity: Severity,
    repos: Vec<glob::Pattern>,
}

fn severity(name: &str) -> Severity {
    match name.to_ascii_lowercase().as_str() {
        "critical" => Severity::Critical,
        "high" => Severity::High,
        "medium" => Severity::Medium,
        "low" => Severity::Low,
        _ => Severity::Info,
    }
}

fn severity_name(s: Severity) -> &'static str {
    SEVERITY_NAMES[s as usize]
}

impl Destination {
    /// From validated settings (`Settings::load` checked the URL, secret, severity and globs).
    pub fn new(settings: &DestinationSettings) -> Destination {
        Destination {
            name: settings.name.clone(),
            kind: settings.kind,
            url: settings.url.clone(),
            secret: settings.secret.clone(),
            min_severity: severity(&settings.min_severity),
            repos: settings
                .repos
                .iter()
                .filter_map(|g| glob::Pattern::new(g).ok())
                .collect(),
        }
    }

    /// Whether the destination wants to hear about `item`: severe enough, a repository it
    /// follows.
    pub fn wants(&self, item: &InventoryItem) -> bool {
        item.severity <= self.min_severity
            && (self.repos.is_empty() || self.repos.iter().any(|p| p.matches(&item.repo_url)))
    }

    /// The request body for `notification`.
    pub fn body(&self, notification: &Notification) -> Vec<u8> {
        match self.kind {
            DestinationKind::Webhook => serde_json::to_vec(notification).unwrap_or_default(),
            DestinationKind::Slack => {
                serde_json::to_vec(&serde_json::json!({ "text": notification.slack_text() }))
                    .unwrap_or_default()
            }
        }
    }

    /// The signature header's value for `body`, for a webhook.
    pub fn signature(&self, body: &[u8]) -> Option<String> {
        let secret = self.secret.as_ref()?;
        (self.kind == DestinationKind::Webhook)
            .then(|| sign(secret.expose_secret().as_bytes(), body))
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a webhook receives (JSON). It carries the redacted preview and the fingerprint, never
/// the secret.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub idempotency_key: String,
    pub reason: Opened,
    pub item: ItemNotice,
}

/// The item as a notification shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ItemNotice {
    pub item_id: String,
    pub repo_url: String,
    pub rule_id: String,
    /// critical, high, medium, low or info.
    pub severity: &'static str,
    pub fingerprint: String,
    pub redacted_preview: String,
    pub path: Option<String>,
    pub line: Option<i32>,
    pub in_tip: bool,
    /// When it became open (milliseconds since the Unix epoch), as are the other times.
    pub opened_at: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub reopened: i32,
    pub engines: Vec<String>,
}

/// The idempotency key of `item`'s opening number `reopened` (0 for the first).
pub fn idempotency_key(item: &InventoryItem) -> String {
    scanstream_contracts::ids::derived_uuid(
        "notification",
        &[&item.item_id.key(), &item.reopened.to_string()],
    )
    .to_string()
}

impl Notification {
    pub fn new(item: &InventoryItem, reason: Opened) -> Notification {
        // The newest place is the most useful one to show.
        let place = item
            .locations
            .iter()
            .max_by_key(|l| (l.last_seen, l.first_seen));
        Notification {
            kind: EVENT,
            idempotency_key: idempotency_key(item),
            reason,
            item: ItemNotice {
                item_id: item.item_id.key(),
                repo_url: item.repo_url.clone(),
                rule_id: item.rule_id.clone(),
                severity: severity_name(item.severity),
                fingerprint: item.fingerprint.clone(),
                redacted_preview: item.redacted_preview.clone(),
                path: place.map(|l| l.path.clone()),
                line: place.map(|l| l.line),
                in_tip: item.in_tip,
                opened_at: item.status_changed_at,
                first_seen: item.first_seen,
                last_seen: item.last_seen,
                reopened: item.reopened,
                engines: item.engines.clone(),
            },
        }
    }

    /// One line for Slack (mrkdwn).
    pub fn slack_text(&self) -> String {
        let i = &self.item;
        let what = match self.reason {
            Opened::New => "New secret",
            Opened::ReLeaked => "Secret leaked again",
        };
        let place = match (&i.path, i.line) {
            (Some(path), Some(line)) => format!(" at `{path}:{line}`"),
            _ => String::new(),
        };
        // Backticks in the preview would end the code span early.
        let preview = i.redacted_preview.replace('`', "'");
        format!(
            ":rotating_light: *{what}* ({}, `{}`) in {}{place}: `{preview}` (fingerprint {}…, item {})",
            i.severity,
            i.rule_id,
            i.repo_url,
            i.fingerprint.get(..12).unwrap_or(&i.fingerprint),
            i.item_id
        )
    }
}

#[cfg(test)]
mod tests {
    use scanstream_contracts::JobId;
    use scanstream_contracts::inventory::{ItemId, ItemLocation};

    use super::*;

    fn item(status: ItemStatus, reopened: i32, severity: Severity) -> InventoryItem {
        let job = JobId::from_name("j");
        InventoryItem {
            item_id: ItemId::of("https://git.example.com/acme/app.git", "fp"),
            repo_url: "https://git.example.com/acme/app.git".into(),
            fingerprint: "0123456789abcdef0123".into(),
            rule_id: "github-pat".into(),
            severity,
            engines: vec!["secrets".into()],
            redacted_preview: "token = ghp_****".into(),
            status,
            reason: None,
            status_changed_at: 5,
            reopened,
            locations: vec![ItemLocation {
                path: "a.env".into(),
                line: 3,
                commit: None,
                first_job: job,
                last_job: job,
                first_seen: 1,
                last_seen: 2,
            }],
            locations_total: 1,
            first_seen: 1,
            last_seen: 2,
            first_job: job,
            last_job: job,
            in_tip: true,
            tip_seen_at: None,
            tip_checked_at: None,
            triage: Vec::new(),
            inputs_folded: 1,
            updated_at: 2,
        }
    }

    #[test]
    fn only_new_and_re_leaked_openings_notify() {
        let open = item(ItemStatus::Open, 0, Severity::High);
        assert_eq!(opened(None, &open), Some(Opened::New));
        assert_eq!(
            opened(Some(0), &open),
            None,
            "a later record of the same opening"
        );
        let again = item(ItemStatus::Open, 1, Severity::High);
        assert_eq!(opened(Some(0), &again), Some(Opened::ReLeaked));
        assert_eq!(opened(None, &again), Some(Opened::ReLeaked));
        assert_eq!(
            opened(None, &item(ItemStatus::Ignored, 0, Severity::High)),
            None
        );
        assert_eq!(
            opened(Some(0), &item(ItemStatus::Resolved, 0, Severity::High)),
            None
        );
        // Keys: one per opening.
        assert_eq!(idempotency_key(&open), idempotency_key(&open.clone()));
        assert_ne!(idempotency_key(&open), idempotency_key(&again));
    }

    #[test]
    fn destinations_filter_by_severity_and_repository_and_sign_webhook_bodies() {
        let settings = |min: &str, repos: &[&str], kind| DestinationSettings {
            name: "d".into(),
            kind,
            url: "https://hooks.example.com/x".into(),
            secret: Some(SecretString::from("0123456789abcdef".to_owned())),
            min_severity: min.into(),
            repos: repos.iter().map(|r| r.to_string()).collect(),
        };
        let high = item(ItemStatus::Open, 0, Severity::High);
        let webhook = Destination::new(&settings("high", &[], DestinationKind::Webhook));
        assert!(webhook.wants(&high));
        assert!(!webhook.wants(&item(ItemStatus::Open, 0, Severity::Medium)));
        assert!(
            Destination::new(&settings(
                "info",
                &["https://git.example.com/acme/*"],
                DestinationKind::Webhook
            ))
            .wants(&high)
        );
        assert!(
            !Destination::new(&settings(
                "info",
                &["https://git.example.com/other/*"],
                DestinationKind::Webhook
            ))
            .wants(&high)
        );
        let notification = Notification::new(&high, Opened::New);
        let body = webhook.body(&notification);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(json["type"], EVENT);
        assert_eq!(json["item"]["severity"], "high");
        assert_eq!(json["item"]["path"], "a.env");
        assert_eq!(
            webhook.signature(&body),
            Some(sign(b"0123456789abcdef", &body))
        );
        assert!(sign(b"0123456789abcdef", &body).starts_with("sha256="));
        assert_ne!(
            sign(b"0123456789abcdef", &body),
            sign(b"0123456789abcdeF", &body)
        );
        let slack = Destination::new(&settings("info", &[], DestinationKind::Slack));
        assert_eq!(slack.signature(&body), None);
        let text: serde_json::Value =
            serde_json::from_slice(&slack.body(&notification)).unwrap_or_default();
        assert!(
            text["text"]
                .as_str()
                .is_some_and(|t| t.contains("New secret") && t.contains("a.env:3")),
            "{text}"
        );
    }
}
