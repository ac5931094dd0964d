//! Which topic a replay reads and which scanstream topic's records it holds.

use anyhow::Context;
use scanstream_contracts::{Topic, TopicNames};

/// A topic to replay: its full name and which scanstream topic's records it holds.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub kind: Topic,
}

impl Source {
    /// `name` is a scanstream topic's name without the deployment prefix (`scans.events`), which
    /// gets the prefix; or any full topic name whose records are of the topic `like` names, or
    /// of the scanstream topic its name ends with (a copy named `audit.scans.events`).
    pub fn resolve(names: &TopicNames, name: &str, like: Option<&str>) -> anyhow::Result<Source> {
        let known = |base: &str| {
            Topic::from_base_name(base).with_context(|| {
                format!(
                    "`{base}` is not a scanstream topic; use one of {}",
                    Topic::ALL.map(|t| t.base_name()).join(", ")
                )
            })
        };
        if let Some(topic) = Topic::from_base_name(name) {
            return Ok(Source {
                name: names.name(topic),
                kind: topic,
            });
        }
        let kind = match like {
            Some(base) => known(base)?,
            None => Topic::ALL
                .into_iter()
                .filter(|t| name.ends_with(t.base_name()))
                .max_by_key(|t| t.base_name().len())
                .with_context(|| {
                    format!(
                        "cannot tell which records {name} holds: name a scanstream topic ({}) or add --like <one of them>",
                        Topic::ALL.map(|t| t.base_name()).join(", ")
                    )
                })?,
        };
        Ok(Source {
            name: name.to_owned(),
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_scanstream_topics_or_copies_of_one() {
        let names = TopicNames::new("t.");
        let s = Source::resolve(&names, "scans.events", None).unwrap();
        assert_eq!((s.name.as_str(), s.kind), ("t.scans.events", Topic::Events));
        let s = Source::resolve(&names, "audit-copy.scans.job-state", None).unwrap();
        assert_eq!(
            (s.name.as_str(), s.kind),
            ("audit-copy.scans.job-state", Topic::JobState)
        );
        let s = Source::resolve(&names, "mirror", Some("scans.findings")).unwrap();
        assert_eq!(s.kind, Topic::Findings);
        assert!(Source::resolve(&names, "mirror", None).is_err());
        assert!(Source::resolve(&names, "mirror", Some("scans.nothing")).is_err());
        // The longest matching base name wins (scans.commands.dlq, not scans.commands).
        let s = Source::resolve(&names, "x.scans.commands.dlq", None).unwrap();
        assert_eq!(s.kind, Topic::CommandsDlq);
    }
}
