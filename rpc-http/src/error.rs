//! What can be wrong with a transport's configuration.

/// A client or server that cannot be configured as asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A signing key is too short to be safe.
    #[error("a signing key of {bytes} bytes is too short: use at least {min} random bytes (`SigningKey::generate`)")]
    ShortKey {
        /// Its length.
        bytes: usize,
        /// The minimum.
        min: usize,
    },
    /// A signing key given as text is not hexadecimal.
    #[error("a signing key is not hexadecimal: {reason}")]
    KeyNotHex {
        /// What the decoder said.
        reason: String,
    },
    /// The operating system's random generator failed.
    #[error("could not draw random bytes: {reason}")]
    Random {
        /// What the generator said.
        reason: String,
    },
    /// A cell's name cannot be carried in an HTTP header.
    #[error(
        "the cell name {name:?} cannot be sent in an HTTP header: use visible ASCII without spaces"
    )]
    SiloName {
        /// The name.
        name: String,
    },
    /// A peer's URL is not an `http://` or `https://` URL.
    #[error("the URL {url:?} of {silo} must start with http:// or https://")]
    Url {
        /// The silo.
        silo: String,
        /// The URL given.
        url: String,
    },
    /// The endpoint's path does not start with `/`.
    #[error("the endpoint path {path:?} must start with '/'")]
    Path {
        /// The path given.
        path: String,
    },
    /// A peer was given no key.
    #[error("{silo} was given no signing key")]
    NoKey {
        /// The silo.
        silo: String,
    },
    /// A silo named itself as its peer.
    #[error("{silo} cannot be its own peer")]
    SelfPeer {
        /// The silo.
        silo: String,
    },
}
