//! Topology hiding toward trunks (`topology_hiding = true`): what a trunk sees of the inside
//! is Trunkgate alone. Applied at the two edges of the core — every message about to be sent
//! to a hiding trunk ([`Proxy::hide_toward`], called by `send`) and every message received
//! from one ([`Proxy::unhide_from`], called by `handle_input`) — so transactions, dialogs,
//! failover, digest answers and media anchoring all keep working on the inside's values and
//! know nothing of hiding.
//!
//! Toward the trunk:
//! - **Via**: requests carry only our Via (the inside's are taken off); responses carry the
//!   trunk's own Vias, untouched.
//! - **Record-Route**: requests keep only our entries; responses lose the entries above our
//!   first one (the inside's proxies).
//! - **Contact**: replaced by `<sip:tg…@advertised:port>` (a per-dialog token user part,
//!   header parameters other than `expires` and `q` dropped). In-dialog requests from the
//!   trunk address that URI; the core routes them to the inside's real (latest) Contact,
//!   which it keeps per dialog leg. A Contact that already names Trunkgate is left alone
//!   (our own REGISTER's).
//! - **Call-ID**: a Call-ID that did not come from this trunk (a call from the PBX, any
//!   request from the inside) is replaced by `tg` + 32 hex digits of a keyed hash (SipHash
//!   with random per-process keys) of the inside's Call-ID: the same inside Call-ID gives the
//!   same outer one, so retransmissions, CANCEL, ACK and forks agree without lookups.
//!   Mapped back on everything the trunk sends.
//! - **From/To** of calls from the inside: the URI hosts become the advertised host (user
//!   parts and tags stay). A call from the trunk keeps the trunk's From/To.
//! - **Identity headers** (P-Asserted-Identity, P-Preferred-Identity, Remote-Party-ID,
//!   Diversion, History-Info, Referred-By, Reply-To, Refer-To): every `sip:`/`sips:` URI's
//!   host\[:port] becomes the advertised host; `tel:` URIs have none.
//! - **Product strings**: `Server` and `User-Agent` become Trunkgate's own (a fixed
//!   `user_agent` of the trunk's `[trunk.outbound]` rules wins for User-Agent).
//! - **Warning**'s agent becomes the advertised host; **Error-Info**, **Call-Info** and
//!   **Alert-Info** (URLs into the inside) are removed.
//! - **SDP**: addresses are the relay's (anchoring); ICE lines, which carry the PBX's own
//!   candidates, are removed.
//!
//! From the trunk: the Call-ID is mapped back; responses get back the Vias and inside
//! Record-Route entries taken off their request (from the client transaction's copy of what
//! it sent, or for a 2xx retransmitted after the transaction, from the dialog's state).
//!
//! State: one [`Hidden`] per dialog set up while hiding (keyed by the inside Call-ID, with the
//! reverse index), removed with the dialog. Requests outside any dialog need none (their
//! responses are matched to the client transaction). A policy reload that turns hiding on or
//! off does not change calls in progress: a dialog with state stays hidden, one without
//! stays as it was set up.

mod edit;

use super::state::Sub;
use super::{OWN_LIMITS, Proxy};
use crate::message::{HeaderName, Method, NameAddr, SipMessage, SipUri, names_equal, split_values};
use crate::routing::{Party, TrunkId};
use crate::transport::{Flow, Transport};
use bytes::{Bytes, BytesMut};
use edit::{join, put, replace_hosts, restore, restore_request, strip_ice, warning_agents};
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;

const CRLF: &[u8] = b"\r\n";

/// Headers naming identities, whose URI hosts are replaced toward a hiding trunk.
const IDENTITY_OTHER: &[&[u8]] = &[b"Remote-Party-ID", b"Diversion", b"History-Info"];
/// Headers removed toward a hiding trunk (URLs into the inside).
const REMOVED: &[&[u8]] = &[b"Error-Info", b"Call-Info", b"Alert-Info"];

/// The hiding state of the core: keys for outer Call-IDs and tokens, and the dialogs set up
/// while hiding.
#[derive(Debug, Default)]
pub(super) struct Topology {
    keys: RandomState,
    /// By the inside Call-ID.
    by_inner: HashMap<Box<[u8]>, Hidden>,
    /// Outer Call-ID → inside Call-ID (replaced Call-IDs only).
    by_outer: HashMap<Box<[u8]>, Box<[u8]>>,
    /// Entries of `by_inner` per trunk: messages to and from a trunk that neither hides
    /// nor has a hidden dialog are not looked at.
    per_trunk: HashMap<TrunkId, u32>,
}

