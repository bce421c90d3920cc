//! Taps: stages that observe bytes without changing them (byte count, SHA-256, MD5, size
//! and hash expectations, audio sniffing). Adjacent taps share one pass over the bytes.

use md5::Md5;
use sha2::{Digest, Sha256};

use bytes::Bytes;

use super::audio::AudioSniffer;
use super::error::FlowError;
use super::md5_thread::Md5Thread;

/// What one tap group computes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapSpec {
    pub sha256: bool,
    pub md5: bool,
    pub expect_size: Option<u64>,
    pub expect_sha256: Option<String>,
    pub audio_check: bool,
}

/// What one tap group saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapResult {
    pub size: u64,
    pub sha256: Option<String>,
    pub md5: Option<String>,
    pub audio: Option<&'static str>,
}

/// A running tap group.
pub struct Tap {
    spec: TapSpec,
    size: u64,
    sha256: Option<Sha256>,
    md5: Option<Md5>,
    md5_thread: Option<Md5Thread>,
    audio: Option<AudioSniffer>,
}

impl Tap {
    /// A tap whose MD5 (if any) runs on a helper thread; feed it with [`Tap::update_shared`].
    pub fn with_md5_thread(spec: TapSpec) -> Tap {
        let mut tap = Tap::new(spec);
        if tap.md5.is_some()
            && let Ok(t) = Md5Thread::spawn()
        {
            tap.md5 = None;
            tap.md5_thread = Some(t);
        }
        tap
    }

    /// Like [`Tap::update`], handing the shared chunk to the MD5 thread when there is one.
    pub fn update_shared(&mut self, data: &Bytes) -> Result<(), FlowError> {
        self.observe(data)?;
        match (&mut self.md5, &self.md5_thread) {
            (Some(h), _) => h.update(data),
            (None, Some(t)) if !data.is_empty() => t.send(data.clone()),
            _ => {}
        }
        Ok(())
    }

    pub fn update(&mut self, data: &[u8]) -> Result<(), FlowError> {
        self.observe(data)?;
        match (&mut self.md5, &self.md5_thread) {
            (Some(h), _) => h.update(data),
            (None, Some(t)) if !data.is_empty() => t.send(Bytes::copy_from_slice(data)),
            _ => {}
        }
        Ok(())
    }

    pub fn new(spec: TapSpec) -> Tap {
        Tap {
            sha256: (spec.sha256 || spec.expect_sha256.is_some()).then(Sha256::new),
            md5: spec.md5.then(Md5::new),
            md5_thread: None,
            audio: spec.audio_check.then(AudioSniffer::default),
            size: 0,
            spec,
        }
    }

    fn observe(&mut self, data: &[u8]) -> Result<(), FlowError> {
        self.size += data.len() as u64;
        if let Some(expected) = self.spec.expect_size
            && self.size > expected
        {
            return Err(FlowError::Size {
                expected,
                actual: self.size,
            });
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        if let Some(a) = &mut self.audio {
            a.update(data);
        }
        Ok(())
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Final hashes, after checking every expectation.
    pub fn finish(self) -> Result<TapResult, FlowError> {
        if let Some(expected) = self.spec.expect_size
            && self.size != expected
        {
            return Err(FlowError::Size {
                expected,
                actual: self.size,
            });
        }
        let audio = match &self.audio {
            Some(a) => Some(a.verdict().map_err(|head| FlowError::NotAudio { head })?),
            None => None,
        };
        let sha256 = self.sha256.map(|h| hex::encode(h.finalize()));
        if let Some(expected) = &self.spec.expect_sha256 {
            let actual = sha256.clone().unwrap_or_default();
            if !expected.eq_ignore_ascii_case(&actual) {
                return Err(FlowError::Sha256 {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let md5 = match (self.md5, self.md5_thread) {
            (Some(h), _) => Some(hex::encode(h.finalize())),
            (None, Some(t)) => Some(t.finish()),
            (None, None) => None,
        };
        Ok(TapResult {
            size: self.size,
            sha256,
            md5,
            audio,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(spec: TapSpec, data: &[u8]) -> Result<TapResult, FlowError> {
        let mut t = Tap::new(spec);
        for c in data.chunks(7) {
            t.update(c)?;
        }
        t.finish()
    }

    #[test]
    fn hashes_match_known_vectors() {
        let spec = TapSpec {
            sha256: true,
            md5: true,
            ..TapSpec::default()
        };
        let r = run(spec, b"abc").unwrap();
        assert_eq!(
            r.sha256.unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(r.md5.unwrap(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(r.size, 3);
    }

    #[test]
    fn expectations_fail_with_both_values() {
        let short = TapSpec {
            expect_size: Some(10),
            ..TapSpec::default()
        };
        assert!(matches!(
            run(short.clone(), b"abc"),
            Err(FlowError::Size {
                expected: 10,
                actual: 3
            })
        ));
        assert!(matches!(
            run(short, &[0; 11]),
            Err(FlowError::Size { actual: 11, .. })
        ));
        let sha = TapSpec {
            expect_sha256: Some("00".repeat(32)),
            ..TapSpec::default()
        };
        let err = run(sha, b"abc").unwrap_err().to_string();
        assert!(err.contains("ba7816bf"), "{err}");
        let upper = TapSpec {
            expect_sha256: Some(
                "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD".into(),
            ),
            ..TapSpec::default()
        };
        assert!(run(upper, b"abc").is_ok());
    }

    #[test]
    fn audio_check_rejects_html() {
        let spec = TapSpec {
            audio_check: true,
            ..TapSpec::default()
        };
        assert!(matches!(
            run(spec.clone(), b"<html>denied</html>"),
            Err(FlowError::NotAudio { .. })
        ));
        assert_eq!(run(spec, b"OggS\0\x02rest").unwrap().audio, Some("ogg"));
    }
}
