//! One connection to NATS, with the runtime that drives it.
//!
//! The client never reconnects by itself: a message the drain gave up on (its
//! acknowledgement timed out) must not be sent later on a new connection, after messages
//! of its shard that were published again meanwhile — JetStream would store the shard out
//! of order. A session whose connection dropped is replaced by a new one on the next
//! batch, and dropping the old one shuts its runtime down with whatever it still held.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use tokio::runtime::Runtime;

use crate::config::RelayConfig;
use crate::error::RelayError;

/// How long a dropped connection's reconnect waits: longer than any session lives, so
/// the session is replaced before its client could reconnect.
const NEVER: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A connection and its runtime.
pub(crate) struct Session {
    runtime: Option<Runtime>,
    client: async_nats::Client,
    jetstream: jetstream::Context,
}

impl Session {
    /// Connects with the relay's settings.
    pub(crate) fn open(config: &RelayConfig) -> Result<Self, RelayError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("diesel-outbox-nats")
            .enable_all()
            .build()
            .map_err(RelayError::Runtime)?;
        let connected = Arc::new(AtomicBool::new(false));
        let options = connect_options(config, Arc::clone(&connected));
        // A bound of our own as well: the client's timeout covers one attempt per server.
        let bound = config.connect_timeout + Duration::from_secs(1);
        let connect =
            async { tokio::time::timeout(bound, options.connect(config.server.as_str())).await };
        let client = match runtime.block_on(connect) {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                return Err(RelayError::Connect {
                    server: config.server.clone(),
                    source: Box::new(error),
                })
            }
            Err(_elapsed) => {
                return Err(RelayError::Connect {
                    server: config.server.clone(),
                    source: format!("no answer within {:?}", config.connect_timeout).into(),
                })
            }
        };
        connected.store(true, Ordering::SeqCst);
        // The context spawns its acknowledgement task: build it inside the runtime.
        let jetstream = {
            let _entered = runtime.enter();
            jetstream::context::ContextBuilder::new()
                .timeout(config.publish_timeout)
                .ack_timeout(config.publish_timeout)
                // Our pipeline bounds what is in flight; the context's own bound only
                // has to leave room for acknowledgements given up on, which it releases
                // after `ack_timeout`.
                .max_ack_inflight(config.max_in_flight.saturating_mul(4))
                .backpressure_on_inflight(true)
                .build(client.clone())
        };
        Ok(Session {
            runtime: Some(runtime),
            client,
            jetstream,
        })
    }

    /// Whether the connection is still up. Once down it stays down (no reconnection).
    pub(crate) fn is_alive(&self) -> bool {
        self.client.connection_state() != State::Disconnected
    }

    /// The server's maximum payload (headers and body), as it announced.
    pub(crate) fn max_payload(&self) -> usize {
        self.client.server_info().max_payload
    }

    pub(crate) fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// Runs `future` on the session's runtime, blocking the calling (drain) thread.
    pub(crate) fn block_on<F: Future>(&self, future: F) -> F::Output {
        match &self.runtime {
            Some(runtime) => runtime.block_on(future),
            // Only `Drop` takes the runtime.
            None => unreachable!("a session's runtime lives as long as the session"),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Ends the connection task (and its unsent messages) without waiting for it.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The user's options (or the defaults) with the relay's timeouts and no reconnection.
fn connect_options(config: &RelayConfig, connected: Arc<AtomicBool>) -> async_nats::ConnectOptions {
    let base = match &config.connect_options {
        Some(make) => make(),
        None => async_nats::ConnectOptions::new(),
    };
    base.connection_timeout(config.connect_timeout)
        // One attempt: the first connection. After it, an attempt would be a
        // reconnection, which waits "forever" (until the session is replaced).
        .max_reconnects(1)
        .reconnect_delay_callback(move |_attempts| {
            if connected.load(Ordering::SeqCst) {
                NEVER
            } else {
                Duration::ZERO
            }
        })
}