/// A dialog hidden from trunk `trunk`.
#[derive(Debug)]
struct Hidden {
    /// The dialog that owns this state (forks of it share the Call-ID and the state).
    dialog: u64,
    trunk: TrunkId,
    /// The Call-ID the trunk sees; `None`: the trunk's own (a call from it).
    outer: Option<Box<[u8]>>,
    /// Comma-joined Via values of the dialog-creating request as sent (ours first), for
    /// 2xx retransmissions that arrive after its transaction.
    vias: Box<[u8]>,
    /// Comma-joined Record-Route values of the inside taken off that request.
    inner_rr: Box<[u8]>,
}

impl Topology {
    fn hash(&self, domain: u8, data: &[u8]) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write_u8(domain);
        h.write(data);
        h.finish()
    }

    /// The Call-ID a hiding trunk sees for the inside Call-ID `inner`.
    pub(super) fn outer_call_id(&self, inner: &[u8]) -> Vec<u8> {
        format!("tg{:016x}{:016x}", self.hash(1, inner), self.hash(2, inner)).into_bytes()
    }

    /// The user part of our Contact for the dialog of Call-ID `call_id` (as the trunk sees it).
    fn token(&self, call_id: &[u8]) -> String {
        format!("tg{:016x}", self.hash(3, call_id))
    }

    /// Dialogs with hiding state.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_inner.len()
    }

    fn is_empty(&self) -> bool {
        self.by_inner.is_empty()
    }

    /// Does trunk `trunk` have hidden dialogs?
    fn has_trunk(&self, trunk: TrunkId) -> bool {
        self.per_trunk.get(&trunk).is_some_and(|n| *n > 0)
    }

    /// Remember `hidden` for inside Call-ID `call_id` (replacing what was there).
    fn insert(&mut self, call_id: &[u8], hidden: Hidden) {
        self.remove(call_id);
        *self.per_trunk.entry(hidden.trunk).or_insert(0) += 1;
        if let Some(outer) = &hidden.outer {
            self.by_outer.insert(outer.clone(), call_id.into());
        }
        self.by_inner.insert(call_id.into(), hidden);
    }

    fn remove(&mut self, call_id: &[u8]) {
        let Some(old) = self.by_inner.remove(call_id) else {
            return;
        };
        if let Some(outer) = &old.outer {
            self.by_outer.remove(outer);
        }
        if let Some(n) = self.per_trunk.get_mut(&old.trunk) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_trunk.remove(&old.trunk);
            }
        }
    }
}

/// What to do with one message toward a hiding trunk.
struct Plan {
    /// Replace the Call-ID with this.
    outer: Option<Vec<u8>>,
    /// Our Contact URI for the message, `<…>` included.
    contact: String,
    /// Replace the hosts of From and To (a dialog from the inside).
    parties: bool,
    /// The trunk's rules fix User-Agent: leave it.
    keep_user_agent: bool,
    /// Our host as written toward the trunk (the sending listener's family), bracketed.
    host: String,
}

impl Proxy {
    /// `data`, about to be sent to `destination` over `flow`, as a hiding trunk may see it.
    pub(super) fn hide_toward(
        &mut self,
        flow: &Flow,
        destination: SocketAddr,
        data: Bytes,
    ) -> Bytes {
        if self.topology.is_empty() && !self.routing.any_topology_hiding() {
            return data;
        }
        let Party::Trunk(trunk) = self.routing.classify_at(destination) else {
            return data;
        };
        if !self.routing.topology_hiding(trunk) && !self.topology.has_trunk(trunk) {
            return data;
        }
        let Ok(msg) = SipMessage::parse(data.clone(), &OWN_LIMITS) else {
            return data;
        };
        let Some(plan) = self.plan(trunk, flow, &msg) else {
            return data;
        };
        let (hidden, stripped) = self.hide(&msg, &plan);
        if !stripped.is_empty() && !msg.is_request() && msg.cseq().1 == Method::Invite {
            self.note_inside_route(trunk, &msg, &stripped);
        }
        hidden
    }

    /// An answer to a call from trunk `trunk` lost the Record-Route entries of the inside
    /// (`stripped`, top first): the trunk's requests in the dialog get them back as Routes
    /// after ours, nearest first (the caller's route set is the answer's, reversed).
    fn note_inside_route(&mut self, trunk: TrunkId, msg: &SipMessage, stripped: &[&[u8]]) {
        let Some(h) = self.topology.by_inner.get_mut(msg.call_id()) else {
            return;
        };
        if h.trunk != trunk || h.outer.is_some() {
            return;
        }
        h.inner_rr = join(stripped.iter().rev().copied());
    }

