//! Verification of incoming webhook requests (seed 003): HMAC-SHA256 over
//! `"{timestamp}.{body}"` with the tenant's secret, compared in constant time, a timestamp
//! tolerance both ways, a body cap and the event id. Replays are caught by the ledger, not
//! here. A rejection is a kind without detail, for a status code and a counter.

use std::time::Duration;

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::Secret;

/// Timestamp header values above this are milliseconds since the epoch, not seconds
/// (10^11 seconds is the year 5138).
const MS_THRESHOLD: i64 = 100_000_000_000;

/// Where the event id is found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventIdSource {
    /// The first of these top-level JSON fields present in the body, as text.
    Fields(Vec<String>),
    /// This request header.
    Header(String),
}

/// A tenant's webhook settings, with the defaults of the CXone guide (seed 003) and the
/// simulator.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub secret: Secret,
    /// The header carrying the hex HMAC (optionally prefixed `sha256=`).
    pub signature_header: String,
    /// The header carrying the signing time: epoch seconds (or milliseconds, told apart
    /// by size).
    pub timestamp_header: String,
    /// How far the signing time may be from now, either way.
    pub tolerance: Duration,
    /// The largest body accepted, in bytes.
    pub max_body: usize,
    pub event_id: EventIdSource,
}

impl WebhookSettings {
    /// Settings with the defaults: `X-Nice-Signature`, `Nice-Request-Timestamp`, 300 s,
    /// 1 MiB, event id from the body's `eventId` (else `id`).
    pub fn new(secret: Secret) -> Self {
        WebhookSettings {
            secret,
            signature_header: "X-Nice-Signature".into(),
            timestamp_header: "Nice-Request-Timestamp".into(),
            tolerance: Duration::from_secs(300),
            max_body: 1024 * 1024,
            event_id: EventIdSource::Fields(vec!["eventId".into(), "id".into()]),
        }
    }
}

/// Why a request was refused. Deliberately without detail: the sender learns nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejection {
    #[error("missing signature or timestamp header")]
    Unsigned,
    #[error("signature does not match")]
    BadSignature,
    #[error("timestamp outside the tolerance")]
    Stale,
    #[error("body larger than the cap")]
    TooLarge,
    #[error("timestamp, body or event id malformed")]
    Malformed,
    #[error("event id already received")]
    Replayed,
}

impl Rejection {
    /// The label of this outcome in `cxpipe_webhook_requests_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Unsigned => "unsigned",
            Rejection::BadSignature => "bad_signature",
            Rejection::Stale => "stale",
            Rejection::TooLarge => "too_large",
            Rejection::Malformed => "malformed",
            Rejection::Replayed => "replayed",
        }
    }
}

/// A request that passed verification.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedEvent {
    pub event_id: String,
    /// The body as received (valid UTF-8 JSON).
    pub body: String,
    pub json: serde_json::Value,
}

/// Verifies requests for one tenant (× pipeline). Holds the keyed MAC, not the secret text.
#[derive(Clone)]
pub struct Verifier {
    mac: Hmac<Sha256>,
    signature_header: String,
    timestamp_header: String,
    tolerance_ms: i64,
    max_body: usize,
    event_id: EventIdSource,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("secret", &"***")
            .field("signature_header", &self.signature_header)
            .field("timestamp_header", &self.timestamp_header)
            .field("tolerance_ms", &self.tolerance_ms)
            .field("max_body", &self.max_body)
            .finish()
    }
}

