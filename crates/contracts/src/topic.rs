//! Every topic scanstream owns, with its key, value schema and policy. Code names topics through
//! [`Topic`] and resolves the full name through [`TopicNames`]; a topic name never appears as a
//! string anywhere else.

use std::collections::BTreeMap;
use std::fmt;

use crate::schema::SchemaFile;

/// The topics of docs/topics.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// `scans.commands`: RequestScan/CancelScan, keyed by repository.
    Commands,
    /// `scans.events`: every fact of every job, keyed by job id; the audit source of truth.
    Events,
    /// `scans.findings`: findings for downstream consumers, keyed by job id.
    Findings,
    /// `scans.job-state`: the aggregator's compacted changelog, keyed by job id.
    JobState,
    /// `scans.schedules`: durable schedules, compacted, keyed by schedule name.
    Schedules,
    /// `scans.schedule-ticks`: the leading scheduler's record of each schedule's handled ticks,
    /// compacted, one partition, keyed by schedule name.
    ScheduleTicks,
    /// `scans.commands.dlq`: commands no scanner could process, original bytes plus error headers.
    CommandsDlq,
    /// `scans.sightings`: what each scan saw, keyed by repository; the inventory's input.
    Sightings,
    /// `scans.triage`: people's triage decisions, keyed by inventory item id; the audit trail.
    Triage,
    /// `scans.inventory`: the aggregator's compacted inventory changelog, keyed by item id.
    Inventory,
    /// `scans.notifications.dlq`: notifications a destination never accepted, keyed by item id.
    NotificationsDlq,
}

/// How long `scans.commands` keeps a command: long enough to survive a weekend outage.
const COMMANDS_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// How long findings and dead letters stay for downstream consumers that fell behind.
const FINDINGS_RETENTION_MS: i64 = 90 * 24 * 3600 * 1000;
const DLQ_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

impl Topic {
    pub const ALL: [Topic; 11] = [
        Topic::Commands,
        Topic::Events,
        Topic::Findings,
        Topic::JobState,
        Topic::Schedules,
        Topic::ScheduleTicks,
        Topic::CommandsDlq,
        Topic::Sightings,
        Topic::Triage,
        Topic::Inventory,
        Topic::NotificationsDlq,
    ];