    /// How `msg` toward trunk `trunk` is hidden; `None`: it is sent as built.
    fn plan(&mut self, trunk: TrunkId, flow: &Flow, msg: &SipMessage) -> Option<Plan> {
        let call_id = msg.call_id();
        let initial = msg.is_request()
            && msg.to_tag().is_none()
            && matches!(
                msg.method(),
                Some(Method::Invite | Method::Subscribe | Method::Refer)
            );
        let known = self.topology.by_inner.get(call_id);
        let outer = match known {
            // A dialog-creating request (again: a failover, a digest answer) refreshes it.
            Some(_) if initial && self.routing.topology_hiding(trunk) => {
                self.register_hidden(trunk, msg)
            }
            Some(h) if h.trunk == trunk => Some(h.outer.as_deref().map(<[u8]>::to_vec)),
            _ if !self.routing.topology_hiding(trunk) => None,
            _ if initial => self.register_hidden(trunk, msg),
            _ => match self.find_dialog(msg) {
                // A call from the trunk is hidden from its first response on (while it is
                // not confirmed). Any other dialog without state was set up before a
                // reload turned hiding on: it is left as it was.
                Some((id, _)) => {
                    let dialog = self.dialogs.get(&id)?;
                    if msg.is_request()
                        || dialog.confirmed
                        || dialog.caller.party != Party::Trunk(trunk)
                    {
                        return None;
                    }
                    self.topology.insert(
                        call_id,
                        Hidden {
                            dialog: id,
                            trunk,
                            outer: None,
                            vias: Box::default(),
                            inner_rr: Box::default(),
                        },
                    );
                    Some(None)
                }
                // Outside any dialog: a request from the inside gets an outer Call-ID (the
                // response finds the inside one in its client transaction); a response keeps
                // the trunk's.
                None if msg.is_request() => Some(Some(self.topology.outer_call_id(call_id))),
                None => Some(None),
            },
        }?;
        let token = self.topology.token(outer.as_deref().unwrap_or(call_id));
        let transport = match flow.transport {
            Transport::Udp => String::new(),
            other => format!(";transport={}", other.name()),
        };
        let contact = format!("<sip:{token}@{}{transport}>", self.sent_by(flow));
        let keep_user_agent = self
            .routing
            .normalise(trunk, true)
            .is_some_and(|n| n.user_agent.is_some());
        Some(Plan {
            host: self.our_host(flow),
            parties: outer.is_some() && msg.is_request(),
            outer,
            contact,
            keep_user_agent,
        })
    }

    /// A dialog-creating request from the inside toward hiding trunk `trunk`: remember its
    /// dialog's hiding state. `Some(outer)`: the Call-ID to write (`None`: the trunk's own).
    fn register_hidden(&mut self, trunk: TrunkId, msg: &SipMessage) -> Option<Option<Vec<u8>>> {
        let call_id = msg.call_id();
        let Some((dialog, _)) = self.find_dialog(msg) else {
            // No dialog (not tracked): hidden all the same, without state.
            return Some(Some(self.topology.outer_call_id(call_id)));
        };
        let from_trunk = self
            .dialogs
            .get(&dialog)
            .is_some_and(|d| d.caller.party == Party::Trunk(trunk));
        let outer = (!from_trunk).then(|| self.topology.outer_call_id(call_id));
        let vias = join(msg.values(HeaderName::Via));
        let inner_rr = join(
            msg.values(HeaderName::RecordRoute)
                .filter(|v| !self.rr_names_us(v)),
        );
        self.topology.insert(
            call_id,
            Hidden {
                dialog,
                trunk,
                outer: outer.as_deref().map(Into::into),
                vias,
                inner_rr,
            },
        );
        tracing::debug!(
            call_id = %String::from_utf8_lossy(call_id),
            dialog,
            trunk,
            replaced = outer.is_some(),
            "dialog hidden from its trunk"
        );
        Some(outer)
    }

    /// The dialog `dialog` ends: its hiding state goes with it (forks leave it to the call).
    pub(super) fn forget_hidden(&mut self, dialog: u64) {
        if self.topology.is_empty() {
            return;
        }
        let Some(d) = self.dialogs.get(&dialog) else {
            return;
        };
        let call_id = d.index_key.split(|&b| b == 0).next().unwrap_or_default();
        if self
            .topology
            .by_inner
            .get(call_id)
            .is_some_and(|h| h.dialog == dialog)
        {
            self.topology.remove(call_id);
        }
    }

