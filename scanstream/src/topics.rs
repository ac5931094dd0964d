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
        println!("created   {name}");
    }
    for name in &report.unchanged {
        println!("unchanged {name}");
    }
    for drift in &report.drift {
        println!("DRIFT     {drift}");
    }
    if !skip_schemas {
        for registration in scanstream_platform::registry::codec(settings)?
            .register_all()
            .await?
        {
            println!(
                "schema    {} (id {}, BACKWARD)",
                registration.subject, registration.schema_id
            );
        }
    }
    Ok(report)
}
