//! The proxy's side of media anchoring: a small offer/answer/delete interface (the shape of
//! rtpengine's "ng" commands), so the relay can live in-process today and in its own
//! process later. The `trunkgate` binary implements it over `trunkgate-media`.

/// Which side of the call an SDP body came from: the PBX's or the trunk's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaSide {
    Pbx,
    Trunk,
}

/// The call an SDP body belongs to.
#[derive(Debug, Clone, Copy)]
pub struct MediaCall<'a> {
    /// The proxy's dialog id; every later call for this dialog uses it.
    pub dialog: u64,
    pub call_id: &'a [u8],
    /// The trunk the call is counted against (index into the policy's trunks).
    pub trunk: Option<u16>,
    /// The call came from a trunk.
    pub inbound: bool,
    /// Where the PBX side's and the trunk side's signaling goes (`None`: not known). Each
    /// address family decides the family of that side's media leg and of the SDP written
    /// toward it (an IPv4 PBX and an IPv6 trunk each get their own).
    pub pbx_address: Option<std::net::SocketAddr>,
    pub trunk_address: Option<std::net::SocketAddr>,
}

/// Why an SDP body could not be anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaFailure {
    /// The body is not SDP we understand (answered `488` where a request carried it).
    BadSdp(&'static str),
    /// No ports or sockets left (answered `503`).
    Unavailable,
}

/// The relay, as the proxy sees it. Calls come from the proxy's thread, synchronously;
/// implementations must be quick (socket binds at most) and never block on the network.
pub trait MediaRelay: Send + Sync {
    /// An SDP offer from `from`: returns in `out` the body to forward, naming the relay.
    fn offer(
        &self,
        call: &MediaCall<'_>,
        from: MediaSide,
        sdp: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), MediaFailure>;
    /// An SDP answer from `from`.
    fn answer(
        &self,
        call: &MediaCall<'_>,
        from: MediaSide,
        sdp: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), MediaFailure>;
    /// The dialog ended: free its media session.
    fn delete(&self, dialog: u64);
    /// The call failed over to another trunk before it was answered: count its media
    /// there from now on (the trunk leg's ports stay; the new trunk's answer latches).
    fn moved(&self, dialog: u64, trunk: Option<u16>) {
        let _ = (dialog, trunk);
    }
    /// How long the dialog's media has been silent in both directions (since its newest
    /// packet or SDP); `None` when it has no media session.
    fn idle(&self, dialog: u64) -> Option<std::time::Duration>;
    /// The end of an input batch: hand the relay what the calls above queued (one wake-up
    /// of its threads per batch, not per SDP). The shell calls it through
    /// [`crate::Proxy::flush_media`].
    fn flush(&self) {}
}