impl Verifier {
    pub fn new(settings: &WebhookSettings) -> Self {
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(settings.secret.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        Verifier {
            mac,
            signature_header: settings.signature_header.clone(),
            timestamp_header: settings.timestamp_header.clone(),
            tolerance_ms: i64::try_from(settings.tolerance.as_millis()).unwrap_or(i64::MAX),
            max_body: settings.max_body,
            event_id: settings.event_id.clone(),
        }
    }

    /// The largest body accepted, in bytes (the route stops reading beyond it).
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Verifies a request received at `now_ms` (ms since the epoch).
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_ms: i64,
    ) -> Result<VerifiedEvent, Rejection> {
        if body.len() > self.max_body {
            return Err(Rejection::TooLarge);
        }
        let header = |name: &str| headers.get(name).map(|v| v.to_str().map(str::trim));
        let (Some(signature), Some(timestamp)) = (
            header(&self.signature_header),
            header(&self.timestamp_header),
        ) else {
            return Err(Rejection::Unsigned);
        };
        let (Ok(signature), Ok(timestamp)) = (signature, timestamp) else {
            return Err(Rejection::Malformed);
        };
        let signed_at_ms = parse_timestamp(timestamp).ok_or(Rejection::Malformed)?;
        let hex_sig = signature.strip_prefix("sha256=").unwrap_or(signature);
        let tag = hex::decode(hex_sig).map_err(|_| Rejection::BadSignature)?;
        let mut mac = self.mac.clone();
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&tag)
            .map_err(|_| Rejection::BadSignature)?;
        if (now_ms - signed_at_ms).abs() > self.tolerance_ms {
            return Err(Rejection::Stale);
        }
        let text = std::str::from_utf8(body).map_err(|_| Rejection::Malformed)?;
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|_| Rejection::Malformed)?;
        let event_id = self.event_id(headers, &json).ok_or(Rejection::Malformed)?;
        Ok(VerifiedEvent {
            event_id,
            body: text.to_string(),
            json,
        })
    }

    fn event_id(&self, headers: &HeaderMap, json: &serde_json::Value) -> Option<String> {
        let id = match &self.event_id {
            EventIdSource::Header(name) => headers.get(name)?.to_str().ok()?.trim().to_string(),
            EventIdSource::Fields(fields) => fields.iter().find_map(|f| match json.get(f)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })?,
        };
        (!id.is_empty() && id.len() <= 512).then_some(id)
    }
}

