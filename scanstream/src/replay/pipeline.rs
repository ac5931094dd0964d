//! One replay from start to end: plan the ranges, read them on a blocking thread, decode, filter,
//! digest and write each record, and show progress.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use scanstream_platform::Settings;
use scanstream_platform::kafka::{ClientRole, KafkaFactory};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::decode::{Replayed, decode};
use super::filter::Filters;
use super::json::json_line;
use super::range::{Span, Window, plan};
use super::read::{Raw, read_spans};
use super::sink::{Sink, finish, write};
use super::source::Source;

/// Positions of undecodable records kept in a [`Summary`] (all are counted).
pub const MAX_POSITIONS: usize = 1000;

/// What a replay did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub topic: String,
    pub spans: Vec<Span>,
    pub read: u64,
    pub selected: u64,
    /// Records skipped because their value could not be decoded (each is reported on stderr).
    pub undecodable: u64,
    /// Where the first [`MAX_POSITIONS`] of them are: (partition, offset).
    pub undecodable_at: Vec<(i32, i64)>,
    pub seconds: f64,
    /// SHA-256 over the canonical JSON lines (each followed by a newline) of the selected records.
    pub sha256: String,
}

/// Replays `source` over `window` through `filters` into `sink`; `progress` shows a bar on a
/// terminal. `each` sees every selected record (audit folds with it).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    settings: &Settings,
    source: &Source,
    window: &Window,
    filters: &Filters,
    mut sink: Sink,
    progress: bool,
    mut each: impl FnMut(&Replayed),
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let codec = scanstream_platform::registry::codec(settings)?;
    let factory = KafkaFactory::new(settings.kafka.clone());
    let group = format!(
        "{}replay-{}",
        scanstream_platform::access::operator_group_prefix(settings),
        uuid::Uuid::new_v4().simple()
    );
    let consumer = factory
        .base_consumer(ClientRole::Cli, &group)
        .context("cannot create a Kafka consumer")?;
    let (topic, range) = (source.name.clone(), window.clone());
    let (consumer, spans) = tokio::task::spawn_blocking(move || {
        let spans = plan(&consumer, &topic, &range);
        (consumer, spans)
    })
    .await?;
    let spans = spans?;
    let total: i64 = spans.iter().map(|s| s.end - s.start).sum();
    let bar = progress.then(|| progress_bar(u64::try_from(total).unwrap_or(0)));
    let read = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Raw>>(8);
    let reader = {
        let (topic, spans, read) = (source.name.clone(), spans.clone(), read.clone());
        tokio::task::spawn_blocking(move || {
            read_spans(&consumer, &topic, &spans, &read, |batch| {
                tx.blocking_send(batch).is_ok()
            })
        })
    };
    let (from_ms, to_ms) = window.times();
    let mut digest = Sha256::new();
    let mut selected = 0u64;
    let mut undecodable = 0u64;
    let mut undecodable_at = Vec::new();
    while let Some(batch) = rx.recv().await {
        for raw in batch {
            if raw.timestamp < from_ms || raw.timestamp >= to_ms {
                continue;
            }
            let (partition, offset) = (raw.partition, raw.offset);
            let record = match decode(&codec, source.kind, raw).await {
                Ok(record) => record,
                Err(e) => {
                    undecodable += 1;
                    if undecodable_at.len() < MAX_POSITIONS {
                        undecodable_at.push((partition, offset));
                    }
                    eprintln!(
                        "warning: {} partition {partition} offset {offset} skipped: {e:#}",
                        source.name
                    );
                    continue;
                }
            };
            let key = record
                .raw
                .key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok());
            if !filters.is_empty() && !filters.keep(source.kind, key, record.value.as_ref()) {
                continue;
            }
            selected += 1;
            let canonical = json_line(&source.name, &record, true);
            digest.update(canonical.as_bytes());
            digest.update(b"\n");
            write(&mut sink, &source.name, &record, &canonical).await?;
            each(&record);
        }
        if let Some(bar) = &bar {
            bar.set_position(read.load(Ordering::Relaxed));
        }
    }
    reader.await??;
    finish(sink).await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(Summary {
        topic: source.name.clone(),
        spans,
        read: read.load(Ordering::Relaxed),
        selected,
        undecodable,
        undecodable_at,
        seconds: started.elapsed().as_secs_f64(),
        sha256: hex::encode(digest.finalize()),
    })
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} records  {per_sec}  ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}
