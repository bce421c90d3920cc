//! The [`Transform`] trait: a CPU stage that turns input bytes into output bytes
//! (compression, encryption). Stages that only observe bytes are taps (`tap.rs`).

use super::error::FlowError;

/// A byte-changing stage. Called on one thread; output is appended to `out`.
pub trait Transform: Send {
    /// Processes `input`, appending whatever output is ready to `out`.
    fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), FlowError>;
    /// Flushes the remaining output at the end of the stream.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), FlowError>;
}
