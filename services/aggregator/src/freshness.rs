//! Read-your-writes for `GET /jobs/{uuid}`: a client that follows the `Location` of a `202`
//! asks for a job whose `JobSubmitted` ingest committed a moment ago, before the fold has
//! reached it. Rather than answer `404` for a job that exists, the read waits, bounded, until
//! the fold has caught up with what scans.events held when the read began.
//!
//! Caught up means: the aggregator group's committed offsets reach the end of every partition of
//! scans.events (a fold commits its offsets with its changelog records), and this instance's
//! changelog follower has read every partition of the changelog to its end, so the store holds
//! what the fold wrote. A partition's last offset may be a transaction marker, never delivered
//! or committed past, so a committed offset one short of the end counts; because the record at
//! that offset may also be a write whose marker is not there yet, caught up must hold twice,
//! [`CONFIRM`] apart, before a job is reported missing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use scanstream_contracts::{JobId, Topic, TopicNames};
use scanstream_platform::kafka::{ClientRole, KafkaError, KafkaFactory, StatsContext, partitions};

use crate::changelog::Progress;
use crate::store::{Store, Table};

/// How long a read of a job the store lacks waits for the fold at most.
pub const WAIT: Duration = Duration::from_secs(2);
/// How far apart the two caught-up observations are.
const CONFIRM: Duration = Duration::from_millis(100);
/// Pause between observations while the fold is behind.
const POLL: Duration = Duration::from_millis(20);
/// Reads that may wait at once; more answer from the store as it is. Each waiting read holds a
/// blocking thread and asks the broker for offsets, so unknown ids sent in bulk must not
/// multiply that.
const WAITERS: usize = 8;

/// What a missing job's read consults: the ends of the topics and the fold's offsets.
pub struct Freshness {
    waiters: Arc<tokio::sync::Semaphore>,
    probe: StreamConsumer<StatsContext>,
    events: String,
    changelog: String,
    progress: Arc<Progress>,
    store: Arc<Store>,
    timeout: Duration,
}

impl Freshness {
    /// `group_id` is the aggregator group's: its committed offsets are the fold's.
    pub fn new(
        factory: &KafkaFactory,
        names: &TopicNames,
        group_id: &str,
        progress: Arc<Progress>,
        store: Arc<Store>,
    ) -> Result<Freshness, KafkaError> {
        Ok(Freshness {
            waiters: Arc::new(tokio::sync::Semaphore::new(WAITERS)),
            probe: factory.offset_probe(ClientRole::Aggregator, group_id)?,
            events: names.name(Topic::Events),
            changelog: names.name(Topic::JobState),
            progress,
            store,
            timeout: factory.request_timeout(),
        })
    }

    /// The stored value of `job`, waiting up to [`WAIT`] for the fold when the store lacks it
    /// and the fold is behind (unless [`WAITERS`] reads wait already).
    pub async fn read(self: &Arc<Self>, job: JobId) -> Result<Option<Vec<u8>>, FreshnessError> {
        let this = self.clone();
        let permit = self.waiters.clone().try_acquire_owned().ok();
        // The permit is held while the read waits, and released with its thread's work.
        tokio::task::spawn_blocking(move || match permit {
            Some(_permit) => this.stored(job),
            None => Ok(this
                .store
                .get(Table::Jobs, job.0.as_u128())?
                .map(|s| s.value)),
        })
        .await
        .map_err(|_| FreshnessError::Stopped)?
    }

    /// [`Freshness::read`] on a blocking thread, with its permit.
    fn stored(&self, job: JobId) -> Result<Option<Vec<u8>>, FreshnessError> {
        let deadline = Instant::now() + WAIT;
        let mut confirmed = false;
        loop {
            if let Some(stored) = self.store.get(Table::Jobs, job.0.as_u128())? {
                return Ok(Some(stored.value));
            }
            if Instant::now() >= deadline {
                tracing::debug!(job = %job, "the fold did not catch up in time");
                return Ok(None);
            }
            if self.caught_up()? {
                if confirmed {
                    return Ok(None);
                }
                confirmed = true;
                std::thread::sleep(CONFIRM);
            } else {
                confirmed = false;
                std::thread::sleep(POLL);
            }
        }
    }

    /// Whether the fold has committed every partition of scans.events to its end and the store
    /// holds the changelog to its end.
    fn caught_up(&self) -> Result<bool, FreshnessError> {
        let ids = partitions(self.probe.client(), &self.events, self.timeout)?;
        let mut list = TopicPartitionList::new();
        for p in &ids {
            list.add_partition(&self.events, *p);
        }
        let committed = self.probe.committed_offsets(list, self.timeout)?;
        for p in ids {
            let (_, high) = self.probe.fetch_watermarks(&self.events, p, self.timeout)?;
            let folded = committed
                .find_partition(&self.events, p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(0);
            if folded + 1 < high {
                return Ok(false);
            }
        }
        for p in partitions(self.probe.client(), &self.changelog, self.timeout)? {
            let (_, high) = self
                .probe
                .fetch_watermarks(&self.changelog, p, self.timeout)?;
            let read = self.progress.position(p).unwrap_or(0);
            if read < high && self.store.checkpoint(Table::Jobs, p)?.unwrap_or(0) < high {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FreshnessError {
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the read was stopped")]
    Stopped,
}
