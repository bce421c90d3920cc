//! The native side of the script surface that belongs to no single stage: time helpers,
//! the error map every native failure raises, and the settings native functions read.

pub mod settings;
pub mod thrown;
pub mod time;
