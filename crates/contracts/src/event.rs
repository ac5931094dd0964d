//! `io.scanstream.ScanEvent` (schemas/ScanEvent.avsc), the value of `scans.events`.

use serde::{Deserialize, Serialize};

use crate::command::ScanMode;
use crate::finding::SeverityCounts;
use crate::ids::{EventId, JobId, RunId};
use crate::schema::{AvroRecord, SchemaFile};

/// The `sequence` of every terminal event (`ScanSucceeded`, `ScanFailed`, `ScanCancelled`): an
/// attempt's terminal event always has the same id, whichever scanner writes it, so an attempt
/// has exactly one terminal event even when a scanner that took over closes it.
pub const TERMINAL_SEQUENCE: i32 = i32::MAX;

/// One fact in a job's life. `event_id` is always `EventId::derive(job_id, run_id, attempt,
/// sequence)`; [`ScanEvent::new`] keeps that invariant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanEvent {
    pub event_id: EventId,
    pub job_id: JobId,
    pub job_name: String,
    pub run_id: RunId,
    pub attempt: i32,
    pub sequence: i32,
    /// Milliseconds since the Unix epoch.
    pub occurred_at: i64,
    pub producer: Option<String>,
    pub payload: EventPayload,
}

impl ScanEvent {
    /// An event with its deterministic id.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        job_id: JobId,
        job_name: impl Into<String>,
        run_id: RunId,
        attempt: i32,
        sequence: i32,
        occurred_at: i64,
        producer: Option<String>,
        payload: EventPayload,
    ) -> Self {
        Self {
            event_id: EventId::derive(job_id, run_id, attempt, sequence),
            job_id,
            job_name: job_name.into(),
            run_id,
            attempt,
            sequence,
            occurred_at,
            producer,
            payload,
        }
    }
}

/// The union of event kinds; variant order is the order of the Avro union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventPayload {
    JobSubmitted(JobSubmitted),
    ScanStarted(ScanStarted),
    RepoFetched(RepoFetched),
    EngineCompleted(EngineCompleted),
    ScanSucceeded(ScanSucceeded),
    ScanFailed(ScanFailed),
    ScanCancelled(ScanCancelled),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSubmitted {
    pub repo_url: String,
    pub git_ref: Option<String>,
    pub engines: Vec<String>,
    pub mode: ScanMode,
    pub schedule: Option<String>,
    pub requested_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanStarted {
    pub scanner_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoFetched {
    pub commit: Option<String>,
    pub fetch_ms: i64,
    pub cache_hit: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EngineCompleted {
    pub engine: String,
    pub files: i64,
    pub bytes: i64,
    pub duration_ms: i64,
    pub findings: i64,
    /// Files (blobs) not scanned because they are larger than `scanner.max_blob_bytes`; 0 in
    /// events written before the field existed.
    #[serde(default)]
    pub skipped_large: i64,
    /// Files (blobs) not scanned because they are binary; 0 in events written before the field
    /// existed.
    #[serde(default)]
    pub skipped_binary: i64,
    /// The rule-pack hash of the built-in engine, the version command's first line of a command
    /// engine; `None` when unknown (and in events written before the field existed).
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub outcome: EngineOutcome,
    /// Why the engine gave no result; never engine output (it may quote a secret).
    #[serde(default)]
    pub error: Option<String>,
    /// A command engine's results came from the result cache (same tree, same engine key).
    #[serde(default)]
    pub cached: bool,
    /// Files (blobs) not scanned because the engine failed on them (an internal error); 0 in
    /// events written before the field existed.
    #[serde(default)]
    pub skipped_failed: i64,
}

/// How an engine's part of an attempt ended. Symbol order is the Avro enum's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(description = "How an engine's part of an attempt ended (upper case).")]
pub enum EngineOutcome {
    /// Its findings are on `scans.findings`.
    #[default]
    Completed,
    /// It exited with a status not configured as success, or its output could not be read.
    Failed,
    /// It ran past its timeout and was stopped.
    TimedOut,
}

impl EngineOutcome {
    /// The lower-case name reports and metrics use.
    pub fn name(self) -> &'static str {
        match self {
            EngineOutcome::Completed => "completed",
            EngineOutcome::Failed => "failed",
            EngineOutcome::TimedOut => "timed_out",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanSucceeded {
    pub findings: SeverityCounts,
    pub commit: Option<String>,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanFailed {
    /// Human-readable; never holds a secret or a credential.
    pub reason: String,
    pub retryable: bool,
    /// Bounded category for dashboards and metric labels.
    pub error_kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanCancelled {
    pub reason: Option<String>,
}

impl AvroRecord for ScanEvent {
    const SCHEMA: SchemaFile = SchemaFile::ScanEvent;
}
