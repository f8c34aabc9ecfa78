//! Treat the input as bytes received on one TCP/TLS connection: skip keepalives, cut frames
//! with `frame_len`, parse each frame, until more bytes would be needed or an error.
//!
//! The check itself is `fuzz/checks/frame_stream.rs`, shared with the regression test that
//! replays `fuzz/regressions/frame_stream/` in the normal suite (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../checks/frame_stream.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
