//! Call records from the core's events. The SIP shell hands every event to
//! [`RecordsFeed::on_event`] (on the core thread, stamped with the wall clock when the
//! queue is drained); a record is finished when its call ends (or is refused) and handed
//! to the writer thread with `try_send` ([`trunkgate_records::RecordSink::submit`]): the
//! core never waits on the disk, a full queue drops the record and counts it.
//!
//! Media figures come from the relay when the core deletes the call's session: the adapter
//! ([`crate::media_adapter::RelayAdapter`]) leaves them in [`MediaSummaries`], the feed
//! takes them when the `CallEnded` event of that dialog arrives (same thread, right after).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use trunkgate_media::StreamSummary;
use trunkgate_records::{Attempt, CallRecord, Direction, MediaLeg, RecordSink};
use trunkgate_sip::message::Method;
use trunkgate_sip::{CallParties, EndReason, Event, Outcome, Party};

/// Most media summaries waiting for their `CallEnded` (a delete without one, e.g. of a
/// stale session, must not grow this without bound).
const SUMMARIES_MAX: usize = 4096;

/// Media totals of deleted sessions, by dialog id, until the feed takes them.
#[derive(Debug, Default)]
pub struct MediaSummaries(Mutex<Vec<(u64, Vec<StreamSummary>)>>);

impl MediaSummaries {
    pub fn put(&self, dialog: u64, streams: Vec<StreamSummary>) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() >= SUMMARIES_MAX {
            v.remove(0);
        }
        v.push((dialog, streams));
    }

    fn take(&self, dialog: u64) -> Option<Vec<StreamSummary>> {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let i = v.iter().rposition(|(d, _)| *d == dialog)?;
        Some(v.swap_remove(i).1)
    }
}

/// Trunk, route and PBX node names of the policy in force.
#[derive(Debug, Default, Clone)]
pub struct Names {
    trunks: Vec<String>,
    routes: Vec<String>,
    pbx_nodes: Vec<(String, SocketAddr)>,
}

impl Names {
    pub fn of(routing: &crate::routing_adapter::PolicyRouting) -> Names {
        let table = routing.table();
        let mut trunks = Vec::new();
        for t in table.trunks() {
            let slot = usize::from(t.id.0);
            if trunks.len() <= slot {
                trunks.resize(slot + 1, String::new());
            }
            trunks[slot] = t.name.clone();
        }
        Names {
            trunks,
            routes: table.routes().iter().map(|r| r.name.clone()).collect(),
            pbx_nodes: table
                .pbx_nodes()
                .iter()
                .map(|n| (n.name.clone(), n.address))
                .collect(),
        }
    }

    fn trunk(&self, id: u16) -> String {
        match self.trunks.get(usize::from(id)) {
            Some(n) if !n.is_empty() => n.clone(),
            _ => format!("#{id}"),
        }
    }

    fn node(&self, address: SocketAddr) -> Option<String> {
        self.pbx_nodes
            .iter()
            .find(|(_, a)| *a == address)
            .map(|(n, _)| n.clone())
    }

    fn party(&self, party: Party, address: SocketAddr) -> String {
        match party {
            Party::Trunk(t) => self.trunk(t),
            Party::Pbx => self.node(address).unwrap_or_else(|| "pbx".to_owned()),
            Party::Unknown => address.to_string(),
        }
    }
}

/// A call between its attempt and its end.
struct Pending {
    record: CallRecord,
}

/// Refusals are answered statelessly, so a retransmitted INVITE (the 503 was lost) is
/// refused again: one record per Call-ID within this window.
const REJECT_WINDOW_MS: i64 = 32_000;
/// Most Call-IDs remembered for that (a flood beyond it may record a retransmission twice).
const REJECTS_REMEMBERED: usize = 65_536;

/// Call-ID hashes (keyed per process: a peer cannot aim collisions) of recent refusals,
/// oldest first.
#[derive(Default)]
struct RecentRejects {
    keys: std::collections::hash_map::RandomState,
    seen: HashMap<u64, i64>,
    order: std::collections::VecDeque<(u64, i64)>,
}

