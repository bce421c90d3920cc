//! The recording dataset: each record is derived from `(seed, index)` on demand, so a
//! million recordings cost no memory. Ids embed the index, so lookups are O(1).

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::config::SimConfig;
use super::media::{Channel, MediaFormat, MediaSpec};
use super::rng::{below, derive, unit};

const SALT_ID: u64 = 1;
const SALT_ID_MASK: u64 = 2;
const SALT_LIFECYCLE: u64 = 3;
const SALT_SIZE: u64 = 4;
const SALT_FORMAT: u64 = 5;
const SALT_CHANNELS: u64 = 6;
const SALT_AGENT: u64 = 7;
const SALT_TIME: u64 = 8;
const SALT_MISC: u64 = 9;
const SALT_READY: u64 = 10;
const SALT_DUPLICATE: u64 = 11;
const SALT_LOCKED: u64 = 12;
const SALT_TRANSCRIPT: u64 = 13;
const DUPLICATE_SHARE: f64 = 0.02;
const LOCKED_SHARE: f64 = 0.05;

const FIRST_NAMES: [&str; 12] = [
    "Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kira",
    "Liam",
];
const LAST_NAMES: [&str; 10] = [
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Patel",
    "Nakamura",
    "Silva",
    "Novak",
    "Haddad",
    "Kowalski",
    "Reyes",
];
const CHANNEL_TYPES: [&str; 3] = ["PSTN", "webRTC", "SIP"];

/// Where a recording is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Being transcoded; becomes available `ready_after` the simulator started.
    Processing {
        ready_after: Duration,
    },
    Available,
    /// Moved to cold storage: metadata and transcript remain, media answers 404.
    Archived,
    /// Purged by retention: metadata remains, download URLs are issued, media answers 404.
    Expired,
}

impl Lifecycle {
    /// Status at `elapsed` since the simulator started.
    pub fn status(self, elapsed: Duration) -> Status {
        match self {
            Lifecycle::Processing { ready_after } if elapsed < ready_after => Status::Processing,
            Lifecycle::Processing { .. } | Lifecycle::Available => Status::Available,
            Lifecycle::Archived => Status::Archived,
            Lifecycle::Expired => Status::Expired,
        }
    }
}

/// Status of a recording at a point in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Processing,
    Available,
    Archived,
    Expired,
}

impl Status {
    /// The seed-002 spelling (`Available`, `Processing`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Processing => "Processing",
            Status::Available => "Available",
            Status::Archived => "Archived",
            Status::Expired => "Expired",
        }
    }
}

/// One recording, derived from `(seed, index)`.
#[derive(Clone, Debug)]
pub struct Recording {
    pub id: String,
    pub call_id: String,
    pub agent_id: u32,
    pub agent_name: String,
    pub direction: &'static str,
    pub channel_type: &'static str,
    /// Start of the call, milliseconds since the Unix epoch.
    pub created_ms: i64,
    pub duration_secs: u64,
    pub format: MediaFormat,
    pub available_channels: Vec<Channel>,
    pub lifecycle: Lifecycle,
    /// Key of the media generator; per channel it is mixed again.
    media_key: u64,
    /// Size of the `combined` media in bytes.
    combined_size: u64,
}

/// The dataset of one simulator: configuration plus pure derivation functions.
#[derive(Clone, Debug)]
pub struct Dataset {
    seed: u64,
    count: usize,
    config: SimConfig,
    id_mask: u64,
}

