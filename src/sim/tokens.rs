//! Issued access and refresh tokens. Access tokens look like JWTs (the real platform's
//! clients read `tenantId` from the claims) but are checked by lookup, with a TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::rng::{derive, mix64};

/// Why a bearer token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenRefusal {
    Missing,
    Unknown,
    Expired,
}

impl TokenRefusal {
    pub fn description(&self) -> &'static str {
        match self {
            TokenRefusal::Missing => "no bearer token",
            TokenRefusal::Unknown => "the access token is not valid",
            TokenRefusal::Expired => "the access token expired",
        }
    }
}

/// A freshly issued pair.
#[derive(Debug)]
pub struct IssuedToken {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// Token store: token → expiry.
#[derive(Debug)]
pub struct TokenStore {
    seed: u64,
    counter: AtomicU64,
    access: Mutex<HashMap<String, Instant>>,
    refresh: Mutex<HashMap<String, Instant>>,
}

const REFRESH_TTL: Duration = Duration::from_secs(24 * 3600);
const MAX_TOKENS: usize = 50_000;

impl TokenStore {
    pub fn new(seed: u64) -> Self {
        TokenStore {
            seed,
            counter: AtomicU64::new(0),
            access: Mutex::default(),
            refresh: Mutex::default(),
        }
    }

    /// Issues an access token living `ttl` (rounded up to whole seconds in `expires_in`).
    pub fn issue(
        &self,
        ttl: Duration,
        tenant_id: &str,
        subject: &str,
        now: Instant,
    ) -> IssuedToken {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let unix = chrono::Utc::now().timestamp();
        let expires_in = ttl.as_secs_f64().ceil().max(1.0) as u64;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = json!({
            "iss": "cxpipe-sim", "sub": subject, "tenantId": tenant_id,
            "iat": unix, "exp": unix + expires_in as i64, "jti": n,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signature = format!(
            "{:016x}{:016x}",
            derive(self.seed, n, 201),
            mix64(n ^ unix as u64)
        );
        let access_token = format!("{header}.{claims}.{signature}");
        let refresh_token = format!(
            "rt-{:016x}{:016x}",
            derive(self.seed, n, 202),
            derive(self.seed, n, 203)
        );
        let mut access = self.access.lock().unwrap_or_else(|p| p.into_inner());
        if access.len() >= MAX_TOKENS {
            access.retain(|_, exp| *exp > now);
        }
        access.insert(access_token.clone(), now + ttl);
        drop(access);
        let mut refresh = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        if refresh.len() >= MAX_TOKENS {
            refresh.retain(|_, exp| *exp > now);
        }
        refresh.insert(refresh_token.clone(), now + REFRESH_TTL);
        IssuedToken {
            access_token,
            refresh_token,
            expires_in,
        }
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&str>, now: Instant) -> Result<(), TokenRefusal> {
        let token = authorization
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(TokenRefusal::Missing)?;
        let access = self.access.lock().unwrap_or_else(|p| p.into_inner());
        match access.get(token) {
            None => Err(TokenRefusal::Unknown),
            Some(expiry) if *expiry <= now => Err(TokenRefusal::Expired),
            Some(_) => Ok(()),
        }
    }

    /// Consumes a refresh token (single use); true when it was valid.
    pub fn redeem_refresh(&self, token: &str, now: Instant) -> bool {
        let mut refresh = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        matches!(refresh.remove(token), Some(expiry) if expiry > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_and_refresh_tokens_are_single_use() {
        let store = TokenStore::new(1);
        let t0 = Instant::now();
        let issued = store.issue(Duration::from_secs(2), "t", "c", t0);
        assert_eq!(issued.expires_in, 2);
        let header = format!("Bearer {}", issued.access_token);
        assert_eq!(store.check(Some(&header), t0), Ok(()));
        assert_eq!(
            store.check(Some(&header), t0 + Duration::from_secs(2)),
            Err(TokenRefusal::Expired)
        );
        assert_eq!(
            store.check(Some("Bearer nope"), t0),
            Err(TokenRefusal::Unknown)
        );
        assert_eq!(store.check(None, t0), Err(TokenRefusal::Missing));
        assert!(store.redeem_refresh(&issued.refresh_token, t0));
        assert!(!store.redeem_refresh(&issued.refresh_token, t0));
    }

    #[test]
    fn access_tokens_carry_the_tenant_claim() {
        let store = TokenStore::new(1);
        let issued = store.issue(Duration::from_secs(60), "tenant-9", "c", Instant::now());
        let claims = issued.access_token.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(claims["tenantId"], "tenant-9");
    }
}
