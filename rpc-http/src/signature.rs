//! HMAC-SHA256 signatures over a request (method, path, timestamp, nonce, caller,
//! recipient and body) and over a response (the request's nonce, the status and the
//! body). The MAC comes from the `hmac` and `sha2` crates; comparison is theirs, in
//! constant time.
//!
//! What is signed, as bytes, each field followed by a newline, then the body:
//!
//! ```text
//! diesel-outbox-rpc-v1 request        diesel-outbox-rpc-v1 response
//! POST                                <request nonce>
//! /outbox/apply                       200
//! <unix seconds>                      <body>
//! <nonce>
//! <caller>                            (caller, recipient: `control` or `cell:<name>`)
//! <recipient>
//! <body>
//! ```
//!
//! No field before the body can hold a newline (the server refuses a request whose
//! headers do), so the text has one reading.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::key::SigningKey;

/// The header naming the sending silo: `control` or `cell:<name>`.
pub const CALLER_HEADER: &str = "x-outbox-caller";
/// The header holding the request's time, in seconds since the Unix epoch.
pub const TIMESTAMP_HEADER: &str = "x-outbox-timestamp";
/// The header holding the request's nonce: 32 hexadecimal digits, never used twice.
pub const NONCE_HEADER: &str = "x-outbox-nonce";
/// The header holding the signature, in hexadecimal: of the request on a request, of
/// the response on a response.
pub const SIGNATURE_HEADER: &str = "x-outbox-signature";

const REQUEST_DOMAIN: &[u8] = b"diesel-outbox-rpc-v1 request\n";
const RESPONSE_DOMAIN: &[u8] = b"diesel-outbox-rpc-v1 response\n";

/// The signed parts of a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The path, without scheme, host or query.
    pub path: &'a str,
    /// Seconds since the Unix epoch.
    pub timestamp: i64,
    /// The nonce.
    pub nonce: &'a str,
    /// The sender: `control` or `cell:<name>`.
    pub caller: &'a str,
    /// The receiver: `control` or `cell:<name>`.
    pub recipient: &'a str,
    /// The body, as sent.
    pub body: &'a [u8],
}

fn request_mac(key: &SigningKey, parts: &RequestParts<'_>) -> Hmac<Sha256> {
    let mut mac = new_mac(key);
    mac.update(REQUEST_DOMAIN);
    let timestamp = parts.timestamp.to_string();
    for field in [
        parts.method,
        parts.path,
        &timestamp,
        parts.nonce,
        parts.caller,
        parts.recipient,
    ] {
        mac.update(field.as_bytes());
        mac.update(b"\n");
    }
    mac.update(parts.body);
    mac
}

fn response_mac(key: &SigningKey, nonce: &str, status: u16, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = new_mac(key);
    mac.update(RESPONSE_DOMAIN);
    mac.update(nonce.as_bytes());
    mac.update(b"\n");
    mac.update(status.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

fn new_mac(key: &SigningKey) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    match <Hmac<Sha256> as Mac>::new_from_slice(key.bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

/// The signature of a request, in hexadecimal.
pub fn sign_request(key: &SigningKey, parts: &RequestParts<'_>) -> String {
    hex::encode(request_mac(key, parts).finalize().into_bytes())
}

/// Whether `signature` (hexadecimal) is the request's signature under `key`.
pub fn verify_request(key: &SigningKey, parts: &RequestParts<'_>, signature: &str) -> bool {
    match hex::decode(signature) {
        Ok(bytes) => request_mac(key, parts).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// The signature of a response to the request of `nonce`, in hexadecimal.
pub fn sign_response(key: &SigningKey, nonce: &str, status: u16, body: &[u8]) -> String {
    hex::encode(
        response_mac(key, nonce, status, body)
            .finalize()
            .into_bytes(),
    )
}

/// Whether `signature` (hexadecimal) is the response's signature under `key`.
pub fn verify_response(
    key: &SigningKey,
    nonce: &str,
    status: u16,
    body: &[u8],
    signature: &str,
) -> bool {
    match hex::decode(signature) {
        Ok(bytes) => response_mac(key, nonce, status, body)
            .verify_slice(&bytes)
            .is_ok(),
        Err(_) => false,
    }
}

/// A new nonce: 16 random bytes from the operating system, in hexadecimal.
pub fn new_nonce() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Whether `nonce` has the form [`new_nonce`] gives: 32 lowercase hexadecimal digits.
pub(crate) fn is_nonce(nonce: &str) -> bool {
    nonce.len() == 32
        && nonce
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::new(vec![byte; 32]).expect("a long enough key")
    }

    fn parts(body: &[u8]) -> RequestParts<'_> {
        RequestParts {
            method: "POST",
            path: "/outbox/apply",
            timestamp: 1_700_000_000,
            nonce: "00112233445566778899aabbccddeeff",
            caller: "cell:eu",
            recipient: "control",
            body,
        }
    }

    #[test]
    fn a_request_verifies_under_its_key_only_and_only_unchanged() {
        let signature = sign_request(&key(1), &parts(b"{}"));
        assert!(verify_request(&key(1), &parts(b"{}"), &signature));
        assert!(!verify_request(&key(2), &parts(b"{}"), &signature));
        assert!(!verify_request(&key(1), &parts(b"{ }"), &signature));
        let mut other = parts(b"{}");
        other.timestamp += 1;
        assert!(!verify_request(&key(1), &other, &signature));
        let mut other = parts(b"{}");
        other.caller = "cell:us";
        assert!(!verify_request(&key(1), &other, &signature));
        let mut other = parts(b"{}");
        other.recipient = "cell:eu";
        assert!(!verify_request(&key(1), &other, &signature));
        assert!(!verify_request(&key(1), &parts(b"{}"), "not hex"));
    }

    #[test]
    fn a_response_is_bound_to_its_request_nonce_and_status() {
        let nonce = "00112233445566778899aabbccddeeff";
        let signature = sign_response(&key(1), nonce, 200, b"ok");
        assert!(verify_response(&key(1), nonce, 200, b"ok", &signature));
        assert!(!verify_response(&key(1), nonce, 201, b"ok", &signature));
        assert!(!verify_response(
            &key(1),
            "ffffffffffffffffffffffffffffffff",
            200,
            b"ok",
            &signature
        ));
        assert!(!verify_response(&key(2), nonce, 200, b"ok", &signature));
    }

    #[test]
    fn nonces_are_fresh_and_well_formed() {
        let (a, b) = (new_nonce().expect("random"), new_nonce().expect("random"));
        assert!(is_nonce(&a) && is_nonce(&b));
        assert_ne!(a, b);
        assert!(!is_nonce("ABCDEF"));
    }
}
