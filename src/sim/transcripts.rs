//! Transcript segments (seed 003, and the analytics transcripts of the real dialect):
//! derived per (recording, segment). Some segments never appear, some appear late, and
//! publication order is shuffled, as the seed's "Trap" describes.

use std::time::Duration;

use serde_json::{Value, json};

use super::config::Faults;
use super::dataset::Dataset;
use super::rng::{below, derive, unit};

const SALT_SEGMENTS: u64 = 31;
const SALT_MISSING: u64 = 32;
const SALT_LATE: u64 = 33;
const SALT_ORDER: u64 = 34;
const SALT_UTTERANCE: u64 = 35;

const AGENT_LINES: [&str; 8] = [
    "Thank you for calling, how can I help you today?",
    "May I verify your account number?",
    "I can see the order on my screen now.",
    "Let me transfer you to billing.",
    "Could you confirm the email address on file?",
    "I have updated the delivery address.",
    "Is there anything else I can help with?",
    "Your reference number is 88213.",
];
const CUSTOMER_LINES: [&str; 8] = [
    "Hi, I am calling about my last invoice.",
    "Yes, it is 4567 8901 2345.",
    "My card number is 4111 1111 1111 1111.",
    "You can reach me at 555-0142.",
    "It is jane.doe@example.com.",
    "The package never arrived.",
    "No, that is all, thanks.",
    "I would like to cancel my subscription.",
];

/// Where a segment is at a point in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publication {
    Published,
    /// Will be published once the simulator has run this long.
    Late(Duration),
    Missing,
}

/// Segment count of recording `index` (1–5); 0 when it has no transcript.
pub fn segment_count(ds: &Dataset, index: usize) -> usize {
    if !ds.has_transcript(index) {
        return 0;
    }
    1 + below(derive(ds.seed(), index as u64, SALT_SEGMENTS), 5) as usize
}

/// Id of segment `k` of recording `index`.
pub fn segment_id(ds: &Dataset, index: usize, k: usize) -> String {
    format!(
        "transcript_{:010x}_{k}",
        index as u64 ^ (derive(ds.seed(), 0, SALT_SEGMENTS) & 0xFF_FFFF_FFFF)
    )
}

/// Parses a segment id back into (recording index, segment), checking it exists.
pub fn parse_segment_id(ds: &Dataset, id: &str) -> Option<(usize, usize)> {
    let rest = id.strip_prefix("transcript_")?;
    let (hex, k) = rest.split_once('_')?;
    let index = (u64::from_str_radix(hex, 16).ok()?
        ^ (derive(ds.seed(), 0, SALT_SEGMENTS) & 0xFF_FFFF_FFFF)) as usize;
    let k: usize = k.parse().ok()?;
    (index < ds.len() && k < segment_count(ds, index) && segment_id(ds, index, k) == id)
        .then_some((index, k))
}

fn segment_key(index: usize, k: usize) -> u64 {
    (index as u64) << 3 | k as u64
}

/// Publication state of a segment under the current fault knobs.
pub fn publication(ds: &Dataset, faults: &Faults, index: usize, k: usize) -> Publication {
    let key = segment_key(index, k);
    if unit(derive(ds.seed(), key, SALT_MISSING)) < faults.transcript_missing_rate {
        return Publication::Missing;
    }
    let late = derive(ds.seed(), key, SALT_LATE);
    if unit(late) < faults.transcript_late_rate {
        return Publication::Late(
            faults
                .transcript_late_delay
                .mul_f64(0.5 + unit(late.rotate_left(17))),
        );
    }
    Publication::Published
}

/// Whether a segment is visible at `elapsed`.
pub fn visible(ds: &Dataset, faults: &Faults, index: usize, k: usize, elapsed: Duration) -> bool {
    match publication(ds, faults, index, k) {
        Publication::Published => true,
        Publication::Late(at) => elapsed >= at,
        Publication::Missing => false,
    }
}

/// Segments of a recording visible at `elapsed`, in publication order (shuffled, late last).
pub fn published_segments(
    ds: &Dataset,
    faults: &Faults,
    index: usize,
    elapsed: Duration,
) -> Vec<usize> {
    let mut ks: Vec<(Duration, u64, usize)> = (0..segment_count(ds, index))
        .filter_map(|k| match publication(ds, faults, index, k) {
            Publication::Published => Some((
                Duration::ZERO,
                derive(ds.seed(), segment_key(index, k), SALT_ORDER),
                k,
            )),
            Publication::Late(at) if elapsed >= at => Some((at, 0, k)),
            _ => None,
        })
        .collect();
    ks.sort();
    ks.into_iter().map(|(_, _, k)| k).collect()
}

