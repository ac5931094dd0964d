//! Creating scanstream's topics and detecting drift, through the admin API.
//!
//! `ensure` creates what is missing with the partitions, replication and configs of
//! [`scanstream_contracts::Topic::spec`], and compares what exists: a topic with other
//! partitions, replication or owned configs is reported as drift, never altered behind the
//! operator's back.

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::types::RDKafkaErrorCode;
use scanstream_contracts::{Topic, TopicNames, TopicSpec};

use crate::config::TopicSettings;

#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    #[error("reading cluster metadata failed: {0}")]
    Metadata(#[source] RdKafkaError),
    #[error("creating topics failed: {0}")]
    Create(#[source] RdKafkaError),
    #[error("creating topic {topic} failed: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("topics {0:?} were created but the broker does not list them")]
    NotVisible(Vec<String>),
    #[error("describing the configs of {topic} failed: {detail}")]
    Describe { topic: String, detail: String },
}

/// One difference between a topic as it is and as scanstream wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub topic: String,
    pub what: String,
    pub expected: String,
    pub actual: String,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} is {} but scanstream expects {}",
            self.topic, self.what, self.actual, self.expected
        )
    }
}

/// What `ensure` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnsureReport {
    pub created: Vec<String>,
    pub unchanged: Vec<String>,
    pub drift: Vec<Drift>,
}

impl EnsureReport {
    pub fn has_drift(&self) -> bool {
        !self.drift.is_empty()
    }
}

/// The specs of every scanstream topic for a deployment, with full names.
pub fn specs(names: &TopicNames, settings: &TopicSettings) -> Vec<(String, TopicSpec)> {
    Topic::ALL
        .into_iter()
        .map(|t| {
            (
                names.name(t),
                t.spec(settings.partitions, settings.replication_factor),
            )
        })
        .collect()
}

/// The existing topics of interest: name → (partitions, replicas of partition 0).
fn existing<C: ClientContext>(
    admin: &AdminClient<C>,
    wanted: &[(String, TopicSpec)],
    timeout: std::time::Duration,
) -> Result<BTreeMap<String, (i32, i32)>, TopicsError> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, timeout)
        .map_err(TopicsError::Metadata)?;
    let mut out = BTreeMap::new();
    for topic in metadata.topics() {
        if topic.error().is_some() || !wanted.iter().any(|(n, _)| n == topic.name()) {
            continue;
        }
        let partitions = i32::try_from(topic.partitions().len()).unwrap_or(i32::MAX);
        let replicas = topic
            .partitions()
            .iter()
            .map(|p| i32::try_from(p.replicas().len()).unwrap_or(i32::MAX))
            .min()
            .unwrap_or(0);
        out.insert(topic.name().to_owned(), (partitions, replicas));
    }
    Ok(out)
}

/// Re-reads metadata until the broker lists every wanted topic: a just-created topic reaches
/// the broker's metadata shortly after the controller confirms it.
async fn wait_until_listed<C: ClientContext>(
    admin: &AdminClient<C>,
    wanted: &[(String, TopicSpec)],
    timeout: std::time::Duration,
) -> Result<BTreeMap<String, (i32, i32)>, TopicsError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let present = existing(admin, wanted, timeout)?;
        let absent: Vec<String> = wanted
            .iter()
            .filter(|(n, _)| !present.contains_key(n))
            .map(|(n, _)| n.clone())
            .collect();
        if absent.is_empty() {
            return Ok(present);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(TopicsError::NotVisible(absent));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Creates missing topics and reports drift on existing ones. Idempotent.
pub async fn ensure<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    names: &TopicNames,
    settings: &TopicSettings,
    timeout: std::time::Duration,
) -> Result<EnsureReport, TopicsError> {
    let wanted = specs(names, settings);
    let present = existing(admin, &wanted, timeout)?;
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));

    let missing: Vec<&(String, TopicSpec)> = wanted
        .iter()
        .filter(|(n, _)| !present.contains_key(n))
        .collect();
    let mut report = EnsureReport::default();
    if !missing.is_empty() {
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|(name, spec)| {
                spec.configs.iter().fold(
                    NewTopic::new(
                        name,
                        spec.partitions,
                        TopicReplication::Fixed(spec.replication_factor),
                    ),
                    |t, (k, v)| t.set(k, v),
                )
            })
            .collect();
        let results = admin
            .create_topics(new_topics.iter(), &options)
            .await
            .map_err(TopicsError::Create)?;
        for result in results {
            match result {
                Ok(name) => report.created.push(name),
                // Someone else created it between our metadata read and now: check it below.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(TopicsError::CreateTopic { topic, code }),
            }
        }
    }

    let present = if missing.is_empty() {
        present
    } else {
        wait_until_listed(admin, &wanted, timeout).await?
    };
    for (name, spec) in &wanted {
        if report.created.contains(name) {
            continue;
        }
        let Some(&(partitions, replicas)) = present.get(name) else {
            return Err(TopicsError::NotVisible(vec![name.clone()]));
        };
        let before = report.drift.len();
        if partitions != spec.partitions {
            report.drift.push(Drift {
                topic: name.clone(),
                what: "partitions".into(),
                expected: spec.partitions.to_string(),
                actual: partitions.to_string(),
            });
        }
        if replicas != spec.replication_factor {
            report.drift.push(Drift {
                topic: name.clone(),
                what: "replication factor".into(),
                expected: spec.replication_factor.to_string(),
                actual: replicas.to_string(),
            });
        }
        let described = admin
            .describe_configs([ResourceSpecifier::Topic(name)].iter(), &options)
            .await
            .map_err(|e| TopicsError::Describe {
                topic: name.clone(),
                detail: e.to_string(),
            })?;
        let resource = described
            .into_iter()
            .next()
            .ok_or_else(|| TopicsError::Describe {
                topic: name.clone(),
                detail: "no answer".into(),
            })?
            .map_err(|code| TopicsError::Describe {
                topic: name.clone(),
                detail: code.to_string(),
            })?;
        let actual = resource.entry_map();
        for (key, expected) in &spec.configs {
            let value = actual.get(key.as_str()).and_then(|e| e.value.clone());
            if value.as_deref() != Some(expected.as_str()) {
                report.drift.push(Drift {
                    topic: name.clone(),
                    what: format!("config {key}"),
                    expected: expected.clone(),
                    actual: value.unwrap_or_else(|| "unset".into()),
                });
            }
        }
        if report.drift.len() == before {
            report.unchanged.push(name.clone());
        }
    }
    Ok(report)
}
