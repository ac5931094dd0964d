//! Reading findings back from `scans.findings`, for the demo and for checks.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use scanstream_contracts::finding::Finding;
use scanstream_contracts::{JobId, Topic, TopicNames};
use scanstream_platform::Settings;

use crate::replay::{self, Bound, Decoded, Filters, Sink, Source, Window};

/// The findings of `jobs` written to `scans.findings` at or after `since_ms` (milliseconds since
/// the epoch), read up to the end the topic had when this was called (a [`crate::replay`] of
/// the topic). Consumes no group offsets.
pub async fn read(
    settings: &Settings,
    jobs: &HashSet<JobId>,
    since_ms: i64,
    timeout: Duration,
) -> anyhow::Result<Vec<Finding>> {
    let names = TopicNames::new(settings.topics.prefix.clone());
    let source = Source {
        name: names.name(Topic::Findings),
        kind: Topic::Findings,
    };
    let window = Window {
        from: Some(Bound::Time(since_ms)),
        to: None,
    };
    let filters = Filters {
        jobs: jobs.iter().copied().collect(),
        ..Filters::default()
    };
    let mut found = Vec::new();
    let replayed = replay::run(
        settings,
        &source,
        &window,
        &filters,
        Sink::Digest,
        false,
        |record| {
            if let Some(Decoded::Finding(f)) = &record.value {
                found.push(f.clone());
            }
        },
    );
    tokio::time::timeout(timeout, replayed)
        .await
        .with_context(|| format!("reading {} took longer than {timeout:?}", source.name))??;
    Ok(found)
}
