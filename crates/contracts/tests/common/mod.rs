//! Samples of every value type, covering every union branch and enum symbol of the schemas.
//! The `exhaustive_*` functions stop compiling when a variant is added without a sample.

#![allow(dead_code)]

use scanstream_contracts::command::{CancelScan, Command, RequestScan, ScanCommand, ScanMode};
use scanstream_contracts::event::{
    EngineCompleted, EngineOutcome, EventPayload, JobSubmitted, RepoFetched, ScanCancelled,
    ScanEvent, ScanFailed, ScanStarted, ScanSucceeded,
};
use scanstream_contracts::finding::{Finding, Severity, SeverityCounts};
use scanstream_contracts::ids::derived_uuid;
use scanstream_contracts::inventory::{
    InventoryItem, ItemId, ItemLocation, ItemStatus, SecretSeen, Sighting, SightingPayload,
    TipScanned, TriageDecision, TriageEntry, TriageReason,
};
use scanstream_contracts::schedule::{ConcurrencyPolicy, Schedule, ScheduleTicks};
use scanstream_contracts::state::{EngineSummary, JobState, JobStatus, RunState};
use scanstream_contracts::{JobId, RunId};

pub const T0: i64 = 1_763_700_000_000;

pub fn job() -> JobId {
    JobId::from_name("test10")
}

pub fn run() -> RunId {
    RunId::derived(job(), "first")
}

fn exhaustive_command(c: &Command) {
    match c {
        Command::RequestScan(_) | Command::CancelScan(_) => {}
    }
}

fn exhaustive_payload(p: &EventPayload) {
    match p {
        EventPayload::JobSubmitted(_)
        | EventPayload::ScanStarted(_)
        | EventPayload::RepoFetched(_)
        | EventPayload::EngineCompleted(_)
        | EventPayload::ScanSucceeded(_)
        | EventPayload::ScanFailed(_)
        | EventPayload::ScanCancelled(_) => {}
    }
}

fn exhaustive_enums(m: ScanMode, s: Severity, j: JobStatus, c: ConcurrencyPolicy) {
    match m {
        ScanMode::Tree | ScanMode::History | ScanMode::Incremental => {}
    }
    match s {
        Severity::Critical | Severity::High | Severity::Medium | Severity::Low | Severity::Info => {
        }
    }
    match j {
        JobStatus::Queued
        | JobStatus::Running
        | JobStatus::Succeeded
        | JobStatus::Failed
        | JobStatus::Cancelled => {}
    }
    match c {
        ConcurrencyPolicy::Allow | ConcurrencyPolicy::Forbid | ConcurrencyPolicy::Replace => {}
    }
}

pub fn commands() -> Vec<ScanCommand> {
    let modes = [ScanMode::Tree, ScanMode::History, ScanMode::Incremental];
    let mut out: Vec<ScanCommand> = modes
        .iter()
        .enumerate()
        .map(|(i, mode)| ScanCommand {
            command_id: derived_uuid("command", &[&i.to_string()]),
            issued_at: T0 + i as i64,
            command: Command::RequestScan(RequestScan {
                job_id: job(),
                job_name: "test10".into(),
                run_id: run(),
                repo_url: "https://git.example.com/test10.git".into(),
                git_ref: (i == 0).then(|| "refs/heads/main".to_owned()),
                engines: vec!["secrets".into()],
                mode: *mode,
                timeout_ms: (i == 1).then_some(600_000),
                schedule: (i == 2).then(|| "nightly".to_owned()),
                requested_by: (i != 1).then(|| "ci-token".to_owned()),
            }),
        })
        .collect();
    out.push(ScanCommand {
        command_id: derived_uuid("command", &["cancel"]),
        issued_at: T0 + 10,
        command: Command::CancelScan(CancelScan {
            job_id: job(),
            run_id: Some(run().0),
            reason: Some("superseded".into()),
            requested_by: None,
        }),
    });
    out.push(ScanCommand {
        command_id: derived_uuid("command", &["cancel-all"]),
        issued_at: T0 + 11,
        command: Command::CancelScan(CancelScan {
            job_id: job(),
            run_id: None,
            reason: None,
            requested_by: Some("admin".into()),
        }),
    });
    for c in &out {
        exhaustive_command(&c.command);
    }
    out
}

