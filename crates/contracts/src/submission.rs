//! A run's submission: the `RequestScan` command and the `JobSubmitted` event that ingest (for
//! `POST /jobs`) and the scheduler (for a tick) write together in one transaction. Both build
//! them here, so a scheduled run is submitted exactly as a posted one.

use crate::command::{Command, RequestScan, ScanCommand, ScanMode};
use crate::event::{EventPayload, JobSubmitted, ScanEvent};
use crate::ids::{JobId, RunId, derived_uuid};

/// What one submission asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub job: JobId,
    pub job_name: String,
    pub run: RunId,
    /// The normalized repository URL.
    pub repo_url: String,
    pub git_ref: Option<String>,
    pub engines: Vec<String>,
    pub mode: ScanMode,
    /// The schedule that fired the run, if any.
    pub schedule: Option<String>,
    pub requested_by: Option<String>,
}

impl Submission {
    /// The command for `scans.commands`; its id is derived from (job, run), so writing the same
    /// submission twice is the same command.
    pub fn command(&self, issued_at: i64) -> ScanCommand {
        ScanCommand {
            command_id: derived_uuid(
                "command",
                &[&self.job.to_string(), &self.run.to_string(), "request"],
            ),
            issued_at,
            command: Command::RequestScan(RequestScan {
                job_id: self.job,
                job_name: self.job_name.clone(),
                run_id: self.run,
                repo_url: self.repo_url.clone(),
                git_ref: self.git_ref.clone(),
                engines: self.engines.clone(),
                mode: self.mode,
                timeout_ms: None,
                schedule: self.schedule.clone(),
                requested_by: self.requested_by.clone(),
            }),
        }
    }

    /// The event for `scans.events` (attempt 0, sequence 0 of the run).
    pub fn event(&self, occurred_at: i64, producer: Option<String>) -> ScanEvent {
        ScanEvent::new(
            self.job,
            self.job_name.clone(),
            self.run,
            0,
            0,
            occurred_at,
            producer,
            EventPayload::JobSubmitted(JobSubmitted {
                repo_url: self.repo_url.clone(),
                git_ref: self.git_ref.clone(),
                engines: self.engines.clone(),
                mode: self.mode,
                schedule: self.schedule.clone(),
                requested_by: self.requested_by.clone(),
            }),
        )
    }
}
