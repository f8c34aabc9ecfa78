//! `trunkgate-sip`: SIP messages, transports types and the proxy core.
//!
//! - [`message`]: zero-copy message view, lazy header parsing, splicing rewrites.
//! - [`proxy`]: the sans-IO, dialog-stateful proxy (RFC 3261 §16–17): bytes and time in,
//!   [`Transmit`]s and timer deadlines out. No sockets, no clock, no tokio here.
//!
//! The async shell that owns sockets lives in the `trunkgate` binary crate.

pub mod message;
