//! The inventory's records: `io.scanstream.Sighting` (schemas/Sighting.avsc, the value of
//! `scans.sightings`), `io.scanstream.TriageDecision` (schemas/TriageDecision.avsc, the value of
//! `scans.triage`) and `io.scanstream.InventoryItem` (schemas/InventoryItem.avsc, the value of the
//! changelog `scans.inventory`), and the item id that keys the last two.
//!
//! Everything about one repository's inventory lives on one partition of each of these topics:
//! [`repo_partition`] places a sighting by its repository, and an item's id carries its
//! repository's hash so [`ItemId::partition`] places its decisions and its changelog records
//! on the same partition.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::finding::Severity;
use crate::ids::{JobId, RunId, uuid_string};
use crate::schema::{AvroRecord, SchemaFile};

/// 64 bits of SHA-1 (through UUID v5) of `kind/text`.
fn hash64(kind: &str, text: &str) -> u64 {
    (crate::ids::derived_uuid(kind, &[text]).as_u128() >> 64) as u64
}

/// The partition of every inventory record of the repository `repo_key` (a normalized URL) in a
/// topic of `partitions` partitions.
pub fn repo_partition(repo_key: &str, partitions: i32) -> i32 {
    (hash64("repo", repo_key) % partitions.max(1) as u64) as i32
}

/// One secret in one repository: 64 bits of the repository key's hash, then 64 bits of the
/// fingerprint's, shown as a uuid. The same secret in another repository is another item.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct ItemId(#[serde(with = "uuid_string")] pub Uuid);

impl ItemId {
    pub fn of(repo_key: &str, fingerprint: &str) -> Self {
        let high = u128::from(hash64("repo", repo_key)) << 64;
        Self(Uuid::from_u128(
            high | u128::from(hash64("fingerprint", fingerprint)),
        ))
    }

    /// The smallest and largest ids of `repo_key`'s items: its items sort together.
    pub fn range_of(repo_key: &str) -> (u128, u128) {
        let high = u128::from(hash64("repo", repo_key)) << 64;
        (high, high | u128::from(u64::MAX))
    }

    /// The partition of this item's records ([`repo_partition`] of its repository).
    pub fn partition(&self, partitions: i32) -> i32 {
        ((self.0.as_u128() >> 64) as u64 % partitions.max(1) as u64) as i32
    }

    /// The record key on `scans.triage` and `scans.inventory`.
    pub fn key(&self) -> String {
        self.0.hyphenated().to_string()
    }

    pub fn parse(text: &str) -> Option<Self> {
        Uuid::parse_str(text).ok().map(Self)
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// What one scan attempt saw of one repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sighting {
    pub repo_url: String,
    pub job_id: JobId,
    pub run_id: RunId,
    pub attempt: i32,
    /// Milliseconds since the Unix epoch, as are the other times.
    pub scan_started_at: i64,
    /// The attempt reads the whole tree at the tip of the default ref.
    pub tip: bool,
    pub payload: SightingPayload,
}

/// Variant order is the order of the Avro union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SightingPayload {
    SecretSeen(SecretSeen),
    TipScanned(TipScanned),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretSeen {
    pub fingerprint: String,
    pub rule_id: String,
    pub severity: Severity,
    pub engine: String,
    pub path: String,
    pub line: i32,
    pub commit: Option<String>,
    pub redacted_preview: String,
    pub detected_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TipScanned {
    pub commit: Option<String>,
    pub findings: i64,
    pub completed_at: i64,
}

impl AvroRecord for Sighting {
    const SCHEMA: SchemaFile = SchemaFile::Sighting;
}

/// An item's status. Symbol order is the Avro enum's; the API also accepts lower case.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(description = "An inventory item's status (the Avro enum's symbols, upper case).")]
pub enum ItemStatus {
    #[default]
    #[serde(alias = "open")]
    Open,
    #[serde(alias = "resolved")]
    Resolved,
    #[serde(alias = "ignored")]
    Ignored,
}

impl ItemStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Open => "OPEN",
            ItemStatus::Resolved => "RESOLVED",
            ItemStatus::Ignored => "IGNORED",
        }
    }
}