pub fn payloads() -> Vec<EventPayload> {
    vec![
        EventPayload::JobSubmitted(JobSubmitted {
            repo_url: "https://git.example.com/test10.git".into(),
            git_ref: None,
            engines: vec!["secrets".into(), "semgrep".into()],
            mode: ScanMode::History,
            schedule: Some("nightly".into()),
            requested_by: None,
        }),
        EventPayload::ScanStarted(ScanStarted {
            scanner_id: "scanner-0".into(),
        }),
        EventPayload::RepoFetched(RepoFetched {
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            fetch_ms: 1_234,
            cache_hit: true,
        }),
        EventPayload::EngineCompleted(EngineCompleted {
            engine: "secrets".into(),
            files: 1_200,
            bytes: 8_000_000,
            duration_ms: 950,
            findings: 3,
            skipped_large: 1,
            skipped_binary: 2,
            version: Some("2.14.0".into()),
            outcome: EngineOutcome::TimedOut,
            error: Some("ran past its timeout of 600 s".into()),
            cached: false,
            skipped_failed: 1,
        }),
        EventPayload::EngineCompleted(EngineCompleted {
            engine: "secrets".into(),
            findings: 3,
            ..EngineCompleted::default()
        }),
        EventPayload::EngineCompleted(EngineCompleted {
            engine: "gitleaks".into(),
            version: Some("8.30.1".into()),
            outcome: EngineOutcome::Failed,
            error: Some("exited with status 2".into()),
            cached: true,
            ..EngineCompleted::default()
        }),
        EventPayload::ScanSucceeded(ScanSucceeded {
            findings: SeverityCounts {
                critical: 1,
                high: 2,
                medium: 0,
                low: 0,
                info: 4,
            },
            commit: None,
            duration_ms: 2_000,
        }),
        EventPayload::ScanFailed(ScanFailed {
            reason: "fetch timed out after 120s".into(),
            retryable: true,
            error_kind: "fetch_timeout".into(),
        }),
        EventPayload::ScanCancelled(ScanCancelled { reason: None }),
        // The other side of every optional field and the remaining enum symbols.
        EventPayload::JobSubmitted(JobSubmitted {
            repo_url: "ssh://git@git.example.com/team/repo.git".into(),
            git_ref: Some("v1.2.3".into()),
            engines: vec!["secrets".into()],
            mode: ScanMode::Tree,
            schedule: None,
            requested_by: Some("ci-token".into()),
        }),
        EventPayload::JobSubmitted(JobSubmitted {
            repo_url: "file:///srv/git/repo".into(),
            git_ref: None,
            engines: vec!["secrets".into()],
            mode: ScanMode::Incremental,
            schedule: None,
            requested_by: None,
        }),
        EventPayload::RepoFetched(RepoFetched {
            commit: None,
            fetch_ms: 0,
            cache_hit: false,
        }),
        EventPayload::ScanSucceeded(ScanSucceeded {
            findings: SeverityCounts::default(),
            commit: Some("89abcdef0123456789abcdef0123456789abcdef".into()),
            duration_ms: 1,
        }),
        EventPayload::ScanCancelled(ScanCancelled {
            reason: Some("deadline exceeded".into()),
        }),
    ]
}

pub fn events() -> Vec<ScanEvent> {
    payloads()
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            exhaustive_payload(&payload);
            let attempt = if i == 0 { 0 } else { 1 };
            ScanEvent::new(
                job(),
                "test10",
                run(),
                attempt,
                i as i32,
                T0 + i as i64,
                i.is_multiple_of(2).then(|| "scanner-0".to_owned()),
                payload,
            )
        })
        .collect()
}

pub fn findings() -> Vec<Finding> {
    [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, severity)| Finding {
        finding_id: derived_uuid("finding", &[&i.to_string()]),
        job_id: job(),
        run_id: run(),
        attempt: 1,
        repo_url: "https://git.example.com/test10.git".into(),
        engine: "secrets".into(),
        engines: vec!["secrets".into(), "gitleaks".into()],
        rule_id: "aws-access-key-id".into(),
        severity,
        path: format!("src/config{i}.py"),
        line: 10 + i as i32,
        commit: i
            .is_multiple_of(2)
            .then(|| "0123456789abcdef0123456789abcdef01234567".to_owned()),
        fingerprint: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        redacted_preview: "aws_key = \"AKIA****************\"".into(),
        detected_at: T0,
    })
    .collect()
}

