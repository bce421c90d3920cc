//! A flow's stages compiled into a [`Chain`] that runs on one thread: taps observe the
//! bytes where they stand, transforms replace them. The chain always knows the SHA-256 of
//! the plaintext (the first SHA-256 tap, added at the source when the script chose none)
//! and of the stored bytes.

use bytes::Bytes;

use super::codec::CodecStage;
use super::crypt::{KeyChoice, SegmentDecryptor, SegmentEncryptor};
use super::envelope::EnvelopeSealer;
use super::error::FlowError;
use super::spec::Stage;
use super::tap::{Tap, TapResult, TapSpec};
use super::transform::Transform;
use crate::keys::KeyRing;

enum Step {
    Tap(Box<Tap>),
    Transform(Box<dyn Transform>),
}

/// Facts about a chain the manifest records.
#[derive(Clone, Debug, Default)]
pub struct ChainPlan {
    /// Labels of the transforms between the plaintext tap and the stored bytes, in order.
    pub stored_from_plaintext: Vec<crate::flow::spec::Stage>,
    /// Labels of every stage as the script chained them.
    pub labels: Vec<String>,
    /// `(key name, key id hex)` when the chain encrypts.
    pub encryption: Option<(String, String)>,
}

/// What a finished chain saw.
#[derive(Clone, Debug, Default)]
pub struct ChainResult {
    pub plaintext: TapResult,
    pub stored: TapResult,
    /// MD5 of the first tap that computed one.
    pub md5: Option<String>,
    /// The container `.audio_check()` found.
    pub audio: Option<&'static str>,
}

/// Compiled stages, ready for bytes.
pub struct Chain {
    steps: Vec<Step>,
    plaintext_tap: usize,
    /// Index of the stored-bytes tap; `None` when stored bytes are the plaintext.
    stored_tap: Option<usize>,
    cur: Vec<u8>,
    next: Vec<u8>,
}

impl Chain {
    /// Compiles `stages`, looking keys up in `keys`; everything runs on the caller's thread.
    pub fn build(stages: &[Stage], keys: &KeyRing) -> Result<(Chain, ChainPlan), FlowError> {
        Chain::build_with(stages, keys, false)
    }

    /// Like [`Chain::build`]; with `parallel`, MD5 of the source bytes runs on a helper
    /// thread (fed by [`Chain::push_shared`]).
    pub fn build_with(
        stages: &[Stage],
        keys: &KeyRing,
        parallel: bool,
    ) -> Result<(Chain, ChainPlan), FlowError> {
        let mut groups: Vec<Result<TapSpec, Stage>> = Vec::new();
        for stage in stages {
            if stage.is_transform() {
                groups.push(Err(stage.clone()));
                continue;
            }
            if !matches!(groups.last(), Some(Ok(_))) {
                groups.push(Ok(TapSpec::default()));
            }
            let Some(Ok(spec)) = groups.last_mut() else {
                unreachable!("a tap group was just pushed")
            };
            add_to_spec(spec, stage)?;
        }
        let has_sha = groups
            .iter()
            .any(|g| matches!(g, Ok(s) if s.sha256 || s.expect_sha256.is_some()));
        if !has_sha {
            match groups.first_mut() {
                Some(Ok(spec)) => spec.sha256 = true,
                _ => groups.insert(
                    0,
                    Ok(TapSpec {
                        sha256: true,
                        ..TapSpec::default()
                    }),
                ),
            }
        }
        let plaintext_tap = groups
            .iter()
            .position(|g| matches!(g, Ok(s) if s.sha256 || s.expect_sha256.is_some()))
            .expect("a sha256 tap exists");
        let mut plan = ChainPlan {
            labels: stages.iter().map(Stage::label).collect(),
            ..ChainPlan::default()
        };
        let mut steps = Vec::new();
        for (i, group) in groups.into_iter().enumerate() {
            match group {
                Ok(spec) if i == 0 && parallel => {
                    steps.push(Step::Tap(Box::new(Tap::with_md5_thread(spec))))
                }
                Ok(spec) => steps.push(Step::Tap(Box::new(Tap::new(spec)))),
                Err(stage) => {
                    if i > plaintext_tap {
                        plan.stored_from_plaintext.push(stage.clone());
                    }
                    steps.push(Step::Transform(build_transform(&stage, keys, &mut plan)?));
                }
            }
        }
        let stored_tap = if steps.iter().any(|s| matches!(s, Step::Transform(_))) {
            steps.push(Step::Tap(Box::new(Tap::new(TapSpec {
                sha256: true,
                ..TapSpec::default()
            }))));
            Some(steps.len() - 1)
        } else {
            None
        };
        let chain = Chain {
            steps,
            plaintext_tap,
            stored_tap,
            cur: Vec::new(),
            next: Vec::new(),
        };
        Ok((chain, plan))
    }

