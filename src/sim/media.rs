//! Generated audio: valid WAV (RIFF, 16-bit PCM, 8 kHz) or MP3 (MPEG-1 Layer III frames)
//! of an exact size, produced chunk by chunk from a key. Nothing is stored: chunk `k` is a
//! 64 KiB base block with a chunk-specific tag, so every position has its own bytes.

use bytes::{Bytes, BytesMut};
use md5::Md5;
use sha2::{Digest, Sha256};

use super::rng::mix64;

const WAV_HEADER: usize = 44;
const WAV_PERIOD: usize = 64 * 1024;
const MP3_STEREO_FRAME: usize = 417; // 128 kbit/s, 44.1 kHz, no padding
const MP3_MONO_FRAME: usize = 208; // 64 kbit/s, 44.1 kHz, no padding
const TAG_LEN: usize = 16;

/// Container of a recording's media.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaFormat {
    Wav,
    Mp3,
}

impl MediaFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            MediaFormat::Wav => "audio/wav",
            MediaFormat::Mp3 => "audio/mpeg",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            MediaFormat::Wav => "wav",
            MediaFormat::Mp3 => "mp3",
        }
    }
}

/// Audio channel of a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Combined = 0,
    Agent = 1,
    Caller = 2,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Combined, Channel::Agent, Channel::Caller];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Combined => "combined",
            Channel::Agent => "agent",
            Channel::Caller => "caller",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(text))
    }
}

/// The media of one recording channel: format, key and exact size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSpec {
    format: MediaFormat,
    stereo: bool,
    key: u64,
    total: u64,
}

/// Generator of a [`MediaSpec`]'s bytes: holds the header and one base block (≤ 64 KiB).
#[derive(Debug)]
pub struct MediaSource {
    spec: MediaSpec,
    header: Bytes,
    block: Bytes,
    tag_at: usize,
}

impl MediaSpec {
    /// Media of about `requested` bytes (rounded down to whole samples or frames; a WAV
    /// is never smaller than its 44-byte header).
    pub fn new(format: MediaFormat, channel: Channel, key: u64, requested: u64) -> Self {
        let stereo = channel == Channel::Combined;
        let total = match format {
            MediaFormat::Wav => {
                let align = if stereo { 4 } else { 2 };
                let data = requested.saturating_sub(WAV_HEADER as u64) / align * align;
                WAV_HEADER as u64 + data
            }
            MediaFormat::Mp3 => {
                let frame = if stereo {
                    MP3_STEREO_FRAME
                } else {
                    MP3_MONO_FRAME
                } as u64;
                requested / frame * frame
            }
        };
        MediaSpec {
            format,
            stereo,
            key,
            total,
        }
    }

    pub fn format(&self) -> MediaFormat {
        self.format
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes per second of audio (WAV: 8 kHz 16-bit; MP3: the frame bitrate).
    pub fn byte_rate(&self) -> u64 {
        match (self.format, self.stereo) {
            (MediaFormat::Wav, true) => 32_000,
            (MediaFormat::Wav, false) => 16_000,
            (MediaFormat::Mp3, true) => 16_000,
            (MediaFormat::Mp3, false) => 8_000,
        }
    }

    pub fn duration_secs(&self) -> u64 {
        self.total / self.byte_rate()
    }

    /// Opaque entity tag, stable per media (like a multipart ETag, not an MD5).
    pub fn etag(&self) -> String {
        format!(
            "\"{:016x}{:016x}-1\"",
            mix64(self.key ^ 0xE7A6),
            mix64(self.key ^ self.total)
        )
    }

    /// Builds the generator (about 64 KiB of work).
    pub fn source(&self) -> MediaSource {
        let (header, block, tag_at) = match self.format {
            MediaFormat::Wav => (wav_header(self), pcm_block(self.key), 0),
            MediaFormat::Mp3 => {
                let (block, tag_at) = mp3_block(self.key, self.stereo);
                (Bytes::new(), block, tag_at)
            }
        };
        MediaSource {
            spec: self.clone(),
            header,
            block,
            tag_at,
        }
    }
}

impl MediaSource {
    /// The bytes starting at `pos`, at most up to `end` (exclusive) and never crossing a
    /// chunk boundary. Empty when `pos >= min(end, total)`.
    pub fn piece(&self, pos: u64, end: u64) -> Bytes {
        let end = end.min(self.spec.total);
        if pos >= end {
            return Bytes::new();
        }
        let hlen = self.header.len() as u64;
        if pos < hlen {
            return self.header.slice(pos as usize..end.min(hlen) as usize);
        }
        let period = self.block.len() as u64;
        let body_pos = pos - hlen;
        let chunk = body_pos / period;
        let within = (body_pos % period) as usize;
        let len = (period - within as u64).min(end - pos) as usize;
        self.chunk(chunk).slice(within..within + len)
    }

