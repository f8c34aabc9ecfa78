//! Parse arbitrary bytes as an SDP body; when it parses, rewrite it onto an IPv4 and an
//! IPv6 address with a port for every stream (and with some streams left alone), and check
//! that the output parses again with the new addresses and ports.
//!
//! The check itself is `fuzz/checks/sdp.rs`, shared with the regression test that
//! replays `fuzz/regressions/sdp/` in the normal suite (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../checks/sdp.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
