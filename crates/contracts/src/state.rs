//! `io.scanstream.JobState` (schemas/JobState.avsc), the value of the changelog `scans.job-state`.

use serde::{Deserialize, Serialize};

use crate::finding::SeverityCounts;
use crate::ids::{JobId, RunId};
use crate::schema::{AvroRecord, SchemaFile};

/// A job's folded state, as the aggregator stores it and writes it to its changelog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    pub job_id: JobId,
    pub job_name: String,
    pub schedule: Option<String>,
    pub repo_url: String,
    pub status: JobStatus,
    pub succeeded: i64,
    pub failed: i64,
    pub runs: Vec<RunState>,
    pub findings: SeverityCounts,
    pub last_error: Option<String>,
    pub events_folded: i64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub run_id: RunId,
    pub status: JobStatus,
    pub attempt: i32,
    pub last_sequence: i32,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub last_error: Option<String>,
}

/// Symbol order is the Avro enum's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
