//! `scanstream audit`: proves that the job state scanstream shows equals its history.
//!
//! 1. A snapshot: the aggregators' committed offsets on `scans.events` (committed in the same
//!    transactions as the changelog records they produced) and the changelog read to its end;
//!    repeated until the offsets did not move meanwhile, so both describe the same moment.
//! 2. `scans.events` is folded from its beginning up to those offsets with the aggregator's own
//!    pure fold.
//! 3. Every job with an event in `[from, to)` (every job without a range) is compared with its
//!    latest `scans.job-state` record and, with `--api-url`, with the aggregator's
//!    `GET /jobs/{uuid}`.
//!
//! The audit fails on a difference, on records of `scans.events` that cannot be folded (an
//! undecodable value or none, which the aggregator skips and counts too) unless they were
//! acknowledged by position (`--acknowledge PARTITION:OFFSET`, or a file of them), and on two
//! different records under one event id (the fold keeps only the first).
//!
//! The inventory is audited the same way ([`inventory`]): `scans.inventory` against the fold of
//! `scans.sightings` and `scans.triage`.
//!
//! The report's digest is the SHA-256 of the canonical JSON lines of the range's events (see
//! [`crate::replay`]): two audits of the same range have the same digest.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use scanstream_aggregator::fold::fold;
use scanstream_contracts::state::JobState;
use scanstream_contracts::{EventId, JobId, Topic, TopicNames};
use scanstream_platform::Settings;
use scanstream_platform::kafka::{ClientRole, KafkaFactory};
use serde::Serialize;

use crate::replay::{self, Bound, Decoded, Filters, Sink, Source, Window};

pub mod inventory;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Differences, conflicts and unfoldable records listed in the report (all are counted).
const REPORT_DIFFERENCES: usize = 100;

/// What `scanstream audit` checks.
pub struct AuditOptions {
    pub from: Option<Bound>,
    pub to: Option<Bound>,
    /// The running aggregator's API to compare too.
    pub api: Option<crate::client::Api>,
    /// Records of `scans.events` known to be unfoldable (partition, offset): reported, but they
    /// do not fail the audit.
    pub acknowledged: BTreeSet<(i32, i64)>,
}

/// Where a record of `scans.events` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

/// Two different records under one event id: the fold keeps the first.
#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    pub event_id: String,
    pub job: String,
    pub first: Position,
    pub second: Position,
}

/// One job whose states disagree.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub job: String,
    pub name: String,
    /// `changelog` or `api`.
    pub source: &'static str,
    /// `differs` or `missing` (no state there) or `unexpected` (a state no event explains).
    pub kind: &'static str,
    /// The fields that differ, with the folded and the shown value.
    pub fields: BTreeMap<String, (serde_json::Value, serde_json::Value)>,
}

/// The audit's outcome; `--report` writes it as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub from: Option<String>,
    pub to: Option<String>,
    pub events_topic: String,
    pub changelog_topic: String,
    /// The aggregators' committed offset per partition of the events topic: the events folded.
    pub folded_through: BTreeMap<i32, i64>,
    pub events_folded: u64,
    /// Events that could not be folded (undecodable or without a value): the fold is then
    /// incomplete, so the audit fails unless each was acknowledged.
    pub undecodable_events: u64,
    /// Of those, how many were acknowledged.
    pub acknowledged_events: u64,
    /// Where the unacknowledged ones are (the first hundred).
    pub undecodable: Vec<Position>,
    /// Event ids with two different records.
    pub conflicting_events: u64,
    pub conflicts: Vec<Conflict>,
    pub jobs_checked: u64,
    pub equal: u64,
    pub differing: u64,
    pub missing: u64,
    pub api_checked: bool,
    pub differences: Vec<Difference>,
    /// The canonical record stream of the range.
    pub digest: Digest,
    /// The inventory against the fold of its inputs.
    pub inventory: inventory::InventoryReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct Digest {
    pub algorithm: &'static str,
    pub records: u64,
    pub hex: String,
}

impl Report {
    pub fn consistent(&self) -> bool {
        self.differing == 0
            && self.missing == 0
            && self.undecodable_events == self.acknowledged_events
            && self.conflicting_events == 0
            && self.inventory.consistent()
    }
}

