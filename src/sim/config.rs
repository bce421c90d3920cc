//! Simulator configuration: the dataset shape (fixed at start) and the fault knobs
//! ([`Faults`], changeable at run time through `POST /_sim/control`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration_serde;

/// Everything needed to start a simulator. `Default` is the `cxpipe demo` setting:
/// faults on at low rates. Use [`SimConfig::without_faults`] for exact tests.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of the dataset: same seed, same records, same media bytes, same credentials.
    pub seed: u64,
    /// Number of recordings (derived on demand, never materialised).
    pub recordings: usize,
    /// Number of interactions (seed 004 and the real contacts API).
    pub interactions: usize,
    /// About how many recordings have a transcript (capped at `recordings`; seeds 003 and
    /// analytics).
    pub transcripts: usize,
    /// Number of retention policies (seed 000).
    pub policies: usize,
    /// Media sizes of the `combined` channel.
    pub sizes: SizeDistribution,
    /// Share of recordings still `Processing` when the simulator starts.
    pub processing_share: f64,
    /// Mean time after start at which a `Processing` recording becomes `Available`.
    pub processing_delay: Duration,
    /// Share of recordings archived (media gone, metadata and transcript kept).
    pub archived_share: f64,
    /// Share of recordings expired (purged: URL still issued, storage answers 404).
    pub expired_share: f64,
    /// Share of recordings stored as MP3 (the rest are WAV).
    pub mp3_share: f64,
    /// Timestamp of the newest recording, in seconds since the Unix epoch.
    pub newest_at: i64,
    /// Time span covered by the dataset.
    pub span: Duration,
    /// Address to bind; `None` means `127.0.0.1:0`.
    pub bind: Option<SocketAddr>,
    /// Fault knobs, changeable at run time.
    pub faults: Faults,
}

/// How `combined` media sizes are drawn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeDistribution {
    /// Smallest size in bytes.
    pub min: u64,
    /// Largest size in bytes.
    pub max: u64,
    /// Log-uniform (many small, few large) when true, uniform otherwise.
    pub log_uniform: bool,
}

/// Requests allowed per window for one endpoint family (token bucket: `requests` burst,
/// refilled evenly over `per`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub requests: u32,
    /// Window length.
    #[serde(with = "duration_serde")]
    pub per: Duration,
}

/// Which form `Retry-After` takes on a 429.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryAfterForm {
    /// Delay in seconds.
    Seconds,
    /// An HTTP date.
    HttpDate,
    /// Alternate between the two.
    Mixed,
}

/// Fault knobs. All rates are probabilities per request in `[0, 1]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Lifetime of issued access tokens; a request after expiry gets 401.
    #[serde(with = "duration_serde")]
    pub token_ttl: Duration,
    /// Lifetime of presigned media URLs (and media links of the real dialect).
    #[serde(with = "duration_serde")]
    pub url_ttl: Duration,
    /// Abort a media stream when its URL expires mid-transfer.
    pub abort_on_url_expiry: bool,
    /// Rate of injected 500/502/503 answers on API and storage routes.
    pub error_rate: f64,
    /// Rate of injected 429 answers, on top of the rate limits.
    pub throttle_rate: f64,
    /// Rate of media streams cut by a connection reset.
    pub reset_rate: f64,
    /// Rate of media streams silently truncated (no `Content-Length`, body ends early).
    pub truncate_rate: f64,
    /// Added latency on every API request.
    #[serde(with = "duration_serde")]
    pub latency: Duration,
    /// Form of `Retry-After` on 429 answers.
    pub retry_after: RetryAfterForm,
    /// Rate limit per endpoint family (see `docs/SIMULATOR.md` for the family names).
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// Rate of transcript segments missing for good (seed 003).
    pub transcript_missing_rate: f64,
    /// Rate of transcript segments published late (404 until `transcript_late_delay`).
    pub transcript_late_rate: f64,
    /// How long a late transcript segment stays unpublished after start.
    #[serde(with = "duration_serde")]
    pub transcript_late_delay: Duration,
    /// Time an async job (archival, export, media-download, extraction) takes to finish.
    #[serde(with = "duration_serde")]
    pub job_duration: Duration,
    /// Share of async jobs that end FAILED.
    pub job_failure_rate: f64,
    /// Minimum time between two data-extraction job creations (real dialect: 30 s).
    #[serde(with = "duration_serde")]
    pub extraction_interval: Duration,
    /// Lifetime of a data-extraction result URL (real dialect: 30 s).
    #[serde(with = "duration_serde")]
    pub extraction_url_ttl: Duration,
    /// Rate of webhook deliveries sent twice.
    pub webhook_duplicate_rate: f64,
    /// A webhook receiver slower than this (or failing) gets the delivery retried.
    #[serde(with = "duration_serde")]
    pub webhook_timeout: Duration,
    /// Deliveries attempted per event before giving up.
    pub webhook_max_attempts: u32,
    /// Header carrying the webhook HMAC-SHA256 signature (hex).
    pub webhook_signature_header: String,
    /// Header carrying the webhook timestamp (Unix seconds) that is signed with the body.
    pub webhook_timestamp_header: String,
}

