//! The encrypted object format of DESIGN.md §6 (specified in `docs/FORMAT.md`): a 64-byte
//! authenticated header, then AES-256-GCM STREAM (BE32 counter + last flag) over 64 KiB
//! segments, with a per-object key from HKDF-SHA256(KEK, salt).

use aead_stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::{Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use sha2::Sha256;

use super::error::{CryptoError, FlowError};
use super::transform::Transform;
use crate::keys::{Kek, KeyRing};

/// Magic bytes opening every encrypted object.
pub const MAGIC: &[u8; 6] = b"CXPENC";
/// Format version written by this build.
pub const VERSION: u8 = 1;
/// Algorithm id 1: HKDF-SHA256 per-object key, AES-256-GCM, STREAM BE32.
pub const ALGORITHM: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 64;
/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;
/// AES-GCM tag length.
pub const TAG: usize = 16;
/// HKDF `info` for the per-object key.
pub const HKDF_INFO: &[u8] = b"cxpipe object key v1";

/// The parsed header of an encrypted object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub key_id: [u8; 8],
    pub salt: [u8; 32],
    pub nonce_prefix: [u8; 7],
    pub segment_size: u32,
}

impl Header {
    /// A header with a fresh random salt and nonce prefix.
    pub fn fresh(kek: &Kek) -> Header {
        let mut salt = [0u8; 32];
        let mut nonce_prefix = [0u8; 7];
        rand::fill(&mut salt);
        rand::fill(&mut nonce_prefix);
        Header {
            key_id: kek.id(),
            salt,
            nonce_prefix,
            segment_size: SEGMENT as u32,
        }
    }

    /// The 64 header bytes (also the associated data of every segment).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..6].copy_from_slice(MAGIC);
        h[6] = VERSION;
        h[7] = ALGORITHM;
        h[8..16].copy_from_slice(&self.key_id);
        h[16..48].copy_from_slice(&self.salt);
        h[48..55].copy_from_slice(&self.nonce_prefix);
        h[55..59].copy_from_slice(&self.segment_size.to_be_bytes());
        h
    }

    /// Parses and checks header bytes.
    pub fn parse(h: &[u8; HEADER_LEN]) -> Result<Header, CryptoError> {
        if &h[0..6] != MAGIC {
            return Err(CryptoError::BadMagic);
        }
        if h[6] != VERSION {
            return Err(CryptoError::Version(h[6]));
        }
        if h[7] != ALGORITHM {
            return Err(CryptoError::Algorithm(h[7]));
        }
        if h[59..64].iter().any(|b| *b != 0) {
            return Err(CryptoError::Header("reserved bytes are not zero"));
        }
        let segment_size = u32::from_be_bytes(h[55..59].try_into().expect("4 bytes"));
        if segment_size as usize != SEGMENT {
            return Err(CryptoError::Header("segment size is not 65536"));
        }
        Ok(Header {
            key_id: h[8..16].try_into().expect("8 bytes"),
            salt: h[16..48].try_into().expect("32 bytes"),
            nonce_prefix: h[48..55].try_into().expect("7 bytes"),
            segment_size,
        })
    }

    fn cipher(&self, kek: &Kek) -> Aes256Gcm {
        let mut okm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&self.salt), kek.bytes())
            .expand(HKDF_INFO, &mut okm)
            .expect("32 bytes is a valid HKDF length");
        Aes256Gcm::new(&okm.into())
    }
}

/// Streaming encryptor: header first, then full segments as they fill, last one at finish.
pub struct SegmentEncryptor {
    header: [u8; HEADER_LEN],
    stream: Option<EncryptorBE32<Aes256Gcm>>,
    segment: Vec<u8>,
    header_sent: bool,
}

impl SegmentEncryptor {
    pub fn new(kek: &Kek) -> SegmentEncryptor {
        let header = Header::fresh(kek);
        let stream = EncryptorBE32::from_aead(header.cipher(kek), &header.nonce_prefix.into());
        SegmentEncryptor {
            header: header.to_bytes(),
            stream: Some(stream),
            segment: Vec::with_capacity(SEGMENT + TAG),
            header_sent: false,
        }
    }

    fn send_header(&mut self, out: &mut Vec<u8>) {
        if !self.header_sent {
            out.extend_from_slice(&self.header);
            self.header_sent = true;
        }
    }
}

