//! The schema registry client for a deployment's settings: the one place a [`Codec`] is built.

use scanstream_contracts::{Codec, CodecError, RegistryConfig, TopicNames};
use secrecy::ExposeSecret;

use crate::Settings;

/// A codec for `settings.registry`, naming subjects after `settings.topics.prefix`.
pub fn codec(settings: &Settings) -> Result<Codec, CodecError> {
    Codec::new(
        RegistryConfig {
            url: settings.registry.url.clone(),
            username: settings.registry.username.clone(),
            password: settings
                .registry
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_owned()),
            timeout: settings.registry.timeout,
        },
        TopicNames::new(settings.topics.prefix.clone()),
    )
}
