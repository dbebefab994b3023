//! The relay refuses to start when it cannot work, with an error that says what to do.

mod common;

use std::time::Duration;

use common::{create_stream, Category, NatsServer};
use diesel_outbox::SiloId;
use diesel_outbox_nats::{NatsRelay, RelayConfig, RelayError, StreamMode};

fn config(url: &str) -> RelayConfig {
    RelayConfig::new(url, SiloId::Control, Category::ALL)
        .connect_timeout(Duration::from_secs(1))
        .publish_timeout(Duration::from_secs(1))
}

fn refusal(config: RelayConfig) -> RelayError {
    match NatsRelay::start(config) {
        Ok(relay) => panic!("the relay started: {relay:?}"),
        Err(error) => error,
    }
}

#[test]
fn a_missing_stream_is_refused_when_required_and_created_otherwise() {
    let server = NatsServer::start();
    let error = refusal(
        config(&server.url())
            .stream("NOPE")
            .stream_mode(StreamMode::Require),
    );
    assert!(matches!(error, RelayError::StreamMissing { .. }), "{error}");
    assert!(
        error.to_string().contains("StreamMode::CreateIfMissing"),
        "{error}"
    );

    NatsRelay::start(config(&server.url()).stream("MADE")).expect("creates the stream");
    // A second relay finds it, and so does one that requires it.
    NatsRelay::start(config(&server.url()).stream("MADE")).expect("finds the stream");
    NatsRelay::start(
        config(&server.url())
            .stream("MADE")
            .stream_mode(StreamMode::Require),
    )
    .expect("requires the stream");
}

#[test]
fn a_duplicate_window_shorter_than_the_longest_backoff_is_refused() {
    let server = NatsServer::start();
    // Asked of a stream the relay would create: refused before connecting.
    let error = refusal(config(&server.url()).duplicate_window(Duration::from_secs(30 * 60)));
    match &error {
        RelayError::DuplicateWindowTooShort {
            window, required, ..
        } => {
            assert_eq!(*window, Duration::from_secs(30 * 60));
            // The longest backoff plus the drain's default lease (30 s).
            assert_eq!(*required, Duration::from_secs(60 * 60 + 30));
        }
        other => panic!("unexpected: {other}"),
    }
    assert!(error.to_string().contains("--dupe-window"), "{error}");

    // An existing stream with JetStream's default window of 2 minutes: refused in both
    // modes.
    create_stream(
        &server.url(),
        async_nats::jetstream::stream::Config {
            name: "SHORT".to_owned(),
            subjects: vec!["short.>".to_owned()],
            ..Default::default()
        },
    );
    for mode in [StreamMode::Require, StreamMode::CreateIfMissing] {
        let error = refusal(
            config(&server.url())
                .stream("SHORT")
                .subject_prefix("short")
                .stream_mode(mode),
        );
        assert!(
            matches!(&error, RelayError::DuplicateWindowTooShort { window, .. } if *window == Duration::from_secs(120)),
            "{error}"
        );
    }

    // A longer lease makes the required window longer.
    create_stream(
        &server.url(),
        async_nats::jetstream::stream::Config {
            name: "HOUR_AND_TEN".to_owned(),
            subjects: vec!["long.>".to_owned()],
            duplicate_window: Duration::from_secs(70 * 60),
            ..Default::default()
        },
    );
    let long = || {
        config(&server.url())
            .stream("HOUR_AND_TEN")
            .subject_prefix("long")
            .stream_mode(StreamMode::Require)
    };
    NatsRelay::start(long()).expect("70 min > 60.5 min");
    let error = refusal(long().drain_lease(Duration::from_secs(15 * 60)));
    assert!(
        matches!(error, RelayError::DuplicateWindowTooShort { .. }),
        "{error}"
    );
}

#[test]
fn a_stream_that_does_not_capture_the_subjects_is_refused() {
    let server = NatsServer::start();
    create_stream(
        &server.url(),
        async_nats::jetstream::stream::Config {
            name: "OTHER".to_owned(),
            subjects: vec!["other.>".to_owned(), "outbox.*.*.*".to_owned()],
            duplicate_window: Duration::from_secs(2 * 60 * 60),
            ..Default::default()
        },
    );
    let error = refusal(config(&server.url()).stream("OTHER"));
    assert!(
        matches!(error, RelayError::SubjectsNotCaptured { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("outbox.>"), "{error}");
}

#[test]
fn an_unreachable_server_or_one_without_jetstream_is_refused() {
    let mut server = NatsServer::start();
    let url = server.url();
    server.kill();
    let error = refusal(config(&url));
    assert!(matches!(error, RelayError::Connect { .. }), "{error}");
    assert!(error.to_string().contains(&url), "{error}");

    let plain = NatsServer::start_with(false);
    let error = refusal(config(&plain.url()));
    assert!(matches!(error, RelayError::JetStream { .. }), "{error}");
    assert!(error.to_string().contains("-js"), "{error}");
}

#[test]
fn settings_that_cannot_work_are_refused_before_connecting() {
    let unreachable = "nats://127.0.0.1:1";
    for (config, setting) in [
        (
            config(unreachable).subject_prefix("out.*"),
            "subject_prefix",
        ),
        (config(unreachable).subject_prefix(""), "subject_prefix"),
        (config(unreachable).stream("A.B"), "stream"),
        (
            config(unreachable).publish_timeout(Duration::ZERO),
            "publish_timeout",
        ),
        (
            RelayConfig::new(unreachable, SiloId::Control, &[]),
            "categories",
        ),
    ] {
        match refusal(config) {
            RelayError::InvalidConfig { setting: got, .. } => assert_eq!(got, setting),
            other => panic!("{setting}: unexpected {other}"),
        }
    }
}