    /// Runs `data` through every stage, appending the stored bytes to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), FlowError> {
        self.run(data, None, out)
    }

    /// Like [`Chain::push`] for a shared chunk, which an MD5 thread can hash without a copy.
    pub fn push_shared(&mut self, data: &Bytes, out: &mut Vec<u8>) -> Result<(), FlowError> {
        self.run(data, Some(data), out)
    }

    fn run(
        &mut self,
        data: &[u8],
        shared: Option<&Bytes>,
        out: &mut Vec<u8>,
    ) -> Result<(), FlowError> {
        let mut cur = std::mem::take(&mut self.cur);
        let mut next = std::mem::take(&mut self.next);
        let mut from_data = true;
        let result = (|| {
            for step in &mut self.steps {
                let input: &[u8] = if from_data { data } else { &cur };
                match step {
                    Step::Tap(t) => match shared.filter(|_| from_data) {
                        Some(b) => t.update_shared(b)?,
                        None => t.update(input)?,
                    },
                    Step::Transform(t) => {
                        next.clear();
                        t.update(input, &mut next)?;
                        std::mem::swap(&mut cur, &mut next);
                        from_data = false;
                    }
                }
            }
            out.extend_from_slice(if from_data { data } else { &cur });
            Ok(())
        })();
        cur.clear();
        self.cur = cur;
        self.next = next;
        result
    }

    /// Flushes every transform, appends the last stored bytes to `out`, checks expectations.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<ChainResult, FlowError> {
        let mut carry: Vec<u8> = Vec::new();
        let mut taps = Vec::new();
        for step in self.steps {
            match step {
                Step::Tap(mut t) => {
                    t.update(&carry)?;
                    taps.push(Some(t));
                }
                Step::Transform(mut t) => {
                    let mut produced = Vec::new();
                    t.update(&carry, &mut produced)?;
                    t.finish(&mut produced)?;
                    carry = produced;
                    taps.push(None);
                }
            }
        }
        out.extend_from_slice(&carry);
        let mut results = Vec::new();
        for tap in taps {
            results.push(match tap {
                Some(t) => Some((*t).finish()?),
                None => None,
            });
        }
        let plaintext = results[self.plaintext_tap].clone().expect("plaintext tap");
        let stored = match self.stored_tap {
            Some(i) => results[i].clone().expect("stored tap"),
            None => plaintext.clone(),
        };
        let md5 = results.iter().flatten().find_map(|r| r.md5.clone());
        let audio = results.iter().flatten().find_map(|r| r.audio);
        Ok(ChainResult {
            plaintext,
            stored,
            md5,
            audio,
        })
    }
}

fn add_to_spec(spec: &mut TapSpec, stage: &Stage) -> Result<(), FlowError> {
    let twice = |what: &str| FlowError::Invalid(format!("{what} appears twice in a row"));
    match stage {
        Stage::Md5 => spec.md5 = true,
        Stage::Sha256 => spec.sha256 = true,
        Stage::AudioCheck => spec.audio_check = true,
        Stage::ExpectSize(n) => {
            if spec.expect_size.replace(*n).is_some() {
                return Err(twice("expect_size"));
            }
        }
        Stage::ExpectSha256(h) => {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(FlowError::Invalid(format!(
                    "expect_sha256: {h:?} is not 64 hex digits"
                )));
            }
            if spec.expect_sha256.replace(h.clone()).is_some() {
                return Err(twice("expect_sha256"));
            }
        }
        _ => unreachable!("transforms are not taps"),
    }
    Ok(())
}

