//! `io.scanstream.ScanCommand` (schemas/ScanCommand.avsc), the value of `scans.commands`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{JobId, RunId, opt_uuid_string, uuid_string};
use crate::schema::{AvroRecord, SchemaFile};

/// A command for the scanner group; the record key is the repository's [`crate::RepoKey`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanCommand {
    #[serde(with = "uuid_string")]
    pub command_id: Uuid,
    /// Milliseconds since the Unix epoch.
    pub issued_at: i64,
    pub command: Command,
}

/// The union of command kinds; variant order is the order of the Avro union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    RequestScan(RequestScan),
    CancelScan(CancelScan),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestScan {
    pub job_id: JobId,
    pub job_name: String,
    pub run_id: RunId,
    pub repo_url: String,
    pub git_ref: Option<String>,
    pub engines: Vec<String>,
    pub mode: ScanMode,
    pub timeout_ms: Option<i64>,
    pub schedule: Option<String>,
    pub requested_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelScan {
    pub job_id: JobId,
    #[serde(with = "opt_uuid_string")]
    pub run_id: Option<Uuid>,
    pub reason: Option<String>,
    pub requested_by: Option<String>,
}

/// How much of a repository a scan reads; symbol order is the Avro enum's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScanMode {
    #[default]
    Tree,
    History,
    Incremental,
}

impl AvroRecord for ScanCommand {
    const SCHEMA: SchemaFile = SchemaFile::ScanCommand;
}