impl Dataset {
    pub fn new(config: &SimConfig) -> Self {
        Dataset {
            seed: config.seed,
            count: config.recordings,
            config: config.clone(),
            id_mask: derive(config.seed, 0, SALT_ID_MASK) & 0xFFFF_FFFF_FFFF,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// Number of interactions (seed 004, real contacts).
    pub fn interaction_count(&self) -> usize {
        self.config.interactions
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Finds the index of a recording id, or `None` when it is not one of ours.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        let tail = id.rsplit('-').next()?;
        if tail.len() != 12 {
            return None;
        }
        let index = (u64::from_str_radix(tail, 16).ok()? ^ self.id_mask) as usize;
        (index < self.count && self.id_at(index) == id).then_some(index)
    }

    fn id_at(&self, index: usize) -> String {
        let h = derive(self.seed, index as u64, SALT_ID);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            h >> 32,
            (h >> 16) & 0xFFFF,
            (h >> 4) & 0xFFF,
            0x8000 | ((h & 0xF) << 8) | ((h >> 40) & 0xFF),
            index as u64 ^ self.id_mask
        )
    }

    /// Start time of recording `index`: strictly increasing with the index.
    pub fn created_ms(&self, index: usize) -> i64 {
        let index = self.origin(index);
        let span_ms = self.config.span.as_millis().max(1) as i64;
        let step = (span_ms / self.count.max(1) as i64).max(2);
        let oldest = self.config.newest_at * 1000 - step * self.count as i64;
        let jitter = below(
            derive(self.seed, index as u64, SALT_TIME),
            (step / 2) as u64,
        ) as i64;
        oldest + step * index as i64 + jitter
    }

    /// The recording `index` duplicates (itself when it is no duplicate): about 2% of
    /// recordings repeat the previous call's agent, start, duration, channel type and media
    /// under a new id (seed 000 deduplicates by that signature).
    pub fn origin(&self, index: usize) -> usize {
        let mut i = index;
        for _ in 0..16 {
            if i == 0 || unit(derive(self.seed, i as u64, SALT_DUPLICATE)) >= DUPLICATE_SHARE {
                break;
            }
            i -= 1;
        }
        i
    }

    /// Under legal hold: retention changes answer 409 (seed 000).
    pub fn locked(&self, index: usize) -> bool {
        unit(derive(self.seed, index as u64, SALT_LOCKED)) < LOCKED_SHARE
    }

    /// Whether recording `index` has a transcript (about `transcripts` of them do).
    pub fn has_transcript(&self, index: usize) -> bool {
        let share = self.config.transcripts as f64 / self.count.max(1) as f64;
        unit(derive(self.seed, index as u64, SALT_TRANSCRIPT)) < share
    }

    /// Retention in days currently assigned to recording `index` (before any change).
    pub fn retention_days(&self, index: usize) -> u32 {
        [90, 365, 730, 2190][below(derive(self.seed, index as u64, SALT_LOCKED ^ 0x55), 4) as usize]
    }

    /// Container of recording `index`.
    pub fn format_of(&self, index: usize) -> MediaFormat {
        let index = self.origin(index);
        if unit(derive(self.seed, index as u64, SALT_FORMAT)) < self.config.mp3_share {
            MediaFormat::Mp3
        } else {
            MediaFormat::Wav
        }
    }

    /// Size in bytes of the `combined` media of recording `index`.
    pub fn combined_size(&self, index: usize) -> u64 {
        self.combined_spec(index, 0).total()
    }

    fn combined_spec(&self, index: usize, key: u64) -> MediaSpec {
        let index = self.origin(index);
        let sizes = &self.config.sizes;
        let u = unit(derive(self.seed, index as u64, SALT_SIZE));
        let (min, max) = (sizes.min as f64, sizes.max as f64);
        let raw = if sizes.log_uniform {
            min * (max / min).powf(u)
        } else {
            min + (max - min) * u
        };
        MediaSpec::new(self.format_of(index), Channel::Combined, key, raw as u64)
    }

    /// Life stage of recording `index`.
    pub fn lifecycle(&self, index: usize) -> Lifecycle {
        let cfg = &self.config;
        let i = index as u64;
        let roll = unit(derive(self.seed, i, SALT_LIFECYCLE));
        if roll < cfg.archived_share {
            Lifecycle::Archived
        } else if roll < cfg.archived_share + cfg.expired_share {
            Lifecycle::Expired
        } else if roll < cfg.archived_share + cfg.expired_share + cfg.processing_share {
            let spread = 0.5 + unit(derive(self.seed, i, SALT_READY));
            Lifecycle::Processing {
                ready_after: cfg.processing_delay.mul_f64(spread),
            }
        } else {
            Lifecycle::Available
        }
    }

    /// Status of recording `index` at `elapsed` since start.
    pub fn status_of(&self, index: usize, elapsed: Duration) -> Status {
        self.lifecycle(index).status(elapsed)
    }

    /// Length of the call in seconds.
    pub fn duration_of(&self, index: usize) -> u64 {
        self.combined_spec(index, 0).duration_secs()
    }

    /// Agent number of recording `index` (agent id is `100000 + n`).
    pub fn agent_of(&self, index: usize) -> u64 {
        let index = self.origin(index);
        let agents = (self.count as u64 / 50).clamp(8, 5000);
        below(derive(self.seed, index as u64, SALT_AGENT), agents)
    }

    fn misc(&self, index: usize) -> u64 {
        let index = self.origin(index);
        derive(self.seed, index as u64, SALT_MISC)
    }

    /// `inbound` or `outbound`.
    pub fn direction_of(&self, index: usize) -> &'static str {
        if self.misc(index) & 1 == 0 {
            "inbound"
        } else {
            "outbound"
        }
    }

