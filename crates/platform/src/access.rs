//! Who may do what on Kafka, declared once: each role's topics, consumer groups, transactional
//! ids and cluster operations. The roles build their group and transactional ids with the
//! functions here; [`principals`] lists what each one needs for a deployment's settings, and
//! [`strimzi_users`] renders it as Strimzi `KafkaUser` resources (`scanstream acls render
//! --strimzi`, committed as `strimzi/users.yaml`; a test fails when the file drifts).
//!
//! Read on a group includes Describe; Write on a topic or transactional id is what a
//! transactional producer needs with Describe; Kafka 3+ needs no IdempotentWrite.

use scanstream_contracts::{Topic, TopicNames};

use crate::Settings;

/// An ACL operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    Write,
    Describe,
    DescribeConfigs,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Describe => "Describe",
            Operation::DescribeConfigs => "DescribeConfigs",
        }
    }
}

/// What an ACL applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Topic(String),
    Group(String),
    TransactionalId(String),
    Cluster,
}

/// Whether a resource name is the name or a prefix of names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Literal,
    Prefix,
}

/// One ACL: operations allowed on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub resource: Resource,
    pub pattern: Pattern,
    pub operations: &'static [Operation],
}

/// A Kafka user and everything it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's name after `scanstream-` (the role: `ingest`, `scanner`, …).
    pub name: &'static str,
    /// What the user is for, one line.
    pub about: &'static str,
    pub grants: Vec<Grant>,
}

use Operation::{Describe, DescribeConfigs, Read, Write};

const PRODUCE: &[Operation] = &[Write, Describe];
const CONSUME: &[Operation] = &[Read, Describe];
const BOTH: &[Operation] = &[Read, Write, Describe];
const GROUP: &[Operation] = &[Read];

/// A consumer group id of the deployment: the configured id under `topics.prefix`.
pub fn group_id(settings: &Settings, configured: &str) -> String {
    format!("{}{configured}", settings.topics.prefix)
}

/// The group id of the scanner's watcher of cancellations, beside its group `scanner_group`.
pub fn cancel_watch_group(scanner_group: &str) -> String {
    format!("{scanner_group}-cancel-watch")
}

/// The group id of the aggregator's changelog follower, beside its group `aggregator_group`.
pub fn changelog_group(aggregator_group: &str) -> String {
    format!("{aggregator_group}-changelog")
}

/// The group id of the aggregator's inventory fold (`scans.sightings` and `scans.triage`),
/// beside its group `aggregator_group`.
pub fn inventory_group(aggregator_group: &str) -> String {
    format!("{aggregator_group}-inventory")
}

/// The group id of a follower of a compacted topic ([`crate::tail`]), by the topic's full name.
pub fn tail_group(topic: &str) -> String {
    format!("{topic}.tail")
}

/// The start of every transactional id ingest uses (its writers and schedule creations).
pub fn ingest_transactional_prefix(settings: &Settings) -> String {
    format!(
        "{}{}-ingest-",
        settings.topics.prefix, settings.kafka.client_id
    )
}

/// The start of the aggregators' transactional ids (one per instance).
pub fn aggregator_transactional_prefix(settings: &Settings) -> String {
    format!(
        "{}{}-aggregator-",
        settings.topics.prefix, settings.kafka.client_id
    )
}

/// The one transactional id every scheduler shares (a new leader fences the old one).
pub fn scheduler_transactional_id(settings: &Settings) -> String {
    format!(
        "{}{}-scheduler",
        settings.topics.prefix, settings.kafka.client_id
    )
}

/// The start of the group ids operators' commands (replay, audit metadata reads) use.
pub fn operator_group_prefix(settings: &Settings) -> String {
    format!("{}scanstream-", settings.topics.prefix)
}

fn topic(names: &TopicNames, topic: Topic, operations: &'static [Operation]) -> Grant {
    Grant {
        resource: Resource::Topic(names.name(topic)),
        pattern: Pattern::Literal,
        operations,
    }
}

fn literal(resource: Resource, operations: &'static [Operation]) -> Grant {
    Grant {
        resource,
        pattern: Pattern::Literal,
        operations,
    }
}

