//! RTP/RTCP readers on arbitrary bytes: `rtp_header`, `is_rtcp` and `rtcp_reports` on the
//! whole input, then the input cut into 12-byte records fed to `ReceiveStats::on_packet`
//! as a packet sequence (header + an 8-byte arrival time + clock rate), checking the
//! counters stay consistent.
//!
//! The check itself is `fuzz/checks/rtp.rs`, shared with the regression test that
//! replays `fuzz/regressions/rtp/` in the normal suite (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../checks/rtp.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