/// Epoch seconds, or milliseconds when the value is too large to be seconds, as ms.
fn parse_timestamp(text: &str) -> Option<i64> {
    let n: i64 = text.parse().ok()?;
    if n < 0 {
        return None;
    }
    if n >= MS_THRESHOLD {
        Some(n)
    } else {
        n.checked_mul(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_S: i64 = 1_800_000_000;
    const NOW_MS: i64 = NOW_S * 1000;
    const BODY: &str = r#"{"eventId":"evt-1","recordingId":"r1"}"#;

    fn settings() -> WebhookSettings {
        WebhookSettings::new(Secret::new("whsec-test"))
    }

    fn signed(secret: &str, ts: &str, body: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        // As the simulator signs (src/sim/webhooks.rs): hex HMAC-SHA256 of "{ts}.{body}".
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}.{body}").as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        h.insert("Nice-Request-Timestamp", ts.parse().unwrap());
        h.insert("X-Nice-Signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn a_request_signed_like_the_simulator_signs_is_accepted() {
        let v = Verifier::new(&settings());
        let got = v
            .verify(
                &signed("whsec-test", &NOW_S.to_string(), BODY),
                BODY.as_bytes(),
                NOW_MS,
            )
            .unwrap();
        assert_eq!(got.event_id, "evt-1");
        assert_eq!(got.body, BODY);
        assert_eq!(got.json["recordingId"], "r1");
    }

    #[test]
    fn a_sha256_prefix_and_millisecond_timestamps_are_accepted() {
        let v = Verifier::new(&settings());
        let mut h = signed("whsec-test", &NOW_S.to_string(), BODY);
        let sig = h["X-Nice-Signature"].to_str().unwrap().to_string();
        h.insert("X-Nice-Signature", format!("sha256={sig}").parse().unwrap());
        assert!(v.verify(&h, BODY.as_bytes(), NOW_MS).is_ok());
        let ms = NOW_MS.to_string();
        let h = signed("whsec-test", &ms, BODY);
        assert!(v.verify(&h, BODY.as_bytes(), NOW_MS + 1000).is_ok());
    }

    #[test]
    fn a_forged_signature_or_altered_body_is_refused() {
        let v = Verifier::new(&settings());
        let ts = NOW_S.to_string();
        let forged = signed("not-the-secret", &ts, BODY);
        assert_eq!(
            v.verify(&forged, BODY.as_bytes(), NOW_MS),
            Err(Rejection::BadSignature)
        );
        let altered = BODY.replace("r1", "r2");
        let h = signed("whsec-test", &ts, BODY);
        assert_eq!(
            v.verify(&h, altered.as_bytes(), NOW_MS),
            Err(Rejection::BadSignature)
        );
        let mut h = signed("whsec-test", &ts, BODY);
        h.insert("X-Nice-Signature", "zz-not-hex".parse().unwrap());
        assert_eq!(
            v.verify(&h, BODY.as_bytes(), NOW_MS),
            Err(Rejection::BadSignature)
        );
        // A signature for another timestamp does not carry over.
        let mut h = signed("whsec-test", &ts, BODY);
        h.insert(
            "Nice-Request-Timestamp",
            (NOW_S + 1).to_string().parse().unwrap(),
        );
        assert_eq!(
            v.verify(&h, BODY.as_bytes(), NOW_MS),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn timestamps_outside_the_tolerance_either_way_are_stale() {
        let v = Verifier::new(&settings());
        let old = (NOW_S - 301).to_string();
        let future = (NOW_S + 301).to_string();
        let edge = (NOW_S - 300).to_string();
        for ts in [&old, &future] {
            let h = signed("whsec-test", ts, BODY);
            assert_eq!(
                v.verify(&h, BODY.as_bytes(), NOW_MS),
                Err(Rejection::Stale),
                "{ts}"
            );
        }
        let h = signed("whsec-test", &edge, BODY);
        assert!(v.verify(&h, BODY.as_bytes(), NOW_MS).is_ok());
    }

    #[test]
    fn missing_headers_are_unsigned_and_bad_timestamps_malformed() {
        let v = Verifier::new(&settings());
        let ts = NOW_S.to_string();
        for name in ["X-Nice-Signature", "Nice-Request-Timestamp"] {
            let mut h = signed("whsec-test", &ts, BODY);
            h.remove(name);
            assert_eq!(
                v.verify(&h, BODY.as_bytes(), NOW_MS),
                Err(Rejection::Unsigned)
            );
        }
        let mut h = signed("whsec-test", &ts, BODY);
        h.insert("Nice-Request-Timestamp", "yesterday".parse().unwrap());
        assert_eq!(
            v.verify(&h, BODY.as_bytes(), NOW_MS),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn an_oversized_body_is_refused_before_anything_else() {
        let mut s = settings();
        s.max_body = 16;
        let v = Verifier::new(&s);
        let h = signed("whsec-test", &NOW_S.to_string(), BODY);
        assert_eq!(
            v.verify(&h, BODY.as_bytes(), NOW_MS),
            Err(Rejection::TooLarge)
        );
        assert_eq!(
            v.verify(&HeaderMap::new(), BODY.as_bytes(), NOW_MS),
            Err(Rejection::TooLarge)
        );
    }

    #[test]
    fn the_event_id_comes_from_the_body_or_a_header() {
        let ts = NOW_S.to_string();
        let v = Verifier::new(&settings());
        let body = r#"{"id":42}"#;
        let got = v.verify(&signed("whsec-test", &ts, body), body.as_bytes(), NOW_MS);
        assert_eq!(got.unwrap().event_id, "42");
        let body = r#"{"recordingId":"r1"}"#;
        let got = v.verify(&signed("whsec-test", &ts, body), body.as_bytes(), NOW_MS);
        assert_eq!(got, Err(Rejection::Malformed));
        let body = "not json";
        let got = v.verify(&signed("whsec-test", &ts, body), body.as_bytes(), NOW_MS);
        assert_eq!(got, Err(Rejection::Malformed));

        let mut s = settings();
        s.event_id = EventIdSource::Header("X-Event-Id".into());
        let v = Verifier::new(&s);
        let body = r#"{"recordingId":"r1"}"#;
        let mut h = signed("whsec-test", &ts, body);
        assert_eq!(
            v.verify(&h, body.as_bytes(), NOW_MS),
            Err(Rejection::Malformed)
        );
        h.insert("X-Event-Id", "hdr-7".parse().unwrap());
        assert_eq!(
            v.verify(&h, body.as_bytes(), NOW_MS).unwrap().event_id,
            "hdr-7"
        );
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let v = Verifier::new(&settings());
        assert!(!format!("{v:?}").contains("whsec-test"));
    }
}
