//! The contract between scanstream's roles and everyone who reads its topics.
//!
//! Downstream consumers (notification, dashboards, ticketing, auditors) depend on what this crate
//! defines, so changes here follow Avro's BACKWARD compatibility rules: add fields with defaults,
//! never rename or remove.
//!
//! # Layout
//! - [`topic`]: the [`Topic`] enum (never a topic name as a string elsewhere), each topic's key,
//!   value schema and policy, and [`TopicNames`] for per-deployment prefixes.
//! - [`ids`]: key and id newtypes; job ids derived from names, deterministic event ids.
//! - [`command`], [`event`], [`finding`], [`state`], [`schedule`]: the Rust types of the Avro
//!   records in `schemas/*.avsc`, one module per value schema.
//! - [`inventory`]: sightings, triage decisions and inventory items, and the item id.
//! - [`submission`]: the command + event pair of one run's submission (API and scheduler).
//! - [`headers`]: Kafka header names (trace context, correlation id, dead-letter reasons).
//! - [`schema`]: the embedded `.avsc` files and the [`AvroRecord`] trait tying a type to its schema.
//! - [`resolve`]: writer-to-reader schema resolution that picks union branches by name.
//! - [`codec`]: Confluent wire-format encoding and decoding through a schema registry, and schema
//!   registration under BACKWARD compatibility.

pub mod asyncapi;
pub mod codec;
pub mod command;
pub mod event;
pub mod finding;
pub mod headers;
pub mod ids;
pub mod inventory;
pub mod resolve;
pub mod schedule;
pub mod schema;
pub mod state;
pub mod submission;
pub mod topic;

pub use codec::{Codec, CodecError, RegistryConfig};
pub use ids::{EventId, JobId, RepoKey, RunId};
pub use schema::AvroRecord;
pub use topic::{Topic, TopicNames, TopicSpec};