fn bound_text(bound: &Option<Bound>) -> Option<String> {
    bound.as_ref().map(|b| match b {
        Bound::Time(ms) => chrono::DateTime::<chrono::Utc>::from_timestamp_millis(*ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default(),
        Bound::Offset(o) => o.to_string(),
        Bound::Offsets(map) => map
            .iter()
            .map(|(p, o)| format!("{p}:{o}"))
            .collect::<Vec<_>>()
            .join(","),
    })
}

/// A consumer group's committed offsets on `events` (a topic), 0 where it committed none.
async fn committed(
    settings: &Settings,
    group: &str,
    events: &str,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let group = group.to_owned();
    let factory = KafkaFactory::new(settings.kafka.clone());
    let events = events.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<BTreeMap<i32, i64>> {
        let consumer = factory.base_consumer(ClientRole::Cli, &group)?;
        let mut list = TopicPartitionList::new();
        for p in
            scanstream_platform::kafka::partitions(consumer.client(), &events, REQUEST_TIMEOUT)?
        {
            list.add_partition(&events, p);
        }
        if list.count() == 0 {
            bail!("topic {events} does not exist");
        }
        let offsets = consumer
            .committed_offsets(list, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the committed offsets of group {group}"))?;
        Ok(offsets
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => (e.partition(), o),
                _ => (e.partition(), 0),
            })
            .collect())
    })
    .await?
}

/// The latest record of every key of the compacted `topic`, read in order: `value` gives a
/// record's key and value, `key` parses a tombstone's key (a tombstone removes its key).
pub(crate) async fn latest<K: Eq + std::hash::Hash, V>(
    settings: &Settings,
    names: &TopicNames,
    topic: Topic,
    value: impl Fn(&Decoded) -> Option<(K, V)>,
    key: impl Fn(&str) -> Option<K>,
) -> anyhow::Result<HashMap<K, V>> {
    let mut latest = HashMap::new();
    let source = Source {
        name: names.name(topic),
        kind: topic,
    };
    replay::run(
        settings,
        &source,
        &Window::default(),
        &Filters::default(),
        Sink::Digest,
        false,
        |record| match &record.value {
            Some(decoded) => {
                if let Some((k, v)) = value(decoded) {
                    latest.insert(k, v);
                }
            }
            None => {
                if let Some(k) = record
                    .raw
                    .key
                    .as_deref()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .and_then(&key)
                {
                    latest.remove(&k);
                }
            }
        },
    )
    .await?;
    Ok(latest)
}

/// The latest changelog record of every job.
async fn changelog(
    settings: &Settings,
    names: &TopicNames,
) -> anyhow::Result<HashMap<JobId, JobState>> {
    latest(
        settings,
        names,
        Topic::JobState,
        |decoded| match decoded {
            Decoded::State(state) => Some((state.job_id, state.clone())),
            _ => None,
        },
        |key| uuid::Uuid::parse_str(key).ok().map(JobId),
    )
    .await
}

/// The JSON fields of `a` and `b` that differ.
fn differences(
    a: &JobState,
    b: &JobState,
) -> BTreeMap<String, (serde_json::Value, serde_json::Value)> {
    let (a, b) = (
        serde_json::to_value(a).unwrap_or_default(),
        serde_json::to_value(b).unwrap_or_default(),
    );
    let mut out = BTreeMap::new();
    if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            let (x, y) = (
                a.get(key).cloned().unwrap_or_default(),
                b.get(key).cloned().unwrap_or_default(),
            );
            if x != y {
                out.insert(key.clone(), (x, y));
            }
        }
    }
    out
}

