//! The seed-004 JSON envelope, read for compatibility: `{"salt","nonce","ciphertext"}` in
//! base64, key = PBKDF2-HMAC-SHA256(passphrase, salt, 480000), AES-256-GCM over the whole
//! payload (tag appended). Only decrypted here; cxpipe writes its own format.

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine as _;
use serde::Deserialize;
use sha2::Sha256;

use super::error::CryptoError;
use crate::secret::Secret;

/// PBKDF2 iterations the seed-004 envelope uses.
pub const ENVELOPE_ITERATIONS: u32 = 480_000;

#[derive(Deserialize)]
struct Envelope {
    salt: String,
    nonce: String,
    ciphertext: String,
}

/// Whether `head` looks like a JSON envelope rather than a cxpipe object.
pub fn looks_like_envelope(head: &[u8]) -> bool {
    head.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// Decrypts an envelope with `passphrase`.
pub fn open(json: &[u8], passphrase: &Secret) -> Result<Vec<u8>, CryptoError> {
    let env: Envelope = serde_json::from_slice(json)
        .map_err(|e| CryptoError::Envelope(format!("not a salt/nonce/ciphertext object: {e}")))?;
    let b64 = |field: &str, v: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|e| CryptoError::Envelope(format!("{field} is not base64: {e}")))
    };
    let salt = b64("salt", &env.salt)?;
    let nonce = b64("nonce", &env.nonce)?;
    let ciphertext = b64("ciphertext", &env.ciphertext)?;
    let nonce: [u8; 12] = nonce
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::Envelope(format!("nonce is {} bytes, not 12", nonce.len())))?;
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        passphrase.expose().as_bytes(),
        &salt,
        ENVELOPE_ITERATIONS,
        &mut key,
    );
    Aes256Gcm::new(&key.into())
        .decrypt(&Nonce::from(nonce), ciphertext.as_slice())
        .map_err(|_| {
            CryptoError::Envelope("authentication failed (wrong passphrase or edited)".into())
        })
}

/// Builds an envelope exactly as the seed-004 script does (for tests and fixtures).
pub fn seal(plaintext: &[u8], passphrase: &Secret) -> Vec<u8> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 12];
    rand::fill(&mut salt);
    rand::fill(&mut nonce);
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        passphrase.expose().as_bytes(),
        &salt,
        ENVELOPE_ITERATIONS,
        &mut key,
    );
    let ct = Aes256Gcm::new(&key.into())
        .encrypt(&Nonce::from(nonce), plaintext)
        .expect("AES-GCM encrypts any length used here");
    let e = base64::engine::general_purpose::STANDARD;
    serde_json::to_vec(&serde_json::json!({
        "salt": e.encode(salt),
        "nonce": e.encode(nonce),
        "ciphertext": e.encode(ct),
    }))
    .expect("json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_and_rejects_wrong_passphrase_and_edits() {
        let pass = Secret::new("archive-pass");
        let sealed = seal(b"gzip bytes here", &pass);
        assert!(looks_like_envelope(&sealed));
        assert_eq!(open(&sealed, &pass).unwrap(), b"gzip bytes here");
        assert!(open(&sealed, &Secret::new("nope")).is_err());
        let mut v: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        v["nonce"] = base64::engine::general_purpose::STANDARD
            .encode([0u8; 12])
            .into();
        assert!(open(&serde_json::to_vec(&v).unwrap(), &pass).is_err());
    }
}