    /// `PSTN`, `webRTC` or `SIP`.
    pub fn channel_type_of(&self, index: usize) -> &'static str {
        CHANNEL_TYPES[below(self.misc(index) >> 1, 3) as usize]
    }

    /// Derives recording `index` (`index < len()`).
    pub fn recording(&self, index: usize) -> Recording {
        let i = index as u64;
        let combined = self.combined_spec(index, 0);
        let mut available_channels = vec![Channel::Combined];
        if unit(derive(self.seed, i, SALT_CHANNELS)) < 0.6 {
            available_channels.extend([Channel::Agent, Channel::Caller]);
        }
        let agent_no = self.agent_of(index);
        Recording {
            id: self.id_at(index),
            call_id: format!("call_{:012x}", derive(self.seed, i, SALT_ID) >> 16),
            agent_id: 100_000 + agent_no as u32,
            agent_name: agent_name(agent_no),
            direction: self.direction_of(index),
            channel_type: self.channel_type_of(index),
            created_ms: self.created_ms(index),
            duration_secs: combined.duration_secs(),
            format: combined.format(),
            available_channels,
            lifecycle: self.lifecycle(index),
            media_key: derive(self.seed, self.origin(index) as u64, SALT_ID ^ 0xF00D),
            combined_size: combined.total(),
        }
    }
}

/// Display name of agent number `n`.
pub fn agent_name(n: u64) -> String {
    let first = FIRST_NAMES[(n % FIRST_NAMES.len() as u64) as usize];
    let last = LAST_NAMES[((n / FIRST_NAMES.len() as u64) % LAST_NAMES.len() as u64) as usize];
    format!("{first} {last}")
}

impl Recording {
    /// Status at `elapsed` since the simulator started.
    pub fn status(&self, elapsed: Duration) -> Status {
        self.lifecycle.status(elapsed)
    }

    pub fn size_bytes(&self) -> u64 {
        self.combined_size
    }

    pub fn has_channel(&self, channel: Channel) -> bool {
        self.available_channels.contains(&channel)
    }