/// Runs the audit.
pub async fn audit(settings: &Settings, options: &AuditOptions) -> anyhow::Result<Report> {
    let names = TopicNames::new(settings.topics.prefix.clone());
    let events_topic = names.name(Topic::Events);
    let group = scanstream_platform::access::group_id(settings, &settings.aggregator.group_id);

    // 1. A consistent snapshot of the folded offsets and the changelog.
    let mut attempt = 0;
    let (folded_through, shown) = loop {
        attempt += 1;
        let before = committed(settings, &group, &events_topic).await?;
        let shown = changelog(settings, &names).await?;
        let after = committed(settings, &group, &events_topic).await?;
        if before == after {
            break (before, shown);
        }
        if attempt >= 5 {
            bail!(
                "the aggregators kept committing while the changelog was read (5 attempts); audit a quieter moment or stop the aggregators"
            );
        }
    };

    // 2. Fold every event up to the snapshot; note the range's jobs and its digest.
    let events = Source {
        name: events_topic.clone(),
        kind: Topic::Events,
    };
    let mut folded: HashMap<JobId, JobState> = HashMap::new();
    let mut events_folded = 0u64;
    // Event id → a hash of its first record and where that is.
    let mut seen: HashMap<EventId, (u64, Position)> = HashMap::new();
    let mut conflicts: Vec<Conflict> = Vec::new();
    let mut conflicting = 0u64;
    let mut empty: Vec<Position> = Vec::new();
    let folding = replay::run(
        settings,
        &events,
        &Window {
            from: None,
            to: Some(Bound::Offsets(folded_through.clone())),
        },
        &Filters::default(),
        Sink::Digest,
        false,
        |record| {
            let at = Position {
                partition: record.raw.partition,
                offset: record.raw.offset,
            };
            let Some(Decoded::Event(event)) = &record.value else {
                // No value: the aggregator skips and counts it as undecodable too.
                empty.push(at);
                return;
            };
            // The decoded event, not its bytes: one event written again under a newer schema
            // version is the same event.
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_vec(event)
                .unwrap_or_default()
                .hash(&mut hasher);
            let hash = hasher.finish();
            match seen.get(&event.event_id) {
                Some((first, _)) if *first == hash => {}
                Some((_, first)) => {
                    conflicting += 1;
                    if conflicts.len() < REPORT_DIFFERENCES {
                        conflicts.push(Conflict {
                            event_id: event.event_id.to_string(),
                            job: event.job_id.to_string(),
                            first: *first,
                            second: at,
                        });
                    }
                }
                None => {
                    seen.insert(event.event_id, (hash, at));
                }
            }
            let state = fold(folded.remove(&event.job_id), event);
            folded.insert(event.job_id, state);
            events_folded += 1;
        },
    )
    .await?;
    drop(seen);
    let undecodable_events = folding.undecodable + empty.len() as u64;
    let unfoldable: Vec<Position> = folding
        .undecodable_at
        .iter()
        .map(|&(partition, offset)| Position { partition, offset })
        .chain(empty)
        .collect();
    let acknowledged_events = unfoldable
        .iter()
        .filter(|p| options.acknowledged.contains(&(p.partition, p.offset)))
        .count() as u64;
    let mut undecodable: Vec<Position> = unfoldable
        .into_iter()
        .filter(|p| !options.acknowledged.contains(&(p.partition, p.offset)))
        .collect();
    undecodable.sort();
    undecodable.truncate(REPORT_DIFFERENCES);
    let range = Window {
        from: options.from.clone(),
        to: options.to.clone(),
    };
    let mut in_range: BTreeSet<JobId> = BTreeSet::new();
    let digest = replay::run(
        settings,
        &events,
        &range,
        &Filters::default(),
        Sink::Digest,
        false,
        |record| {
            if let Some(Decoded::Event(event)) = &record.value {
                in_range.insert(event.job_id);
            }
        },
    )
    .await?;
    let whole = options.from.is_none() && options.to.is_none();
    let checked: BTreeSet<JobId> = if whole {
        folded.keys().chain(shown.keys()).copied().collect()
    } else {
        in_range
    };

    // 3. Compare.
    let api = options.api.as_ref();
    let mut report = Report {
        from: bound_text(&options.from),
        to: bound_text(&options.to),
        events_topic,
        changelog_topic: names.name(Topic::JobState),
        folded_through,
        events_folded,
        undecodable_events,
        acknowledged_events,
        undecodable,
        conflicting_events: conflicting,
        conflicts,
        jobs_checked: 0,
        equal: 0,
        differing: 0,
        missing: 0,
        api_checked: api.is_some(),
        differences: Vec::new(),
        digest: Digest {
            algorithm: "sha256",
            records: digest.selected,
            hex: digest.sha256,
        },
        inventory: inventory::audit(settings, options.api.as_ref()).await?,
    };
    let note = |report: &mut Report, difference: Difference| {
        match difference.kind {
            "differs" => report.differing += 1,
            _ => report.missing += 1,
        }
        if report.differences.len() < REPORT_DIFFERENCES {
            report.differences.push(difference);
        }
    };
    for job in checked {
        report.jobs_checked += 1;
        let expected = folded.get(&job);
        let mut equal = true;
        let name = expected
            .or_else(|| shown.get(&job))
            .map(|s| s.job_name.clone())
            .unwrap_or_default();
        let mut compare = |source: &'static str, actual: Option<&JobState>, report: &mut Report| {
            let (kind, fields) = match (expected, actual) {
                (Some(e), Some(a)) => {
                    let fields = differences(e, a);
                    if fields.is_empty() {
                        return;
                    }
                    ("differs", fields)
                }
                (Some(_), None) => ("missing", BTreeMap::new()),
                (None, Some(_)) => ("unexpected", BTreeMap::new()),
                (None, None) => return,
            };
            equal = false;
            note(
                report,
                Difference {
                    job: job.to_string(),
                    name: name.clone(),
                    source,
                    kind,
                    fields,
                },
            );
        };
        compare("changelog", shown.get(&job), &mut report);
        if let Some(api) = &api {
            let (status, body) = api
                .get_json(&format!("/jobs/{job}"))
                .await
                .with_context(|| format!("GET /jobs/{job}"))?;
            let actual = match status {
                200 => Some(
                    serde_json::from_value::<JobState>(body)
                        .with_context(|| format!("GET /jobs/{job} is not a job state"))?,
                ),
                404 => None,
                other => bail!("GET /jobs/{job} answered {other}"),
            };
            compare("api", actual.as_ref(), &mut report);
        }
        if equal {
            report.equal += 1;
        }
    }
    Ok(report)
}