/// Why an item was resolved or ignored. Symbol order is the Avro enum's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(description = "Why an item was resolved (REVOKED) or ignored (the others).")]
pub enum TriageReason {
    #[serde(alias = "revoked")]
    Revoked,
    #[serde(alias = "false_positive")]
    FalsePositive,
    #[serde(alias = "used_in_tests")]
    UsedInTests,
    #[serde(alias = "wont_fix")]
    WontFix,
}

impl TriageReason {
    /// Whether the reason may accompany `status`: REVOKED resolves, the others ignore, and an
    /// open item has no reason.
    pub fn fits(reason: Option<TriageReason>, status: ItemStatus) -> bool {
        match (status, reason) {
            (ItemStatus::Open, None) => true,
            (ItemStatus::Resolved, Some(TriageReason::Revoked)) => true,
            (ItemStatus::Ignored, Some(r)) => r != TriageReason::Revoked,
            _ => false,
        }
    }
}

/// One person's decision about one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriageDecision {
    #[serde(with = "uuid_string")]
    #[schema(value_type = String, format = Uuid)]
    pub decision_id: Uuid,
    pub item_id: ItemId,
    pub repo_url: String,
    pub fingerprint: String,
    pub from_status: ItemStatus,
    pub to_status: ItemStatus,
    pub reason: Option<TriageReason>,
    pub comment: Option<String>,
    pub actor: String,
    pub decided_at: i64,
}

impl AvroRecord for TriageDecision {
    const SCHEMA: SchemaFile = SchemaFile::TriageDecision;
}

/// One secret in one repository across all scans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InventoryItem {
    pub item_id: ItemId,
    pub repo_url: String,
    pub fingerprint: String,
    pub rule_id: String,
    pub severity: Severity,
    pub engines: Vec<String>,
    pub redacted_preview: String,
    pub status: ItemStatus,
    pub reason: Option<TriageReason>,
    pub status_changed_at: i64,
    pub reopened: i32,
    pub locations: Vec<ItemLocation>,
    pub locations_total: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub first_job: JobId,
    pub last_job: JobId,
    pub in_tip: bool,
    pub tip_seen_at: Option<i64>,
    pub tip_checked_at: Option<i64>,
    pub triage: Vec<TriageEntry>,
    pub inputs_folded: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemLocation {
    pub path: String,
    pub line: i32,
    pub commit: Option<String>,
    pub first_job: JobId,
    pub last_job: JobId,
    pub first_seen: i64,
    pub last_seen: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriageEntry {
    #[serde(with = "uuid_string")]
    #[schema(value_type = String, format = Uuid)]
    pub decision_id: Uuid,
    pub actor: String,
    pub decided_at: i64,
    pub from_status: ItemStatus,
    pub to_status: ItemStatus,
    pub reason: Option<TriageReason>,
    pub comment: Option<String>,
}

impl AvroRecord for InventoryItem {
    const SCHEMA: SchemaFile = SchemaFile::InventoryItem;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_items_partition_is_its_repositorys() {
        for repo in [
            "https://git.example.com/a.git",
            "https://git.example.com/b.git",
        ] {
            let item = ItemId::of(repo, "f00d");
            for partitions in [1, 3, 12] {
                assert_eq!(item.partition(partitions), repo_partition(repo, partitions));
            }
            let (low, high) = ItemId::range_of(repo);
            assert!((low..=high).contains(&item.0.as_u128()));
        }
        assert_ne!(
            ItemId::of("https://git.example.com/a.git", "f00d"),
            ItemId::of("https://git.example.com/b.git", "f00d")
        );
        assert_ne!(
            ItemId::of("https://git.example.com/a.git", "f00d"),
            ItemId::of("https://git.example.com/a.git", "f00e")
        );
    }

    #[test]
    fn reasons_fit_their_statuses() {
        use ItemStatus::*;
        use TriageReason::*;
        assert!(TriageReason::fits(None, Open));
        assert!(TriageReason::fits(Some(Revoked), Resolved));
        assert!(!TriageReason::fits(Some(FalsePositive), Resolved));
        assert!(!TriageReason::fits(None, Resolved));
        for r in [FalsePositive, UsedInTests, WontFix] {
            assert!(TriageReason::fits(Some(r), Ignored));
        }
        assert!(!TriageReason::fits(Some(Revoked), Ignored));
        assert!(!TriageReason::fits(Some(WontFix), Open));
    }
}