pub fn states() -> Vec<JobState> {
    let statuses = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];
    statuses
        .into_iter()
        .enumerate()
        .map(|(i, status)| JobState {
            job_id: job(),
            job_name: "test10".into(),
            schedule: (i == 1).then(|| "nightly".to_owned()),
            repo_url: "https://git.example.com/test10.git".into(),
            status,
            succeeded: i as i64,
            failed: 2,
            runs: vec![RunState {
                run_id: run(),
                status,
                attempt: i as i32,
                last_sequence: 3,
                queued_at: T0,
                started_at: (i > 0).then_some(T0 + 5),
                finished_at: (i > 1).then_some(T0 + 50),
                last_error: (status == JobStatus::Failed).then(|| "repo not found".to_owned()),
                engines: match i {
                    0 | 1 => vec![EngineSummary {
                        engine: "secrets".into(),
                        outcome: EngineOutcome::Completed,
                        version: None,
                        findings: 2,
                        error: None,
                        cached: false,
                    }],
                    _ => vec![
                        EngineSummary {
                            engine: "gitleaks".into(),
                            outcome: EngineOutcome::Failed,
                            version: Some("8.30.1".into()),
                            findings: 0,
                            error: Some("exited with status 3".into()),
                            cached: true,
                        },
                        EngineSummary {
                            engine: "semgrep".into(),
                            outcome: EngineOutcome::TimedOut,
                            version: Some("1.185.0".into()),
                            findings: 0,
                            error: Some("ran past its timeout".into()),
                            cached: false,
                        },
                    ],
                },
            }],
            findings: SeverityCounts::default(),
            last_error: (status == JobStatus::Failed).then(|| "repo not found".to_owned()),
            events_folded: 7,
            updated_at: T0 + 50,
        })
        .collect()
}

pub fn schedules() -> Vec<Schedule> {
    [
        ConcurrencyPolicy::Allow,
        ConcurrencyPolicy::Forbid,
        ConcurrencyPolicy::Replace,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, policy)| {
        exhaustive_enums(ScanMode::Tree, Severity::Info, JobStatus::Queued, policy);
        Schedule {
            name: "test6".into(),
            cron: "*/1 * * * *".into(),
            time_zone: (i == 0).then(|| "Europe/Paris".to_owned()),
            repo_url: "https://git.example.com/test6.git".into(),
            git_ref: (i == 1).then(|| "main".to_owned()),
            engines: vec!["secrets".into()],
            mode: [ScanMode::Tree, ScanMode::History, ScanMode::Incremental][i],
            concurrency_policy: policy,
            suspend: i == 1,
            successful_jobs_history_limit: 3,
            failed_jobs_history_limit: 1,
            starting_deadline_seconds: (i == 2).then_some(200),
            created_at: T0,
            updated_at: T0 + 1,
        }
    })
    .collect()
}

pub fn schedule_ticks() -> Vec<ScheduleTicks> {
    let first = ScheduleTicks {
        schedule: "test6".into(),
        schedule_created_at: T0,
        handled_through: T0 / 60_000,
        last_fired: None,
        last_fired_job: None,
        fired_total: 0,
        skipped_total: 0,
        missed_total: 0,
        last_missed: None,
        suspended_total: 0,
        leader: None,
        updated_at: T0,
    };
    let later = ScheduleTicks {
        handled_through: T0 / 60_000 + 5,
        last_fired: Some(T0 / 60_000 + 5),
        last_fired_job: Some(JobId::for_schedule_tick("test6", T0 / 60_000 + 5)),
        fired_total: 3,
        skipped_total: 1,
        missed_total: 1,
        last_missed: Some(T0 / 60_000 + 1),
        leader: Some("scheduler-0".into()),
        updated_at: T0 + 300_000,
        ..first.clone()
    };
    vec![first, later]
}

const REPO: &str = "https://git.example.com/test10.git";
const FINGERPRINT: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn exhaustive_sighting(p: &SightingPayload) {
    match p {
        SightingPayload::SecretSeen(_) | SightingPayload::TipScanned(_) => {}
    }
}

fn exhaustive_triage(s: ItemStatus, r: TriageReason) {
    match s {
        ItemStatus::Open | ItemStatus::Resolved | ItemStatus::Ignored => {}
    }
    match r {
        TriageReason::Revoked
        | TriageReason::FalsePositive
        | TriageReason::UsedInTests
        | TriageReason::WontFix => {}
    }
}

