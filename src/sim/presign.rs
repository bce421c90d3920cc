//! Presigned media URLs: `…?Expires=<unix>&Signature=<hex HMAC-SHA256>` over the method,
//! path and expiry. Storage checks the signature first, then the expiry.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Why a presigned URL was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum UrlRefusal {
    /// Signature missing or wrong (`SignatureDoesNotMatch`).
    BadSignature,
    /// Signature fine, expiry passed (`AccessDenied: Request has expired`).
    Expired,
}

/// Signs and checks presigned URLs with one key.
#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(***)")
    }
}

impl UrlSigner {
    pub fn new(key: &[u8]) -> Self {
        UrlSigner { key: key.to_vec() }
    }

    fn signature(&self, path: &str, expires: u64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("GET\n{path}\n{expires}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The query string (`Expires=…&Signature=…`) that authorises `path` until `expires`.
    pub fn query(&self, path: &str, expires: u64, access_key_id: &str) -> String {
        format!(
            "AWSAccessKeyId={access_key_id}&Expires={expires}&Signature={}",
            self.signature(path, expires)
        )
    }

    /// Checks a request for `path` at Unix time `now`.
    pub fn check(
        &self,
        path: &str,
        expires: Option<u64>,
        signature: Option<&str>,
        now: u64,
    ) -> Result<u64, UrlRefusal> {
        let (Some(expires), Some(signature)) = (expires, signature) else {
            return Err(UrlRefusal::BadSignature);
        };
        let expected = self.signature(path, expires);
        if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
            return Err(UrlRefusal::BadSignature);
        }
        if now >= expires {
            return Err(UrlRefusal::Expired);
        }
        Ok(expires)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_refuses_tampered_and_expired() {
        let signer = UrlSigner::new(b"k");
        let query = signer.query("/m/a.wav", 100, "AK");
        let sig = query.rsplit("Signature=").next().unwrap();
        assert_eq!(signer.check("/m/a.wav", Some(100), Some(sig), 99), Ok(100));
        assert_eq!(
            signer.check("/m/a.wav", Some(100), Some(sig), 100),
            Err(UrlRefusal::Expired)
        );
        assert_eq!(
            signer.check("/m/b.wav", Some(100), Some(sig), 99),
            Err(UrlRefusal::BadSignature)
        );
        assert_eq!(
            signer.check("/m/a.wav", Some(101), Some(sig), 99),
            Err(UrlRefusal::BadSignature)
        );
        assert_eq!(
            signer.check("/m/a.wav", None, Some(sig), 99),
            Err(UrlRefusal::BadSignature)
        );
    }
}
