//! Call-record facts the core hands out with its events: who a new call is between
//! ([`CallParties`] in `CallAttempt`), and `CallRejected` for a new INVITE Trunkgate refuses
//! itself before any branch (no route, limits, shutting down, no listener).

use super::Proxy;
use super::addressing::user_part;
use super::event::{CallParties, Event, Refusal};
use crate::message::{SipMessage, SipUri};
use crate::routing::{Party, TrunkId};
use std::net::SocketAddr;

/// The caller (From user), callee (Request-URI user) and transfer headers of an INVITE.
pub(super) fn call_parties(msg: &SipMessage) -> Box<CallParties> {
    let caller = crate::message::NameAddr::parse(msg.from_value())
        .ok()
        .and_then(|na| SipUri::parse(na.uri).ok())
        .and_then(|uri| uri.user)
        .map(user_part)
        .unwrap_or_default();
    let callee = msg
        .request_uri()
        .and_then(|uri| SipUri::parse(uri).ok())
        .and_then(|uri| uri.user)
        .map(user_part)
        .unwrap_or_default();
    let transfer = msg.headers().iter().any(|h| {
        let name = msg.name_of(h);
        crate::message::names_equal(name, b"Referred-By")
            || crate::message::names_equal(name, b"b")
            || crate::message::names_equal(name, b"Replaces")
            || crate::message::names_equal(name, b"Diversion")
    });
    Box::new(CallParties {
        caller: caller.into(),
        callee: callee.into(),
        transfer,
    })
}

impl Proxy {
    /// A new INVITE refused by us before any branch: an event for call records.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn call_rejected(
        &mut self,
        msg: &SipMessage,
        from: Party,
        source: SocketAddr,
        route: Option<u16>,
        trunk: Option<TrunkId>,
        code: u16,
        refusal: Refusal,
    ) {
        self.events.push_back(Event::CallRejected {
            call_id: msg.call_id().into(),
            from,
            source,
            route,
            trunk,
            code,
            refusal,
            parties: call_parties(msg),
            test: self.injected.is_some(),
        });
    }
}
