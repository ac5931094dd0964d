//! Reading the raw records of offset ranges from Kafka.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use scanstream_platform::kafka::StatsContext;

use super::range::Span;

/// Records handed from the reading thread to the writer at once.
const BATCH: usize = 2048;

/// A record as read, before decoding.
#[derive(Debug, Clone)]
pub struct Raw {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub payload: Option<Vec<u8>>,
}

/// Reads `spans` of `topic` in order on the calling (blocking) thread, handing batches to
/// `send`; `read` counts records read. Stops early when `send` returns false.
pub fn read_spans(
    consumer: &BaseConsumer<StatsContext>,
    topic: &str,
    spans: &[Span],
    read: &AtomicU64,
    mut send: impl FnMut(Vec<Raw>) -> bool,
) -> anyhow::Result<()> {
    for span in spans.iter().filter(|s| s.start < s.end) {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, span.partition, Offset::Offset(span.start))?;
        consumer.assign(&list)?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut last_progress = Instant::now();
        loop {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    last_progress = Instant::now();
                    if m.offset() >= span.end {
                        break;
                    }
                    batch.push(Raw {
                        partition: m.partition(),
                        offset: m.offset(),
                        timestamp: m.timestamp().to_millis().unwrap_or(-1),
                        key: m.key().map(<[u8]>::to_vec),
                        headers: m
                            .headers()
                            .map(|h| {
                                h.iter()
                                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        payload: m.payload().map(<[u8]>::to_vec),
                    });
                    read.fetch_add(1, Ordering::Relaxed);
                    let done = m.offset() + 1 >= span.end;
                    if (batch.len() >= BATCH || done) && !send(std::mem::take(&mut batch)) {
                        return Ok(());
                    }
                    if done {
                        break;
                    }
                }
                Some(Err(e)) => bail!("reading {topic} failed: {e}"),
                None => {
                    // Only transaction markers or aborted records may be left: the position
                    // moves past them without a message.
                    let at = consumer.position().ok().and_then(|l| {
                        l.find_partition(topic, span.partition)
                            .and_then(|e| e.offset().to_raw())
                    });
                    if at.is_some_and(|o| o >= span.end) {
                        break;
                    }
                    if last_progress.elapsed() > Duration::from_secs(60) {
                        bail!(
                            "{topic} partition {} made no progress for 60 s at offset {at:?} (range ends at {})",
                            span.partition,
                            span.end
                        );
                    }
                }
            }
        }
        if !batch.is_empty() && !send(batch) {
            return Ok(());
        }
    }
    Ok(())
}