    fn chunk(&self, index: u64) -> Bytes {
        let mut buf = BytesMut::from(&self.block[..]);
        let tag_a = mix64(self.spec.key ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let tag_b = mix64(tag_a);
        buf[self.tag_at..self.tag_at + 8].copy_from_slice(&tag_a.to_le_bytes());
        buf[self.tag_at + 8..self.tag_at + TAG_LEN].copy_from_slice(&tag_b.to_le_bytes());
        buf.freeze()
    }

    /// SHA-256 and MD5 (lower-case hex) of the whole media, computed by generating it.
    pub fn digests(&self) -> (String, String) {
        let mut sha = Sha256::new();
        let mut md5 = Md5::new();
        let mut pos = 0;
        while pos < self.spec.total {
            let piece = self.piece(pos, u64::MAX);
            sha.update(&piece);
            md5.update(&piece);
            pos += piece.len() as u64;
        }
        (hex::encode(sha.finalize()), hex::encode(md5.finalize()))
    }
}

fn wav_header(spec: &MediaSpec) -> Bytes {
    let channels: u16 = if spec.stereo { 2 } else { 1 };
    let rate: u32 = 8000;
    let data = spec.total - WAV_HEADER as u64;
    let riff_len = u32::try_from(spec.total - 8).unwrap_or(u32::MAX);
    let data_len = u32::try_from(data).unwrap_or(u32::MAX);
    let mut h = Vec::with_capacity(WAV_HEADER);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&riff_len.to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // PCM
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * 2 * channels as u32).to_le_bytes());
    h.extend_from_slice(&(2 * channels).to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    Bytes::from(h)
}

/// 64 KiB of quiet 16-bit PCM: a slow tone plus low noise, derived from `key`.
fn pcm_block(key: u64) -> Bytes {
    let mut out = Vec::with_capacity(WAV_PERIOD);
    let mut x = key | 1;
    let step = 200 + (key % 600) as i32;
    for i in 0..(WAV_PERIOD / 2) as i32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let tri = ((i * step) % 8000 - 4000).abs() - 2000;
        let noise = ((x >> 56) as i32) - 128;
        out.extend_from_slice(&((tri + noise * 4) as i16).to_le_bytes());
    }
    Bytes::from(out)
}

/// Whole MP3 frames filling at most 64 KiB; returns the block and where chunk tags go
/// (inside the first frame's main data, which decoders skip as ancillary bytes).
fn mp3_block(key: u64, stereo: bool) -> (Bytes, usize) {
    let (frame, header, side_info) = if stereo {
        (MP3_STEREO_FRAME, [0xFF, 0xFB, 0x90, 0x04], 32)
    } else {
        (MP3_MONO_FRAME, [0xFF, 0xFB, 0x50, 0xC4], 17)
    };
    let frames = WAV_PERIOD / frame;
    let mut out = Vec::with_capacity(frames * frame);
    let mut x = key | 1;
    for _ in 0..frames {
        out.extend_from_slice(&header);
        out.extend(std::iter::repeat_n(0u8, side_info));
        for _ in 0..frame - 4 - side_info {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push((x >> 56) as u8);
        }
    }
    (Bytes::from(out), 4 + side_info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(source: &MediaSource, start: u64, end: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pos = start;
        loop {
            let piece = source.piece(pos, end);
            if piece.is_empty() {
                return out;
            }
            pos += piece.len() as u64;
            out.extend_from_slice(&piece);
        }
    }

    #[test]
    fn wav_has_a_valid_header_and_exact_size() {
        let spec = MediaSpec::new(MediaFormat::Wav, Channel::Combined, 42, 300_001);
        let bytes = collect(&spec.source(), 0, u64::MAX);
        assert_eq!(bytes.len() as u64, spec.total());
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(&bytes[8..16], b"WAVEfmt ");
        assert_eq!(
            u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize,
            bytes.len() - 44
        );
        assert_eq!((bytes.len() - 44) % 4, 0);
    }

    #[test]
    fn mp3_is_whole_frames_with_sync_words() {
        let spec = MediaSpec::new(MediaFormat::Mp3, Channel::Agent, 9, 100_000);
        let bytes = collect(&spec.source(), 0, u64::MAX);
        assert_eq!(bytes.len() % MP3_MONO_FRAME, 0);
        for frame in bytes.chunks(MP3_MONO_FRAME) {
            assert_eq!(&frame[..2], &[0xFF, 0xFB]);
        }
    }

    #[test]
    fn ranges_match_the_whole_and_chunks_differ() {
        let spec = MediaSpec::new(MediaFormat::Wav, Channel::Combined, 5, 400_000);
        let source = spec.source();
        let whole = collect(&source, 0, u64::MAX);
        assert_eq!(collect(&source, 70_000, 200_001), whole[70_000..200_001]);
        assert_eq!(collect(&source, 10, 20), whole[10..20]);
        let p = WAV_PERIOD;
        assert_ne!(
            whole[44..44 + p],
            whole[44 + p..44 + 2 * p],
            "chunks must not repeat"
        );
    }

    #[test]
    fn digests_are_stable_and_key_dependent() {
        let a = MediaSpec::new(MediaFormat::Wav, Channel::Combined, 1, 100_000)
            .source()
            .digests();
        let b = MediaSpec::new(MediaFormat::Wav, Channel::Combined, 1, 100_000)
            .source()
            .digests();
        let c = MediaSpec::new(MediaFormat::Wav, Channel::Combined, 2, 100_000)
            .source()
            .digests();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.0.len(), 64);
        assert_eq!(a.1.len(), 32);
    }
}