    /// Does a Record-Route/Route value name us?
    fn rr_names_us(&self, value: &[u8]) -> bool {
        NameAddr::parse(value)
            .ok()
            .and_then(|na| SipUri::parse(na.uri).ok())
            .is_some_and(|uri| self.is_us(uri.host, uri.port))
    }

    /// `msg` rewritten per `plan` (see the module doc), and the Record-Route values it lost.
    fn hide<'m>(&self, msg: &'m SipMessage, plan: &Plan) -> (Bytes, Vec<&'m [u8]>) {
        let b = msg.as_bytes();
        let host = &plan.host;
        let request = msg.is_request();
        let mut out = BytesMut::with_capacity(b.len() + 64);
        out.extend_from_slice(
            b.get(msg.start_offset()..msg.headers_start())
                .unwrap_or(&[]),
        );
        let mut via_written = false;
        // Responses: Record-Route entries from our first one on.
        let mut own_rr_seen = false;
        let mut contact_written = false;
        let mut stripped = Vec::new();
        // ICE candidates name the PBX's own addresses (the relay anchors the media anyway).
        let body = super::media::sdp_body(msg).and_then(strip_ice);
        let mut length_written = false;
        for h in msg.headers() {
            let value = msg.value(h);
            let name = h.name;
            match name {
                HeaderName::ContentLength if body.is_some() => {
                    if !length_written {
                        let n = body.as_ref().map_or(0, Vec::len).to_string();
                        put(&mut out, "Content-Length", n.as_bytes());
                        length_written = true;
                    }
                }
                HeaderName::Via if request => {
                    if !via_written {
                        put(&mut out, "Via", msg.top_via_raw());
                        via_written = true;
                    }
                }
                HeaderName::RecordRoute => {
                    let mut kept: Vec<&[u8]> = Vec::new();
                    for v in split_values(value) {
                        let ours = self.rr_names_us(v);
                        own_rr_seen |= ours;
                        if (request && ours) || (!request && own_rr_seen) {
                            kept.push(v);
                        } else {
                            stripped.push(v);
                        }
                    }
                    if !kept.is_empty() {
                        put(&mut out, "Record-Route", &kept.join(&b", "[..]));
                    }
                }
                HeaderName::CallId if plan.outer.is_some() => {
                    put(&mut out, "Call-ID", plan.outer.as_deref().unwrap_or(value));
                }
                HeaderName::Contact => {
                    if !contact_written {
                        let line = self.hidden_contact(value, &plan.contact);
                        put(&mut out, "Contact", &line);
                        contact_written = true;
                    }
                }
                HeaderName::From | HeaderName::To if plan.parties => {
                    put(
                        &mut out,
                        name.canonical(),
                        &replace_hosts(value, host.as_bytes()),
                    );
                }
                HeaderName::PAssertedIdentity
                | HeaderName::PPreferredIdentity
                | HeaderName::ReferredBy
                | HeaderName::ReplyTo
                | HeaderName::ReferTo => {
                    put(
                        &mut out,
                        name.canonical(),
                        &replace_hosts(value, host.as_bytes()),
                    );
                }
                HeaderName::UserAgent if !plan.keep_user_agent => {
                    put(&mut out, "User-Agent", self.config.server_name.as_bytes());
                }
                HeaderName::Other => {
                    let raw = msg.name_of(h);
                    let is = |n: &[u8]| names_equal(raw, n);
                    if is(b"Server") {
                        put(&mut out, "Server", self.config.server_name.as_bytes());
                    } else if let Some(n) = IDENTITY_OTHER.iter().find(|n| is(n)) {
                        let name = std::str::from_utf8(n).unwrap_or_default();
                        put(&mut out, name, &replace_hosts(value, host.as_bytes()));
                    } else if is(b"Warning") {
                        put(&mut out, "Warning", &warning_agents(value, host.as_bytes()));
                    } else if REMOVED.iter().any(|n| is(n)) {
                        // URLs into the inside: not sent.
                    } else {
                        out.extend_from_slice(b.get(h.line_range()).unwrap_or(&[]));
                    }
                }
                _ => out.extend_from_slice(b.get(h.line_range()).unwrap_or(&[])),
            }
        }
        if let (Some(body), false) = (&body, length_written) {
            put(
                &mut out,
                "Content-Length",
                body.len().to_string().as_bytes(),
            );
        }
        out.extend_from_slice(CRLF);
        out.extend_from_slice(body.as_deref().unwrap_or(msg.body()));
        (out.freeze(), stripped)
    }

    /// The Contact value toward the trunk: ours (with the first value's `expires` and `q`),
    /// unless it already names us or is `*`.
    fn hidden_contact(&self, value: &[u8], ours: &str) -> Vec<u8> {
        let first = split_values(value).next().unwrap_or_default();
        if first == b"*" {
            return value.to_vec();
        }
        let Ok(na) = NameAddr::parse(first) else {
            return ours.as_bytes().to_vec();
        };
        if SipUri::parse(na.uri).is_ok_and(|u| self.is_us(u.host, u.port)) {
            return value.to_vec();
        }
        let mut out = ours.as_bytes().to_vec();
        for param in na.params.split(|&b| b == b';').filter(|p| !p.is_empty()) {
            let key = param
                .split(|&b| b == b'=')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            if key.eq_ignore_ascii_case(b"expires") || key.eq_ignore_ascii_case(b"q") {
                out.push(b';');
                out.extend_from_slice(param.trim_ascii());
            }
        }
        out
    }

    /// The host we write in URIs sent over `flow` (the advertised host of its family, as in
    /// our Via), IPv6 bracketed.
    fn our_host(&self, flow: &Flow) -> String {
        let host = self
            .sent_by_hosts
            .iter()
            .find(|(local, _)| *local == flow.local)
            .map_or(&self.config.advertised, |(_, host)| host);
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.clone()
        }
    }

    /// `msg` from `party`, with what hiding changed toward it put back.
    pub(super) fn unhide_from(&mut self, party: Party, msg: SipMessage) -> SipMessage {
        let Party::Trunk(trunk) = party else {
            return msg;
        };
        if !self.routing.topology_hiding(trunk) && !self.topology.has_trunk(trunk) {
            return msg;
        }
        let restored = if msg.is_request() {
            // A replaced Call-ID (a call from the inside), or the trunk's own (a call from it).
            let (inner, renamed) = match self.topology.by_outer.get(msg.call_id()) {
                Some(inner) => (&**inner, true),
                None => (msg.call_id(), false),
            };
            let Some(h) = self
                .topology
                .by_inner
                .get(inner)
                .filter(|h| h.trunk == trunk && (renamed || h.outer.is_none()))
            else {
                return msg;
            };
            // The inside's proxies that Record-Routed, after ours: only for requests that
            // follow our Route (in the dialog).
            let route = if msg.values(HeaderName::Route).next().is_some() {
                &*h.inner_rr
            } else {
                &[]
            };
            if !renamed && route.is_empty() {
                return msg;
            }
            restore_request(&msg, renamed.then_some(inner), route)
        } else {
            match self.restore_response(&msg) {
                Some(data) => data,
                None => return msg,
            }
        };
        match SipMessage::parse(restored, &OWN_LIMITS) {
            Ok(m) => m,
            Err(_) => msg,
        }
    }

    /// A response from a trunk, with the Vias, inside Record-Route entries and Call-ID of
    /// the request it answers; `None` when nothing was hidden from it.
    fn restore_response(&self, msg: &SipMessage) -> Option<Bytes> {
        let sub = if msg.cseq().1 == Method::Cancel {
            Sub::Cancel
        } else {
            Sub::Main
        };
        let sent = msg
            .top_via()
            .branch()
            .and_then(|b| self.id_from_branch(b))
            .and_then(|id| self.clients.get(&(id, sub)))
            .filter(|c| !c.request.is_empty())
            .and_then(|c| SipMessage::parse(c.request.clone(), &OWN_LIMITS).ok());
        if let Some(sent) = sent {
            let inner = sent.call_id();
            let renamed = inner != msg.call_id();
            if renamed && self.topology.outer_call_id(inner) != msg.call_id() {
                return None;
            }
            if !renamed && sent.via_count() <= msg.via_count() {
                return None;
            }
            let vias = join(sent.values(HeaderName::Via));
            let inner_rr = join(
                sent.values(HeaderName::RecordRoute)
                    .filter(|v| !self.rr_names_us(v)),
            );
            return Some(restore(
                msg,
                renamed.then_some(inner),
                Some(&vias),
                &inner_rr,
            ));
        }
        // No transaction left (a retransmitted 2xx): the dialog's state.
        let inner = self.topology.by_outer.get(msg.call_id())?;
        let hidden = self.topology.by_inner.get(inner)?;
        let vias = (!hidden.vias.is_empty()).then_some(&*hidden.vias);
        Some(restore(msg, Some(inner), vias, &hidden.inner_rr))
    }
}