fn prefix(resource: Resource, operations: &'static [Operation]) -> Grant {
    Grant {
        resource,
        pattern: Pattern::Prefix,
        operations,
    }
}

/// Every principal a deployment with `settings` needs, with its grants.
pub fn principals(settings: &Settings) -> Vec<Principal> {
    let names = TopicNames::new(settings.topics.prefix.clone());
    let tail = |t: Topic| literal(Resource::Group(tail_group(&names.name(t))), GROUP);
    let scanner_group = group_id(settings, &settings.scanner.group_id);
    let aggregator_group = group_id(settings, &settings.aggregator.group_id);
    vec![
        Principal {
            name: "ingest",
            about: "the REST API. Writes scan commands and events and the schedules transactionally; follows scans.schedules for reads.",
            grants: vec![
                topic(&names, Topic::Commands, PRODUCE),
                topic(&names, Topic::Events, PRODUCE),
                topic(&names, Topic::Schedules, BOTH),
                tail(Topic::Schedules),
                prefix(
                    Resource::TransactionalId(ingest_transactional_prefix(settings)),
                    PRODUCE,
                ),
            ],
        },
        Principal {
            name: "scanner",
            about: "consumes commands in its group, writes events, findings, sightings and dead letters (not transactional).",
            grants: vec![
                topic(&names, Topic::Commands, CONSUME),
                topic(&names, Topic::Events, PRODUCE),
                topic(&names, Topic::Findings, PRODUCE),
                topic(&names, Topic::Sightings, PRODUCE),
                topic(&names, Topic::CommandsDlq, PRODUCE),
                literal(Resource::Group(scanner_group.clone()), GROUP),
                literal(Resource::Group(cancel_watch_group(&scanner_group)), GROUP),
            ],
        },
        Principal {
            name: "aggregator",
            about: "folds events into job state and sightings and triage decisions into the inventory, each changelog written with its consumed offsets in one transaction; writes the triage decisions its API accepts.",
            grants: vec![
                topic(&names, Topic::Events, CONSUME),
                topic(&names, Topic::JobState, BOTH),
                topic(&names, Topic::Schedules, CONSUME),
                topic(&names, Topic::Sightings, CONSUME),
                topic(&names, Topic::Triage, BOTH),
                topic(&names, Topic::Inventory, BOTH),
                literal(Resource::Group(aggregator_group.clone()), GROUP),
                literal(Resource::Group(changelog_group(&aggregator_group)), GROUP),
                literal(Resource::Group(inventory_group(&aggregator_group)), GROUP),
                tail(Topic::Schedules),
                prefix(
                    Resource::TransactionalId(aggregator_transactional_prefix(settings)),
                    PRODUCE,
                ),
            ],
        },
        Principal {
            name: "scheduler",
            about: "the group that elects the leader, and the one transactional id every scheduler shares.",
            grants: vec![
                topic(&names, Topic::Schedules, CONSUME),
                topic(&names, Topic::ScheduleTicks, BOTH),
                topic(&names, Topic::JobState, CONSUME),
                topic(&names, Topic::Commands, PRODUCE),
                topic(&names, Topic::Events, PRODUCE),
                literal(
                    Resource::Group(group_id(settings, &settings.scheduler.group_id)),
                    GROUP,
                ),
                tail(Topic::Schedules),
                tail(Topic::JobState),
                tail(Topic::ScheduleTicks),
                literal(
                    Resource::TransactionalId(scheduler_transactional_id(settings)),
                    PRODUCE,
                ),
            ],
        },
        Principal {
            name: "notifier",
            about: "reads inventory changes in its group, tells the configured destinations, dead-letters what they never accept.",
            grants: vec![
                topic(&names, Topic::Inventory, CONSUME),
                topic(&names, Topic::NotificationsDlq, PRODUCE),
                literal(
                    Resource::Group(group_id(settings, &settings.notifier.group_id)),
                    GROUP,
                ),
            ],
        },
        Principal {
            name: "admin",
            about: "operators' commands: `topics ensure` (the schemas Job), `replay` and `audit`. Reads every topic, never writes one; --into needs a user of the target cluster.",
            grants: vec![
                prefix(
                    Resource::Topic(format!("{}scans.", names.prefix())),
                    &[Read, Describe, DescribeConfigs],
                ),
                prefix(
                    Resource::Group(operator_group_prefix(settings)),
                    &[Read, Describe],
                ),
                // `audit` reads the aggregator's committed offsets (job state and inventory),
                // whatever the group is named.
                literal(
                    Resource::Group(inventory_group(&aggregator_group)),
                    &[Describe],
                ),
                literal(Resource::Group(aggregator_group), &[Describe]),
                literal(Resource::Cluster, &[Describe]),
            ],
        },
        Principal {
            name: "keda",
            about: "KEDA reads the scanner group's lag on scans.commands to scale the scanners.",
            grants: vec![
                topic(&names, Topic::Commands, &[Describe]),
                literal(Resource::Group(scanner_group), &[Describe]),
            ],
        },
        Principal {
            name: "registry",
            about: "Apicurio Registry (KafkaSQL storage), its journal, snapshots and events topics and its per-pod groups.",
            grants: vec![
                literal(
                    Resource::Topic("kafkasql-journal".into()),
                    &[Read, Write, Describe, DescribeConfigs],
                ),
                literal(
                    Resource::Topic("kafkasql-snapshots".into()),
                    &[Read, Write, Describe, DescribeConfigs],
                ),
                literal(
                    Resource::Topic("registry-events".into()),
                    &[Read, Write, Describe, DescribeConfigs],
                ),
                prefix(Resource::Group("apicurio-".into()), GROUP),
            ],
        },
    ]
}