    /// The media of one channel. A channel absent from `availableChannels` still has
    /// "media": a header with no samples (the seed-002 silent-file trap).
    pub fn media(&self, channel: Channel) -> MediaSpec {
        let key = self.media_key ^ (channel as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        if !self.has_channel(channel) {
            return MediaSpec::new(self.format, channel, key, 0);
        }
        let size = match channel {
            Channel::Combined => self.combined_size,
            Channel::Agent | Channel::Caller => self.combined_size / 2,
        };
        MediaSpec::new(self.format, channel, key, size)
    }

    /// Creation time as RFC 3339 with milliseconds and `Z`.
    pub fn created_rfc3339(&self) -> String {
        rfc3339_ms(self.created_ms)
    }

    /// End of the call in milliseconds since the epoch.
    pub fn ended_ms(&self) -> i64 {
        self.created_ms + self.duration_secs as i64 * 1000
    }
}

/// Formats milliseconds since the epoch as RFC 3339 (`2026-11-20T10:00:00.000Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 time (or a date `YYYY-MM-DD`) into milliseconds since the epoch.
pub fn parse_time_ms(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(n: usize) -> Dataset {
        Dataset::new(&SimConfig {
            recordings: n,
            ..SimConfig::default()
        })
    }

    #[test]
    fn ids_round_trip_and_reject_strangers() {
        let ds = dataset(1000);
        for i in [0, 1, 499, 999] {
            let rec = ds.recording(i);
            assert_eq!(ds.index_of(&rec.id), Some(i), "{}", rec.id);
        }
        assert_eq!(ds.index_of("not-an-id"), None);
        let other = dataset(1000);
        let mut foreign = ds.recording(3).id;
        foreign.replace_range(0..1, if foreign.starts_with('0') { "1" } else { "0" });
        assert_eq!(other.index_of(&foreign), None);
    }

    #[test]
    fn same_seed_same_records_different_seed_different_records() {
        let a = dataset(50).recording(7);
        let b = dataset(50).recording(7);
        assert_eq!(
            (a.id.clone(), a.size_bytes(), a.created_ms),
            (b.id.clone(), b.size_bytes(), b.created_ms)
        );
        let c = Dataset::new(&SimConfig {
            seed: 2,
            recordings: 50,
            ..SimConfig::default()
        })
        .recording(7);
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn creation_times_increase_with_index_and_sizes_respect_bounds() {
        let ds = dataset(500);
        let cfg = SimConfig::default();
        for i in 1..500 {
            assert!(ds.created_ms(i) >= ds.created_ms(i - 1));
            let size = ds.recording(i).size_bytes();
            assert!(
                size <= cfg.sizes.max + 44 && size + 1024 >= cfg.sizes.min,
                "{size}"
            );
        }
    }

    #[test]
    fn duplicates_repeat_the_signature_and_media_under_a_new_id() {
        let ds = dataset(2000);
        let dup = (1..2000)
            .find(|&i| ds.origin(i) != i)
            .expect("some duplicates");
        let (a, b) = (ds.recording(ds.origin(dup)), ds.recording(dup));
        assert_ne!(a.id, b.id);
        assert_eq!(
            (a.agent_id, a.created_ms, a.duration_secs, a.channel_type),
            (b.agent_id, b.created_ms, b.duration_secs, b.channel_type)
        );
        assert_eq!(a.media(Channel::Combined), b.media(Channel::Combined));
        let dups = (1..2000).filter(|&i| ds.origin(i) != i).count();
        assert!((10..100).contains(&dups), "{dups}");
    }

    #[test]
    fn processing_recordings_become_available() {
        let ds = Dataset::new(&SimConfig {
            processing_share: 1.0,
            archived_share: 0.0,
            expired_share: 0.0,
            ..SimConfig::default()
        });
        let rec = ds.recording(0);
        assert_eq!(rec.status(Duration::ZERO), Status::Processing);
        assert_eq!(rec.status(Duration::from_secs(3600)), Status::Available);
    }

    #[test]
    fn parses_times_and_dates() {
        assert_eq!(parse_time_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_time_ms("1970-01-02"), Some(86_400_000));
        assert_eq!(rfc3339_ms(1000), "1970-01-01T00:00:01.000Z");
        assert_eq!(parse_time_ms("yesterday"), None);
    }
}
