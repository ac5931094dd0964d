//! The dashboard's overview against a large store: JOBS job states (three runs each, over the
//! last day) and ITEMS inventory items (over 1,000 repositories, first seen over two weeks),
//! Avro-encoded through the real registry and written to a redb store as the changelog
//! follower writes them. It then builds the in-memory index from the store (as a starting
//! aggregator does) and times the overview (adding up the index and rendering the HTML), the
//! work of every `GET /ui/` after authentication.
//! Usage: dashboard [JOBS] [ITEMS]   (defaults 10000 and 50000; bench/dashboard.sh runs it)

use std::sync::Arc;
use std::time::{Duration, Instant};

use scanstream_aggregator::index::Index;
use scanstream_aggregator::store::{Change, Store, Stored, Table};
use scanstream_aggregator::ui::overview;
use scanstream_contracts::finding::{Severity, SeverityCounts};
use scanstream_contracts::inventory::{InventoryItem, ItemId, ItemLocation, ItemStatus};
use scanstream_contracts::state::{JobState, JobStatus, RunState};
use scanstream_contracts::{JobId, RunId, Topic};
use scanstream_platform::Settings;
use scanstream_platform::config::Sources;
use tokio_util::sync::CancellationToken;

const HOUR: i64 = 3_600_000;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (jobs, items) = (arg(1, 10_000), arg(2, 50_000));
    let prefix = format!("bench-{}.", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let settings = Settings::load(Sources {
        overrides: vec![
            (
                "registry.url".into(),
                std::env::var("SCANSTREAM_TEST_REGISTRY")?,
            ),
            ("topics.prefix".into(), prefix),
        ],
        ..Sources::default()
    })?;
    let codec = Arc::new(scanstream_platform::registry::codec(&settings)?);
    codec.register_all().await?;
    let now = scanstream_platform::now_ms();
    let statuses = [
        JobStatus::Succeeded,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Running,
        JobStatus::Queued,
    ];
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(dir.path())?);

    println!("writing {jobs} job states and {items} inventory items to a store");
    let mut changes = Vec::with_capacity(jobs);
    for n in 0..jobs {
        let name = format!("bench-job-{n}");
        let job_id = JobId::from_name(&name);
        let at = now - (n as i64 * 7_919) % (24 * HOUR);
        let status = statuses[n % statuses.len()];
        let runs = (0..3)
            .map(|r| RunState {
                run_id: RunId::derived(job_id, &r.to_string()),
                status,
                attempt: 1,
                last_sequence: 3,
                queued_at: at - r * HOUR / 3,
                started_at: Some(at - r * HOUR / 3 + 500),
                finished_at: Some(at - r * HOUR / 3 + 2_000),
                last_error: None,
                engines: Vec::new(),
            })
            .collect();
        let state = JobState {
            job_id,
            job_name: name,
            schedule: None,
            repo_url: format!("https://git.example.com/team/r{}.git", n % 1000),
            status,
            succeeded: 2,
            failed: 1,
            runs,
            findings: SeverityCounts::default(),
            last_error: None,
            events_folded: 9,
            updated_at: at,
        };
        changes.push(Change::Put {
            job: job_id.0.as_u128(),
            stored: Stored {
                events_folded: 9,
                value: codec.encode(Topic::JobState, &state).await?,
            },
        });
    }
    store.apply(Table::Jobs, &changes, &[], false)?;
    let severities = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];
    let mut changes = Vec::with_capacity(items);
    for n in 0..items {
        let repo = format!("https://git.example.com/team/r{}.git", n % 1000);
        let fingerprint = format!("{n:064x}");
        let item_id = ItemId::of(&repo, &fingerprint);
        let job = JobId::from_name(&format!("bench-job-{}", n % jobs.max(1)));
        let seen = now - (n as i64 * 104_729) % (14 * 24 * HOUR);
        let item = InventoryItem {
            item_id,
            repo_url: repo,
            fingerprint,
            rule_id: "github-pat".into(),
            severity: severities[n % severities.len()],
            engines: vec!["secrets".into()],
            redacted_preview: "ghp_****** (40 chars)".into(),
            status: [ItemStatus::Open, ItemStatus::Open, ItemStatus::Resolved][n % 3],
            reason: None,
            status_changed_at: seen,
            reopened: 0,
            locations: vec![ItemLocation {
                path: format!("src/config{}.py", n % 50),
                line: 1 + (n % 400) as i32,
                commit: None,
                first_job: job,
                last_job: job,
                first_seen: seen,
                last_seen: seen,
            }],
            locations_total: 1,
            first_seen: seen,
            last_seen: seen,
            first_job: job,
            last_job: job,
            in_tip: n % 4 != 0,
            tip_seen_at: Some(seen),
            tip_checked_at: Some(seen),
            triage: Vec::new(),
            inputs_folded: 1,
            updated_at: seen,
        };
        changes.push(Change::Put {
            job: item_id.0.as_u128(),
            stored: Stored {
                events_folded: 1,
                value: codec.encode(Topic::Inventory, &item).await?,
            },
        });
    }
    store.apply(Table::Items, &changes, &[], false)?;

    let index = Arc::new(Index::default());
    let stop = CancellationToken::new();
    let started = Instant::now();
    let follower = tokio::spawn(
        index
            .clone()
            .follow(store.clone(), codec.clone(), stop.clone()),
    );
    while !index.built() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let build = started.elapsed();
    let (indexed_jobs, indexed_items) = index.with(|j, i| (j.len(), i.len()));
    assert_eq!(
        (indexed_jobs, indexed_items),
        (jobs, items),
        "the index missed records"
    );

    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..21 {
        let started = Instant::now();
        let now = scanstream_platform::now_ms();
        let summary = index.with(|jobs, items| overview::summarize(jobs, items, now));
        let html = overview::render(&summary, &index, now).into_string();
        times.push(started.elapsed());
        bytes = html.len();
    }
    times.sort();
    stop.cancel();
    let _ = follower.await;
    println!();
    println!(
        "index built from the store (decode {} records)   {:>8.1} ms",
        jobs + items,
        build.as_secs_f64() * 1e3
    );
    println!(
        "overview (add up + render, {} KB of HTML)   median {:>6.1} ms   max {:>6.1} ms   (21 runs)",
        bytes / 1024,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
    println!("jobs: {jobs}; items: {items}; build: release; machine: 2 cores");
    Ok(())
}