/// The `KafkaUser` resources (API `kafka.strimzi.io/v1`, SCRAM-SHA-512, simple authorization)
/// of [`principals`], as one multi-document YAML file; `cluster` is the Strimzi `Kafka` they
/// belong to.
pub fn strimzi_users(settings: &Settings, cluster: &str) -> String {
    let mut out = String::from(
        "# Generated by `scanstream acls render --strimzi` from the access every role declares\n\
         # (crates/platform/src/access.rs). Do not edit: render it again.\n\
         # One KafkaUser per role, SCRAM-SHA-512, with least-privilege ACLs (simple authorization).\n\
         # The User Operator writes each user's password to a Secret of the same name (keys `password`\n\
         # and `sasl.jaas.config`); the Deployments read it from there. Kafka 3+ needs no\n\
         # IdempotentWrite cluster ACL. Names follow the settings it was rendered with (this file:\n\
         # the built-in ones); render with your --config for a prefixed deployment.\n",
    );
    for principal in principals(settings) {
        out.push_str(&format!(
            "---\n# {}: {}\napiVersion: kafka.strimzi.io/v1\nkind: KafkaUser\nmetadata:\n  name: scanstream-{}\n",
            principal.name, principal.about, principal.name
        ));
        out.push_str(&format!(
            "  labels:\n    strimzi.io/cluster: {cluster}\n    app.kubernetes.io/part-of: scanstream\n"
        ));
        out.push_str(
            "spec:\n  authentication:\n    type: scram-sha-512\n  authorization:\n    type: simple\n    acls:\n",
        );
        for grant in &principal.grants {
            let (kind, name) = match &grant.resource {
                Resource::Topic(name) => ("topic", Some(name)),
                Resource::Group(name) => ("group", Some(name)),
                Resource::TransactionalId(name) => ("transactionalId", Some(name)),
                Resource::Cluster => ("cluster", None),
            };
            out.push_str(&format!("      - resource:\n          type: {kind}\n"));
            if let Some(name) = name {
                let pattern = match grant.pattern {
                    Pattern::Literal => "literal",
                    Pattern::Prefix => "prefix",
                };
                out.push_str(&format!(
                    "          name: {name}\n          patternType: {pattern}\n"
                ));
            }
            let operations: Vec<&str> = grant.operations.iter().map(|o| o.as_str()).collect();
            out.push_str(&format!(
                "        operations: [{}]\n",
                operations.join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in settings (no environment) under `prefix`.
    fn settings(prefix: &str) -> Settings {
        let mut settings = Settings::load(crate::config::Sources {
            env: Some(std::collections::BTreeMap::new()),
            ..crate::config::Sources::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        settings.topics.prefix = prefix.to_owned();
        settings
    }

    /// The grants of the principal `name`.
    fn grants(settings: &Settings, name: &str) -> Vec<Grant> {
        principals(settings)
            .into_iter()
            .find(|p| p.name == name)
            .map(|p| p.grants)
            .unwrap_or_default()
    }

    fn allows(grants: &[Grant], resource: &Resource, operation: Operation) -> bool {
        grants.iter().any(|g| {
            let matches = match (&g.resource, resource, g.pattern) {
                (Resource::Cluster, Resource::Cluster, _) => true,
                (Resource::Topic(a), Resource::Topic(b), Pattern::Literal)
                | (Resource::Group(a), Resource::Group(b), Pattern::Literal)
                | (Resource::TransactionalId(a), Resource::TransactionalId(b), Pattern::Literal) => {
                    a == b
                }
                (Resource::Topic(a), Resource::Topic(b), Pattern::Prefix)
                | (Resource::Group(a), Resource::Group(b), Pattern::Prefix)
                | (Resource::TransactionalId(a), Resource::TransactionalId(b), Pattern::Prefix) => {
                    b.starts_with(a.as_str())
                }
                _ => false,
            };
            matches && g.operations.contains(&operation)
        })
    }

    #[test]
    fn roles_can_do_what_their_code_does_and_not_more() {
        let s = settings("team-a.");
        let names = TopicNames::new("team-a.");
        let t = |topic| Resource::Topic(names.name(topic));
        // Ingest writes commands and events in its transactions, never reads findings.
        let ingest = grants(&s, "ingest");
        assert!(allows(&ingest, &t(Topic::Commands), Write));
        assert!(allows(
            &ingest,
            &Resource::TransactionalId(format!("{}host-1234", ingest_transactional_prefix(&s))),
            Write
        ));
        assert!(!allows(&ingest, &t(Topic::Findings), Read));
        // The scanner never writes commands; the aggregator never writes commands.
        assert!(!allows(&grants(&s, "scanner"), &t(Topic::Commands), Write));
        assert!(allows(&grants(&s, "scanner"), &t(Topic::Commands), Read));
        assert!(!allows(
            &grants(&s, "aggregator"),
            &t(Topic::Commands),
            Write
        ));
        // No role may use another's transactional ids or groups.
        let scheduler_id = Resource::TransactionalId(scheduler_transactional_id(&s));
        assert!(allows(&grants(&s, "scheduler"), &scheduler_id, Write));
        assert!(!allows(&grants(&s, "ingest"), &scheduler_id, Write));
        assert!(!allows(&grants(&s, "aggregator"), &scheduler_id, Write));
        let scanner_group = Resource::Group(group_id(&s, &s.scanner.group_id));
        assert!(!allows(&grants(&s, "aggregator"), &scanner_group, Read));
        // The follower groups of compacted topics are under the prefix too.
        assert!(allows(
            &grants(&s, "ingest"),
            &Resource::Group(tail_group("team-a.scans.schedules")),
            Read
        ));
        // The notifier reads the inventory and writes its dead letters, nothing else.
        let notifier = grants(&s, "notifier");
        assert!(allows(&notifier, &t(Topic::Inventory), Read));
        assert!(allows(&notifier, &t(Topic::NotificationsDlq), Write));
        assert!(!allows(&notifier, &t(Topic::Inventory), Write));
        assert!(!allows(&notifier, &t(Topic::Findings), Read));
        assert!(!allows(&grants(&s, "scanner"), &t(Topic::Triage), Write));
        // Operators read every topic of the deployment and write none.
        let admin = grants(&s, "admin");
        for topic in Topic::ALL {
            assert!(allows(&admin, &t(topic), Read), "{topic:?}");
            assert!(!allows(&admin, &t(topic), Write), "{topic:?}");
        }
    }

    #[test]
    fn the_render_names_every_user_once_with_the_deployments_names() {
        let yaml = strimzi_users(&settings("team-a."), "kind");
        assert_eq!(
            yaml.matches("kind: KafkaUser").count(),
            principals(&settings("")).len()
        );
        assert!(yaml.contains("strimzi.io/cluster: kind\n"));
        assert!(yaml.contains("name: team-a.scans.commands\n"));
        assert!(yaml.contains("name: team-a.scanstream-ingest-\n"));
        assert!(!yaml.contains("name: scans.commands\n"));
    }
}
