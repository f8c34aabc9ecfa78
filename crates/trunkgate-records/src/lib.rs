//! Call records and what they say about capacity.
//!
//! - [`record`]: one record per call attempt (times, trunk, route, codes, attempts,
//!   media summary, end reason).
//! - [`store`]: the SQLite store (WAL) with retention by age and size; [`writer`]: the
//!   one writer thread behind a bounded queue (the daemon never waits on the disk).
//! - [`stats`]: busy hour, peak concurrency, Erlangs, ASR, rejects, leg amplification.
//! - [`erlang`]: Erlang B/C by the stable recurrence; [`plan`]: channels for a grade of
//!   service, bandwidth per codec, trend, and the capacity report.
//!
//! Everything but the store and the writer is a pure function over records: testable
//! without a daemon. Not here: building records from SIP events (the daemon's
//! `records_feed`), the admin API and `trunkgate ctl` (the binary).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod erlang;
pub mod plan;
pub mod record;
pub mod stats;
pub mod store;
pub mod writer;

pub use record::{Attempt, CallRecord, Direction, MediaLeg};
pub use store::{Store, StoreError};
pub use writer::{Counters, RecordSink, Writer, WriterConfig};