impl Transform for SegmentEncryptor {
    fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), FlowError> {
        self.send_header(out);
        while !input.is_empty() {
            let take = (SEGMENT - self.segment.len()).min(input.len());
            self.segment.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.segment.len() == SEGMENT {
                let stream = self.stream.as_mut().ok_or(CryptoError::TooLong)?;
                stream
                    .encrypt_next_in_place(&self.header, &mut self.segment)
                    .map_err(|_| CryptoError::TooLong)?;
                out.extend_from_slice(&self.segment);
                self.segment.clear();
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FlowError> {
        self.send_header(out);
        let stream = self.stream.take().ok_or(CryptoError::TooLong)?;
        stream
            .encrypt_last_in_place(&self.header, &mut self.segment)
            .map_err(|_| CryptoError::TooLong)?;
        out.extend_from_slice(&self.segment);
        self.segment.clear();
        Ok(())
    }
}

/// How a decryptor finds its key.
#[derive(Clone, Debug)]
pub enum KeyChoice {
    /// This named key; the header's key id must match it.
    Named(String, Kek),
    /// Whichever key of the ring has the header's key id.
    ById(KeyRing),
}

/// Streaming decryptor: checks the header, then authenticates each segment before emitting it.
pub struct SegmentDecryptor {
    keys: KeyChoice,
    header: Vec<u8>,
    stream: Option<DecryptorBE32<Aes256Gcm>>,
    pending: Vec<u8>,
    index: u64,
}

impl SegmentDecryptor {
    pub fn new(keys: KeyChoice) -> SegmentDecryptor {
        SegmentDecryptor {
            keys,
            header: Vec::with_capacity(HEADER_LEN),
            stream: None,
            pending: Vec::with_capacity(2 * (SEGMENT + TAG)),
            index: 0,
        }
    }

    fn open(&mut self) -> Result<(), CryptoError> {
        let bytes: [u8; HEADER_LEN] = self.header.as_slice().try_into().expect("64 bytes");
        let header = Header::parse(&bytes)?;
        let kek = match &self.keys {
            KeyChoice::Named(name, kek) => {
                if kek.id() != header.key_id {
                    return Err(CryptoError::WrongKey {
                        name: name.clone(),
                        expected: hex::encode(kek.id()),
                        found: hex::encode(header.key_id),
                    });
                }
                kek.clone()
            }
            KeyChoice::ById(ring) => ring
                .by_id(header.key_id)
                .map(|(_, k)| k.clone())
                .ok_or_else(|| CryptoError::NoKeyForId(hex::encode(header.key_id)))?,
        };
        self.stream = Some(DecryptorBE32::from_aead(
            header.cipher(&kek),
            &header.nonce_prefix.into(),
        ));
        Ok(())
    }

    fn decrypt_full_segments(&mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let full = SEGMENT + TAG;
        let mut start = 0;
        while self.pending.len() - start >= full {
            let stream = self.stream.as_mut().expect("opened");
            let mut seg = self.pending[start..start + full].to_vec();
            stream
                .decrypt_next_in_place(&self.header, &mut seg)
                .map_err(|_| CryptoError::Segment(self.index))?;
            out.extend_from_slice(&seg);
            self.index += 1;
            start += full;
        }
        self.pending.drain(..start);
        Ok(())
    }
}

impl Transform for SegmentDecryptor {
    fn update(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), FlowError> {
        if self.stream.is_none() {
            let take = (HEADER_LEN - self.header.len()).min(input.len());
            self.header.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.header.len() < HEADER_LEN {
                return Ok(());
            }
            self.open()?;
        }
        self.pending.extend_from_slice(input);
        self.decrypt_full_segments(out)?;
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FlowError> {
        let Some(stream) = self.stream.take() else {
            return Err(CryptoError::Truncated.into());
        };
        if self.pending.len() < TAG {
            return Err(CryptoError::Truncated.into());
        }
        let mut seg = std::mem::take(&mut self.pending);
        stream
            .decrypt_last_in_place(&self.header, &mut seg)
            .map_err(|_| CryptoError::Segment(self.index))?;
        out.extend_from_slice(&seg);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &mut dyn Transform, data: &[u8], piece: usize) -> Result<Vec<u8>, FlowError> {
        let mut out = Vec::new();
        for chunk in data.chunks(piece.max(1)) {
            t.update(chunk, &mut out)?;
        }
        t.finish(&mut out)?;
        Ok(out)
    }

    fn kek(b: u8) -> Kek {
        Kek::from_bytes([b; 32])
    }

    fn named(k: &Kek) -> KeyChoice {
        KeyChoice::Named("k".into(), k.clone())
    }

    #[test]
    fn round_trips_sizes_around_segment_boundaries() {
        let k = kek(1);
        for len in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let enc = run(&mut SegmentEncryptor::new(&k), &data, 10_000).unwrap();
            let segments = len / SEGMENT + 1;
            assert_eq!(enc.len(), HEADER_LEN + len + segments * TAG, "len {len}");
            let dec = run(&mut SegmentDecryptor::new(named(&k)), &enc, 777).unwrap();
            assert_eq!(dec, data, "len {len}");
        }
    }

    #[test]
    fn tampering_is_detected() {
        let k = kek(2);
        let data = vec![5u8; 2 * SEGMENT + 100];
        let enc = run(&mut SegmentEncryptor::new(&k), &data, 4096).unwrap();
        let dec = |bytes: &[u8]| run(&mut SegmentDecryptor::new(named(&k)), bytes, 5000);

        let mut flipped = enc.clone();
        flipped[HEADER_LEN + 10] ^= 1;
        assert!(matches!(
            dec(&flipped),
            Err(FlowError::Crypto(CryptoError::Segment(0)))
        ));

        let full = SEGMENT + TAG;
        let truncated = &enc[..HEADER_LEN + 2 * full];
        assert!(matches!(
            dec(truncated),
            Err(FlowError::Crypto(CryptoError::Truncated))
        ));
        let cut = &enc[..enc.len() - 1];
        assert!(matches!(
            dec(cut),
            Err(FlowError::Crypto(CryptoError::Segment(2)))
        ));
        assert!(matches!(
            dec(&enc[..40]),
            Err(FlowError::Crypto(CryptoError::Truncated))
        ));

        let mut swapped = enc.clone();
        let (a, b) = (HEADER_LEN, HEADER_LEN + full);
        let first = enc[a..a + full].to_vec();
        swapped.copy_within(b..b + full, a);
        swapped[b..b + full].copy_from_slice(&first);
        assert!(matches!(
            dec(&swapped),
            Err(FlowError::Crypto(CryptoError::Segment(0)))
        ));

        let mut salt_edit = enc.clone();
        salt_edit[20] ^= 0x80;
        assert!(matches!(
            dec(&salt_edit),
            Err(FlowError::Crypto(CryptoError::Segment(0)))
        ));

        let mut id_edit = enc.clone();
        id_edit[9] ^= 1;
        assert!(matches!(
            dec(&id_edit),
            Err(FlowError::Crypto(CryptoError::WrongKey { .. }))
        ));

        let mut magic = enc.clone();
        magic[0] = b'X';
        assert!(matches!(
            dec(&magic),
            Err(FlowError::Crypto(CryptoError::BadMagic))
        ));
    }

    #[test]
    fn wrong_key_is_named_and_ring_lookup_finds_the_right_one() {
        let k = kek(3);
        let enc = run(&mut SegmentEncryptor::new(&k), b"hello", 5).unwrap();
        let other = kek(4);
        let err = run(&mut SegmentDecryptor::new(named(&other)), &enc, 64).unwrap_err();
        assert!(err.to_string().contains("key id"), "{err}");
        let mut ring = KeyRing::empty();
        ring.insert_raw("other", [4; 32]);
        ring.insert_raw("right", [3; 32]);
        let dec = run(&mut SegmentDecryptor::new(KeyChoice::ById(ring)), &enc, 64).unwrap();
        assert_eq!(dec, b"hello");
    }

    #[test]
    fn each_object_gets_a_fresh_salt_and_nonce() {
        let k = kek(5);
        let a = run(&mut SegmentEncryptor::new(&k), b"same", 4).unwrap();
        let b = run(&mut SegmentEncryptor::new(&k), b"same", 4).unwrap();
        assert_ne!(a[16..55], b[16..55]);
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
    }
}
