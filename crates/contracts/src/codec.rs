//! Confluent wire format (magic byte 0, 4-byte schema id, Avro binary) through a
//! Confluent-compatible schema registry, subjects by TopicNameStrategy (`<topic>-value`).
//!
//! Encoding always writes with the schema compiled into this binary (registered, or found
//! already registered, under the topic's subject). Decoding reads with the writer's schema from
//! the registry and resolves into this binary's schema, so old and new producers interoperate as
//! long as every change passed the registry's BACKWARD check at registration.

use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value;
use reqwest::StatusCode;
use schema_registry_converter::async_impl::easy_avro::{EasyAvroDecoder, EasyAvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde::Deserialize;

use crate::resolve::{ResolveError, resolve};
use crate::schema::{AvroRecord, SchemaFile};
use crate::topic::{Topic, TopicNames};

/// How to reach the schema registry.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API (for Apicurio: `.../apis/ccompat/v7`).
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("schema registry client could not be built: {0}")]
    Client(String),
    #[error("schema registry call failed: {0}")]
    Registry(String),
    #[error("schema for subject {subject} is incompatible with the registered versions: {detail}")]
    Incompatible { subject: String, detail: String },
    #[error("topic {topic} does not carry {record} values")]
    WrongTopic { topic: Topic, record: &'static str },
    #[error("embedded schema {file} does not parse: {source}")]
    EmbeddedSchema {
        file: &'static str,
        #[source]
        source: apache_avro::Error,
    },
    #[error("record could not be encoded: {0}")]
    Encode(String),
    #[error("record is not in the Confluent wire format or could not be read: {0}")]
    Decode(String),
    #[error("record holds {found} where {expected} was expected")]
    WrongRecord { expected: String, found: String },
    #[error("record could not be resolved to this version's schema: {0}")]
    Resolve(#[from] ResolveError),
    #[error("decoded record does not match the Rust type: {0}")]
    Mapping(#[source] apache_avro::Error),
}

impl CodecError {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            CodecError::Client(_) => "client",
            CodecError::Registry(_) => "registry",
            CodecError::Incompatible { .. } => "incompatible",
            CodecError::WrongTopic { .. } => "wrong_topic",
            CodecError::EmbeddedSchema { .. } => "embedded_schema",
            CodecError::Encode(_) => "encode",
            CodecError::Decode(_) => "decode",
            CodecError::WrongRecord { .. } => "wrong_record",
            CodecError::Resolve(_) => "resolve",
            CodecError::Mapping(_) => "mapping",
        }
    }

    /// True when retrying the same call may succeed (the registry was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, CodecError::Registry(_))
    }
}

fn registry_error(e: SRCError) -> CodecError {
    if e.retriable {
        CodecError::Registry(e.to_string())
    } else {
        CodecError::Decode(e.to_string())
    }
}

/// The outcome of registering one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub subject: String,
    pub schema_id: u32,
}

/// How a writer schema (by registry id) relates to one of this binary's schemas; computed once
/// per pair, since comparing schemas costs far more than decoding a record.
#[derive(Debug, Clone)]
enum Relation {
    Same,
    Evolved,
    Other(String),
}

/// Encodes and decodes scanstream's topic values.
#[derive(Clone)]
pub struct Codec {
    names: TopicNames,
    config: RegistryConfig,
    encoder: EasyAvroEncoder,
    decoder: EasyAvroDecoder,
    http: reqwest::Client,
    /// The subject strategy (with the schema text) per topic, built once.
    strategies: std::sync::Arc<std::collections::HashMap<Topic, SubjectNameStrategy>>,
    relations:
        std::sync::Arc<std::sync::RwLock<std::collections::HashMap<(u32, SchemaFile), Relation>>>,
}

const SR_CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

impl Codec {
    pub fn new(config: RegistryConfig, names: TopicNames) -> Result<Self, CodecError> {
        let mut builder = SrSettings::new_builder(config.url.trim_end_matches('/').to_owned());
        builder.set_timeout(config.timeout);
        if let Some(user) = &config.username {
            builder.set_basic_authorization(user, config.password.as_deref());
        }
        let settings = builder
            .build()
            .map_err(|e| CodecError::Client(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| CodecError::Client(e.to_string()))?;
        let mut strategies = std::collections::HashMap::new();
        for topic in Topic::ALL {
            if let Some(file) = topic.value_schema() {
                strategies.insert(
                    topic,
                    SubjectNameStrategy::TopicNameStrategyWithSchema(
                        names.name(topic),
                        false,
                        supplied_schema(file)?,
                    ),
                );
            }
        }
        Ok(Self {
            strategies: std::sync::Arc::new(strategies),
            relations: Default::default(),
            encoder: EasyAvroEncoder::new(settings.clone()),
            decoder: EasyAvroDecoder::new(settings.clone()),
            names,
            config,
            http,
        })
    }

    pub fn topic_names(&self) -> &TopicNames {
        &self.names
    }

    /// Encodes `value` for `topic` in the Confluent wire format.
    pub async fn encode<T: AvroRecord>(
        &self,
        topic: Topic,
        value: &T,
    ) -> Result<Vec<u8>, CodecError> {
        check_topic::<T>(topic)?;
        let strategy = self.strategies.get(&topic).ok_or(CodecError::WrongTopic {
            topic,
            record: T::SCHEMA.file_name(),
        })?;
        self.encoder
            .encode_struct(value, strategy)
            .await
            .map_err(|e| {
                if e.retriable {
                    CodecError::Registry(e.to_string())
                } else {
                    CodecError::Encode(e.to_string())
                }
            })
    }

    /// Decodes a Confluent wire-format value into `T`, resolving from the writer's schema.
    pub async fn decode<T: AvroRecord>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let value = self.decode_value(bytes, T::SCHEMA).await?;
        apache_avro::from_value::<T>(&value).map_err(CodecError::Mapping)
    }

