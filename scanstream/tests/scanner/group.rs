//! Two `scanstream scanner` processes in one group, sharing one cache folder: 60 jobs over 10
//! repositories, one scanner killed (SIGKILL) halfway, a poison record and an invalid command.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};
use scanstream_contracts::command::Command as Cmd;
use scanstream_contracts::event::{EventPayload, ScanEvent, TERMINAL_SEQUENCE};
use scanstream_contracts::finding::Finding;
use scanstream_contracts::{JobId, RepoKey, Topic, headers};
use scanstream_scanner::rules::RulePack;
use scanstream_scanner::secrets::{DEFAULT_FINGERPRINT_KEY, SecretsEngine};
use scanstream_testcontainers::header;

use crate::harness::{
    COMMAND_TRACEPARENT, CORRELATION_ID, Harness, JOBS, REPOS, ended, make_repo, plants, request,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_scanners_survive_a_kill_and_every_attempt_ends_once() {
    let h = Harness::new("scanner-group").await;
    let plants = plants();
    assert_eq!(plants.len(), REPOS);
    let urls: Vec<String> = plants
        .iter()
        .enumerate()
        .map(|(i, (_, text, _))| format!("file://{}", make_repo(&h.repos(), i, text).display()))
        .collect();
    let config = h.config(
        "concurrency = 2\nqueue_max = 2\nretry_backoff_ms = 200\ndrain_timeout_seconds = 2",
        "[kafka.extra]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"",
    );
    let mut a = h.spawn(&config, "scanner-a");
    let mut b = h.spawn(&config, "scanner-b");

    // 60 jobs, a poison record, and a decodable command that names an unknown engine.
    let mut expected: HashMap<JobId, usize> = HashMap::new();
    let mut requests = Vec::new();
    for i in 0..JOBS {
        let cmd = request(
            &format!("job-{i}"),
            &urls[i % REPOS],
            Some(format!("b{}", i / REPOS)),
            None,
        );
        expected.insert(cmd.job_id, i % REPOS);
        requests.push(cmd);
    }
    let mut invalid = request("job-invalid", &urls[0], None, None);
    invalid.engines = vec!["no-such-engine".into()];
    requests.insert(JOBS / 2, invalid.clone());
    for cmd in requests {
        let key = RepoKey::from_normalized(&cmd.repo_url);
        h.send(key.as_str(), Cmd::RequestScan(cmd)).await;
    }
    h.send_raw("poison", b"\x00\x00\x00\x00\x01 not avro at all")
        .await;

    // Kill scanner A while it has work in flight: once it wrote the events of a few jobs (a job
    // writes four; the producer's name is in each event's bytes), it still holds queued and
    // running commands.
    let by_a = |messages: &[OwnedMessage]| {
        messages
            .iter()
            .filter(|m| {
                m.payload()
                    .is_some_and(|p| p.windows(9).any(|w| w == b"scanner-a"))
            })
            .count()
    };
    let seen = h
        .read(Topic::Events, |m| by_a(m) >= 8, Duration::from_secs(120))
        .await;
    assert!(by_a(&seen) >= 8, "scanner A made no progress");
    a.kill().unwrap();
    let _ = a.wait();

    // Every job (and the invalid one) must reach a final terminal event.
    let all_ended = |events: &[ScanEvent]| {
        expected.keys().all(|job| ended(events, *job)) && ended(events, invalid.job_id)
    };
    let (events, raw_events) = h.events_until(all_ended, Duration::from_secs(60)).await;
    let _ = b.kill();
    let _ = b.wait();
    for job in expected.keys() {
        let history: Vec<String> = events
            .iter()
            .filter(|e| e.job_id == *job)
            .map(|e| {
                format!(
                    "{}/{} {:?} by {:?}",
                    e.attempt, e.sequence, e.payload, e.producer
                )
            })
            .collect();
        assert!(ended(&events, *job), "job {job} never ended: {history:#?}");
    }
    assert!(
        ended(&events, invalid.job_id),
        "the invalid command got no ScanFailed"
    );

    // Exactly one terminal event (by id) per attempt, and every started attempt has one.
    let mut terminals: HashMap<(JobId, i32), BTreeSet<uuid::Uuid>> = HashMap::new();
    let mut started: BTreeSet<(JobId, i32)> = BTreeSet::new();
    for e in &events {
        if e.sequence == TERMINAL_SEQUENCE {
            terminals
                .entry((e.job_id, e.attempt))
                .or_default()
                .insert(e.event_id.0);
        }
        if matches!(e.payload, EventPayload::ScanStarted(_)) {
            started.insert((e.job_id, e.attempt));
        }
    }
    for (attempt, ids) in &terminals {
        assert_eq!(
            ids.len(),
            1,
            "attempt {attempt:?} has {} terminal events",
            ids.len()
        );
    }
    for attempt in &started {
        assert!(
            terminals.contains_key(attempt),
            "attempt {attempt:?} never ended"
        );
    }
    let interrupted = events
        .iter()
        .filter(|e| matches!(&e.payload, EventPayload::ScanFailed(f) if f.error_kind == "interrupted" || f.error_kind == "handed_over"))
        .count();
    let mut by_scanner: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *by_scanner
            .entry(e.producer.clone().unwrap_or_default())
            .or_default() += 1;
    }
    eprintln!(
        "{} events, {} attempts, {} closed after the kill, events by scanner {by_scanner:?}",
        events.len(),
        terminals.len(),
        interrupted
    );

    // Findings: each succeeded job's last attempt reports its repository's planted secret.
    let raw_findings = h
        .read(Topic::Findings, |_| false, Duration::from_secs(3))
        .await;
    let engine = SecretsEngine::new(
        RulePack::builtin().unwrap(),
        DEFAULT_FINGERPRINT_KEY.as_bytes(),
    );
    let mut fingerprints: HashMap<JobId, BTreeSet<String>> = HashMap::new();
    for m in &raw_findings {
        let finding: Finding = h
            .codec
            .decode(m.payload().unwrap_or_default())
            .await
            .unwrap();
        fingerprints
            .entry(finding.job_id)
            .or_default()
            .insert(finding.fingerprint);
    }
    for (job, repo) in &expected {
        let (rule, _, secret) = &plants[*repo];
        let want = engine.fingerprint(rule, secret.as_bytes());
        assert!(
            fingerprints.get(job).is_some_and(|f| f.contains(&want)),
            "job {job} lacks the {rule} finding"
        );
    }

    // The poison record and the invalid command are in the DLQ, with reasons.
    let dlq = h
        .read(
            Topic::CommandsDlq,
            |m| m.len() >= 2,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(dlq.len(), 2, "DLQ holds {} records", dlq.len());
    let kinds: BTreeSet<String> = dlq
        .iter()
        .filter_map(|m| header(m, headers::DLQ_ERROR_KIND))
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["undecodable".to_owned(), "invalid_command".to_owned()])
    );

    // Events and findings continue their command's trace: same trace id, a span of their own,
    // the command's correlation id.
    let trace_id = COMMAND_TRACEPARENT.split('-').nth(1).unwrap();
    for m in raw_events.iter().chain(&raw_findings) {
        let traceparent = header(m, headers::TRACEPARENT)
            .unwrap_or_else(|| panic!("a record on {} without traceparent", m.topic()));
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!(
            parts[1], trace_id,
            "{traceparent} is not the command's trace"
        );
        assert_ne!(traceparent, COMMAND_TRACEPARENT, "no span of its own");
        assert_eq!(
            header(m, headers::CORRELATION_ID).as_deref(),
            Some(CORRELATION_ID),
            "a record on {} without the command's correlation id",
            m.topic()
        );
    }

    // No record the scanners wrote holds a planted secret, in key, value or headers.
    for m in raw_events.iter().chain(&raw_findings).chain(&dlq) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(m.key().unwrap_or_default());
        bytes.extend_from_slice(m.payload().unwrap_or_default());
        if let Some(h) = m.headers() {
            for header in h.iter() {
                bytes.extend_from_slice(header.value.unwrap_or_default());
            }
        }
        for (_, _, secret) in &plants {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a record on {} holds a planted secret",
                m.topic()
            );
        }
    }
}
