//! `bench/replay.sh` runs this inside scanstream-testenv: it produces N events to `scans.events`
//! (6 partitions), then replays all of them as JSON lines, as an Avro container file, as the
//! audit's digest, and into a copy topic, printing records/s for each.
//! Usage: replay_bench [EVENTS]

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use scanstream::replay::{Filters, Format, ReplayOptions, Sink, Source, Window, replay, run};
use scanstream_contracts::event::{EventPayload, JobSubmitted, ScanEvent, ScanStarted};
use scanstream_contracts::{JobId, RunId, Topic, TopicNames};
use scanstream_platform::Settings;
use scanstream_platform::config::Sources;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
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
    scanstream::topics::ensure(&settings, false).await?;
    let codec = scanstream_platform::registry::codec(&settings)?;
    let names = TopicNames::new(prefix.clone());

    println!("producing {events} events (half JobSubmitted, half ScanStarted)");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let topic = names.name(Topic::Events);
    let started = Instant::now();
    let mut pending = Vec::with_capacity(10_000);
    for n in 0..events {
        let name = format!("bench-job-{}", n / 2);
        let job = JobId::from_name(&name);
        let payload = if n % 2 == 0 {
            EventPayload::JobSubmitted(JobSubmitted {
                repo_url: format!("https://git.example.com/r{}.git", n % 1000),
                git_ref: None,
                engines: vec!["secrets".into()],
                mode: Default::default(),
                schedule: None,
                requested_by: None,
            })
        } else {
            EventPayload::ScanStarted(ScanStarted {
                scanner_id: "scanner-0".into(),
            })
        };
        let event = ScanEvent::new(
            job,
            &name,
            RunId::derived(job, "r"),
            i32::from(n % 2 == 1),
            i32::from(n % 2 == 1),
            1_795_219_200_000 + n as i64,
            None,
            payload,
        );
        let bytes = codec.encode(Topic::Events, &event).await?;
        let key = job.key();
        let mut record = FutureRecord::to(&topic)
            .key(&key)
            .payload(&bytes)
            .timestamp(event.occurred_at);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((_, back)) => {
                    record = back;
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
        "produced in {:.1}s ({:.0} events/s)",
        started.elapsed().as_secs_f64(),
        events as f64 / started.elapsed().as_secs_f64()
    );

    let source = Source {
        name: topic.clone(),
        kind: Topic::Events,
    };
    let report = |what: &str, read: u64, seconds: f64| {
        println!(
            "replay {what:<28} {read} records in {seconds:.1}s: {:.0} records/s",
            read as f64 / seconds.max(1e-9)
        );
    };
    let all = Window::default();
    let none = Filters::default();
    let jsonl = Sink::Jsonl {
        out: Box::new(std::io::BufWriter::new(std::io::sink())),
        canonical: false,
    };
    let s = run(&settings, &source, &all, &none, jsonl, false, |_| {}).await?;
    report("as JSON lines", s.read, s.seconds);
    let s = run(&settings, &source, &all, &none, Sink::Digest, false, |_| {}).await?;
    report("as a digest (audit)", s.read, s.seconds);
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("events.avro");
    let options = |format, out, into: Option<String>| ReplayOptions {
        source: source.clone(),
        window: Window::default(),
        filters: Filters::default(),
        format,
        out,
        canonical: false,
        into,
        into_bootstrap: None,
        rate: 0,
    };
    let s = replay(&settings, options(Format::Avro, Some(file.clone()), None)).await?;
    let size = std::fs::metadata(&file)?.len();
    report(
        &format!("to an Avro file ({} MB)", size / 1_000_000),
        s.read,
        s.seconds,
    );
    let copy = format!("{prefix}copy.scans.events");
    let s = replay(&settings, options(Format::Jsonl, None, Some(copy))).await?;
    report("--into a new topic", s.read, s.seconds);
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}
