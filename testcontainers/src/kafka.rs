//! The Kafka side of a test's [`TestScope`]: the set-up every integration test of the workspace
//! shares, in one place.
//!
//! - [`TestScope::settings`]: `scanstream_platform::Settings` pointed at the scope (its cluster,
//!   registry and topic prefix), plus a test's own TOML and overrides.
//! - [`TestScope::env`]: the same settings as `SCANSTREAM__…` variables, for a `scanstream`
//!   child process.
//! - [`ensure_topics`]: every scanstream topic of a [`Settings`], created as a deployment would.
//! - [`TestScope::codec`]: a codec on the scope's registry subjects.
//! - [`TestScope::reader`] ([`TopicReader`]): what landed on a topic (partitions, high
//!   watermarks, every committed record), and [`header`] to look into a record.
//!
//! ```ignore
//! let scope = TestScope::new("my-test");
//! let settings = scope.settings("[api]\nauth_enabled = false\n", &[("topics.partitions", "2")]);
//! ensure_topics(&settings).await;
//! let codec = scope.codec();
//! let commands = scope.reader().read_all(Topic::Commands);
//! ```
//!
//! Everything here is test set-up and panics when it fails: a test cannot go on without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use scanstream_contracts::{Codec, RegistryConfig, Topic, TopicNames};
use scanstream_platform::Settings;
use scanstream_platform::config::{ENV_PREFIX, Sources};
use scanstream_platform::kafka::KafkaFactory;

use crate::TestScope;

/// How long a metadata or watermark request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

impl TestScope {
    /// Settings for this scope: its broker and registry, its topic prefix, replication factor 1,
    /// `api.listen` on a free loopback port and no librdkafka statistics; then `toml` (a settings
    /// file's text, may be empty) and `overrides` (dotted keys such as `topics.partitions`, set
    /// last; they win over the scope's own values and over `toml`). The process environment is
    /// not read.
    pub fn settings(&self, toml: &str, overrides: &[(&str, &str)]) -> Settings {
        // `Settings::load` takes files only; the file is read during the load.
        let file = (!toml.is_empty()).then(|| {
            let file = tempfile::NamedTempFile::new().expect("a temporary settings file");
            std::fs::write(file.path(), toml).expect("writing the temporary settings file");
            file
        });
        Settings::load(Sources {
            files: file.iter().map(|f| f.path()).collect(),
            env: Some(BTreeMap::new()),
            overrides: self.layered(overrides),
        })
        .expect("test settings")
    }

    /// The settings of [`TestScope::settings`] (without a TOML layer) as environment variables
    /// for a `scanstream` process: `topics.partitions` becomes `SCANSTREAM__TOPICS__PARTITIONS`.
    pub fn env(&self, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        self.layered(overrides)
            .into_iter()
            .map(|(key, value)| {
                let key = key.to_uppercase().replace('.', "__");
                (format!("{ENV_PREFIX}__{key}"), value)
            })
            .collect()
    }

