//! [`trunkgate_sip::MediaRelay`] over the in-process relay of `trunkgate-media`: PBX side =
//! leg A, trunk side = leg B. The proxy calls this synchronously from its thread; the relay
//! binds sockets for new streams there and hands them to its own threads.

use crate::fd_budget::BudgetView;
use std::sync::atomic::Ordering;
use trunkgate_media::{CallInfo, MediaError, Relay, SdpKind, Side};
use trunkgate_sip::{MediaCall, MediaFailure, MediaRelay, MediaSide};

pub struct RelayAdapter {
    relay: std::sync::Arc<Relay>,
    /// Counts refusals of the media descriptor share.
    budget: Option<std::sync::Arc<BudgetView>>,
    /// Where a deleted call's media totals go for its call record.
    summaries: Option<std::sync::Arc<crate::records_feed::MediaSummaries>>,
}

impl RelayAdapter {
    /// The adapter holds the relay's wake-ups until [`MediaRelay::flush`] (the SIP shell
    /// flushes after every input batch).
    pub fn new(relay: std::sync::Arc<Relay>) -> RelayAdapter {
        relay.hold_wakes(true);
        RelayAdapter {
            relay,
            budget: None,
            summaries: None,
        }
    }

    /// Leave each deleted call's media totals in `summaries` (call records).
    pub fn with_summaries(
        mut self,
        summaries: Option<std::sync::Arc<crate::records_feed::MediaSummaries>>,
    ) -> RelayAdapter {
        self.summaries = summaries;
        self
    }

    /// Count refusals for the descriptor budget in `budget`.
    pub fn with_budget(mut self, budget: std::sync::Arc<BudgetView>) -> RelayAdapter {
        self.budget = Some(budget);
        self
    }

    fn update(
        &self,
        call: &MediaCall<'_>,
        from: MediaSide,
        kind: SdpKind,
        sdp: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), MediaFailure> {
        let info = CallInfo {
            id: call.dialog,
            call_id: call.call_id,
            trunk: call.trunk,
            inbound: call.inbound,
            peers: [
                call.pbx_address.map(|a| a.ip()),
                call.trunk_address.map(|a| a.ip()),
            ],
        };
        let side = match from {
            MediaSide::Pbx => Side::A,
            MediaSide::Trunk => Side::B,
        };
        self.relay
            .update(&info, side, kind, sdp, out)
            .map_err(|error| match error {
                MediaError::BadSdp(why) => MediaFailure::BadSdp(why),
                MediaError::BudgetExhausted { in_use, limit } => {
                    if let Some(b) = &self.budget {
                        b.media_refusals.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(
                        call_id = %String::from_utf8_lossy(call.call_id),
                        budget = "media",
                        in_use,
                        limit,
                        "media session refused: the media share of the descriptor budget \
                         (limits.media_calls) is used up; the call gets 503"
                    );
                    MediaFailure::Unavailable
                }
                MediaError::PortsExhausted | MediaError::Io(_) => {
                    tracing::warn!(%error, "media session not created");
                    MediaFailure::Unavailable
                }
            })
    }
}

impl MediaRelay for RelayAdapter {
    fn offer(
        &self,
        call: &MediaCall<'_>,
        from: MediaSide,
        sdp: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), MediaFailure> {
        self.update(call, from, SdpKind::Offer, sdp, out)
    }

    fn answer(
        &self,
        call: &MediaCall<'_>,
        from: MediaSide,
        sdp: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), MediaFailure> {
        self.update(call, from, SdpKind::Answer, sdp, out)
    }

    fn delete(&self, dialog: u64) {
        match &self.summaries {
            Some(summaries) => {
                if let Some(streams) = self.relay.delete_with_summary(dialog) {
                    summaries.put(dialog, streams);
                }
            }
            None => self.relay.delete(dialog),
        }
    }

    fn moved(&self, dialog: u64, trunk: Option<u16>) {
        self.relay.moved(dialog, trunk);
    }

    fn idle(&self, dialog: u64) -> Option<std::time::Duration> {
        self.relay.idle(dialog)
    }

    fn flush(&self) {
        self.relay.release_wakes();
    }
}