impl RecentRejects {
    /// `true` when `call_id` was refused within the window (a retransmission).
    fn repeat(&mut self, call_id: &[u8], now: i64) -> bool {
        use std::hash::BuildHasher;
        while let Some(&(h, at)) = self.order.front() {
            if now - at <= REJECT_WINDOW_MS && self.order.len() < REJECTS_REMEMBERED {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&h) == Some(&at) {
                self.seen.remove(&h);
            }
        }
        let h = self.keys.hash_one(call_id);
        if self.seen.contains_key(&h) {
            return true;
        }
        self.seen.insert(h, now);
        self.order.push_back((h, now));
        false
    }
}

pub struct RecordsFeed {
    sink: RecordSink,
    names: Names,
    media: Option<Arc<MediaSummaries>>,
    pending: HashMap<u64, Pending>,
    rejects: RecentRejects,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ms_between(from: i64, to: i64) -> u32 {
    u32::try_from((to - from).max(0)).unwrap_or(u32::MAX)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn codec(payload_type: Option<u8>, clock_rate: u32) -> String {
    match payload_type {
        Some(0) => "PCMU".into(),
        Some(3) => "GSM".into(),
        Some(4) => "G723".into(),
        Some(8) => "PCMA".into(),
        Some(9) => "G722".into(),
        Some(18) => "G729".into(),
        Some(pt) if pt >= 96 => format!("dynamic/{clock_rate}"),
        Some(pt) => format!("pt{pt}"),
        None => "?".into(),
    }
}

/// The relay's totals as record legs (RTP streams only).
fn media_legs(streams: &[StreamSummary]) -> Vec<MediaLeg> {
    let mut out = Vec::new();
    for st in streams.iter().filter(|s| s.rtp) {
        for (side, leg) in ["pbx", "trunk"].iter().zip(st.legs.iter()) {
            let loss_pct = if leg.expected > 0 {
                leg.lost as f64 * 100.0 / leg.expected as f64
            } else {
                0.0
            };
            out.push(MediaLeg {
                side: (*side).to_owned(),
                codec: codec(st.payload_type, st.clock_rate),
                packets: leg.rx_packets,
                bytes: leg.rx_bytes,
                lost: leg.lost,
                loss_pct,
                jitter_ms: leg.jitter_ms,
                packet_rate: if st.seconds > 0.0 {
                    leg.rx_packets as f64 / st.seconds
                } else {
                    0.0
                },
                seconds: st.seconds,
                active_seconds: leg.active_seconds,
            });
        }
    }
    out
}

fn outcome_text(outcome: Outcome) -> String {
    match outcome {
        Outcome::Final(code) => code.to_string(),
        Outcome::Timeout => "timeout".into(),
        Outcome::TryTimeout => "try-timeout".into(),
        Outcome::Transport => "transport".into(),
        Outcome::Abandoned => "abandoned".into(),
    }
}

fn new_record(
    call_id: &[u8],
    start_ms: i64,
    direction: Direction,
    parties: &CallParties,
) -> CallRecord {
    CallRecord {
        call_id: text(call_id),
        start_ms,
        answer_ms: None,
        end_ms: start_ms,
        direction,
        trunk: None,
        route: None,
        pbx_node: None,
        caller: text(&parties.caller),
        callee: text(&parties.callee),
        code: 0,
        first_provisional_ms: None,
        setup_ms: None,
        duration_ms: 0,
        attempts: Vec::new(),
        end_reason: String::new(),
        reject: None,
        transfer: parties.transfer,
        media: Vec::new(),
    }
}

impl RecordsFeed {
    pub fn new(sink: RecordSink, names: Names, media: Option<Arc<MediaSummaries>>) -> RecordsFeed {
        RecordsFeed {
            sink,
            names,
            media,
            pending: HashMap::new(),
            rejects: RecentRejects::default(),
        }
    }

    /// The policy was reloaded: names follow it (calls in progress keep theirs).
    pub fn set_names(&mut self, names: Names) {
        self.names = names;
    }

    fn route(&self, route: Option<u16>) -> Option<String> {
        route.and_then(|r| self.names.routes.get(usize::from(r)).cloned())
    }

    fn direction(&self, from: Party) -> Direction {
        match from {
            Party::Trunk(_) => Direction::Inbound,
            _ => Direction::Outbound,
        }
    }

    /// One event out of the core, stamped with the wall clock now (the shell drains the
    /// queue after every input batch).
    pub fn on_event(&mut self, event: &Event) {
        let wall = wall_ms();
        match event {
            Event::CallAttempt {
                dialog,
                call_id,
                from,
                source,
                route,
                parties,
                test,
            } => {
                if *test {
                    // Trunkgate's own test calls are not traffic: no record, so no
                    // busy-hour statistics (their results are the validation report's).
                    return;
                }
                let mut r = new_record(call_id, wall, self.direction(*from), parties);
                r.route = self.route(*route);
                match from {
                    Party::Trunk(t) => r.trunk = Some(self.names.trunk(*t)),
                    _ => r.pbx_node = self.names.node(*source),
                }
                self.pending.insert(*dialog, Pending { record: r });
            }
            Event::CallRejected {
                call_id,
                from,
                source,
                route,
                trunk,
                code,
                refusal,
                parties,
                test,
            } => {
                if *test || self.rejects.repeat(call_id, wall) {
                    return;
                }
                let mut r = new_record(call_id, wall, self.direction(*from), parties);
                r.route = self.route(*route);
                r.trunk = trunk.map(|t| self.names.trunk(t));
                if matches!(from, Party::Pbx) {
                    r.pbx_node = self.names.node(*source);
                }
                r.code = *code;
                r.end_reason = "refused".into();
                r.reject = Some(refusal.as_str().to_owned());
                self.sink.submit(r);
            }
            Event::BranchStarted {
                dialog: Some(dialog),
                method: Method::Invite,
                to,
                address,
                ..
            } => {
                let name = self.names.party(*to, *address);
                let node = matches!(to, Party::Pbx).then(|| self.names.node(*address));
                if let Some(p) = self.pending.get_mut(dialog) {
                    let r = &mut p.record;
                    if let Some(node) = node {
                        r.pbx_node = node.or(r.pbx_node.take());
                    }
                    r.attempts.push(Attempt {
                        to: name,
                        offset_ms: ms_between(r.start_ms, wall),
                        duration_ms: 0,
                        outcome: "up".into(),
                        first_provisional_ms: None,
                        failover: false,
                    });
                }
            }
            Event::BranchEnded {
                dialog: Some(dialog),
                method: Method::Invite,
                to,
                address,
                outcome,
                first_provisional,
                duration,
                failover,
                ..
            } => {
                // The next branch may start before this one's end is reported: match by
                // destination.
                let name = self.names.party(*to, *address);
                if let Some(p) = self.pending.get_mut(dialog) {
                    let r = &mut p.record;
                    if let Some(a) = r
                        .attempts
                        .iter_mut()
                        .rev()
                        .find(|a| a.outcome == "up" && a.to == name)
                    {
                        a.outcome = outcome_text(*outcome);
                        a.duration_ms = u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
                        a.first_provisional_ms = first_provisional
                            .map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX));
                        a.failover = *failover;
                        if r.first_provisional_ms.is_none() {
                            r.first_provisional_ms = a
                                .first_provisional_ms
                                .map(|f| f.saturating_add(a.offset_ms));
                        }
                    }
                    if let Outcome::Final(code) = outcome {
                        r.code = *code;
                    }
                }
            }
            Event::CallAnswered { dialog, setup, .. } => {
                if let Some(p) = self.pending.get_mut(dialog) {
                    p.record.answer_ms = Some(wall);
                    p.record.setup_ms = Some(u32::try_from(setup.as_millis()).unwrap_or(u32::MAX));
                }
            }
            Event::CallEnded { dialog, reason, .. } => {
                if let Some(p) = self.pending.remove(dialog) {
                    let media = self.media.as_ref().and_then(|m| m.take(*dialog));
                    let r = self.finish(p, wall, *reason, media.as_deref());
                    self.sink.submit(r);
                }
            }
            _ => {}
        }
    }

