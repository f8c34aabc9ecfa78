//! Parse arbitrary bytes as one SIP datagram; on success check the conformance rules hold
//! (issue 11: single-value headers once, every Via and name-addr well-formed, Max-Forwards
//! 0–255, CSeq method = request method, no `?headers` in a sip Request-URI) and exercise
//! every accessor, the lazy parsers and the rewriters; on failure check the refusal: its
//! answer, and the loose reading that addresses it (never for a response or an ACK).
//!
//! The check itself is `fuzz/checks/parse_message.rs`, shared with the regression test that
//! replays `fuzz/regressions/parse_message/` in the normal suite (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../checks/parse_message.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
