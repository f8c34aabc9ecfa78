//! The relay thread's quality tick (`relay/quality.rs` has the rules): per session, the MOS
//! intervals of its RTP streams and the one-way check of the first one; at delete, the last
//! (partial) interval and the "call quality" log line. Runs with the idle sweep, not per
//! packet.

use super::{WLeg, WSession, WStream, Worker, nanos_since};
use crate::relay::quality::{self as q, LegView, OneWayChange};

/// The call-so-far MOS per direction (from A, from B).
type CallMos = [Option<f64>; 2];
/// (lost, expected) RTP packets of one direction.
type LossFigures = (u64, u64);

fn view(l: &mut WLeg) -> LegView<'_> {
    LegView {
        stats: &l.stats,
        q: &mut l.q,
        shared: &l.shared,
    }
}

/// Both sides have an SDP with this stream enabled.
fn active(st: &WStream) -> bool {
    st.rtp && st.legs.iter().all(|l| l.peer.is_some_and(|p| p.enabled))
}

fn held(st: &WStream) -> bool {
    st.legs.iter().any(|l| l.peer.is_some_and(|p| p.hold))
}

impl Worker {
    fn trunk_label(&self, slot: usize) -> &str {
        slot.checked_sub(1)
            .and_then(|i| self.ctx.trunk_names.get(i))
            .map_or("none", String::as_str)
    }

    pub(super) fn check_quality(&mut self) {
        let now = nanos_since(self.ctx.epoch);
        let cfg = self.ctx.quality;
        let mut changes: smallvec::SmallVec<[(u64, usize, OneWayChange); 4]> =
            smallvec::SmallVec::new();
        for (&call, s) in &mut self.sessions {
            let slot = self.ctx.counters.get(s.trunk);
            let mut first = None;
            let mut any_held = false;
            for &(_, i) in &s.streams {
                let Some(Some(st)) = self.streams.get_mut(i) else {
                    continue;
                };
                if !active(st) {
                    continue;
                }
                let on_hold = held(st);
                any_held |= on_hold;
                first.get_or_insert(i);
                for l in &mut st.legs {
                    q::start_if_new(&mut l.q, &l.stats, now);
                }
                if st.legs.iter().any(|l| q::interval_due(&cfg, &l.q, now)) {
                    let [a, b] = &mut st.legs;
                    q::close_intervals(&cfg, [view(a), view(b)], on_hold, slot, now);
                }
            }
            let Some(Some(st)) = first.and_then(|i| self.streams.get(i)) else {
                continue;
            };
            let [a, b] = &st.legs;
            let change = q::check_one_way(
                &cfg,
                &mut s.quality,
                [a.stats.last_arrival_nanos(), b.stats.last_arrival_nanos()],
                [&a.shared, &b.shared],
                any_held,
                s.last_update,
                slot,
                now,
            );
            if change != OneWayChange::None {
                changes.push((call, s.trunk, change));
            }
        }
        for (call, slot, change) in changes {
            let call_id = self
                .sessions
                .get(&call)
                .and_then(|s| s.quality.call_id.clone());
            let call_id = call_id.as_deref().unwrap_or("");
            let trunk = self.trunk_label(slot);
            match change {
                OneWayChange::Flagged { missing, silent } => tracing::warn!(
                    call,
                    call_id,
                    trunk,
                    direction = missing.label(),
                    reason = missing.reason(),
                    silent_ms = silent.as_millis() as u64,
                    "{}",
                    if missing == q::Missing::Both {
                        "no media after answer"
                    } else {
                        "one-way audio"
                    }
                ),
                OneWayChange::Cleared(missing) => tracing::info!(
                    call,
                    call_id,
                    trunk,
                    direction = missing.label(),
                    "media flows both ways again"
                ),
                OneWayChange::None => {}
            }
        }
    }

    /// At delete: close the open intervals (a partial one counts), log the call's figures.
    pub(super) fn final_quality(&mut self, call: u64, s: &WSession) {
        let now = nanos_since(self.ctx.epoch);
        let cfg = self.ctx.quality;
        let slot = self.ctx.counters.get(s.trunk);
        let mut first: Option<(CallMos, [LossFigures; 2])> = None;
        for &(_, i) in &s.streams {
            let Some(Some(st)) = self.streams.get_mut(i) else {
                continue;
            };
            if !active(st) {
                continue;
            }
            let on_hold = held(st);
            let [a, b] = &mut st.legs;
            let mos = q::close_intervals(&cfg, [view(a), view(b)], on_hold, slot, now);
            let loss = [
                (a.stats.lost(), a.stats.expected()),
                (b.stats.lost(), b.stats.expected()),
            ];
            first.get_or_insert((mos, loss));
        }
        let Some((mos, [(lost_a, exp_a), (lost_b, exp_b)])) = first else {
            return;
        };
        let fmt = |m: Option<f64>| m.map_or_else(|| "-".to_owned(), |m| format!("{m:.2}"));
        tracing::debug!(
            call,
            call_id = s.quality.call_id.as_deref().unwrap_or(""),
            trunk = self.trunk_label(s.trunk),
            mos_from_pbx = %fmt(mos[0]),
            mos_from_trunk = %fmt(mos[1]),
            lost_from_pbx = lost_a,
            expected_from_pbx = exp_a,
            lost_from_trunk = lost_b,
            expected_from_trunk = exp_b,
            one_way = s.quality.flagged.map_or("", |m| m.label()),
            "call quality"
        );
    }
}
