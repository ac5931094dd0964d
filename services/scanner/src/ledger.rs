//! The attempt ledger: which attempt of each run started and how it ended, kept on the shared
//! cache volume so that whichever scanner receives a command next (after a crash, a rebalance or
//! a redelivery) continues the run's attempt numbering instead of repeating it.
//!
//! That is what makes "exactly one terminal event per attempt" hold across crashes: an attempt
//! that started but never ended is closed by the next scanner with `ScanFailed{reason:
//! interrupted}`, and the run goes on with the next attempt number, so crashes count against the
//! retry budget like any other failure (a repository that kills scanners cannot loop forever).
//!
//! Entries are small files, `<cache-dir>/attempts/<2 hex>/<job>.<run>`, written whole and renamed
//! into place. Only a partition's current owner writes a run's entry; a stale writer during a
//! rebalance can at worst repeat an attempt number, and repeated events share their ids.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use scanstream_contracts::{JobId, RunId};

use crate::Error;

/// Where a run's attempts stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Attempt `n` started and has no terminal event yet.
    Running(i32),
    /// Attempt `n` ended with a retryable failure; attempt `n + 1` is due.
    Retrying(i32),
    /// Attempt `n` ended the run (succeeded, failed for good, or cancelled).
    Finished(i32),
}

/// What to do with a run, given its ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Start attempt `n`.
    Start(i32),
    /// Attempt `n` was interrupted: close it with a terminal failure, then start `n + 1` when
    /// `retry` (the budget allows it) or end the run.
    CloseInterrupted { attempt: i32, retry: bool },
    /// Every attempt was used up by hand-overs: the run still needs its final verdict, as
    /// attempt `n` that never runs.
    GiveUp(i32),
    /// The run is over; only the command's offset needs committing.
    Done,
}

/// The pure decision: `max_attempts` bounds attempts of a run, crashes included.
pub fn plan(entry: Option<Entry>, max_attempts: i32) -> Plan {
    match entry {
        None => Plan::Start(1),
        Some(Entry::Running(n)) => Plan::CloseInterrupted {
            attempt: n,
            retry: n < max_attempts,
        },
        Some(Entry::Retrying(n)) if n < max_attempts => Plan::Start(n + 1),
        Some(Entry::Retrying(n)) => Plan::GiveUp(n + 1),
        Some(Entry::Finished(_)) => Plan::Done,
    }
}

#[derive(Debug, Clone)]
pub struct Ledger {
    root: PathBuf,
}

impl Ledger {
    /// The ledger under `root` (`<cache-dir>/attempts`).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, job: JobId, run: RunId) -> PathBuf {
        let job = job.to_string();
        self.root.join(&job[..2]).join(format!("{job}.{run}"))
    }

    pub fn get(&self, job: JobId, run: RunId) -> Result<Option<Entry>, Error> {
        let path = self.path(job, run);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let (phase, attempt) = text.trim().split_once(' ').unwrap_or(("", ""));
        let attempt: i32 = attempt.parse().unwrap_or(0);
        Ok(match phase {
            "running" if attempt > 0 => Some(Entry::Running(attempt)),
            "retrying" if attempt > 0 => Some(Entry::Retrying(attempt)),
            "finished" if attempt >= 0 => Some(Entry::Finished(attempt)),
            // A damaged entry: treat the run as new; events of repeated attempts share ids.
            _ => {
                tracing::warn!(path = %path.display(), "unreadable attempt ledger entry ignored");
                None
            }
        })
    }

    pub fn put(&self, job: JobId, run: RunId, entry: Entry) -> Result<(), Error> {
        let path = self.path(job, run);
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let text = match entry {
            Entry::Running(n) => format!("running {n}\n"),
            Entry::Retrying(n) => format!("retrying {n}\n"),
            Entry::Finished(n) => format!("finished {n}\n"),
        };
        let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(&path, e)
        })
    }

    /// Removes entries older than `retention` (longer than commands are kept on their topic, so
    /// no redelivery can need them); returns how many.
    pub fn gc(&self, retention: Duration) -> usize {
        let mut removed = 0;
        let Ok(shards) = std::fs::read_dir(&self.root) else {
            return 0;
        };
        for shard in shards.flatten() {
            let Ok(entries) = std::fs::read_dir(shard.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok())
                    .is_some_and(|age| age > retention);
                if old && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_entry_and_the_budget() {
        assert_eq!(plan(None, 3), Plan::Start(1));
        assert_eq!(
            plan(Some(Entry::Running(1)), 3),
            Plan::CloseInterrupted {
                attempt: 1,
                retry: true
            }
        );
        assert_eq!(
            plan(Some(Entry::Running(3)), 3),
            Plan::CloseInterrupted {
                attempt: 3,
                retry: false
            }
        );
        assert_eq!(plan(Some(Entry::Retrying(2)), 3), Plan::Start(3));
        assert_eq!(plan(Some(Entry::Retrying(3)), 3), Plan::GiveUp(4));
        assert_eq!(plan(Some(Entry::Finished(1)), 3), Plan::Done);
    }

    #[test]
    fn entries_round_trip_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path());
        let job = JobId::from_name("j");
        let run = RunId::derived(job, "r");
        assert_eq!(ledger.get(job, run).unwrap(), None);
        for entry in [Entry::Running(1), Entry::Retrying(1), Entry::Finished(2)] {
            ledger.put(job, run, entry).unwrap();
            assert_eq!(ledger.get(job, run).unwrap(), Some(entry));
        }
        assert_eq!(ledger.gc(Duration::from_secs(3600)), 0);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(ledger.gc(Duration::from_millis(5)), 1);
        assert_eq!(ledger.get(job, run).unwrap(), None);
    }
}