fn build_transform(
    stage: &Stage,
    keys: &KeyRing,
    plan: &mut ChainPlan,
) -> Result<Box<dyn Transform>, FlowError> {
    Ok(match stage {
        Stage::Compress(codec, level) => Box::new(CodecStage::compress(*codec, *level)?),
        Stage::Decompress(codec) => Box::new(CodecStage::decompress(*codec)?),
        Stage::Encrypt(name) => {
            let kek = keys.get(name)?;
            plan.encryption = Some((name.clone(), hex::encode(kek.id())));
            Box::new(SegmentEncryptor::new(kek))
        }
        Stage::Decrypt(Some(name)) => {
            let kek = keys.get(name)?.clone();
            Box::new(SegmentDecryptor::new(KeyChoice::Named(name.clone(), kek)))
        }
        Stage::Decrypt(None) => Box::new(SegmentDecryptor::new(KeyChoice::ById(keys.clone()))),
        Stage::Envelope(name) => Box::new(EnvelopeSealer::new(name, keys.get(name)?)?),
        _ => unreachable!("taps are not transforms"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::codec::Codec;
    use sha2::{Digest, Sha256};

    fn ring() -> KeyRing {
        let mut r = KeyRing::empty();
        r.insert_raw("k", [9; 32]);
        r
    }

    fn run(stages: &[Stage], data: &[u8]) -> (Vec<u8>, ChainResult, ChainPlan) {
        let (mut chain, plan) = Chain::build(stages, &ring()).unwrap();
        let mut out = Vec::new();
        for c in data.chunks(50_000) {
            chain.push(c, &mut out).unwrap();
        }
        let r = chain.finish(&mut out).unwrap();
        (out, r, plan)
    }

    #[test]
    fn plain_chain_stores_source_bytes_and_hashes_them_once() {
        let data = vec![1u8; 100_000];
        let (out, r, plan) = run(&[Stage::Md5], &data);
        assert_eq!(out, data);
        let sha = hex::encode(Sha256::digest(&data));
        assert_eq!(r.plaintext.sha256.as_deref(), Some(sha.as_str()));
        assert_eq!(r.stored, r.plaintext);
        assert!(r.md5.is_some());
        assert!(plan.encryption.is_none());
    }

    #[test]
    fn gzip_then_encrypt_reverses_through_decrypt_then_gunzip() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        let stages = [
            Stage::Sha256,
            Stage::Compress(Codec::Gzip, 1),
            Stage::Encrypt("k".into()),
        ];
        let (stored, r, plan) = run(&stages, &data);
        assert_eq!(plan.stored_from_plaintext, stages[1..].to_vec());
        assert_eq!(r.stored.size, stored.len() as u64);
        assert_eq!(
            r.stored.sha256.unwrap(),
            hex::encode(Sha256::digest(&stored))
        );
        let back = [
            Stage::Decrypt(None),
            Stage::Decompress(Codec::Gzip),
            Stage::Sha256,
        ];
        let (plain, r2, _) = run(&back, &stored);
        assert_eq!(plain, data);
        assert_eq!(r2.plaintext.sha256, r.plaintext.sha256);
    }

    #[test]
    fn parallel_md5_gives_the_same_digests() {
        let data = Bytes::from((0..700_000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>());
        let stages = [Stage::Md5, Stage::Sha256, Stage::Encrypt("k".into())];
        let (_, seq, _) = run(&stages, &data);
        let (mut chain, _) = Chain::build_with(&stages, &ring(), true).unwrap();
        let mut out = Vec::new();
        for i in (0..data.len()).step_by(65_000) {
            chain
                .push_shared(&data.slice(i..(i + 65_000).min(data.len())), &mut out)
                .unwrap();
        }
        let par = chain.finish(&mut out).unwrap();
        assert_eq!(par.md5, seq.md5);
        assert_eq!(par.plaintext, seq.plaintext);
    }

    #[test]
    fn unknown_key_and_bad_hash_fail_at_build() {
        assert!(matches!(
            Chain::build(&[Stage::Encrypt("nope".into())], &ring()),
            Err(FlowError::Key(_))
        ));
        assert!(matches!(
            Chain::build(&[Stage::ExpectSha256("xyz".into())], &ring()),
            Err(FlowError::Invalid(_))
        ));
    }
}
