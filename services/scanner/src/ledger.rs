//! The attempt ledger: which attempt of each run started and how it ended, kept on the shared
//! cache volume so that whichever scanner receives a command next (after a crash, a rebalance or
//! a redelivery) continues the run's attempt numbering instead of repeating it.
//!
//! That is what makes "exactly one terminal outcome per attempt" hold across crashes, whatever
//! instant a scanner dies at:
//! - an attempt that started but never began closing is closed by the next scanner with
//!   `ScanFailed{reason: interrupted}`, and the run goes on with the next attempt number, so
//!   crashes count against the retry budget like any other failure (a repository that kills
//!   scanners cannot loop forever);
//! - closing is written ahead: the attempt's terminal event is stored in the entry
//!   ([`Entry::Closing`]) before it is written to `scans.events`. A scanner that finds an attempt
//!   closing writes that same event again (same id, same content: the aggregator folds it once)
//!   and goes on as the closer would have, so a crash between the terminal event and the ledger
//!   update never gives the attempt a second, different outcome.
//!
//! Entries are small files, `<cache-dir>/attempts/<2 hex>/<job>.<run>`, written whole and renamed
//! into place. Only a partition's current owner writes a run's entry; a stale writer during a
//! rebalance can at worst repeat an attempt number, and repeated events share their ids.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use scanstream_contracts::event::ScanEvent;
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
    /// Attempt `n`'s terminal event is decided (stored with the entry, see [`Ledger::closing`])
    /// and may or may not be on `scans.events` yet; `then` is the entry once it is.
    Closing(i32, Then),
}

/// What a run's entry becomes once a closing attempt's terminal event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Retrying,
    Finished,
}

impl Entry {
    /// The entry after attempt `n` is closed `then`.
    pub fn after(attempt: i32, then: Then) -> Entry {
        match then {
            Then::Retrying => Entry::Retrying(attempt),
            Then::Finished => Entry::Finished(attempt),
        }
    }
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
    /// Attempt `n`'s terminal event was decided but maybe not written: write the stored event
    /// (again), then go on from [`Entry::after`]`(n, then)`.
    Reclose { attempt: i32, then: Then },
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
        Some(Entry::Closing(attempt, then)) => Plan::Reclose { attempt, then },
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
        Ok(self.read(job, run)?.map(|(entry, _)| entry))
    }

    /// The terminal event stored with a [`Entry::Closing`] entry; `None` for other entries.
    pub fn closing(&self, job: JobId, run: RunId) -> Result<Option<ScanEvent>, Error> {
        Ok(self.read(job, run)?.and_then(|(_, event)| event))
    }

    fn read(&self, job: JobId, run: RunId) -> Result<Option<(Entry, Option<ScanEvent>)>, Error> {
        let path = self.path(job, run);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let (first, rest) = text.split_once('\n').unwrap_or((text.as_str(), ""));
        let mut words = first.split_whitespace();
        let (phase, attempt, then) = (words.next(), words.next(), words.next());
        let attempt: i32 = attempt.and_then(|a| a.parse().ok()).unwrap_or(0);
        let closing = || -> Option<(Entry, Option<ScanEvent>)> {
            let then = match then? {
                "retrying" => Then::Retrying,
                "finished" => Then::Finished,
                _ => return None,
            };
            let event: ScanEvent = serde_json::from_str(rest.trim()).ok()?;
            (event.attempt == attempt && event.job_id == job && event.run_id == run)
                .then_some((Entry::Closing(attempt, then), Some(event)))
        };
        let read = match phase.unwrap_or_default() {
            "running" if attempt > 0 => Some((Entry::Running(attempt), None)),
            "retrying" if attempt > 0 => Some((Entry::Retrying(attempt), None)),
            "finished" if attempt >= 0 => Some((Entry::Finished(attempt), None)),
            // A closing entry whose event cannot be read: the attempt was never seen to end.
            "closing" if attempt > 0 => Some(closing().unwrap_or((Entry::Running(attempt), None))),
            _ => None,
        };
        if read.is_none() {
            // A damaged entry: treat the run as new; events of repeated attempts share ids.
            tracing::warn!(path = %path.display(), "unreadable attempt ledger entry ignored");
        }
        Ok(read)
    }

    /// Records `entry` (for [`Entry::Closing`], use [`Ledger::put_closing`]).
    pub fn put(&self, job: JobId, run: RunId, entry: Entry) -> Result<(), Error> {
        let text = match entry {
            Entry::Running(n) => format!("running {n}\n"),
            Entry::Retrying(n) => format!("retrying {n}\n"),
            Entry::Finished(n) => format!("finished {n}\n"),
            // Without its event a closing entry is an attempt that never ended.
            Entry::Closing(n, _) => format!("running {n}\n"),
        };
        self.write(job, run, &text)
    }

    /// Records that `event`, the terminal event of its attempt, is decided and is about to be
    /// written; after it, the entry is to become [`Entry::after`]`(attempt, then)`.
    pub fn put_closing(&self, event: &ScanEvent, then: Then) -> Result<(), Error> {
        let json = serde_json::to_string(event).map_err(|e| Error::Source(e.to_string()))?;
        let then = match then {
            Then::Retrying => "retrying",
            Then::Finished => "finished",
        };
        let text = format!("closing {} {then}\n{json}\n", event.attempt);
        self.write(event.job_id, event.run_id, &text)
    }

    /// Writes an entry whole: to a temporary file, synced, renamed into place.
    fn write(&self, job: JobId, run: RunId, text: &str) -> Result<(), Error> {
        let path = self.path(job, run);
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
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
        // Shard folders stay: a writer may be about to put an entry in one.
        remove_files_older_than(&self.root, retention, false)
    }
}

