//! `io.scanstream.JobState` (schemas/JobState.avsc), the value of the changelog `scans.job-state`.

use serde::{Deserialize, Serialize};

use crate::event::EngineOutcome;
use crate::finding::SeverityCounts;
use crate::ids::{JobId, RunId};
use crate::schema::{AvroRecord, SchemaFile};

/// A job's folded state, as the aggregator stores it and writes it to its changelog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobState {
    pub job_id: JobId,
    pub job_name: String,
    /// The schedule that fired this run, for a scheduled job.
    pub schedule: Option<String>,
    /// The normalized repository URL.
    pub repo_url: String,
    /// The status of the job's latest run.
    pub status: JobStatus,
    /// Succeeded attempts over all runs.
    pub succeeded: i64,
    /// Failed attempts over all runs.
    pub failed: i64,
    /// Every run, oldest first.
    pub runs: Vec<RunState>,
    /// Findings of the latest run, by severity.
    pub findings: SeverityCounts,
    pub last_error: Option<String>,
    /// Events folded into this state (a replay folds the same number).
    pub events_folded: i64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// One run (submission) of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunState {
    pub run_id: RunId,
    pub status: JobStatus,
    /// The attempt running or last run (1 for the first).
    pub attempt: i32,
    /// The sequence number of the last event folded.
    pub last_sequence: i32,
    /// Milliseconds since the Unix epoch, as are the other times.
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub last_error: Option<String>,
    /// The engines of the latest attempt, in the order they completed; empty in states written
    /// before the field existed.
    #[serde(default)]
    pub engines: Vec<EngineSummary>,
}

/// How one engine's part of a run's latest attempt ended (its `EngineCompleted`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EngineSummary {
    pub engine: String,
    pub outcome: EngineOutcome,
    pub version: Option<String>,
    pub findings: i64,
    /// Why it gave no result.
    pub error: Option<String>,
    /// Its results came from the result cache.
    pub cached: bool,
}

/// Symbol order is the Avro enum's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(description = "A job's or run's status (the Avro enum's symbols, upper case).")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl AvroRecord for JobState {
    const SCHEMA: SchemaFile = SchemaFile::JobState;
}
