//! `trunkgate-sip`: SIP messages, transport value types and the proxy core.
//!
//! - [`message`]: zero-copy message view, lazy header parsing, splicing rewrites.
//! - [`proxy`]: the sans-IO, dialog-stateful proxy (RFC 3261 §16–17): bytes and time in,
//!   [`Transmit`]s and timer deadlines out. No sockets, no clock, no tokio here.
//! - [`routing`]: the trait through which the core asks policy where a request goes.
//! - [`admission`]: the trait through which it asks whether a datagram, call or REGISTER
//!   may pass (limits, floods, allow lists).
//! - [`digest`]: HTTP Digest answers (MD5, SHA-256) for trunks that challenge.
//! - [`media`]: the trait through which it anchors SDP offers/answers at the media relay.
//!
//! The async shell that owns sockets lives in the `trunkgate` binary crate.

pub mod admission;
pub mod digest;
pub mod media;
pub mod message;
pub mod metrics;
pub mod normalise;
pub mod proxy;
pub mod routing;
pub mod transport;

pub use admission::{
    AccountId, Admission, NoAdmission, RejectReason, TrunkLimits, UnknownSource, Verdict,
};
pub use media::{MediaCall, MediaFailure, MediaRelay, MediaSide};
pub use metrics::{Direction, ProxyMetrics};
pub use proxy::{
    CallParties, EndReason, Event, INTERNAL_ADDR, INTERNAL_FLOW, InternalOrigin, Outcome,
    ProbeResult, Proxy, ProxyConfig, Refusal, RegistrationConfig, RegistrationResult, Timers,
};
pub use routing::{FailoverPolicy, Party, RouteChoice, Routing, Target, TrunkId, TrunkLoad};
pub use transport::{ConnId, Flow, Transmit, Transport};
