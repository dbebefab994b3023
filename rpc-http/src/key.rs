//! The secret two silos share, and how a silo is named on the wire.

use std::fmt;
use std::sync::Arc;

use diesel_outbox::SiloId;

use crate::error::ConfigError;

/// A secret shared by one pair of silos (control and one cell): each signs what it sends
/// the other with it, and checks what it receives. Give every pair its own key, so that
/// a cell's key lets it speak only as itself and only to control.
///
/// At least [`SigningKey::MIN_BYTES`] bytes. Its `Debug` output never shows the secret.
///
/// ```
/// use diesel_outbox_http::SigningKey;
///
/// let key = SigningKey::generate()?;               // 32 random bytes
/// let same = SigningKey::from_hex(&key.to_hex())?; // as written in both silos' config
/// assert_eq!(format!("{same:?}"), "SigningKey(..)");
/// assert!(SigningKey::new(b"short".to_vec()).is_err());
/// # Ok::<(), diesel_outbox_http::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SigningKey(Arc<[u8]>);

impl SigningKey {
    /// The shortest key accepted: 32 bytes, the size of an HMAC-SHA256 output.
    pub const MIN_BYTES: usize = 32;

    /// A key of these bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        let bytes = bytes.into();
        if bytes.len() < Self::MIN_BYTES {
            return Err(ConfigError::ShortKey {
                bytes: bytes.len(),
                min: Self::MIN_BYTES,
            });
        }
        Ok(SigningKey(bytes.into()))
    }

    /// A key written as hexadecimal (e.g. read from a secret store).
    pub fn from_hex(text: &str) -> Result<Self, ConfigError> {
        let bytes = hex::decode(text.trim()).map_err(|error| ConfigError::KeyNotHex {
            reason: error.to_string(),
        })?;
        Self::new(bytes)
    }

    /// A new random key of 32 bytes, from the operating system's generator.
    pub fn generate() -> Result<Self, ConfigError> {
        let mut bytes = vec![0u8; Self::MIN_BYTES];
        getrandom::fill(&mut bytes).map_err(|error| ConfigError::Random {
            reason: error.to_string(),
        })?;
        Self::new(bytes)
    }

    /// The key as hexadecimal, to give to the other silo of the pair.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// How a silo is named in the `x-outbox-caller` header and in signatures: `control`, or
/// `cell:` and the cell's name.
pub(crate) fn silo_name(silo: &SiloId) -> Result<String, ConfigError> {
    match silo {
        SiloId::Control => Ok("control".to_owned()),
        SiloId::Cell(name) => {
            // Header values are visible ASCII; a name outside it could not be sent.
            if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_graphic()) {
                return Err(ConfigError::SiloName { name: name.clone() });
            }
            Ok(format!("cell:{name}"))
        }
    }
}

/// The silo a caller header names, if it names one.
pub(crate) fn parse_silo_name(text: &str) -> Option<SiloId> {
    match text {
        "control" => Some(SiloId::Control),
        _ => text
            .strip_prefix("cell:")
            .filter(|name| !name.is_empty())
            .map(SiloId::cell),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silo_names_round_trip_and_refuse_what_a_header_cannot_carry() {
        for silo in [SiloId::Control, SiloId::cell("eu-west-1")] {
            let name = silo_name(&silo).expect("a header-safe name");
            assert_eq!(parse_silo_name(&name), Some(silo));
        }
        assert!(silo_name(&SiloId::cell("two words")).is_err());
        assert!(silo_name(&SiloId::cell("zürich")).is_err());
        assert_eq!(parse_silo_name("cell:"), None);
        assert_eq!(parse_silo_name("admin"), None);
    }

    #[test]
    fn keys_shorter_than_32_bytes_or_not_hex_are_refused() {
        assert!(SigningKey::new(vec![7u8; 31]).is_err());
        assert!(SigningKey::new(vec![7u8; 32]).is_ok());
        assert!(SigningKey::from_hex("zz").is_err());
        let key = SigningKey::generate().expect("random");
        assert_eq!(key.to_hex().len(), 64);
        assert_ne!(
            key.to_hex(),
            SigningKey::generate().expect("random").to_hex()
        );
    }
}