    fn finish(
        &self,
        p: Pending,
        wall: i64,
        reason: EndReason,
        media: Option<&[StreamSummary]>,
    ) -> CallRecord {
        let mut r = p.record;
        r.end_ms = wall;
        if r.direction == Direction::Outbound {
            r.trunk = r.attempts.last().map(|a| a.to.clone());
        }
        r.duration_ms = r.answer_ms.map_or(0, |a| ms_between(a, wall));
        let (code, why) = match reason {
            EndReason::Bye { from_caller: true } => (200, "bye-caller"),
            EndReason::Bye { from_caller: false } => (200, "bye-callee"),
            EndReason::Rejected(code) => (code, "rejected"),
            EndReason::Cancelled => (487, "cancelled"),
            EndReason::MediaTimeout => (200, "media-timeout"),
            EndReason::Expired => (200, "expired"),
            EndReason::InDialogFailure => (200, "in-dialog-failure"),
            EndReason::Other => (r.code, "replaced"),
        };
        r.code = if r.answer_ms.is_some() { 200 } else { code };
        r.end_reason = why.to_owned();
        if let Some(m) = media {
            r.media = media_legs(m);
        }
        r
    }
}

impl Drop for RecordsFeed {
    /// Shutting down with calls still up (the grace period ran out): their records end
    /// now, reason `shutdown`, so none is lost.
    fn drop(&mut self) {
        let wall = wall_ms();
        let pending: Vec<(u64, Pending)> = self.pending.drain().collect();
        for (dialog, p) in pending {
            let media = self.media.as_ref().and_then(|m| m.take(dialog));
            let mut r = self.finish(p, wall, EndReason::Other, media.as_deref());
            r.end_reason = "shutdown".into();
            self.sink.submit(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use trunkgate_records::{Store, Writer, WriterConfig};
    use trunkgate_sip::{Refusal, RejectReason};

    fn names() -> Names {
        Names {
            trunks: vec!["carrier-a".into(), "carrier-b".into()],
            routes: vec!["default".into()],
            pbx_nodes: vec![("pbx".into(), "127.0.0.2:5060".parse().unwrap())],
        }
    }

    fn parties() -> Box<CallParties> {
        Box::new(CallParties {
            caller: b"4930111"[..].into(),
            callee: b"4940222"[..].into(),
            transfer: false,
        })
    }

    fn branch(to: u16, outcome: Option<Outcome>, failover: bool) -> Event {
        let address = format!("127.0.0.{}:5060", 3 + to).parse().unwrap();
        match outcome {
            None => Event::BranchStarted {
                dialog: Some(7),
                method: Method::Invite,
                to: Party::Trunk(to),
                address,
                attempt: 1,
            },
            Some(outcome) => Event::BranchEnded {
                dialog: Some(7),
                method: Method::Invite,
                to: Party::Trunk(to),
                address,
                route: Some(0),
                outcome,
                retry_after: None,
                first_provisional: Some(Duration::from_millis(20)),
                duration: Duration::from_millis(30),
                failover,
            },
        }
    }

    #[test]
    fn a_failed_over_call_and_a_reject_become_records() {
        let dir = std::env::temp_dir().join(format!("tg-feed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("r.sqlite");
        let writer = Writer::start(WriterConfig::new(
            path.clone(),
            Duration::from_secs(86_400),
            u64::MAX,
        ))
        .unwrap();
        let media = Arc::new(MediaSummaries::default());
        let mut feed = RecordsFeed::new(writer.sink(), names(), Some(media.clone()));
        let source: SocketAddr = "127.0.0.2:5060".parse().unwrap();
        feed.on_event(&Event::CallAttempt {
            dialog: 7,
            call_id: b"abc@pbx"[..].into(),
            from: Party::Pbx,
            source,
            route: Some(0),
            parties: parties(),
            test: false,
        });
        feed.on_event(&branch(0, None, false));
        // The next branch starts before the first one's end is reported.
        feed.on_event(&branch(1, None, false));
        feed.on_event(&branch(0, Some(Outcome::Final(503)), true));
        feed.on_event(&branch(1, Some(Outcome::Final(200)), false));
        feed.on_event(&Event::CallAnswered {
            dialog: 7,
            to: Party::Trunk(1),
            setup: Duration::from_millis(60),
        });
        feed.on_event(&Event::CallEnded {
            dialog: 7,
            trunk: Some(1),
            reason: EndReason::Bye { from_caller: false },
        });
        feed.on_event(&Event::CallRejected {
            call_id: b"full@pbx"[..].into(),
            from: Party::Pbx,
            source,
            route: Some(0),
            trunk: Some(0),
            code: 503,
            refusal: Refusal::Limit(RejectReason::Cps),
            parties: parties(),
            test: false,
        });
        // A call still up at shutdown is recorded too.
        feed.on_event(&Event::CallAttempt {
            dialog: 8,
            call_id: b"up@pbx"[..].into(),
            from: Party::Trunk(0),
            source: "127.0.0.3:5060".parse().unwrap(),
            route: None,
            parties: parties(),
            test: false,
        });
        // Its retransmission (the 503 was lost) is the same attempt: no second record.
        feed.on_event(&Event::CallRejected {
            call_id: b"full@pbx"[..].into(),
            from: Party::Pbx,
            source,
            route: Some(0),
            trunk: Some(0),
            code: 503,
            refusal: Refusal::Limit(RejectReason::Cps),
            parties: parties(),
            test: false,
        });
        drop(feed);
        writer.finish();
        let rs = Store::open_read(&path).unwrap().query(0, None, 10).unwrap();
        assert_eq!(rs.len(), 3, "{rs:?}");
        let call = rs.iter().find(|r| r.call_id == "abc@pbx").unwrap();
        assert_eq!(call.trunk.as_deref(), Some("carrier-b"));
        assert_eq!(call.route.as_deref(), Some("default"));
        assert_eq!(call.pbx_node.as_deref(), Some("pbx"));
        assert_eq!(call.code, 200);
        assert_eq!(call.end_reason, "bye-callee");
        assert_eq!(call.setup_ms, Some(60));
        assert_eq!(
            (call.caller.as_str(), call.callee.as_str()),
            ("4930111", "4940222")
        );
        let outcomes: Vec<(&str, &str, bool)> = call
            .attempts
            .iter()
            .map(|a| (a.to.as_str(), a.outcome.as_str(), a.failover))
            .collect();
        assert_eq!(
            outcomes,
            [("carrier-a", "503", true), ("carrier-b", "200", false)]
        );
        let rejected = rs.iter().find(|r| r.call_id == "full@pbx").unwrap();
        assert_eq!(rejected.reject.as_deref(), Some("cps"));
        assert_eq!(rejected.trunk.as_deref(), Some("carrier-a"));
        assert!(rejected.capacity_reject());
        let up = rs.iter().find(|r| r.call_id == "up@pbx").unwrap();
        assert_eq!(up.end_reason, "shutdown");
        assert_eq!(up.direction, Direction::Inbound);
        assert_eq!(up.trunk.as_deref(), Some("carrier-a"));
    }

    #[test]
    fn recent_rejects_forget_after_the_window() {
        let mut r = RecentRejects::default();
        assert!(!r.repeat(b"a", 0));
        assert!(r.repeat(b"a", 1000));
        assert!(!r.repeat(b"b", 1000));
        assert!(!r.repeat(b"a", 40_000), "outside the window: a new attempt");
        assert!(r.order.len() <= 3);
    }

    #[test]
    fn codecs_by_payload_type() {
        assert_eq!(codec(Some(0), 8000), "PCMU");
        assert_eq!(codec(Some(8), 8000), "PCMA");
        assert_eq!(codec(Some(111), 48000), "dynamic/48000");
        assert_eq!(codec(None, 8000), "?");
    }
}
