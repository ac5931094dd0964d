//! `bench/aggregator.sh` runs this inside scanstream-testenv: it produces one `JobSubmitted`
//! for each of N jobs, folds them with the exactly-once processor (transactions on) into an empty
//! store, then restores a second, empty store from the changelog, and prints both rates.
//! With `inventory` it does the same for the inventory: one `SecretSeen` for each of N secrets
//! over 1,000 repositories on `scans.sightings`, folded by the inventory processor.
//! Usage: bench [N] [inventory]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use scanstream_aggregator::changelog::{Progress, follow};
use scanstream_aggregator::inventory::processor::InventoryProcessor;
use scanstream_aggregator::processor::{Parts, Processor, ProcessorConfig};
use scanstream_aggregator::store::{Store, Table};
use scanstream_contracts::event::{EventPayload, JobSubmitted, ScanEvent};
use scanstream_contracts::finding::Severity;
use scanstream_contracts::inventory::{SecretSeen, Sighting, SightingPayload, repo_partition};
use scanstream_contracts::{JobId, RunId, Topic, TopicNames};
use scanstream_platform::Settings;
use scanstream_platform::config::Sources;
use scanstream_platform::kafka::KafkaFactory;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jobs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let inventory = std::env::args().nth(2).as_deref() == Some("inventory");
    let (changelog, table) = if inventory {
        (scanstream_aggregator::changelog::INVENTORY, Table::Items)
    } else {
        (scanstream_aggregator::changelog::JOB_STATE, Table::Jobs)
    };
    let prefix = format!("bench-{}.", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let settings = Settings::load(Sources {
        overrides: vec![
            (
                "kafka.bootstrap_servers".into(),
                std::env::var("SCANSTREAM_TEST_BOOTSTRAP")?,
            ),
            (
                "registry.url".into(),
                std::env::var("SCANSTREAM_TEST_REGISTRY")?,
            ),
            ("topics.prefix".into(), prefix.clone()),
            ("topics.partitions".into(), "6".into()),
            ("topics.replication_factor".into(), "1".into()),
            ("kafka.statistics_interval_ms".into(), "0".into()),
        ],
        ..Sources::default()
    })?;
    // Logs (the restore's own timing split among them) at warn unless RUST_LOG says otherwise.
    let mut telemetry = settings.telemetry.clone();
    telemetry.log_filter = std::env::var("BENCH_LOG")
        .unwrap_or_else(|_| "warn,scanstream_aggregator::changelog=info".to_owned());
    scanstream_platform::telemetry::init(&telemetry, None)?;
    let names = TopicNames::new(prefix.clone());
    let factory = KafkaFactory::new(settings.kafka.clone());
    scanstream_platform::topics::ensure(
        &factory.admin()?,
        &names,
        &settings.topics,
        Duration::from_secs(30),
    )
    .await?;
    let codec = Arc::new(scanstream_platform::registry::codec(&settings)?);
    codec.register_all().await?;

    if inventory {
        println!("producing {jobs} SecretSeen sightings of {jobs} secrets in 1000 repositories");
    } else {
        println!("producing {jobs} JobSubmitted events for {jobs} jobs");
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let topic = names.name(if inventory {
        Topic::Sightings
    } else {
        Topic::Events
    });
    let started = Instant::now();
    let mut pending = Vec::with_capacity(10_000);
    for n in 0..jobs {
        let name = format!("bench-job-{n}");
        let job = JobId::from_name(&name);
        let event = ScanEvent::new(
            job,
            &name,
            RunId::derived(job, "r"),
            0,
            0,
            1_763_700_000_000 + n as i64,
            None,
            EventPayload::JobSubmitted(JobSubmitted {
                repo_url: format!("https://git.example.com/r{}.git", n % 1000),
                git_ref: None,
                engines: vec!["secrets".into()],
                mode: Default::default(),
                schedule: None,
                requested_by: None,
            }),
        );
        let (key, bytes, partition) = if inventory {
            let repo = format!("https://git.example.com/r{}.git", n % 1000);
            let sighting = Sighting {
                repo_url: repo.clone(),
                job_id: job,
                run_id: RunId::derived(job, "r"),
                attempt: 1,
                scan_started_at: 1_763_700_000_000 + n as i64,
                tip: true,
                payload: SightingPayload::SecretSeen(SecretSeen {
                    fingerprint: format!("{n:064x}"),
                    rule_id: "github-pat".into(),
                    severity: Severity::Critical,
                    engine: "secrets".into(),
                    path: format!("src/config{}.py", n % 50),
                    line: 1 + (n % 400) as i32,
                    commit: None,
                    redacted_preview: "token = \"ghp_****************\"".into(),
                    detected_at: 1_763_700_000_000 + n as i64,
                }),
            };
            let partition = repo_partition(&repo, settings.topics.partitions);
            (
                repo,
                codec.encode(Topic::Sightings, &sighting).await?,
                Some(partition),
            )
        } else {
            (job.key(), codec.encode(Topic::Events, &event).await?, None)
        };
        loop {
            let mut record = FutureRecord::to(&topic).key(&key).payload(&bytes);
            if let Some(p) = partition {
                record = record.partition(p);
            }
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((e, _)) => {
                    // Queue full: let deliveries drain.
                    let _ = e;
                    for d in pending.drain(..) {
                        d.await?.map_err(|(e, _)| e)?;
                    }
                }
            }
        }
        if pending.len() >= 10_000 {
            for d in pending.drain(..) {
                d.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for d in pending.drain(..) {
        d.await?.map_err(|(e, _)| e)?;
    }
    println!(
        "produced in {:.1}s ({:.0} records/s)",
        started.elapsed().as_secs_f64(),
        jobs as f64 / started.elapsed().as_secs_f64()
    );

    // Fold with transactions on into an empty store.
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(dir.path())?);
    let progress = Arc::new(Progress::default());
    let stop = CancellationToken::new();
    let group = format!("{prefix}aggregator");
    let follower = tokio::spawn(follow(
        changelog,
        factory.clone(),
        names.clone(),
        group.clone(),
        store.clone(),
        progress.clone(),
        stop.clone(),
    ));
    let processors: usize = std::env::var("BENCH_PROCESSORS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    let started = Instant::now();
    let mut folding = Vec::new();
    for i in 0..processors {
        let config = ProcessorConfig {
            group_id: if inventory {
                scanstream_platform::access::inventory_group(&group)
            } else {
                group.clone()
            },
            transactional_id: format!("{prefix}bench-aggregator-{i}"),
            batch_max_events: settings.aggregator.batch_max_events,
            linger: settings.aggregator.batch_linger,
        };
        let ready = Arc::new(AtomicBool::new(false));
        let stop = stop.clone();
        let parts = Parts {
            factory: factory.clone(),
            names: names.clone(),
            codec: codec.clone(),
            store: store.clone(),
            progress: progress.clone(),
            config,
        };
        folding.push(tokio::spawn(async move {
            if inventory {
                InventoryProcessor::new(parts).run(ready, stop).await
            } else {
                Processor::new(parts).run(ready, stop).await
            }
        }));
    }
    while (store.len(table)? as usize) < jobs {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fold_seconds = started.elapsed().as_secs_f64();
    stop.cancel();
    for f in folding {
        let _ = f.await;
    }
    let _ = follower.await;

    // Restore a second, empty store from the changelog.
    let dir2 = tempfile::tempdir()?;
    let store2 = Arc::new(Store::open(dir2.path())?);
    let progress2 = Arc::new(Progress::default());
    let stop2 = CancellationToken::new();
    let started = Instant::now();
    let restoring = tokio::spawn(follow(
        changelog,
        factory,
        names,
        format!("{group}-restore"),
        store2.clone(),
        progress2.clone(),
        stop2.clone(),
    ));
    while !progress2.restored() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restore_seconds = started.elapsed().as_secs_f64();
    stop2.cancel();
    let _ = restoring.await;
    let restored = store2.len(table)?;

    let mut table = BTreeMap::new();
    table.insert(
        "fold (transactions on)",
        (
            jobs as f64 / fold_seconds,
            if inventory { "items/s" } else { "events/s" },
            fold_seconds,
        ),
    );
    table.insert(
        "restore from changelog",
        (
            restored as f64 / restore_seconds,
            "records/s",
            restore_seconds,
        ),
    );
    println!();
    println!(
        "{:<26} {:>12} {:>10} {:>9}",
        "phase", "rate", "unit", "seconds"
    );
    for (phase, (rate, unit, seconds)) in table {
        println!("{phase:<26} {rate:>12.0} {unit:>10} {seconds:>9.1}");
    }
    println!(
        "{}: {jobs}; fold processors: {processors}; restored records: {restored}; machine: 2 cores shared with Kafka and the registry",
        if inventory { "items" } else { "jobs" }
    );
    Ok(())
}
