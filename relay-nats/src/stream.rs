//! The stream at start-up: found or created, then checked against what the relay needs.

use std::time::Duration;

use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamError, GetStreamErrorKind};
use async_nats::jetstream::stream::{Config, Info, StorageType};
use async_nats::jetstream::{Context, ErrorCode};

use crate::config::{RelayConfig, StreamMode};
use crate::error::RelayError;
use crate::naming::patterns_cover_prefix;

/// What the relay learns from the stream.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamLimits {
    /// The largest message (headers and body) the stream stores, if it sets one.
    pub(crate) max_message_size: Option<usize>,
    /// How long the stream remembers message ids.
    pub(crate) duplicate_window: Duration,
}

/// Finds the stream (creating it when allowed) and checks it.
pub(crate) async fn prepare(
    jetstream: &Context,
    config: &RelayConfig,
) -> Result<StreamLimits, RelayError> {
    let info = match jetstream.get_stream(&config.stream).await {
        Ok(stream) => stream.cached_info().clone(),
        Err(error) if is_not_found(&error) => match config.stream_mode {
            StreamMode::Require => {
                return Err(RelayError::StreamMissing {
                    stream: config.stream.clone(),
                    server: config.server.clone(),
                    prefix: config.subject_prefix.clone(),
                })
            }
            StreamMode::CreateIfMissing => create(jetstream, config).await?,
        },
        Err(error) => return Err(jetstream_error("look up", config, error)),
    };
    check(&info, config)
}

/// Creates the stream; another relay creating it first is fine.
async fn create(jetstream: &Context, config: &RelayConfig) -> Result<Info, RelayError> {
    let stream = Config {
        name: config.stream.clone(),
        description: Some("outbox rows relayed by diesel-outbox".to_owned()),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        duplicate_window: config.duplicate_window,
        storage: StorageType::File,
        num_replicas: config.replicas,
        ..Config::default()
    };
    match jetstream.create_stream(stream).await {
        Ok(stream) => {
            tracing::info!(stream = %config.stream, "created the JetStream stream");
            Ok(stream.cached_info().clone())
        }
        Err(error) => {
            let already_exists = matches!(
                error.kind(),
                CreateStreamErrorKind::JetStream(ref e) if e.error_code() == ErrorCode::STREAM_NAME_EXIST
            );
            if !already_exists {
                return Err(jetstream_error("create", config, error));
            }
            match jetstream.get_stream(&config.stream).await {
                Ok(stream) => Ok(stream.cached_info().clone()),
                Err(error) => Err(jetstream_error("look up", config, error)),
            }
        }
    }
}

/// Refuses a stream that would store a redelivered row twice, or that does not capture
/// the relay's subjects.
fn check(info: &Info, config: &RelayConfig) -> Result<StreamLimits, RelayError> {
    let window = info.config.duplicate_window;
    let required = config.required_duplicate_window();
    if window <= required {
        return Err(RelayError::DuplicateWindowTooShort {
            stream: config.stream.clone(),
            window,
            required,
        });
    }
    if !patterns_cover_prefix(&info.config.subjects, &config.subject_prefix) {
        return Err(RelayError::SubjectsNotCaptured {
            stream: config.stream.clone(),
            subjects: info.config.subjects.clone(),
            prefix: config.subject_prefix.clone(),
        });
    }
    Ok(StreamLimits {
        max_message_size: usize::try_from(info.config.max_message_size).ok(),
        duplicate_window: window,
    })
}

fn is_not_found(error: &GetStreamError) -> bool {
    matches!(
        error.kind(),
        GetStreamErrorKind::JetStream(ref e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND
    )
}

fn jetstream_error(
    action: &'static str,
    config: &RelayConfig,
    error: impl std::error::Error + Send + Sync + 'static,
) -> RelayError {
    RelayError::JetStream {
        action,
        stream: config.stream.clone(),
        source: Box::new(error),
    }
}
