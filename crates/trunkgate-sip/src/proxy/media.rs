//! Media anchoring in the proxy: which SDP bodies go to the relay and which side they came
//! from, and the BYEs Trunkgate sends itself when an anchored call's media dies.
//!
//! Requests that may carry an offer (INVITE, UPDATE) ask the relay's `offer`; bodies in
//! responses, ACK and PRACK ask `answer`. The relay treats both alike (each side's SDP names
//! where that side receives; the rewritten body names the relay's port for it), so a late
//! offer in a 2xx and its answer in the ACK work the same way.

use super::Proxy;
use super::event::EndReason;
use super::originate::OwnRequest;
use super::request::method_class;
use super::state::{Dialog, MediaDialog, Owner};
use crate::media::{MediaCall, MediaFailure, MediaSide};
use crate::message::{HeaderName, Method, NameAddr, SipMessage, SipUri};
use crate::metrics::{Direction, ProxyMetrics};
use crate::routing::Party;
use crate::transport::Flow;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Comma-joined header values (a route set), owned.
fn join<'a>(values: impl Iterator<Item = &'a [u8]>) -> Box<[u8]> {
    let mut out = Vec::new();
    for value in values {
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(value);
    }
    out.into_boxed_slice()
}

/// The body of `msg` if it is a session description (`Content-Type: application/sdp`).
pub(super) fn sdp_body(msg: &SipMessage) -> Option<&[u8]> {
    let body = msg.body();
    if body.is_empty() {
        return None;
    }
    let content_type = msg.first(HeaderName::ContentType)?;
    let mime = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    mime.eq_ignore_ascii_case(b"application/sdp")
        .then_some(body)
}

fn side(party: Party) -> MediaSide {
    match party {
        Party::Pbx => MediaSide::Pbx,
        _ => MediaSide::Trunk,
    }
}

/// Offer or answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Offer,
    Answer,
}

impl Proxy {
    /// Should a new dialog toward/from `trunk` have its media anchored?
    pub(super) fn anchors(&self, trunk: Option<u16>) -> bool {
        self.media.is_some() && trunk.is_none_or(|t| self.routing.anchor_media(t))
    }

    /// What a new anchored dialog remembers for BYEs of our own.
    pub(super) fn media_dialog(msg: &SipMessage) -> Box<MediaDialog> {
        let caller_route = join(msg.values(HeaderName::RecordRoute));
        Box::new(MediaDialog {
            call_id: msg.call_id().into(),
            from: msg.from_value().into(),
            to: None,
            caller_cseq: msg.cseq().0,
            callee_cseq: 0,
            caller_route,
            callee_route: Box::default(),
            sdp: Default::default(),
            rollback: [None, None],
        })
    }

    /// The callee's route set from the 2xx that confirmed the dialog: the Record-Route
    /// entries above ours (proxies between us and the callee), nearest first.
    pub(super) fn callee_route(&self, ok: &SipMessage) -> Box<[u8]> {
        let mut above: Vec<&[u8]> = ok
            .values(HeaderName::RecordRoute)
            .take_while(|value| !self.names_us(value))
            .collect();
        above.reverse();
        join(above.into_iter())
    }

    /// Does a `Record-Route`/`Route` value name us?
    fn names_us(&self, value: &[u8]) -> bool {
        NameAddr::parse(value)
            .ok()
            .and_then(|na| SipUri::parse(na.uri).ok())
            .is_some_and(|uri| self.is_us(uri.host, uri.port))
    }

    /// Anchor the SDP body of `msg` (if any) sent by the caller's side (`from_caller`) or
    /// the callee's side of dialog `dialog_id`. `Ok(None)`: nothing to rewrite (no SDP, or
    /// the dialog is not anchored). The rewritten body is in `self.sdp_out`.
    pub(super) fn anchor_body(
        &mut self,
        dialog_id: u64,
        from_caller: bool,
        msg: &SipMessage,
        role: Role,
    ) -> Result<Option<Vec<u8>>, MediaFailure> {
        let Some(sdp) = sdp_body(msg) else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(sdp.len() + 64);
        let Some(result) = self.to_relay(dialog_id, from_caller, role, sdp, &mut out) else {
            return Ok(None);
        };
        match result {
            Ok(()) => {
                let index = usize::from(!from_caller);
                if let Some(dialog) = self.dialogs.get_mut(&dialog_id) {
                    let confirmed = dialog.confirmed;
                    if let Some(md) = dialog.media.as_deref_mut() {
                        let previous = std::mem::replace(&mut md.sdp[index], sdp.into());
                        if role == Role::Offer && confirmed {
                            md.rollback[index] = Some(previous);
                        }
                    }
                }
                Ok(Some(out))
            }
            Err(failure) => {
                ProxyMetrics::inc(&self.metrics.media_failures);
                tracing::warn!(
                    call_id = %String::from_utf8_lossy(msg.call_id()),
                    ?failure,
                    "SDP not anchored"
                );
                Err(failure)
            }
        }
    }