pub fn sightings() -> Vec<Sighting> {
    let seen = |i: usize, severity| {
        SightingPayload::SecretSeen(SecretSeen {
            fingerprint: FINGERPRINT.into(),
            rule_id: "aws-access-key-id".into(),
            severity,
            engine: "secrets".into(),
            path: format!("src/config{i}.py"),
            line: 3,
            commit: i
                .is_multiple_of(2)
                .then(|| "0123456789abcdef0123456789abcdef01234567".to_owned()),
            redacted_preview: "aws_key = \"AKIA****************\"".into(),
            detected_at: T0 + 2,
        })
    };
    let mut payloads: Vec<SightingPayload> = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, s)| seen(i, s))
    .collect();
    for commit in [
        None,
        Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
    ] {
        payloads.push(SightingPayload::TipScanned(TipScanned {
            commit,
            findings: 5,
            completed_at: T0 + 9,
        }));
    }
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            exhaustive_sighting(&payload);
            Sighting {
                repo_url: REPO.into(),
                job_id: job(),
                run_id: run(),
                attempt: 1,
                scan_started_at: T0 + 1,
                tip: i.is_multiple_of(2),
                payload,
            }
        })
        .collect()
}

pub fn triage_decisions() -> Vec<TriageDecision> {
    let item = ItemId::of(REPO, FINGERPRINT);
    [
        (
            ItemStatus::Open,
            ItemStatus::Resolved,
            Some(TriageReason::Revoked),
        ),
        (
            ItemStatus::Open,
            ItemStatus::Ignored,
            Some(TriageReason::FalsePositive),
        ),
        (
            ItemStatus::Ignored,
            ItemStatus::Ignored,
            Some(TriageReason::UsedInTests),
        ),
        (
            ItemStatus::Ignored,
            ItemStatus::Ignored,
            Some(TriageReason::WontFix),
        ),
        (ItemStatus::Resolved, ItemStatus::Open, None),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (from, to, reason))| {
        if let Some(r) = reason {
            exhaustive_triage(from, r);
        }
        TriageDecision {
            decision_id: derived_uuid("decision", &[&i.to_string()]),
            item_id: item,
            repo_url: REPO.into(),
            fingerprint: FINGERPRINT.into(),
            from_status: from,
            to_status: to,
            reason,
            comment: i.is_multiple_of(2).then(|| "rotated in vault".to_owned()),
            actor: "alice".into(),
            decided_at: T0 + 100 + i as i64,
        }
    })
    .collect()
}

pub fn inventory_items() -> Vec<InventoryItem> {
    let decisions = triage_decisions();
    decisions
        .iter()
        .enumerate()
        .map(|(i, d)| InventoryItem {
            item_id: d.item_id,
            repo_url: REPO.into(),
            fingerprint: FINGERPRINT.into(),
            rule_id: "aws-access-key-id".into(),
            severity: [
                Severity::Critical,
                Severity::High,
                Severity::Medium,
                Severity::Low,
                Severity::Info,
            ][i],
            engines: vec!["secrets".into()],
            redacted_preview: "aws_key = \"AKIA****************\"".into(),
            status: d.to_status,
            reason: d.reason,
            status_changed_at: d.decided_at,
            reopened: i as i32 % 2,
            locations: vec![ItemLocation {
                path: "src/config.py".into(),
                line: 3,
                commit: i
                    .is_multiple_of(2)
                    .then(|| "0123456789abcdef0123456789abcdef01234567".to_owned()),
                first_job: job(),
                last_job: job(),
                first_seen: T0,
                last_seen: T0 + 1,
            }],
            locations_total: 1,
            first_seen: T0,
            last_seen: T0 + 1,
            first_job: job(),
            last_job: job(),
            in_tip: i.is_multiple_of(2),
            tip_seen_at: i.is_multiple_of(2).then_some(T0 + 1),
            tip_checked_at: (i % 2 == 1).then_some(T0 + 1),
            triage: decisions[..=i]
                .iter()
                .map(|d| TriageEntry {
                    decision_id: d.decision_id,
                    actor: d.actor.clone(),
                    decided_at: d.decided_at,
                    from_status: d.from_status,
                    to_status: d.to_status,
                    reason: d.reason,
                    comment: d.comment.clone(),
                })
                .collect(),
            inputs_folded: 3,
            updated_at: T0 + 200,
        })
        .collect()
}
