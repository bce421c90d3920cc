//! Small native helpers for scripts that Rhai lacks (time). Each namespace one file.

pub mod time;