    /// The scope's own settings, then `overrides` (replacing a key the scope sets).
    fn layered(&self, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut layered: Vec<(String, String)> = [
            (
                "kafka.bootstrap_servers",
                self.endpoints.bootstrap_servers.as_str(),
            ),
            ("kafka.statistics_interval_ms", "0"),
            ("registry.url", self.endpoints.registry_url.as_str()),
            ("topics.prefix", self.topic_prefix.as_str()),
            ("topics.replication_factor", "1"),
            ("api.listen", "127.0.0.1:0"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        for (key, value) in overrides {
            layered.retain(|(k, _)| k.as_str() != *key);
            layered.push(((*key).to_owned(), (*value).to_owned()));
        }
        layered
    }

    /// The full topic names of this scope.
    pub fn names(&self) -> TopicNames {
        TopicNames::new(self.topic_prefix.clone())
    }

    /// A codec for the scope's registry, naming subjects after its topic prefix (what
    /// `scanstream_platform::registry::codec` builds for [`TestScope::settings`]).
    pub fn codec(&self) -> Codec {
        Codec::new(
            RegistryConfig {
                url: self.endpoints.registry_url.clone(),
                username: None,
                password: None,
                timeout: Duration::from_secs(10),
            },
            self.names(),
        )
        .expect("a codec for the test registry")
    }

    /// A reader of the scope's topics.
    pub fn reader(&self) -> TopicReader {
        TopicReader {
            bootstrap_servers: self.endpoints.bootstrap_servers.clone(),
            names: self.names(),
            group_id: self.group_id.clone(),
        }
    }
}

/// Creates every scanstream topic of `settings` (its prefix, partitions and replication factor)
/// that is missing, as `scanstream topics ensure` would.
pub async fn ensure_topics(settings: &Settings) {
    let admin = KafkaFactory::new(settings.kafka.clone())
        .admin()
        .expect("a Kafka admin client");
    let names = TopicNames::new(settings.topics.prefix.clone());
    scanstream_platform::topics::ensure(&admin, &names, &settings.topics, Duration::from_secs(30))
        .await
        .expect("creating the test's topics");
}

/// Reads what landed on a scope's topics, as a `read_committed` consumer sees it. Every call
/// uses a fresh consumer.
#[derive(Debug, Clone)]
pub struct TopicReader {
    bootstrap_servers: String,
    names: TopicNames,
    group_id: String,
}

impl TopicReader {
    /// The full name of `topic`.
    pub fn name(&self, topic: Topic) -> String {
        self.names.name(topic)
    }

    /// The partitions of `topic` (`scans.schedules` has one, the data topics
    /// `topics.partitions`).
    pub fn partitions(&self, topic: Topic) -> Vec<i32> {
        partitions(&self.consumer(), &self.name(topic))
    }

    /// The sum of the high watermarks of `topic`: unchanged means nothing was written.
    pub fn watermark(&self, topic: Topic) -> i64 {
        let consumer = self.watermark_consumer();
        let name = self.name(topic);
        partitions(&consumer, &name)
            .into_iter()
            .map(|p| consumer.fetch_watermarks(&name, p, TIMEOUT).unwrap().1)
            .sum()
    }

    /// Every committed record of `topic`, partition by partition up to the high watermarks of
    /// when it was called (for at most 15 s).
    pub fn read_all(&self, topic: Topic) -> Vec<OwnedMessage> {
        let consumer = self.consumer();
        let watermarks = self.watermark_consumer();
        let name = self.name(topic);
        let mut list = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for p in partitions(&consumer, &name) {
            list.add_partition_offset(&name, p, Offset::Beginning)
                .unwrap();
            // The high watermark, not the last stable offset: a transaction committed just
            // before (its markers not written yet) is waited for, not read as nothing.
            let (_, high) = watermarks.fetch_watermarks(&name, p, TIMEOUT).unwrap();
            ends.insert(p, high);
        }
        consumer.assign(&list).unwrap();
        let done = |consumer: &BaseConsumer| -> bool {
            let Ok(position) = consumer.position() else {
                return false;
            };
            ends.iter().all(|(p, end)| {
                *end == 0
                    || position
                        .find_partition(&name, *p)
                        .and_then(|e| e.offset().to_raw())
                        .is_some_and(|o| o >= *end)
            })
        };
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done(&consumer) && Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                out.push(message.detach());
            }
        }
        out
    }

    /// The committed records of `topic` from the start, read by a group consumer of its own
    /// until `until` holds of them or `timeout` passed: for topics still being written.
    pub async fn read_until(
        &self,
        topic: Topic,
        until: impl Fn(&[OwnedMessage]) -> bool,
        timeout: Duration,
    ) -> Vec<OwnedMessage> {
        let group = format!("{}-read-{}", self.group_id, uuid::Uuid::new_v4().simple());
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let name = self.name(topic);
        consumer.subscribe(&[&name]).unwrap();
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while !until(&out) && Instant::now() < deadline {
            if let Ok(Ok(m)) =
                tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await
            {
                out.push(m.detach());
            }
        }
        out
    }

    /// For high watermarks: a read_committed consumer's offset queries answer the last stable
    /// offset, which lags a commit until its markers are written.
    fn watermark_consumer(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", "unused")
            .set("isolation.level", "read_uncommitted")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap()
    }

    fn consumer(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", "unused")
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap()
    }
}

fn partitions(consumer: &BaseConsumer, name: &str) -> Vec<i32> {
    let metadata = consumer.fetch_metadata(Some(name), TIMEOUT).unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect()
}

/// The value of the header `name` of `message`, if it has one.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
}
