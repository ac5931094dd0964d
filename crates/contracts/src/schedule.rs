//! `io.scanstream.Schedule` (schemas/Schedule.avsc), the value of `scans.schedules`.

use serde::{Deserialize, Serialize};

use crate::command::ScanMode;
use crate::schema::{AvroRecord, SchemaFile};

/// A durable schedule with Kubernetes CronJob semantics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    pub time_zone: Option<String>,
    pub repo_url: String,
    pub git_ref: Option<String>,
    pub engines: Vec<String>,
    pub mode: ScanMode,
    pub concurrency_policy: ConcurrencyPolicy,
    pub suspend: bool,
    pub successful_jobs_history_limit: i32,
    pub failed_jobs_history_limit: i32,
    pub starting_deadline_seconds: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Symbol order is the Avro enum's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConcurrencyPolicy {
    #[default]
    Allow,
    Forbid,
    Replace,
}

impl AvroRecord for Schedule {
    const SCHEMA: SchemaFile = SchemaFile::Schedule;
}
