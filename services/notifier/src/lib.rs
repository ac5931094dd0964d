//! The notifier: reads `scans.inventory` in its consumer group and tells the configured
//! destinations when an item becomes open — new, or re-leaked after it was resolved — at or
//! above their minimum severity: generic JSON webhooks signed with HMAC-SHA256 over the body,
//! and Slack incoming webhooks. Each notification has an idempotency key; a record's offset is
//! committed only once every delivery succeeded or was dead-lettered to
//! `scans.notifications.dlq` after the configured attempts.
//!
//! # Layout
//! - [`message`]: which changes notify, the notification, its key, body and signature.
//! - [`deliver`]: posting to one destination with retries (exponential backoff, full jitter).
//! - [`role`]: the consumer loop, what it remembers of each item, dead letters; the role.
//! - [`metrics`]: the names and HELP texts of what it records.

pub mod deliver;
pub mod message;
pub mod metrics;
mod role;

pub use role::{Notifier, NotifierError};
