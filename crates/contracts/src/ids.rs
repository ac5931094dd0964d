//! Keys and ids. Ids that must survive retries and failover are derived, never random: the same
//! job name is always the same job, and a re-delivered event always has the same id.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace for every uuid scanstream derives (UUID v5), so our ids never collide with ids other
/// systems derive from the same names.
const NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_2c3e_8d4b_4f6a_9b1e_5c7d_2e3f_4a5b);

/// A job's uuid: derived from its name, so posting the same name again is the same job.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct JobId(#[serde(with = "uuid_string")] pub Uuid);

impl JobId {
    /// The id of the job named `name`.
    pub fn from_name(name: &str) -> Self {
        Self(Uuid::new_v5(&NAMESPACE, format!("job/{name}").as_bytes()))
    }

    /// The id of the run of `schedule` at `tick` (minutes since the Unix epoch): a scheduler that
    /// fails over computes the same id and so can never fire a tick twice.
    pub fn for_schedule_tick(schedule: &str, tick: i64) -> Self {
        Self(Uuid::new_v5(
            &NAMESPACE,
            format!("schedule/{schedule}/{tick}").as_bytes(),
        ))
    }

    /// The record key on `scans.events`, `scans.findings` and `scans.job-state`.
    pub fn key(&self) -> String {
        self.0.hyphenated().to_string()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// One submission of a job.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct RunId(#[serde(with = "uuid_string")] pub Uuid);

impl RunId {
    /// A fresh run id for a new submission.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// A run id derived from something that already identifies the submission (an idempotency
    /// key, a schedule tick), so a retried submission maps to the same run.
    pub fn derived(job: JobId, discriminator: &str) -> Self {
        Self(Uuid::new_v5(
            &NAMESPACE,
            format!("run/{job}/{discriminator}").as_bytes(),
        ))
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A deterministic event id: (job, run, attempt, sequence) identifies an event, so a scanner
/// that re-writes an event after a crash writes the same id and the aggregator folds it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(#[serde(with = "uuid_string")] pub Uuid);

impl EventId {
    pub fn derive(job: JobId, run: RunId, attempt: i32, sequence: i32) -> Self {
        Self(Uuid::new_v5(
            &NAMESPACE,
            format!("event/{job}/{run}/{attempt}/{sequence}").as_bytes(),
        ))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Derives a uuid for anything else that must be stable across retries (command ids, finding ids).
pub fn derived_uuid(kind: &str, parts: &[&str]) -> Uuid {
    let mut name = String::from(kind);
    for part in parts {
        name.push('/');
        name.push_str(part);
    }
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// The record key on `scans.commands`: the normalized repository URL, so one repository's work
/// always lands on one partition (and one scanner, whose cache then stays warm). Build it from a
/// URL that was already normalized and stripped of credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoKey(String);

impl RepoKey {
    pub fn from_normalized(url: &str) -> Self {
        Self(url.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Serde for uuids as Avro `{"type": "string", "logicalType": "uuid"}`: apache-avro's serde
/// is not human-readable by default, which would make `Uuid` write 16 raw bytes instead.
pub mod uuid_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

/// [`uuid_string`] for optional uuids (`["null", uuid]`).
pub mod opt_uuid_string {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Option<Uuid>, s: S) -> Result<S::Ok, S::Error> {
        id.map(|u| u.hyphenated().to_string()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| Uuid::parse_str(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_derived_from_names() {
        assert_eq!(JobId::from_name("test10"), JobId::from_name("test10"));
        assert_ne!(JobId::from_name("test10"), JobId::from_name("test11"));
    }

    #[test]
    fn schedule_runs_differ_per_tick_and_from_plain_jobs() {
        let a = JobId::for_schedule_tick("test6", 27_768_142);
        assert_eq!(a, JobId::for_schedule_tick("test6", 27_768_142));
        assert_ne!(a, JobId::for_schedule_tick("test6", 27_768_143));
        assert_ne!(a, JobId::from_name("test6-27768142"));
    }

    #[test]
    fn event_ids_are_deterministic_and_distinct_per_position() {
        let job = JobId::from_name("j");
        let run = RunId::derived(job, "r");
        assert_eq!(
            EventId::derive(job, run, 1, 2),
            EventId::derive(job, run, 1, 2)
        );
        assert_ne!(
            EventId::derive(job, run, 1, 2),
            EventId::derive(job, run, 2, 1)
        );
        assert_ne!(
            EventId::derive(job, run, 1, 2),
            EventId::derive(job, run, 1, 3)
        );
    }
}
