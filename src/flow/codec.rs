//! Compression stages (gzip via flate2/zlib-rs, zstd) and their inverses, as
//! [`Transform`]s. Compress before encrypting, never after.

use std::io::Write;

use super::error::FlowError;
use super::transform::Transform;

/// Which codec a stage uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Zstd,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    /// Checks a level: gzip 0..=9, zstd 1..=22.
    pub fn check_level(self, level: i64) -> Result<i32, FlowError> {
        let ok = match self {
            Codec::Gzip => (0..=9).contains(&level),
            Codec::Zstd => (1..=22).contains(&level),
        };
        if ok {
            Ok(level as i32)
        } else {
            Err(FlowError::Invalid(format!(
                "{}({level}): level must be {}",
                self.name(),
                if self == Codec::Gzip {
                    "0..=9"
                } else {
                    "1..=22"
                }
            )))
        }
    }
}

fn codec_err(stage: &'static str) -> impl Fn(std::io::Error) -> FlowError {
    move |e| FlowError::Codec {
        stage,
        message: e.to_string(),
    }
}

/// Drains a writer's `Vec` sink into `out`.
fn drain(buf: &mut Vec<u8>, out: &mut Vec<u8>) {
    if out.is_empty() {
        std::mem::swap(buf, out);
    } else {
        out.append(buf);
    }
}

/// An encoder or decoder writing into a `Vec`, drained after every call.
enum Inner {
    GzipEncode(flate2::write::GzEncoder<Vec<u8>>),
    GzipDecode(flate2::write::GzDecoder<Vec<u8>>),
    ZstdEncode(zstd::stream::write::Encoder<'static, Vec<u8>>),
    ZstdDecode(zstd::stream::write::Decoder<'static, Vec<u8>>),
    Done,
}

/// A compression or decompression stage.
pub struct CodecStage {
    inner: Inner,
    stage: &'static str,
}

impl CodecStage {
    /// A compressor at `level` (checked with [`Codec::check_level`]).
    pub fn compress(codec: Codec, level: i32) -> Result<CodecStage, FlowError> {
        let inner = match codec {
            Codec::Gzip => Inner::GzipEncode(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level as u32),
            )),
            Codec::Zstd => Inner::ZstdEncode(
                zstd::stream::write::Encoder::new(Vec::new(), level).map_err(codec_err("zstd"))?,
            ),
        };
        Ok(CodecStage {
            inner,
            stage: codec.name(),
        })
    }

    /// A decompressor.
    pub fn decompress(codec: Codec) -> Result<CodecStage, FlowError> {
        let inner = match codec {
            Codec::Gzip => Inner::GzipDecode(flate2::write::GzDecoder::new(Vec::new())),
            Codec::Zstd => Inner::ZstdDecode(
                zstd::stream::write::Decoder::new(Vec::new()).map_err(codec_err("unzstd"))?,
            ),
        };
        let stage = match codec {
            Codec::Gzip => "gunzip",
            Codec::Zstd => "unzstd",
        };
        Ok(CodecStage { inner, stage })
    }
}

impl Transform for CodecStage {
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), FlowError> {
        let err = codec_err(self.stage);
        match &mut self.inner {
            Inner::GzipEncode(w) => {
                w.write_all(input).map_err(&err)?;
                drain(w.get_mut(), out);
            }
            Inner::GzipDecode(w) => {
                w.write_all(input).map_err(&err)?;
                drain(w.get_mut(), out);
            }
            Inner::ZstdEncode(w) => {
                w.write_all(input).map_err(&err)?;
                drain(w.get_mut(), out);
            }
            Inner::ZstdDecode(w) => {
                w.write_all(input).map_err(&err)?;
                drain(w.get_mut(), out);
            }
            Inner::Done => return Err(FlowError::Internal(format!("{} after finish", self.stage))),
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FlowError> {
        let err = codec_err(self.stage);
        let mut rest = match std::mem::replace(&mut self.inner, Inner::Done) {
            Inner::GzipEncode(w) => w.finish().map_err(&err)?,
            Inner::GzipDecode(w) => w.finish().map_err(&err)?,
            Inner::ZstdEncode(w) => w.finish().map_err(&err)?,
            Inner::ZstdDecode(mut w) => {
                w.flush().map_err(&err)?;
                std::mem::take(w.get_mut())
            }
            Inner::Done => Vec::new(),
        };
        drain(&mut rest, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &mut dyn Transform, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in data.chunks(3000) {
            t.update(c, &mut out).unwrap();
        }
        t.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn gzip_and_zstd_round_trip_and_compress_text() {
        let text: Vec<u8> = b"{\"id\":1,\"agent\":\"x\"}\n".repeat(2000);
        for codec in [Codec::Gzip, Codec::Zstd] {
            let packed = run(&mut CodecStage::compress(codec, 3).unwrap(), &text);
            assert!(packed.len() < text.len() / 10, "{codec:?}");
            let unpacked = run(&mut CodecStage::decompress(codec).unwrap(), &packed);
            assert_eq!(unpacked, text, "{codec:?}");
        }
    }

    #[test]
    fn gzip_output_is_a_standard_gzip_member() {
        let packed = run(&mut CodecStage::compress(Codec::Gzip, 1).unwrap(), b"abc");
        assert_eq!(&packed[..2], &[0x1f, 0x8b]);
        let mut plain = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&packed[..]), &mut plain)
            .unwrap();
        assert_eq!(plain, "abc");
    }

    #[test]
    fn levels_are_checked() {
        assert!(Codec::Gzip.check_level(10).is_err());
        assert!(Codec::Zstd.check_level(0).is_err());
        assert_eq!(Codec::Zstd.check_level(19).unwrap(), 19);
    }
}