/// Removes the files under `root` (at any depth) last modified longer than `age` ago and, with
/// `prune`, the folders that leaves empty (a writer racing that only loses its write, which its
/// caller must bear); returns how many files went. Unreadable entries are left.
pub fn remove_files_older_than(root: &Path, age: Duration, prune: bool) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => {
                removed += remove_files_older_than(&path, age, prune);
                if prune {
                    // Only succeeds when empty.
                    let _ = std::fs::remove_dir(&path);
                }
            }
            Ok(_) => {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok())
                    .is_some_and(|elapsed| elapsed > age);
                if old && std::fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
            Err(_) => {}
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_files_go_at_any_depth_and_empty_folders_only_when_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("c")).unwrap();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for old in ["a/b/old", "c/old"] {
            let file = std::fs::File::create(root.join(old)).unwrap();
            file.set_modified(hour_ago).unwrap();
        }
        std::fs::write(root.join("a/new"), "x").unwrap();
        let age = Duration::from_secs(600);
        assert_eq!(remove_files_older_than(root, age, false), 2);
        assert!(root.join("a/b").is_dir() && root.join("c").is_dir());
        assert_eq!(remove_files_older_than(root, age, true), 0);
        assert!(!root.join("a/b").exists() && !root.join("c").exists());
        assert!(root.join("a/new").is_file());
    }

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
        assert_eq!(
            plan(Some(Entry::Closing(2, Then::Retrying)), 3),
            Plan::Reclose {
                attempt: 2,
                then: Then::Retrying
            }
        );
    }

    #[test]
    fn a_closing_entry_keeps_its_terminal_event() {
        use scanstream_contracts::event::{EventPayload, ScanSucceeded};
        use scanstream_contracts::finding::SeverityCounts;
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path());
        let job = JobId::from_name("j");
        let run = RunId::derived(job, "r");
        let event = ScanEvent::new(
            job,
            "j",
            run,
            2,
            scanstream_contracts::event::TERMINAL_SEQUENCE,
            1_700_000_000_000,
            Some("scanner-a".into()),
            EventPayload::ScanSucceeded(ScanSucceeded {
                findings: SeverityCounts::default(),
                commit: Some("abc".into()),
                duration_ms: 5,
            }),
        );
        ledger.put_closing(&event, Then::Finished).unwrap();
        assert_eq!(
            ledger.get(job, run).unwrap(),
            Some(Entry::Closing(2, Then::Finished))
        );
        assert_eq!(ledger.closing(job, run).unwrap(), Some(event.clone()));
        // A stored event of another attempt, or a damaged one, is an attempt never seen to end.
        let path = ledger.path(job, run);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("closing 2", "closing 3", 1)).unwrap();
        assert_eq!(ledger.get(job, run).unwrap(), Some(Entry::Running(3)));
        std::fs::write(&path, "closing 2 finished\n{not json\n").unwrap();
        assert_eq!(ledger.get(job, run).unwrap(), Some(Entry::Running(2)));
        ledger
            .put(job, run, Entry::after(2, Then::Finished))
            .unwrap();
        assert_eq!(ledger.closing(job, run).unwrap(), None);
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
