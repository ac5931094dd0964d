//! `io.scanstream.Schedule` (schemas/Schedule.avsc), the value of `scans.schedules`, and
//! `io.scanstream.ScheduleTicks` (schemas/ScheduleTicks.avsc), the value of `scans.schedule-ticks`.

use serde::{Deserialize, Serialize};

use crate::command::ScanMode;
use crate::ids::JobId;
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

/// What the leading scheduler has done with one schedule's ticks. Written in the same
/// transaction as the runs it fires, so it is exactly as durable as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleTicks {
    pub schedule: String,
    pub schedule_created_at: i64,
    /// Every tick up to this minute since the Unix epoch has been handled.
    pub handled_through: i64,
    pub last_fired: Option<i64>,
    pub last_fired_job: Option<JobId>,
    pub fired_total: i64,
    pub skipped_total: i64,
    pub missed_total: i64,
    pub last_missed: Option<i64>,
    pub suspended_total: i64,
    pub leader: Option<String>,
    pub updated_at: i64,
}

impl AvroRecord for ScheduleTicks {
    const SCHEMA: SchemaFile = SchemaFile::ScheduleTicks;
}
