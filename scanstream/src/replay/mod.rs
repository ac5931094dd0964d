//! `scanstream replay`: any scanstream topic read by time or offset range, decoded, filtered and
//! written as JSON lines or an Avro object container file, or re-driven into another topic.
//!
//! # Ranges
//! `--from` is inclusive and `--to` exclusive. A time (RFC 3339) is resolved per partition with
//! the broker's offsets-for-times: the range of a partition starts at its first record whose
//! timestamp is at or after `--from` and ends before its first record whose timestamp is at or
//! after `--to`; of that offset range only records whose own timestamp lies in
//! `[from, to)` are kept (this only matters for out-of-order producer timestamps). An offset
//! (`N` for every partition, or `P:N,P:N`) is used as given. Without `--to` the range ends at
//! the end each partition had when the replay started. Records are read `read_committed`,
//! partition by partition in offset order, so the same range always gives the same output.
//!
//! # Layout
//! - `range.rs`: [`Bound`], [`Window`] and [`plan`], which resolves a window to a [`Span`] of
//!   offsets per partition.
//! - `source.rs`: [`Source`], which topic is read and which records it holds.
//! - `read.rs`: [`read_spans`], reading the [`Raw`] records of the spans.
//! - `decode.rs`: [`decode()`] into [`Decoded`] values and [`Replayed`] records.
//! - `filter.rs`: [`Filters`], the job, repository and event type filters.
//! - `json.rs`: [`json_line`], the JSON lines and their canonical form.
//! - `avro.rs`: [`container_schema`] and the records of Avro container files.
//! - `sink.rs`: [`Format`] and [`Sink`], where selected records are written.
//! - `redrive.rs`: [`prepare_target`] and [`into_producer`] for `--into`.
//! - `pipeline.rs`: [`run`], one replay from the ranges to the [`Summary`].
//! - `mod.rs`: [`ReplayOptions`] and [`replay`], the `scanstream replay` command.

mod avro;
mod decode;
mod filter;
mod json;
mod pipeline;
mod range;
mod read;
mod redrive;
mod sink;
mod source;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::Consumer;
use scanstream_platform::Settings;
use scanstream_platform::kafka::{self, ClientRole, KafkaFactory};

pub use avro::container_schema;
pub use decode::{Decoded, Replayed, decode};
pub use filter::Filters;
pub use json::json_line;
pub use pipeline::{Summary, run};
pub use range::{Bound, Span, Window, plan};
pub use read::{Raw, read_spans};
pub use redrive::{into_producer, prepare_target};
pub use sink::{Format, Sink};
pub use source::Source;

/// How long metadata and offset requests may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The options of `scanstream replay`.
pub struct ReplayOptions {
    pub source: Source,
    pub window: Window,
    pub filters: Filters,
    pub format: Format,
    pub out: Option<PathBuf>,
    pub canonical: bool,
    pub into: Option<String>,
    pub into_bootstrap: Option<String>,
    pub rate: u64,
}

/// `scanstream replay`.
pub async fn replay(settings: &Settings, options: ReplayOptions) -> anyhow::Result<Summary> {
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = || -> anyhow::Result<Box<dyn Write + Send>> {
        Ok(match &options.out {
            Some(path) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout())),
        })
    };
    let sink = match (&options.into, options.format) {
        (Some(target), _) => {
            let keep = {
                // Count partitions of the source to create the target alike.
                let consumer = KafkaFactory::new(settings.kafka.clone()).base_consumer(
                    ClientRole::Cli,
                    &format!(
                        "{}replay-metadata",
                        scanstream_platform::access::operator_group_prefix(settings)
                    ),
                )?;
                let name = options.source.name.clone();
                let partitions = tokio::task::spawn_blocking(move || {
                    kafka::partitions(consumer.client(), &name, REQUEST_TIMEOUT).map(|p| p.len())
                })
                .await??;
                if partitions == 0 {
                    bail!("topic {} does not exist", options.source.name);
                }
                prepare_target(
                    settings,
                    options.into_bootstrap.as_deref(),
                    &options.source,
                    partitions,
                    target,
                )
                .await?
            };
            Sink::Into {
                producer: into_producer(settings, options.into_bootstrap.as_deref())?,
                topic: target.clone(),
                keep_partitions: keep,
                rate: options.rate,
                started: Instant::now(),
                sent: 0,
                pending: Vec::new(),
            }
        }
        (None, Format::Jsonl) => Sink::Jsonl {
            out: output()?,
            canonical: options.canonical,
        },
        (None, Format::Avro) => {
            let schema = Box::leak(Box::new(container_schema(options.source.kind)?));
            Sink::Avro {
                writer: Box::new(apache_avro::Writer::with_codec(
                    schema,
                    output()?,
                    apache_avro::Codec::Deflate(Default::default()),
                )?),
            }
        }
    };
    run(
        settings,
        &options.source,
        &options.window,
        &options.filters,
        sink,
        progress,
        |_| {},
    )
    .await
}
