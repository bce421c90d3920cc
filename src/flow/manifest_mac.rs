//! Manifest authentication (docs/FORMAT.md §3.1): when a key is configured, a manifest
//! carries `mac`, an HMAC-SHA256 of its canonical JSON (every member but `mac`, keys
//! sorted, no whitespace) under a key derived from the KEK for this purpose only. Without
//! it, anyone who can edit an object can edit its manifest's hashes to match.

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::keys::{Kek, KeyRing};

/// The `algorithm` of manifest MACs.
pub const ALGORITHM: &str = "HMAC-SHA256";
/// The manifest member holding the MAC.
pub const FIELD: &str = "mac";

/// The `mac` member of a manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestMac {
    /// Always [`ALGORITHM`].
    pub algorithm: String,
    /// Id (16 hex digits) of the key whose MAC key signed, as in encrypted headers.
    pub key_id: String,
    /// The HMAC, 64 hex digits.
    pub tag: String,
}

/// What checking a manifest's MAC found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authenticity {
    /// The MAC matches under a loaded key.
    Valid,
    /// No `mac` member (written without a key, or before manifests were authenticated).
    Missing,
    /// Signed by a key that is not loaded (its id).
    UnknownKey(String),
    /// The MAC does not match: the manifest was edited after it was written.
    Forged,
    /// `mac` is not of the documented form.
    Malformed,
}

/// Writes `v` as canonical JSON: object members sorted by the bytes of their names, no
/// whitespace, scalars as serde_json writes them.
pub fn canonical_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("strings serialize");
                out.push(b':');
                canonical_json(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("scalars serialize"),
    }
}

/// The canonical bytes a manifest's MAC covers: `manifest` without its `mac` member.
pub fn signed_bytes(manifest: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(2048);
    match manifest {
        Value::Object(map) if map.contains_key(FIELD) => {
            let mut without = map.clone();
            without.remove(FIELD);
            canonical_json(&Value::Object(without), &mut out);
        }
        other => canonical_json(other, &mut out),
    }
    out
}

fn hmac(kek: &Kek) -> hmac::Hmac<Sha256> {
    <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&kek.manifest_mac_key())
        .expect("any key length")
}

/// The `mac` member for `manifest` (a JSON object without `mac`) under `kek`.
pub fn sign(manifest: &Value, kek: &Kek) -> ManifestMac {
    let mut mac = hmac(kek);
    mac.update(&signed_bytes(manifest));
    ManifestMac {
        algorithm: ALGORITHM.into(),
        key_id: hex::encode(kek.id()),
        tag: hex::encode(mac.finalize().into_bytes()),
    }
}

/// Checks the `mac` member of `manifest` (as parsed from its stored text) against `keys`.
pub fn check(manifest: &Value, keys: &KeyRing) -> Authenticity {
    let Some(raw) = manifest.get(FIELD) else {
        return Authenticity::Missing;
    };
    let Ok(m) = serde_json::from_value::<ManifestMac>(raw.clone()) else {
        return Authenticity::Malformed;
    };
    let id = hex::decode(&m.key_id)
        .ok()
        .and_then(|id| <[u8; 8]>::try_from(id.as_slice()).ok());
    let tag = hex::decode(&m.tag).ok();
    let (Some(id), Some(tag), true) = (id, tag, m.algorithm == ALGORITHM) else {
        return Authenticity::Malformed;
    };
    let Some((_, kek)) = keys.by_id(id) else {
        return Authenticity::UnknownKey(m.key_id);
    };
    let mut mac = hmac(kek);
    mac.update(&signed_bytes(manifest));
    match mac.verify_slice(&tag) {
        Ok(()) => Authenticity::Valid,
        Err(_) => Authenticity::Forged,
    }
}

/// The key that signs a manifest: the flow's encryption key, else the first configured
/// key by name; `None` when no key is configured.
pub fn signing_key<'a>(keys: &'a KeyRing, encrypted_with: Option<&str>) -> Option<&'a Kek> {
    encrypted_with
        .and_then(|name| keys.get(name).ok())
        .or_else(|| keys.iter().next().map(|(_, k)| k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ring() -> KeyRing {
        let mut keys = KeyRing::empty();
        keys.insert_raw("a", [1; 32]);
        keys.insert_raw("b", [2; 32]);
        keys
    }

    #[test]
    fn canonical_json_sorts_members_and_drops_whitespace_and_the_mac() {
        let v = json!({ "b": [1, { "z": "é\n", "a": null }], "a": 1.5, "mac": { "tag": "x" } });
        assert_eq!(
            String::from_utf8(signed_bytes(&v)).unwrap(),
            r#"{"a":1.5,"b":[1,{"a":null,"z":"é\n"}]}"#
        );
    }

    #[test]
    fn a_signed_manifest_checks_and_any_edit_is_caught() {
        let keys = ring();
        let kek = signing_key(&keys, Some("b")).unwrap();
        let mut v = json!({ "key": "r.wav", "stored": { "size": 3, "sha256": "ab" } });
        let mac = sign(&v, kek);
        assert_eq!(mac.key_id, hex::encode(keys.get("b").unwrap().id()));
        v[FIELD] = serde_json::to_value(&mac).unwrap();
        assert_eq!(check(&v, &keys), Authenticity::Valid);

        let mut edited = v.clone();
        edited["stored"]["sha256"] = "cd".into();
        assert_eq!(check(&edited, &keys), Authenticity::Forged);
        let mut added = v.clone();
        added["extra"] = true.into();
        assert_eq!(check(&added, &keys), Authenticity::Forged);

        let mut other = KeyRing::empty();
        other.insert_raw("c", [3; 32]);
        assert_eq!(check(&v, &other), Authenticity::UnknownKey(mac.key_id));
        let mut stripped = v.clone();
        stripped.as_object_mut().unwrap().remove(FIELD);
        assert_eq!(check(&stripped, &keys), Authenticity::Missing);
        let mut bad = v.clone();
        bad[FIELD]["tag"] = "zz".into();
        assert_eq!(check(&bad, &keys), Authenticity::Malformed);
    }

    #[test]
    fn the_mac_key_is_not_the_kek_and_unencrypted_manifests_use_the_first_key() {
        let keys = ring();
        let a = keys.get("a").unwrap();
        assert_ne!(&a.manifest_mac_key(), a.bytes());
        assert_eq!(signing_key(&keys, None).unwrap().id(), a.id());
        assert!(signing_key(&KeyRing::empty(), None).is_none());
    }
}
