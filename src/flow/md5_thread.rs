//! MD5 on a helper thread: the flow's thread sends it the shared source chunks (`Bytes`,
//! no copy) and carries on with SHA-256 and the transforms, so the two hashes run side by
//! side. Used only for taps on the source bytes of a running flow.

use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use bytes::Bytes;
use md5::{Digest, Md5};

/// Chunks in flight to the helper before the flow's thread waits.
const DEPTH: usize = 16;

/// A running MD5 helper.
pub struct Md5Thread {
    tx: Option<SyncSender<Bytes>>,
    handle: Option<JoinHandle<String>>,
}

impl Md5Thread {
    pub fn spawn() -> std::io::Result<Md5Thread> {
        let (tx, rx) = sync_channel::<Bytes>(DEPTH);
        let handle = std::thread::Builder::new()
            .name("cxpipe-md5".into())
            .spawn(move || {
                let mut h = Md5::new();
                for chunk in rx {
                    h.update(&chunk);
                }
                hex::encode(h.finalize())
            })?;
        Ok(Md5Thread {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    /// Hands a chunk to the helper (waits when it is `DEPTH` chunks behind).
    pub fn send(&self, chunk: Bytes) {
        if let Some(tx) = &self.tx {
            // The helper only stops when the sender is dropped, so this cannot fail.
            let _ = tx.send(chunk);
        }
    }

    /// The hex digest of everything sent.
    pub fn finish(mut self) -> String {
        drop(self.tx.take());
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Md5Thread {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_inline_md5_across_chunks() {
        let t = Md5Thread::spawn().unwrap();
        for piece in [&b"ab"[..], b"", b"c"] {
            t.send(Bytes::copy_from_slice(piece));
        }
        assert_eq!(t.finish(), "900150983cd24fb0d6963f7d28e17f72");
    }
}
