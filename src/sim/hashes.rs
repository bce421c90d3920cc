//! Memoised SHA-256/MD5 of generated media, keyed by (recording index, channel). Bounded:
//! the cache is emptied when full, so memory stays small whatever the dataset size.

use std::collections::HashMap;
use std::sync::Mutex;

use super::media::{Channel, MediaSpec};

/// Lower-case hex digests of one media object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    pub sha256: String,
    pub md5: String,
}

/// Bounded memo of [`Digests`].
#[derive(Debug, Default)]
pub struct DigestCache {
    entries: Mutex<HashMap<(usize, Channel), Digests>>,
}

const CAPACITY: usize = 20_000;

impl DigestCache {
    /// Digests of `spec` (recording `index`, `channel`), generating the media on a miss.
    /// CPU-heavy on a miss: call from a blocking thread.
    pub fn get(&self, index: usize, channel: Channel, spec: &MediaSpec) -> Digests {
        if let Some(hit) = self.lock().get(&(index, channel)) {
            return hit.clone();
        }
        let (sha256, md5) = spec.source().digests();
        let digests = Digests { sha256, md5 };
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert((index, channel), digests.clone());
        digests
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(usize, Channel), Digests>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::media::MediaFormat;

    #[test]
    fn caches_what_it_computes() {
        let cache = DigestCache::default();
        let spec = MediaSpec::new(MediaFormat::Wav, Channel::Combined, 3, 10_000);
        let first = cache.get(1, Channel::Combined, &spec);
        assert_eq!(first, cache.get(1, Channel::Combined, &spec));
        let (sha, _) = spec.source().digests();
        assert_eq!(first.sha256, sha);
    }
}
