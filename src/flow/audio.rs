//! `.audio_check()`: the first bytes must be RIFF/WAVE, an MP3 frame sync or ID3 tag, or OGG.

/// Bytes needed to decide.
pub const HEAD_LEN: usize = 12;

/// Which container the head looks like, if any.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        return Some("wav");
    }
    if head.len() >= 3 && &head[0..3] == b"ID3" {
        return Some("mp3");
    }
    if head.len() >= 4 && &head[0..4] == b"OggS" {
        return Some("ogg");
    }
    if head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0 {
        let version = (head[1] >> 3) & 0b11;
        let layer = (head[1] >> 1) & 0b11;
        if version != 0b01 && layer != 0b00 {
            return Some("mp3");
        }
    }
    None
}

/// Collects the head of a stream.
#[derive(Clone, Debug, Default)]
pub struct AudioSniffer {
    head: Vec<u8>,
}

impl AudioSniffer {
    pub fn update(&mut self, data: &[u8]) {
        if self.head.len() < HEAD_LEN {
            let take = (HEAD_LEN - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
        }
    }

    /// The detected container, or the hex of the head when it is not audio.
    pub fn verdict(&self) -> Result<&'static str, String> {
        sniff(&self.head).ok_or_else(|| hex::encode(&self.head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_wav_mp3_ogg_and_rejects_others() {
        assert_eq!(sniff(b"RIFF\x24\x08\x00\x00WAVEfmt "), Some("wav"));
        assert_eq!(
            sniff(b"ID3\x04\x00\x00\x00\x00\x00\x00\x00\x00"),
            Some("mp3")
        );
        assert_eq!(sniff(&[0xFF, 0xFB, 0x90, 0x64]), Some("mp3"));
        assert_eq!(sniff(b"OggS\x00\x02"), Some("ogg"));
        assert_eq!(sniff(b"RIFF\x24\x08\x00\x00AVI "), None);
        assert_eq!(sniff(b"<?xml version"), None);
        assert_eq!(sniff(&[0xFF, 0xE9]), None, "reserved MPEG version");
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn sniffer_reads_the_head_across_chunks() {
        let mut s = AudioSniffer::default();
        for b in b"RIFF\x00\x00\x00\x00WAVEdata....".chunks(3) {
            s.update(b);
        }
        assert_eq!(s.verdict(), Ok("wav"));
        let mut bad = AudioSniffer::default();
        bad.update(b"<html>");
        assert_eq!(bad.verdict(), Err(hex::encode(b"<html>")));
    }
}
