//! The `--job`, `--repo` and `--event-type` filters.

use scanstream_contracts::{JobId, Topic};

use super::decode::Decoded;

/// Which records to keep.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub jobs: Vec<JobId>,
    pub repos: Vec<String>,
    pub event_types: Vec<String>,
}

impl Filters {
    pub(super) fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.repos.is_empty() && self.event_types.is_empty()
    }

    pub(super) fn keep(&self, topic: Topic, key: Option<&str>, value: Option<&Decoded>) -> bool {
        if !self.jobs.is_empty() {
            let by_key = key.is_some_and(|k| self.jobs.iter().any(|j| j.key() == k));
            let by_value = value
                .and_then(Decoded::job)
                .is_some_and(|j| self.jobs.contains(&j));
            if !(by_key || by_value) {
                return false;
            }
        }
        if !self.repos.is_empty() {
            let by_key =
                topic == Topic::Commands && key.is_some_and(|k| self.repos.iter().any(|r| r == k));
            let by_value = value
                .and_then(Decoded::repo)
                .is_some_and(|r| self.repos.iter().any(|x| x == r));
            if !(by_key || by_value) {
                return false;
            }
        }
        if !self.event_types.is_empty() {
            let kind = value.and_then(Decoded::kind);
            if !kind.is_some_and(|k| self.event_types.iter().any(|t| t == k)) {
                return false;
            }
        }
        true
    }
}