    /// Hand `sdp` from the caller's side (`from_caller`) or the callee's of dialog
    /// `dialog_id` to the relay as an offer or answer. `None`: the dialog is not anchored.
    fn to_relay(
        &self,
        dialog_id: u64,
        from_caller: bool,
        role: Role,
        sdp: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Result<(), MediaFailure>> {
        let media = self.media.as_ref()?;
        let dialog = self.dialogs.get(&dialog_id)?;
        let md = dialog.media.as_deref()?;
        let from = if from_caller {
            side(dialog.caller.party)
        } else {
            side(dialog.callee.party)
        };
        let address_of = |wanted: MediaSide| {
            [&dialog.caller, &dialog.callee]
                .into_iter()
                .find(|leg| side(leg.party) == wanted)
                .map(|leg| leg.address)
        };
        let call = MediaCall {
            dialog: dialog_id,
            call_id: &md.call_id,
            trunk: dialog.trunk,
            inbound: dialog.direction == Direction::Inbound,
            pbx_address: address_of(MediaSide::Pbx),
            trunk_address: address_of(MediaSide::Trunk),
        };
        Some(match role {
            Role::Offer => media.offer(&call, from, sdp, out),
            Role::Answer => media.answer(&call, from, sdp, out),
        })
    }

    /// A response relayed upstream through a dialog's server transaction: its SDP (18x/2xx
    /// to INVITE, UPDATE, PRACK) comes from the side opposite to the request's sender.
    /// A body the relay refuses is passed on unchanged (a response cannot be refused).
    pub(super) fn anchor_response(&mut self, server_id: u64, msg: &SipMessage) -> Option<Vec<u8>> {
        let code = msg.status()?;
        if !(180..300).contains(&code) {
            return None;
        }
        if !matches!(
            msg.cseq().1,
            Method::Invite | Method::Update | Method::Prack
        ) {
            return None;
        }
        let server = self.servers.get(&server_id)?;
        let (dialog, from_caller) = (server.dialog?, !server.from_caller);
        self.anchor_body(dialog, from_caller, msg, Role::Answer)
            .ok()
            .flatten()
    }

    /// The final answer to an in-dialog INVITE/UPDATE sent by the caller's side
    /// (`from_caller`) or the callee's: a 2xx settles its offer; a refusal (491 glare, 488,
    /// …) puts the side's previous SDP back into the relay, so media keeps flowing where
    /// it did.
    pub(super) fn settle_offer(&mut self, dialog_id: u64, from_caller: bool, code: u16) {
        let index = usize::from(!from_caller);
        let Some(dialog) = self.dialogs.get_mut(&dialog_id) else {
            return;
        };
        let Some(md) = dialog.media.as_deref_mut() else {
            return;
        };
        let Some(previous) = md.rollback[index].take() else {
            return;
        };
        if code < 300 || previous.is_empty() {
            return;
        }
        let mut out = Vec::new();
        let restored = self.to_relay(dialog_id, from_caller, Role::Offer, &previous, &mut out);
        if let Some(md) = self
            .dialogs
            .get_mut(&dialog_id)
            .and_then(|d| d.media.as_deref_mut())
        {
            md.sdp[index] = previous;
        }
        if !matches!(restored, Some(Ok(()))) {
            tracing::warn!(
                dialog = dialog_id,
                "refused offer: previous SDP not restored"
            );
        } else {
            tracing::debug!(
                dialog = dialog_id,
                code,
                "refused offer: previous SDP restored"
            );
        }
    }

    /// An SDP offer the relay could not anchor: `488` (bad SDP) or `503` (no ports).
    /// The answer gets a server transaction of its own (Completed): it is retransmitted
    /// until the ACK, which is then absorbed here instead of travelling on as if it
    /// acknowledged a 2xx.
    pub(super) fn refuse_offer(
        &mut self,
        now: Instant,
        msg: &SipMessage,
        flow: Flow,
        source: SocketAddr,
        failure: MediaFailure,
    ) {
        let (code, data) = match failure {
            MediaFailure::BadSdp(_) => {
                let warning: &[u8] = b"Warning: 305 trunkgate \"Incompatible media format\"";
                let reason = "Not Acceptable Here";
                (
                    488,
                    self.respond_local(msg, flow, source, 488, reason, &[warning]),
                )
            }
            MediaFailure::Unavailable => {
                let reason = "Service Unavailable";
                let retry: &[u8] = b"Retry-After: 5";
                (
                    503,
                    self.respond_local(msg, flow, source, 503, reason, &[retry]),
                )
            }
        };
        let Some(method) = msg.method() else { return };
        let id = self.next_id();
        let key = Self::server_key(msg, method_class(method, msg));
        self.insert_server(now, id, key, msg, flow, source);
        self.finish_server(now, id, data, code);
    }

    /// Remember the highest CSeq each side used (our own BYE must be above it).
    pub(super) fn note_cseq(dialog: &mut Dialog, from_caller: bool, cseq: u32) {
        if let Some(md) = dialog.media.as_deref_mut() {
            let seen = if from_caller {
                &mut md.caller_cseq
            } else {
                &mut md.callee_cseq
            };
            *seen = (*seen).max(cseq);
        }
    }

    /// The relay saw no media on dialog `dialog_id` for its timeout: if the call is
    /// established, send BYE to both sides and end the dialog (sessions, media, counters).
    /// An early dialog is left to Timer C. Returns whether the call was torn down.
    /// `idle`: how long the relay had seen no media when it reported; a report overtaken by
    /// media or a new SDP since (the relay's idle time is now much shorter) is ignored.
    pub fn media_timeout(&mut self, now: Instant, dialog_id: u64, idle: Duration) -> bool {
        if let Some(current) = self.media.as_ref().and_then(|m| m.idle(dialog_id)) {
            if current < idle / 2 {
                tracing::debug!(
                    dialog = dialog_id,
                    ?current,
                    ?idle,
                    "stale media timeout ignored"
                );
                return false;
            }
        }
        let Some(dialog) = self.dialogs.get(&dialog_id) else {
            // Already gone here: make sure the relay forgets it too.
            if let Some(media) = &self.media {
                media.delete(dialog_id);
            }
            return false;
        };
        if !dialog.confirmed {
            return false;
        }
        let Some(md) = dialog.media.as_deref() else {
            return false;
        };
        let Some(to) = md.to.clone() else {
            return false;
        };
        let (from, call_id) = (md.from.clone(), md.call_id.clone());
        let byes = [
            (
                dialog.callee.clone(),
                from.clone(),
                to.clone(),
                md.caller_cseq,
                md.callee_route.clone(),
            ),
            (
                dialog.caller.clone(),
                to,
                from,
                md.callee_cseq,
                md.caller_route.clone(),
            ),
        ];
        let (trunk, metric_peer) = (dialog.trunk, dialog.metric_peer);
        for (leg, from, to, cseq, route) in byes {
            let uri = Self::leg_uri(&leg);
            let bye = OwnRequest {
                method: Method::Bye,
                uri: &uri,
                route: &route,
                from: &from,
                to: &to,
                call_id: &call_id,
                cseq: cseq.saturating_add(leg.cseq_offset).saturating_add(1),
                extra: &[b"Reason: Q.850;cause=102;text=\"media timeout\""],
            };
            self.send_own(now, &bye, leg.flow, leg.address, leg.party, Owner::Own);
        }
        ProxyMetrics::inc(&self.metrics.media_timeouts);
        if let Some(p) = self.metrics.peer(metric_peer) {
            ProxyMetrics::inc(&p.media_timeouts);
        }
        tracing::warn!(
            call_id = %String::from_utf8_lossy(&call_id),
            trunk = ?trunk,
            "no media in either direction for media.timeout: call ended with BYE to both sides"
        );
        self.remove_dialog(dialog_id, EndReason::MediaTimeout);
        true
    }
}