    /// Decodes a Confluent wire-format value into an Avro value of `reader`'s schema (the
    /// committed file), resolving from the writer's schema: for tools that handle any topic's
    /// records generically (replay's Avro files).
    pub async fn decode_value(
        &self,
        bytes: &[u8],
        reader_file: SchemaFile,
    ) -> Result<Value, CodecError> {
        let reader = parsed(reader_file)?;
        let decoded = self
            .decoder
            .decode_with_schema(Some(bytes))
            .await
            .map_err(registry_error)?
            .ok_or_else(|| CodecError::Decode("empty payload".to_owned()))?;
        let writer = &decoded.schema.parsed;
        let key = (decoded.schema.id, reader_file);
        let known = self
            .relations
            .read()
            .ok()
            .and_then(|r| r.get(&key).cloned());
        let relation = match known {
            Some(relation) => relation,
            None => {
                let expected = reader.name().map(|n| n.fullname(None)).unwrap_or_default();
                let found = writer.name().map(|n| n.fullname(None)).unwrap_or_default();
                let relation = if expected != found {
                    Relation::Other(found)
                } else if writer.canonical_form() == reader.canonical_form() {
                    Relation::Same
                } else {
                    Relation::Evolved
                };
                if let Ok(mut r) = self.relations.write() {
                    r.insert(key, relation.clone());
                }
                relation
            }
        };
        match relation {
            Relation::Same => Ok(decoded.value),
            Relation::Evolved => Ok(resolve(decoded.value, writer, reader)?),
            Relation::Other(found) => {
                let expected = reader.name().map(|n| n.fullname(None)).unwrap_or_default();
                Err(CodecError::WrongRecord { expected, found })
            }
        }
    }

    /// Registers the value schema of every topic that has one, each subject under BACKWARD
    /// compatibility. Idempotent: an already registered schema returns its existing id.
    pub async fn register_all(&self) -> Result<Vec<Registration>, CodecError> {
        let mut out = Vec::new();
        for topic in Topic::ALL {
            if let Some(file) = topic.value_schema() {
                out.push(
                    self.register(&self.names.value_subject(topic), file.source())
                        .await?,
                );
            }
        }
        Ok(out)
    }

    /// Sets `subject` to BACKWARD compatibility and registers `schema` under it; an
    /// incompatible schema fails with [`CodecError::Incompatible`] and registers nothing.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<Registration, CodecError> {
        let base = self.config.url.trim_end_matches('/');
        let config_url = format!("{base}/config/{subject}");
        let response = self
            .authed(self.http.put(&config_url))
            .header(reqwest::header::CONTENT_TYPE, SR_CONTENT_TYPE)
            .body(r#"{"compatibility":"BACKWARD"}"#)
            .send()
            .await
            .map_err(|e| CodecError::Registry(format!("PUT {config_url}: {e}")))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(CodecError::Registry(format!(
                "PUT {config_url}: {status}: {body}"
            )));
        }

        let versions_url = format!("{base}/subjects/{subject}/versions");
        let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" });
        let response = self
            .authed(self.http.post(&versions_url))
            .header(reqwest::header::CONTENT_TYPE, SR_CONTENT_TYPE)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| CodecError::Registry(format!("POST {versions_url}: {e}")))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status == StatusCode::CONFLICT {
            return Err(CodecError::Incompatible {
                subject: subject.to_owned(),
                detail: text,
            });
        }
        if !status.is_success() {
            return Err(CodecError::Registry(format!(
                "POST {versions_url}: {status}: {text}"
            )));
        }
        #[derive(Deserialize)]
        struct Id {
            id: u32,
        }
        let id: Id = serde_json::from_str(&text)
            .map_err(|e| CodecError::Registry(format!("POST {versions_url}: {e}: {text}")))?;
        Ok(Registration {
            subject: subject.to_owned(),
            schema_id: id.id,
        })
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.username {
            Some(user) => request.basic_auth(user, self.config.password.as_deref()),
            None => request,
        }
    }
}

fn parsed(file: SchemaFile) -> Result<&'static Schema, CodecError> {
    file.parsed().map_err(|source| CodecError::EmbeddedSchema {
        file: file.file_name(),
        source,
    })
}

fn check_topic<T: AvroRecord>(topic: Topic) -> Result<SchemaFile, CodecError> {
    match topic.value_schema() {
        Some(file) if file == T::SCHEMA => Ok(file),
        _ => Err(CodecError::WrongTopic {
            topic,
            record: T::SCHEMA.file_name(),
        }),
    }
}

fn supplied_schema(file: SchemaFile) -> Result<SuppliedSchema, CodecError> {
    let schema = parsed(file)?;
    Ok(SuppliedSchema::new(
        schema.name().map(|n| n.fullname(None)),
        SchemaType::Avro,
        file.source().to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Finding;

    #[test]
    fn every_embedded_schema_parses_and_names_its_record() {
        for file in SchemaFile::ALL {
            let schema = parsed(file).unwrap();
            let name = schema.name().map(|n| n.fullname(None));
            let expected = format!(
                "io.scanstream.{}",
                file.file_name().trim_end_matches(".avsc")
            );
            assert_eq!(name.as_deref(), Some(expected.as_str()));
        }
    }

    #[test]
    fn a_type_cannot_be_written_to_another_topic() {
        assert!(matches!(
            check_topic::<Finding>(Topic::Events),
            Err(CodecError::WrongTopic { .. })
        ));
        assert!(check_topic::<Finding>(Topic::Findings).is_ok());
        assert!(check_topic::<Finding>(Topic::CommandsDlq).is_err());
    }
}
