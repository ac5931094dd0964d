//! Where selected records go: a JSON lines or Avro file, another topic (`--into`) or only the
//! digest.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use scanstream_platform::kafka::StatsContext;

use super::avro::container_value;
use super::decode::Replayed;
use super::json::json_line;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON document per line.
    Jsonl,
    /// An Avro object container file.
    Avro,
}

/// Where selected records go.
pub enum Sink {
    Jsonl {
        out: Box<dyn Write + Send>,
        canonical: bool,
    },
    Avro {
        writer: Box<apache_avro::Writer<'static, Box<dyn Write + Send>>>,
    },
    Into {
        producer: FutureProducer<StatsContext>,
        topic: String,
        keep_partitions: bool,
        /// Records per second; 0 is unlimited.
        rate: u64,
        started: Instant,
        sent: u64,
        pending: Vec<rdkafka::producer::DeliveryFuture>,
    },
    /// Only counted and digested (audit).
    Digest,
}

pub(super) async fn write(
    sink: &mut Sink,
    topic: &str,
    record: &Replayed,
    canonical: &str,
) -> anyhow::Result<()> {
    match sink {
        Sink::Jsonl { out, canonical: c } => {
            if *c {
                out.write_all(canonical.as_bytes())?;
            } else {
                out.write_all(json_line(topic, record, false).as_bytes())?;
            }
            out.write_all(b"\n")?;
        }
        Sink::Avro { writer } => {
            writer
                .append_value(container_value(topic, record))
                .context("cannot write the Avro record")?;
        }
        Sink::Into {
            producer,
            topic: target,
            keep_partitions,
            rate,
            started,
            sent,
            pending,
        } => {
            if *rate > 0 {
                // Never ahead of `rate` records per second since the start.
                let due = Duration::from_secs_f64(*sent as f64 / *rate as f64);
                let elapsed = started.elapsed();
                if due > elapsed {
                    tokio::time::sleep(due - elapsed).await;
                }
            }
            let raw = &record.raw;
            let mut headers = OwnedHeaders::new();
            for (key, value) in &raw.headers {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
            let mut out = FutureRecord::<[u8], [u8]>::to(target)
                .headers(headers)
                .timestamp(raw.timestamp);
            if let Some(k) = &raw.key {
                out = out.key(k.as_slice());
            }
            if let Some(p) = &raw.payload {
                out = out.payload(p.as_slice());
            }
            if *keep_partitions {
                out = out.partition(raw.partition);
            }
            loop {
                match producer.send_result(out) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        back,
                    )) => {
                        out = back;
                        settle(pending).await?;
                    }
                    Err((e, _)) => bail!("cannot produce to {target}: {e}"),
                }
            }
            *sent += 1;
            if pending.len() >= 10_000 {
                settle(pending).await?;
            }
        }
        Sink::Digest => {}
    }
    Ok(())
}

async fn settle(pending: &mut Vec<rdkafka::producer::DeliveryFuture>) -> anyhow::Result<()> {
    for delivery in pending.drain(..) {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => bail!("a record was not delivered: {e}"),
            Err(_) => bail!("a delivery report was lost"),
        }
    }
    Ok(())
}

pub(super) async fn finish(sink: Sink) -> anyhow::Result<()> {
    match sink {
        Sink::Jsonl { mut out, .. } => out.flush()?,
        Sink::Avro { writer } => {
            let mut out = writer.into_inner().context("cannot finish the Avro file")?;
            out.flush()?;
        }
        Sink::Into { mut pending, .. } => settle(&mut pending).await?,
        Sink::Digest => {}
    }
    Ok(())
}
