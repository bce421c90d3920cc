//! The seed-004 JSON envelope: `{"salt","nonce","ciphertext"}` in base64, key =
//! PBKDF2-HMAC-SHA256(passphrase, salt, 480000), AES-256-GCM over the whole payload (tag
//! appended). Opened for compatibility, and written by the `.envelope(key)` stage for
//! readers that expect it: that stage stretches the passphrase once per process (one
//! random salt per key and process, stored in every envelope), never per object.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine as _;
use serde::Deserialize;
use sha2::Sha256;

use super::error::{CryptoError, FlowError};
use super::transform::Transform;
use crate::keys::Kek;
use crate::secret::Secret;

/// Largest plaintext one envelope holds: the format is a single JSON document, so the
/// whole object is in memory while it is sealed.
pub const MAX_ENVELOPE_PLAINTEXT: usize = 256 * 1024 * 1024;

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

/// A passphrase stretched for sealing: the salt drawn once and the key derived from it.
struct SealKey {
    salt: [u8; 16],
    key: [u8; 32],
}

/// The sealing key of `kek` for this process: stretched on first use, then shared by
/// every envelope this process writes with that key.
fn seal_key(name: &str, kek: &Kek) -> Result<Arc<SealKey>, CryptoError> {
    static CACHE: OnceLock<Mutex<HashMap<[u8; 8], Arc<SealKey>>>> = OnceLock::new();
    let passphrase = kek.passphrase().ok_or_else(|| {
        CryptoError::Envelope(format!(
            "key {name} is a raw key; the envelope's PBKDF2 needs a passphrase key \
             ([keys.{name}] passphrase_env = \"VAR\"), or use .encrypt({name:?})"
        ))
    })?;
    // Held while stretching, so concurrent first uses stretch once.
    let mut cache = CACHE
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(hit) = cache.get(&kek.id()) {
        return Ok(hit.clone());
    }
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        passphrase.expose().as_bytes(),
        &salt,
        ENVELOPE_ITERATIONS,
        &mut key,
    );
    tracing::debug!(key = name, "envelope passphrase stretched for this process");
    let sealed = Arc::new(SealKey { salt, key });
    cache.insert(kek.id(), sealed.clone());
    Ok(sealed)
}

/// The `.envelope(key)` stage: collects the plaintext and, at the end, writes one JSON
/// envelope (fresh random nonce, the process's salt and stretched key).
pub struct EnvelopeSealer {
    key: Arc<SealKey>,
    plaintext: Vec<u8>,
}

impl EnvelopeSealer {
    /// A sealer for the passphrase key `name` (a raw key is an error that says so).
    pub fn new(name: &str, kek: &Kek) -> Result<EnvelopeSealer, FlowError> {
        Ok(EnvelopeSealer {
            key: seal_key(name, kek)?,
            plaintext: Vec::new(),
        })
    }
}

impl Transform for EnvelopeSealer {
    fn update(&mut self, input: &[u8], _out: &mut Vec<u8>) -> Result<(), FlowError> {
        if self.plaintext.len() + input.len() > MAX_ENVELOPE_PLAINTEXT {
            return Err(FlowError::Invalid(format!(
                "envelope: more than {} MiB of plaintext; an envelope is one JSON document held \
                 in memory, so write smaller batches or use .encrypt(key)",
                MAX_ENVELOPE_PLAINTEXT >> 20
            )));
        }
        self.plaintext.extend_from_slice(input);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FlowError> {
        let plaintext = std::mem::take(&mut self.plaintext);
        out.extend_from_slice(&seal_with(&plaintext, &self.key.salt, &self.key.key));
        Ok(())
    }
}

/// Seals `plaintext` with an already stretched `key` (a fresh random nonce each time).
fn seal_with(plaintext: &[u8], salt: &[u8; 16], key: &[u8; 32]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    rand::fill(&mut nonce);
    let ct = Aes256Gcm::new(key.into())
        .encrypt(&Nonce::from(nonce), plaintext)
        .expect("AES-GCM encrypts any length below 64 GiB");
    let e = base64::engine::general_purpose::STANDARD;
    serde_json::to_vec(&serde_json::json!({
        "salt": e.encode(salt),
        "nonce": e.encode(nonce),
        "ciphertext": e.encode(ct),
    }))
    .expect("json")
}

/// Builds an envelope exactly as the seed-004 script does (for tests and fixtures).
pub fn seal(plaintext: &[u8], passphrase: &Secret) -> Vec<u8> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        passphrase.expose().as_bytes(),
        &salt,
        ENVELOPE_ITERATIONS,
        &mut key,
    );
    seal_with(plaintext, &salt, &key)
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

    fn passphrase_ring() -> crate::keys::KeyRing {
        let mut ring = crate::keys::KeyRing::empty();
        ring.insert_passphrase("p", &Secret::new("envelope-test-pass"), "cxpipe:p", 100_000);
        ring.insert_raw("raw", [3; 32]);
        ring
    }

    fn sealed_by_stage(kek: &Kek, plaintext: &[u8]) -> Vec<u8> {
        let mut sealer = EnvelopeSealer::new("p", kek).unwrap();
        let mut out = Vec::new();
        for part in plaintext.chunks(7) {
            sealer.update(part, &mut out).unwrap();
        }
        assert!(out.is_empty(), "nothing is written before the end");
        sealer.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn the_stage_stretches_once_per_key_and_seals_each_object_with_a_fresh_nonce() {
        let ring = passphrase_ring();
        let kek = ring.get("p").unwrap();
        let a = sealed_by_stage(kek, b"first batch of json lines");
        let b = sealed_by_stage(kek, b"second batch");
        let (va, vb): (serde_json::Value, serde_json::Value) = (
            serde_json::from_slice(&a).unwrap(),
            serde_json::from_slice(&b).unwrap(),
        );
        assert_eq!(
            va["salt"], vb["salt"],
            "one stretch (one salt) per process and key"
        );
        assert_ne!(va["nonce"], vb["nonce"], "a fresh nonce per object");
        let pass = Secret::new("envelope-test-pass");
        assert_eq!(open(&a, &pass).unwrap(), b"first batch of json lines");
        assert_eq!(open(&b, &pass).unwrap(), b"second batch");
    }

    #[test]
    fn the_stage_refuses_a_raw_key_and_names_the_fix() {
        let ring = passphrase_ring();
        let err = EnvelopeSealer::new("raw", ring.get("raw").unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("passphrase_env") && err.contains("raw"),
            "{err}"
        );
    }
}
