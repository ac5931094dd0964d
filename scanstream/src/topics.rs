//! `scanstream topics ensure`.

use scanstream_contracts::TopicNames;
use scanstream_platform::Settings;
use scanstream_platform::kafka::KafkaFactory;
use scanstream_platform::topics::{self, EnsureReport};

#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    #[error(transparent)]
    Kafka(#[from] scanstream_platform::KafkaError),
    #[error(transparent)]
    Topics(#[from] topics::TopicsError),
    #[error(transparent)]
    Codec(#[from] scanstream_contracts::CodecError),
}

/// Creates missing topics, reports drift, and (unless `skip_schemas`) registers every value
/// schema. Prints what it did.
pub async fn ensure(settings: &Settings, skip_schemas: bool) -> Result<EnsureReport, TopicsError> {
    let factory = KafkaFactory::new(settings.kafka.clone());
    let admin = factory.admin()?;
    let names = TopicNames::new(settings.topics.prefix.clone());
    let report =
        topics::ensure(&admin, &names, &settings.topics, factory.request_timeout()).await?;
    for name in &report.created {
        say!("created   {name}");
    }
    for name in &report.unchanged {
        say!("unchanged {name}");
    }
    for drift in &report.drift {
        say!("DRIFT     {drift}");
    }
    if !skip_schemas {
        for registration in scanstream_platform::registry::codec(settings)?
            .register_all()
            .await?
        {
            say!(
                "schema    {} (id {}, BACKWARD)",
                registration.subject,
                registration.schema_id
            );
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use scanstream_contracts::{Topic, TopicNames};
    use scanstream_platform::Settings;
    use scanstream_platform::config::Sources;

    /// The committed Strimzi users are exactly what the roles' declared access renders with the
    /// built-in settings.
    #[test]
    fn committed_strimzi_users_are_the_declared_access() {
        let settings = Settings::load(Sources {
            env: Some(BTreeMap::new()),
            ..Sources::default()
        })
        .unwrap();
        let rendered = scanstream_platform::access::strimzi_users(&settings, "scanstream");
        let committed = include_str!("../../strimzi/users.yaml");
        assert!(
            rendered == committed,
            "strimzi/users.yaml differs from the access the roles declare; regenerate it with \
             `cargo run -p scanstream -- acls render --strimzi --out strimzi/users.yaml`"
        );
    }

    /// The committed Strimzi topics are exactly what the topic definitions render with the
    /// built-in settings (12 partitions, 3 replicas, no prefix).
    #[test]
    fn committed_strimzi_topics_are_the_rendered_definitions() {
        let settings = Settings::load(Sources {
            env: Some(BTreeMap::new()),
            ..Sources::default()
        })
        .unwrap();
        let rendered = scanstream_platform::topics::strimzi(
            &TopicNames::new(settings.topics.prefix.clone()),
            &settings.topics,
            "scanstream",
        );
        let committed = include_str!("../../strimzi/topics.yaml");
        assert!(
            rendered == committed,
            "strimzi/topics.yaml differs from the topic definitions; regenerate it with \
             `cargo run -p scanstream -- topics render --strimzi --out strimzi/topics.yaml`"
        );
        for topic in Topic::ALL {
            assert!(
                committed.contains(&format!("  topicName: {}\n", topic.base_name())),
                "{topic}"
            );
        }
        assert_eq!(
            committed.matches("kind: KafkaTopic").count(),
            Topic::ALL.len()
        );
    }

    #[test]
    fn prefixed_names_become_kubernetes_names_and_keep_the_topic_name() {
        let settings = scanstream_platform::config::TopicSettings {
            prefix: "Team_A.".into(),
            partitions: 2,
            replication_factor: 1,
        };
        let yaml =
            scanstream_platform::topics::strimzi(&TopicNames::new("Team_A."), &settings, "kind");
        assert!(yaml.contains("  name: team-a.scans.events\n"), "{yaml}");
        assert!(
            yaml.contains("  topicName: Team_A.scans.events\n"),
            "{yaml}"
        );
        assert!(yaml.contains("strimzi.io/cluster: kind\n"));
        assert!(yaml.contains("  partitions: 2\n  replicas: 1\n"));
    }
}