impl Default for SizeDistribution {
    fn default() -> Self {
        SizeDistribution {
            min: 200_000,
            max: 5_000_000,
            log_uniform: true,
        }
    }
}

fn limit(requests: u32, secs: u64) -> RateLimit {
    RateLimit {
        requests,
        per: Duration::from_secs(secs),
    }
}

/// Default rate limits: generous for the seed dialect (the seeds' ~50/min would make demos
/// crawl; tests set their own), the documented limits for the real dialect.
pub fn default_rate_limits() -> BTreeMap<String, RateLimit> {
    BTreeMap::from([
        ("auth".to_string(), limit(120, 60)),
        ("search".to_string(), limit(600, 60)),
        ("recordings".to_string(), limit(3000, 60)),
        ("media".to_string(), limit(3000, 60)),
        ("jobs".to_string(), limit(600, 60)),
        ("interactions".to_string(), limit(1200, 60)),
        ("webhooks".to_string(), limit(60, 60)),
        ("contacts".to_string(), limit(1000, 60)),
        ("media-playback".to_string(), limit(150, 300)),
        ("media-download".to_string(), limit(15, 300)),
        ("data-extraction".to_string(), limit(10, 300)),
        ("analytics".to_string(), limit(600, 60)),
    ])
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            token_ttl: Duration::from_secs(120),
            url_ttl: Duration::from_secs(60),
            abort_on_url_expiry: true,
            error_rate: 0.02,
            throttle_rate: 0.02,
            reset_rate: 0.02,
            truncate_rate: 0.01,
            latency: Duration::ZERO,
            retry_after: RetryAfterForm::Mixed,
            rate_limits: default_rate_limits(),
            transcript_missing_rate: 0.05,
            transcript_late_rate: 0.1,
            transcript_late_delay: Duration::from_secs(5),
            job_duration: Duration::from_secs(3),
            job_failure_rate: 0.05,
            extraction_interval: Duration::from_secs(30),
            extraction_url_ttl: Duration::from_secs(30),
            webhook_duplicate_rate: 0.1,
            webhook_timeout: Duration::from_secs(3),
            webhook_max_attempts: 3,
            webhook_signature_header: "X-Nice-Signature".to_string(),
            webhook_timestamp_header: "Nice-Request-Timestamp".to_string(),
        }
    }
}

impl Faults {
    /// No injected failures and no rate limits; tokens and URLs live an hour.
    pub fn none() -> Self {
        Faults {
            token_ttl: Duration::from_secs(3600),
            url_ttl: Duration::from_secs(3600),
            error_rate: 0.0,
            throttle_rate: 0.0,
            reset_rate: 0.0,
            truncate_rate: 0.0,
            rate_limits: BTreeMap::new(),
            transcript_missing_rate: 0.0,
            transcript_late_rate: 0.0,
            job_failure_rate: 0.0,
            job_duration: Duration::from_millis(300),
            extraction_interval: Duration::ZERO,
            webhook_duplicate_rate: 0.0,
            ..Faults::default()
        }
    }