fn clock(ms: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Utterances of segment `k`: (start ms, end ms, speaker, text, confidence).
pub fn utterances(
    ds: &Dataset,
    index: usize,
    k: usize,
) -> Vec<(u64, u64, &'static str, &'static str, f64)> {
    let segments = segment_count(ds, index).max(1) as u64;
    let duration_ms = ds.duration_of(index).max(10) * 1000;
    let (from, to) = (
        duration_ms * k as u64 / segments,
        duration_ms * (k as u64 + 1) / segments,
    );
    let h = derive(ds.seed(), segment_key(index, k), SALT_UTTERANCE);
    let n = 3 + below(h, 5);
    let step = (to - from) / n;
    (0..n)
        .map(|u| {
            let r = derive(h, u, SALT_UTTERANCE);
            let agent = (u + k as u64) % 2 == 0;
            let line = below(r, 8) as usize;
            let text = if agent {
                AGENT_LINES[line]
            } else {
                CUSTOMER_LINES[line]
            };
            let start = from + u * step;
            let confidence = ((0.70 + 0.29 * unit(r.rotate_left(23))) * 100.0).round() / 100.0;
            (
                start,
                start + step * 9 / 10,
                if agent { "agent" } else { "customer" },
                text,
                confidence,
            )
        })
        .collect()
}

/// The seed-003 JSON of segment `k` of recording `index`.
pub fn segment_json(ds: &Dataset, index: usize, k: usize) -> Value {
    let rec = ds.recording(index);
    let utterances: Vec<Value> = utterances(ds, index, k)
        .into_iter()
        .map(|(start, end, speaker, text, confidence)| {
            json!({ "startTime": clock(start), "endTime": clock(end), "speaker": speaker, "text": text, "confidence": confidence })
        })
        .collect();
    json!({
        "id": segment_id(ds, index, k),
        "callId": rec.call_id,
        "recordingId": rec.id,
        "segmentIndex": k,
        "totalSegments": segment_count(ds, index),
        "format": "json",
        "language": "en-US",
        "utterances": utterances,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::SimConfig;

    #[test]
    fn ids_round_trip_and_hostility_follows_the_knobs() {
        let ds = Dataset::new(&SimConfig {
            recordings: 400,
            transcripts: 400,
            ..SimConfig::default()
        });
        let index = (0..400).find(|&i| segment_count(&ds, i) >= 3).unwrap();
        let id = segment_id(&ds, index, 2);
        assert_eq!(parse_segment_id(&ds, &id), Some((index, 2)));
        assert_eq!(parse_segment_id(&ds, "transcript_zz_1"), None);
        let calm = Faults::none();
        assert_eq!(
            published_segments(&ds, &calm, index, Duration::ZERO).len(),
            segment_count(&ds, index)
        );
        let hostile = Faults {
            transcript_missing_rate: 1.0,
            ..Faults::none()
        };
        assert!(published_segments(&ds, &hostile, index, Duration::ZERO).is_empty());
        let late = Faults {
            transcript_late_rate: 1.0,
            ..Faults::none()
        };
        assert!(published_segments(&ds, &late, index, Duration::ZERO).is_empty());
        assert_eq!(
            published_segments(&ds, &late, index, Duration::from_secs(3600)).len(),
            segment_count(&ds, index)
        );
    }

    #[test]
    fn publication_order_is_not_always_segment_order() {
        let ds = Dataset::new(&SimConfig {
            recordings: 400,
            transcripts: 400,
            ..SimConfig::default()
        });
        let shuffled = (0..400).any(|i| {
            let order = published_segments(&ds, &Faults::none(), i, Duration::ZERO);
            order.windows(2).any(|w| w[0] > w[1])
        });
        assert!(shuffled);
    }

    #[test]
    fn utterances_stay_in_their_segment_and_some_are_low_confidence() {
        let ds = Dataset::new(&SimConfig {
            recordings: 50,
            transcripts: 50,
            ..SimConfig::default()
        });
        let ds = &ds;
        let all: Vec<_> = (0..50)
            .flat_map(|i| (0..segment_count(ds, i)).flat_map(move |k| utterances(ds, i, k)))
            .collect();
        assert!(all.iter().any(|u| u.4 < 0.85) && all.iter().any(|u| u.4 >= 0.85));
        assert!(all.iter().all(|u| u.0 < u.1));
    }
}
