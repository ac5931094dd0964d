//! Time and offset windows (`--from`, `--to`) and how they resolve to an offset range per
//! partition.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use scanstream_platform::kafka::{self, StatsContext};
use serde::Serialize;

use super::REQUEST_TIMEOUT;

/// One end of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// Milliseconds since the Unix epoch.
    Time(i64),
    /// The same offset in every partition.
    Offset(i64),
    /// Offsets per partition; partitions not named use the topic's own start or end.
    Offsets(BTreeMap<i32, i64>),
}

impl FromStr for Bound {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
            return Ok(Bound::Time(t.timestamp_millis()));
        }
        if let Ok(n) = text.parse::<i64>() {
            return if n >= 0 {
                Ok(Bound::Offset(n))
            } else {
                Err("an offset is not negative".to_owned())
            };
        }
        let mut offsets = BTreeMap::new();
        for part in text.split(',') {
            let (p, o) = part.split_once(':').ok_or_else(|| {
                format!(
                    "`{text}` is neither an RFC 3339 time (2026-11-21T10:00:00Z), an offset (1200) nor partition:offset pairs (0:1200,1:800)"
                )
            })?;
            let p: i32 = p
                .trim()
                .parse()
                .map_err(|_| format!("bad partition `{p}`"))?;
            let o: i64 = o.trim().parse().map_err(|_| format!("bad offset `{o}`"))?;
            if p < 0 || o < 0 {
                return Err("partitions and offsets are not negative".to_owned());
            }
            offsets.insert(p, o);
        }
        Ok(Bound::Offsets(offsets))
    }
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub from: Option<Bound>,
    pub to: Option<Bound>,
}

impl Window {
    pub(super) fn times(&self) -> (i64, i64) {
        let from = match self.from {
            Some(Bound::Time(t)) => t,
            _ => i64::MIN,
        };
        let to = match self.to {
            Some(Bound::Time(t)) => t,
            _ => i64::MAX,
        };
        (from, to)
    }
}

/// The offset range `[start, end)` of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// Resolves `window` to an offset range per partition.
pub fn plan(
    consumer: &BaseConsumer<StatsContext>,
    topic: &str,
    window: &Window,
) -> anyhow::Result<Vec<Span>> {
    let partitions = kafka::partitions(consumer.client(), topic, REQUEST_TIMEOUT)
        .with_context(|| format!("cannot read the metadata of {topic}"))?;
    if partitions.is_empty() {
        bail!("topic {topic} does not exist");
    }
    let times = |t: i64| -> anyhow::Result<BTreeMap<i32, Option<i64>>> {
        let mut wanted = TopicPartitionList::new();
        for &p in &partitions {
            wanted.add_partition_offset(topic, p, Offset::Offset(t))?;
        }
        let found = consumer
            .offsets_for_times(wanted, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot look up offsets of {topic} by time"))?;
        Ok(found
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => (e.partition(), Some(o)),
                _ => (e.partition(), None),
            })
            .collect())
    };
    let from_times = match &window.from {
        Some(Bound::Time(t)) => Some(times(*t)?),
        _ => None,
    };
    let to_times = match &window.to {
        Some(Bound::Time(t)) => Some(times(*t)?),
        _ => None,
    };
    let mut spans = Vec::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the offsets of {topic}"))?;
        let pick =
            |bound: &Option<Bound>, found: &Option<BTreeMap<i32, Option<i64>>>, default: i64| {
                match bound {
                    None => default,
                    // No record at or after the time: the partition's end.
                    Some(Bound::Time(_)) => found
                        .as_ref()
                        .and_then(|f| f.get(&p).copied().flatten())
                        .unwrap_or(high),
                    Some(Bound::Offset(o)) => *o,
                    Some(Bound::Offsets(map)) => map.get(&p).copied().unwrap_or(default),
                }
            };
        let start = pick(&window.from, &from_times, low).clamp(low, high);
        let end = pick(&window.to, &to_times, high).clamp(low, high);
        spans.push(Span {
            partition: p,
            start,
            end: end.max(start),
        });
    }
    Ok(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_times_offsets_and_partition_offsets() {
        assert_eq!(
            "2026-11-21T10:00:00Z".parse::<Bound>(),
            Ok(Bound::Time(1_795_255_200_000))
        );
        assert_eq!(
            "2026-11-21T11:00:00+01:00".parse::<Bound>(),
            Ok(Bound::Time(1_795_255_200_000))
        );
        assert_eq!("1200".parse::<Bound>(), Ok(Bound::Offset(1200)));
        assert_eq!(
            "0:5, 2:7".parse::<Bound>(),
            Ok(Bound::Offsets([(0, 5), (2, 7)].into_iter().collect()))
        );
        for bad in ["yesterday", "-3", "0:-1", "x:1", "2026-13-01T00:00:00Z"] {
            assert!(bad.parse::<Bound>().is_err(), "{bad}");
        }
    }
}