    /// Hostile: frequent failures, short tokens and URLs.
    pub fn high() -> Self {
        Faults {
            token_ttl: Duration::from_secs(20),
            url_ttl: Duration::from_secs(10),
            error_rate: 0.1,
            throttle_rate: 0.1,
            reset_rate: 0.1,
            truncate_rate: 0.05,
            transcript_missing_rate: 0.1,
            transcript_late_rate: 0.3,
            job_failure_rate: 0.2,
            webhook_duplicate_rate: 0.3,
            ..Faults::default()
        }
    }

    /// Checks ranges; names the first bad knob.
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("error_rate", self.error_rate),
            ("throttle_rate", self.throttle_rate),
            ("reset_rate", self.reset_rate),
            ("truncate_rate", self.truncate_rate),
            ("transcript_missing_rate", self.transcript_missing_rate),
            ("transcript_late_rate", self.transcript_late_rate),
            ("job_failure_rate", self.job_failure_rate),
            ("webhook_duplicate_rate", self.webhook_duplicate_rate),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be within [0, 1], got {rate}"));
            }
        }
        if self.token_ttl.is_zero() || self.url_ttl.is_zero() {
            return Err("token_ttl and url_ttl must be positive".to_string());
        }
        if let Some((family, _)) = self
            .rate_limits
            .iter()
            .find(|(_, l)| l.requests == 0 || l.per.is_zero())
        {
            return Err(format!(
                "rate limit of {family} must allow at least one request per positive window"
            ));
        }
        Ok(())
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            recordings: 200,
            interactions: 200,
            transcripts: 200,
            policies: 4,
            sizes: SizeDistribution::default(),
            processing_share: 0.1,
            processing_delay: Duration::from_secs(5),
            archived_share: 0.03,
            expired_share: 0.02,
            mp3_share: 0.25,
            newest_at: 1_795_132_800, // 2026-11-20T00:00:00Z
            span: Duration::from_secs(30 * 24 * 3600),
            bind: None,
            faults: Faults::default(),
        }
    }
}

impl SimConfig {
    /// The same dataset with every fault off and every recording already `Available`
    /// (archived and expired recordings stay: they are data, not faults).
    pub fn without_faults(mut self) -> Self {
        self.faults = Faults::none();
        self.processing_share = 0.0;
        self
    }

    /// Checks the configuration; names the first bad field.
    pub fn validate(&self) -> Result<(), String> {
        let shares = [
            ("processing_share", self.processing_share),
            ("archived_share", self.archived_share),
            ("expired_share", self.expired_share),
            ("mp3_share", self.mp3_share),
        ];
        for (name, share) in shares {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{name} must be within [0, 1], got {share}"));
            }
        }
        if self.archived_share + self.expired_share + self.processing_share > 1.0 {
            return Err(
                "processing_share + archived_share + expired_share must not exceed 1".into(),
            );
        }
        if self.sizes.min < 4096 || self.sizes.min > self.sizes.max {
            return Err(format!(
                "sizes must satisfy 4096 <= min <= max, got {}..{}",
                self.sizes.min, self.sizes.max
            ));
        }
        self.faults.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_faultless_configs_are_valid() {
        SimConfig::default().validate().unwrap();
        let quiet = SimConfig::default().without_faults();
        quiet.validate().unwrap();
        assert_eq!(quiet.faults.error_rate, 0.0);
        assert!(quiet.faults.rate_limits.is_empty());
        assert_eq!(quiet.processing_share, 0.0);
    }

    #[test]
    fn the_high_preset_is_valid_and_harsher_than_the_default() {
        let (high, low) = (Faults::high(), Faults::default());
        high.validate().unwrap();
        assert!(high.error_rate > low.error_rate && high.reset_rate > low.reset_rate);
        assert!(high.token_ttl < low.token_ttl && high.url_ttl < low.url_ttl);
    }

    #[test]
    fn validation_names_the_bad_knob() {
        let mut faults = Faults::none();
        faults.reset_rate = 1.5;
        assert!(faults.validate().unwrap_err().contains("reset_rate"));
    }

    #[test]
    fn faults_round_trip_through_json() {
        let faults = Faults::default();
        let json = serde_json::to_value(&faults).unwrap();
        assert_eq!(json["rate_limits"]["media-download"]["per"], "5m");
        let back: Faults = serde_json::from_value(json).unwrap();
        assert_eq!(back, faults);
    }
}
