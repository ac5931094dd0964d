//! `io.scanstream.Finding` (schemas/Finding.avsc), the value of `scans.findings`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{JobId, RunId, uuid_string};
use crate::schema::{AvroRecord, SchemaFile};

/// One finding. It carries a keyed fingerprint and a redacted preview, never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    #[serde(with = "uuid_string")]
    pub finding_id: Uuid,
    pub job_id: JobId,
    pub run_id: RunId,
    pub attempt: i32,
    pub repo_url: String,
    pub engine: String,
    /// Every engine that reported this secret at this place, `engine` first; empty in findings
    /// written before the field existed (read it as `[engine]`).
    #[serde(default)]
    pub engines: Vec<String>,
    pub rule_id: String,
    pub severity: Severity,
    pub path: String,
    /// 1-based.
    pub line: i32,
    pub commit: Option<String>,
    pub fingerprint: String,
    pub redacted_preview: String,
    /// Milliseconds since the Unix epoch.
    pub detected_at: i64,
}

impl AvroRecord for Finding {
    const SCHEMA: SchemaFile = SchemaFile::Finding;
}

/// Symbol order is the Avro enum's.
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
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(description = "A finding's severity (the Avro enum's symbols, upper case).")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

/// Finding counts by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SeverityCounts {
    pub critical: i64,
    pub high: i64,
    pub medium: i64,
    pub low: i64,
    pub info: i64,
}

impl Severity {
    /// Every severity, most urgent first.
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    /// The lower-case name people read (reports, the dashboard).
    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }

    /// Position in [`Severity::ALL`]: 0 for the most urgent, for sorting and per-severity arrays.
    pub fn rank(self) -> usize {
        self as usize
    }
}

impl SeverityCounts {
    pub fn add(&mut self, severity: Severity) {
        match severity {
            Severity::Critical => self.critical += 1,
            Severity::High => self.high += 1,
            Severity::Medium => self.medium += 1,
            Severity::Low => self.low += 1,
            Severity::Info => self.info += 1,
        }
    }

    pub fn total(&self) -> i64 {
        self.critical + self.high + self.medium + self.low + self.info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_positions_in_all_and_names_are_lower_case() {
        for (n, severity) in Severity::ALL.into_iter().enumerate() {
            assert_eq!(severity.rank(), n);
            assert_eq!(severity.name(), format!("{severity:?}").to_lowercase());
        }
    }
}