    /// The name without any deployment prefix.
    pub const fn base_name(self) -> &'static str {
        match self {
            Topic::Commands => "scans.commands",
            Topic::Events => "scans.events",
            Topic::Findings => "scans.findings",
            Topic::JobState => "scans.job-state",
            Topic::Schedules => "scans.schedules",
            Topic::ScheduleTicks => "scans.schedule-ticks",
            Topic::CommandsDlq => "scans.commands.dlq",
            Topic::Sightings => "scans.sightings",
            Topic::Triage => "scans.triage",
            Topic::Inventory => "scans.inventory",
            Topic::NotificationsDlq => "scans.notifications.dlq",
        }
    }

    /// Parses a base name (`scans.events`) back into a topic.
    pub fn from_base_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.base_name() == name)
    }

    /// The value schema, or `None` for the DLQs (the original bytes; the notification's JSON).
    pub const fn value_schema(self) -> Option<SchemaFile> {
        match self {
            Topic::Commands => Some(SchemaFile::ScanCommand),
            Topic::Events => Some(SchemaFile::ScanEvent),
            Topic::Findings => Some(SchemaFile::Finding),
            Topic::JobState => Some(SchemaFile::JobState),
            Topic::Schedules => Some(SchemaFile::Schedule),
            Topic::ScheduleTicks => Some(SchemaFile::ScheduleTicks),
            Topic::CommandsDlq => None,
            Topic::Sightings => Some(SchemaFile::Sighting),
            Topic::Triage => Some(SchemaFile::TriageDecision),
            Topic::Inventory => Some(SchemaFile::InventoryItem),
            Topic::NotificationsDlq => None,
        }
    }

    /// The topic's creation spec for a deployment that uses `partitions` partitions per data
    /// topic and `replication_factor` replicas.
    pub fn spec(self, partitions: i32, replication_factor: i32) -> TopicSpec {
        let (cleanup, retention_ms) = match self {
            Topic::Commands => ("delete", Some(COMMANDS_RETENTION_MS)),
            // The audit sources of truth: kept until an operator decides otherwise.
            Topic::Events | Topic::Sightings | Topic::Triage => ("delete", Some(-1)),
            Topic::Findings => ("delete", Some(FINDINGS_RETENTION_MS)),
            Topic::CommandsDlq | Topic::NotificationsDlq => ("delete", Some(DLQ_RETENTION_MS)),
            Topic::JobState | Topic::Schedules | Topic::ScheduleTicks | Topic::Inventory => {
                ("compact", None)
            }
        };
        // One partition makes the schedules a total order that a single scheduler reads, and
        // makes partition 0 of scans.schedules the scheduler's leadership (docs/topics.md).
        let partitions = if matches!(self, Topic::Schedules | Topic::ScheduleTicks) {
            1
        } else {
            partitions
        };
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_owned(), cleanup.to_owned());
        if let Some(ms) = retention_ms {
            configs.insert("retention.ms".to_owned(), ms.to_string());
        }
        // With three or more replicas, an acks=all write must reach two of them; below that
        // (development, kind) the broker could never accept a write if this were higher.
        let min_isr = if replication_factor >= 3 { 2 } else { 1 };
        configs.insert("min.insync.replicas".to_owned(), min_isr.to_string());
        TopicSpec {
            topic: self,
            partitions,
            replication_factor,
            configs,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base_name())
    }
}

/// What `topics ensure` creates for one topic and checks for drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub topic: Topic,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic-level configs scanstream owns; other configs on the topic are left alone.
    pub configs: BTreeMap<String, String>,
}

/// Full topic names for one deployment. A prefix lets several deployments (or tests) share a
/// cluster without seeing each other's records; the empty prefix gives the names of docs/topics.md.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicNames {
    prefix: String,
}

impl TopicNames {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn name(&self, topic: Topic) -> String {
        format!("{}{}", self.prefix, topic.base_name())
    }

    /// The topic a full name refers to in this deployment, if any.
    pub fn topic_of(&self, name: &str) -> Option<Topic> {
        name.strip_prefix(&self.prefix)
            .and_then(Topic::from_base_name)
    }

    /// The registry subject of the topic's value schema (TopicNameStrategy).
    pub fn value_subject(&self, topic: Topic) -> String {
        format!("{}-value", self.name(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_the_prefix() {
        let names = TopicNames::new("t42.");
        for topic in Topic::ALL {
            assert_eq!(names.topic_of(&names.name(topic)), Some(topic));
        }
        assert_eq!(names.topic_of("scans.events"), None);
        assert_eq!(names.value_subject(Topic::Events), "t42.scans.events-value");
    }

    #[test]
    fn changelog_schedules_and_ticks_are_compacted_and_the_rest_deletes() {
        for topic in Topic::ALL {
            let spec = topic.spec(6, 3);
            let compacted = matches!(
                topic,
                Topic::JobState | Topic::Schedules | Topic::ScheduleTicks | Topic::Inventory
            );
            let policy = spec.configs.get("cleanup.policy").map(String::as_str);
            assert_eq!(policy, Some(if compacted { "compact" } else { "delete" }));
            assert_eq!(spec.configs.contains_key("retention.ms"), !compacted);
        }
        assert_eq!(Topic::Schedules.spec(6, 1).partitions, 1);
        assert_eq!(Topic::Events.spec(6, 1).partitions, 6);
        assert_eq!(Topic::Events.spec(6, 1).configs["min.insync.replicas"], "1");
        assert_eq!(Topic::Events.spec(6, 3).configs["min.insync.replicas"], "2");
    }
}