/// Prints the summary and the first `show` differences.
pub fn print(report: &Report, show: usize) {
    println!(
        "audit of {} {}–{}: {} events folded, {} jobs checked: {} equal, {} differing, {} missing{}",
        report.events_topic,
        report.from.as_deref().unwrap_or("beginning"),
        report.to.as_deref().unwrap_or("end"),
        report.events_folded,
        report.jobs_checked,
        report.equal,
        report.differing,
        report.missing,
        if report.api_checked {
            " (changelog and API)"
        } else {
            " (changelog)"
        }
    );
    println!(
        "digest sha256 of {} records in the range: {}",
        report.digest.records, report.digest.hex
    );
    let unacknowledged = report.undecodable_events - report.acknowledged_events;
    if report.undecodable_events > 0 {
        let positions: Vec<String> = report
            .undecodable
            .iter()
            .take(show.max(1))
            .map(|p| p.to_string())
            .collect();
        println!(
            "UNFOLDABLE {} record(s) of {} could not be folded ({} acknowledged){}{}",
            report.undecodable_events,
            report.events_topic,
            report.acknowledged_events,
            if positions.is_empty() {
                String::new()
            } else {
                format!(
                    "; unacknowledged at partition:offset {}",
                    positions.join(", ")
                )
            },
            if unacknowledged > 0 {
                " (inspect them with `scanstream replay --topic scans.events --from P:O`; acknowledge known ones with --acknowledge P:O)"
            } else {
                ""
            }
        );
    }
    for c in report.conflicts.iter().take(show) {
        println!(
            "CONFLICT event {} of job {}: records at {} and {} differ (the first is folded)",
            c.event_id, c.job, c.first, c.second
        );
    }
    for d in report.differences.iter().take(show) {
        println!(
            "DIFFERENCE job {} ({}) in the {}: {}",
            d.job, d.name, d.source, d.kind
        );
        for (field, (folded, shown)) in &d.fields {
            println!("  {field}: folded {folded} ≠ shown {shown}");
        }
    }
    let inventory = &report.inventory;
    println!(
        "audit of {}: {} sightings and decisions folded, {} items checked: {} equal, {} differing, {} missing{}",
        inventory.changelog_topic,
        inventory.inputs_folded,
        inventory.items_checked,
        inventory.equal,
        inventory.differing,
        inventory.missing,
        if inventory.undecodable_inputs > 0 {
            format!(
                "; UNFOLDABLE {} input record(s) could not be decoded",
                inventory.undecodable_inputs
            )
        } else {
            String::new()
        }
    );
    for d in inventory.differences.iter().take(show) {
        println!(
            "DIFFERENCE item {} ({}) in the {}: {}",
            d.job, d.name, d.source, d.kind
        );
        for (field, (folded, shown)) in &d.fields {
            println!("  {field}: folded {folded} ≠ shown {shown}");
        }
    }
    if report.consistent() {
        println!("consistent: the state shown equals the folded history");
    }
}
