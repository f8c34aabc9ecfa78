//! Topology hiding toward trunk 0 (`topology.rs`) over the simulated network: what the trunk
//! receives never names the PBX (127.0.0.2) or carries the PBX's Call-ID, and every call
//! flow still routes. Here the harness and the calls from the PBX: BYE from either side,
//! re-INVITE from the carrier and from the PBX to a new party, CANCEL, ACK for 2xx and
//! non-2xx, forked answers, retransmissions. More in `tests_topology_more.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::simnet::*;
use crate::message::{HeaderName, Method, SipMessage};
use crate::routing::{Party, RouteChoice, Routing, Target, TrunkLoad};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The test routing with trunk 0 hiding (`hide` false: none does).
pub(super) struct Hiding {
    pub inner: TestRouting,
    pub hide: bool,
    /// Trunk 0's `[trunk.outbound]` rules.
    pub rules: Option<crate::normalise::Normalise>,
}

impl Routing for Hiding {
    fn classify(&self, source: IpAddr) -> Party {
        self.inner.classify(source)
    }
    fn candidates(
        &self,
        now: Instant,
        from: Party,
        user: Option<&[u8]>,
        load: &dyn TrunkLoad,
        out: &mut Vec<Target>,
    ) -> RouteChoice {
        self.inner.candidates(now, from, user, load, out)
    }
    fn topology_hiding(&self, trunk: u16) -> bool {
        self.hide && trunk == 0
    }
    fn any_topology_hiding(&self) -> bool {
        self.hide
    }
    fn normalise(&self, trunk: u16, toward_trunk: bool) -> Option<&crate::normalise::Normalise> {
        self.rules.as_ref().filter(|_| trunk == 0 && toward_trunk)
    }
}

pub(super) fn hiding_net() -> SimNet {
    let mut net = SimNet::new();
    set_hiding(&mut net, true);
    net
}

pub(super) fn set_hiding(net: &mut SimNet, hide: bool) {
    net.proxy.set_routing(Arc::new(Hiding {
        inner: TestRouting::default(),
        hide,
        rules: None,
    }));
}

pub(super) fn text(m: &SipMessage) -> String {
    String::from_utf8_lossy(m.as_bytes()).into_owned()
}

/// Nothing of the inside in a message the trunk received.
pub(super) fn assert_hidden(m: &SipMessage, pbx_call_id: &str) {
    let t = text(m);
    assert!(
        !t.contains("127.0.0.2"),
        "PBX address toward the trunk:\n{t}"
    );
    assert!(
        !t.contains(pbx_call_id),
        "PBX Call-ID toward the trunk:\n{t}"
    );
    assert!(
        !t.contains("PBX-Product"),
        "PBX product string toward the trunk:\n{t}"
    );
    if m.is_request() {
        assert_eq!(m.via_count(), 1, "only our Via:\n{t}");
    }
}

/// The INVITE of `call` with identity and product headers the PBX typically adds.
pub(super) fn rich_invite(call: &mut Call) -> String {
    let (invite, _) = call.invite();
    invite.replacen(
        "Max-Forwards: 70\n",
        "Max-Forwards: 70\r\n\
         P-Asserted-Identity: \"Alice\" <sip:201@127.0.0.2>\r\n\
         Diversion: <sip:202@127.0.0.2:5060>;reason=unconditional\r\n\
         History-Info: <sip:5551234@127.0.0.2?Reason=SIP%3Bcause%3D302>;index=1\r\n\
         Remote-Party-ID: <sip:201@127.0.0.2>;party=calling\r\n\
         User-Agent: PBX-Product 18.2\r\n\
         Warning: 399 127.0.0.2 \"inside note\"\r\n\
         Call-Info: <http://127.0.0.2/photo.jpg>;purpose=icon\r\n",
        1,
    )
}

/// A request the carrier sends in the dialog of `seen` (a request it received, or its own
/// INVITE's 2xx view): to our Contact, along our Record-Route.
pub(super) fn carrier_request(
    seen: &SipMessage,
    method: &str,
    cseq: u32,
    from_tag: &str,
    to_tag: &str,
) -> String {
    let contact = seen
        .first(HeaderName::Contact)
        .map(|c| {
            String::from_utf8_lossy(c)
                .trim_matches(['<', '>'])
                .to_string()
        })
        .unwrap();
    let route: Vec<String> = seen
        .values(HeaderName::RecordRoute)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let from_uri = strip_tag(seen.to_value());
    let to_uri = strip_tag(seen.from_value());
    format!(
        "{method} {contact} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-carrier-{method}-{cseq}
Max-Forwards: 70
Route: {route}
From: {from_uri};tag={from_tag}
To: {to_uri};tag={to_tag}
Call-ID: {cid}
CSeq: {cseq} {method}
Contact: <sip:carrier@{TRUNK}>
Content-Length: 0

",
        route = route.join(", "),
        cid = String::from_utf8_lossy(seen.call_id()),
    )
}

pub(super) fn strip_tag(value: &[u8]) -> String {
    let v = String::from_utf8_lossy(value);
    match v.find(";tag=") {
        Some(i) => v[..i].to_string(),
        None => v.into_owned(),
    }
}

/// A PBX response with its own Contact and product string.
pub(super) fn pbx_reply(req: &SipMessage, code: u16, reason: &str, tag: &str) -> String {
    reply(req, code, reason, tag, PBX).replace(
        "Content-Length: 0",
        "Server: PBX-Product 18.2\r\nP-Asserted-Identity: <sip:201@127.0.0.2>\r\nContent-Length: 0",
    )
}

/// An outbound call PBX → trunk 0 (hiding), answered: the INVITE and 200 the trunk saw/sent
/// (as the trunk saw them), and the call.
pub(super) fn outbound_answered(net: &mut SimNet, id: &str) -> (Call, SipMessage) {
    let mut call = Call::new(id, PBX, TRUNK);
    net.send(PBX, &rich_invite(&mut call));
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    assert_hidden(&at_trunk, &call.call_id);
    net.send(TRUNK, &reply(&at_trunk, 180, "Ringing", "callee1", TRUNK));
    net.send(TRUNK, &reply(&at_trunk, 200, "OK", "callee1", TRUNK));
    net.settle();
    let got = net.take(PBX);
    assert_eq!(got.len(), 2, "{}", describe(&got));
    for m in &got {
        assert_eq!(
            m.call_id(),
            call.call_id.as_bytes(),
            "the PBX sees its own Call-ID"
        );
        assert_eq!(m.via_count(), 1);
        assert!(m.top_via().branch().unwrap().starts_with(b"z9hG4bK-"));
        assert_eq!(m.top_via().host, b"127.0.0.2", "the PBX's own Via restored");
    }
    let rr: Vec<&[u8]> = got[1].values(HeaderName::RecordRoute).collect();
    assert_eq!(rr, [&b"<sip:127.0.0.1:5060;lr>"[..]]);
    call.to_tag = Some("callee1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    let ack = net.take_one(TRUNK);
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_hidden(&ack, &call.call_id);
    assert_eq!(ack.call_id(), at_trunk.call_id());
    (call, at_trunk)
}

pub(super) fn assert_all_gone(net: &mut SimNet) {
    net.run_for(Duration::from_secs(40));
    assert!(net.proxy_is_idle(), "transactions or dialogs left");
    assert_eq!(net.proxy.topology.len(), 0, "hiding state left");
}

#[test]
fn outbound_invite_toward_a_hiding_trunk_names_only_trunkgate() {
    let mut net = hiding_net();
    let mut call = Call::new("out-hide", PBX, TRUNK);
    net.send(PBX, &rich_invite(&mut call));
    net.settle();
    let inv = net.take_one(TRUNK);
    assert_hidden(&inv, &call.call_id);
    let cid = String::from_utf8_lossy(inv.call_id()).into_owned();
    assert!(cid.starts_with("tg") && cid.len() == 34, "{cid}");
    assert!(inv.top_via().branch().unwrap().starts_with(b"z9hG4bK-tg-"));
    let rr: Vec<&[u8]> = inv.values(HeaderName::RecordRoute).collect();
    assert_eq!(rr, [&b"<sip:127.0.0.1:5060;lr>"[..]], "only ours");
    let contact = String::from_utf8_lossy(inv.first(HeaderName::Contact).unwrap()).into_owned();
    assert!(
        contact.starts_with("<sip:tg") && contact.ends_with("@127.0.0.1:5060>"),
        "{contact}"
    );
    assert_eq!(inv.from_value(), b"<sip:alice@127.0.0.1>;tag=ft-out-hide");
    assert_eq!(
        inv.first(HeaderName::UserAgent),
        Some(&b"Trunkgate/test"[..])
    );
    assert_eq!(
        inv.first(HeaderName::PAssertedIdentity),
        Some(&b"\"Alice\" <sip:201@127.0.0.1>"[..])
    );
    assert_eq!(
        inv.first_named(b"Diversion"),
        Some(&b"<sip:202@127.0.0.1>;reason=unconditional"[..])
    );
    assert_eq!(
        inv.first_named(b"Warning"),
        Some(&b"399 127.0.0.1 \"inside note\""[..])
    );
    assert_eq!(inv.first_named(b"Call-Info"), None);
    assert_eq!(inv.body(), b"v=0\r\n", "the body is the relay's business");
    // The same call to a trunk that does not hide: as before.
    let mut net = SimNet::new();
    let mut call = Call::new("out-plain", PBX, TRUNK);
    net.send(PBX, &rich_invite(&mut call));
    net.settle();
    let plain = net.take_one(TRUNK);
    assert_eq!(plain.call_id(), call.call_id.as_bytes());
    assert_eq!(plain.via_count(), 2);
}

#[test]
fn outbound_call_hung_up_by_the_pbx() {
    let mut net = hiding_net();
    let (mut call, at_trunk) = outbound_answered(&mut net, "bye-pbx");
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK);
    assert_eq!(bye.method(), Some(Method::Bye));
    assert_hidden(&bye, &call.call_id);
    assert_eq!(bye.call_id(), at_trunk.call_id());
    net.send(TRUNK, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    let ok = net.take_one(PBX);
    assert_eq!((ok.status(), ok.cseq().1), (Some(200), Method::Bye));
    assert_eq!(ok.call_id(), call.call_id.as_bytes());
    assert_eq!(ok.top_via().host, b"127.0.0.2");
    assert_all_gone(&mut net);
}

#[test]
fn outbound_call_hung_up_by_the_carrier_to_our_contact() {
    let mut net = hiding_net();
    let (call, at_trunk) = outbound_answered(&mut net, "bye-carrier");
    let bye = carrier_request(&at_trunk, "BYE", 1, "callee1", &call.from_tag);
    net.send(TRUNK, &bye);
    net.settle();
    let at_pbx = net.take_one(PBX);
    assert_eq!(at_pbx.method(), Some(Method::Bye));
    assert_eq!(at_pbx.call_id(), call.call_id.as_bytes(), "mapped back");
    assert_eq!(
        at_pbx.request_uri(),
        Some(&b"sip:alice@127.0.0.2:5060"[..]),
        "our Contact maps back to the PBX's"
    );
    net.send(PBX, &pbx_reply(&at_pbx, 200, "OK", ""));
    net.settle();
    let ok = net.take_one(TRUNK);
    assert_eq!(ok.status(), Some(200));
    assert_hidden(&ok, &call.call_id);
    assert_eq!(ok.call_id(), at_trunk.call_id());
    assert_eq!(ok.first_named(b"Server"), Some(&b"Trunkgate/test"[..]));
    assert_all_gone(&mut net);
}

#[test]
fn a_reinvite_from_the_carrier_routes_and_its_answer_is_hidden() {
    let mut net = hiding_net();
    let (mut call, at_trunk) = outbound_answered(&mut net, "reinvite-carrier");
    // The carrier's own From URI names the carrier: its answer must carry it unchanged.
    let reinvite = carrier_request(&at_trunk, "INVITE", 5, "callee1", &call.from_tag).replacen(
        &format!("From: {}", strip_tag(at_trunk.to_value())),
        "From: <sip:carrier@127.0.0.3:5060>",
        1,
    );
    net.send(TRUNK, &reinvite);
    net.settle();
    let at_pbx = net.take_one(PBX);
    assert_eq!(at_pbx.method(), Some(Method::Invite));
    assert_eq!(at_pbx.call_id(), call.call_id.as_bytes());
    net.send(PBX, &pbx_reply(&at_pbx, 200, "OK", ""));
    net.settle();
    let ok = net.take_one(TRUNK);
    assert_hidden(&ok, &call.call_id);
    assert_eq!(ok.from_value(), b"<sip:carrier@127.0.0.3:5060>;tag=callee1");
    let contact = String::from_utf8_lossy(ok.first(HeaderName::Contact).unwrap()).into_owned();
    assert!(contact.starts_with("<sip:tg"), "{contact}");
    assert_eq!(
        ok.first(HeaderName::PAssertedIdentity),
        Some(&b"<sip:201@127.0.0.1>"[..])
    );
    // The carrier's ACK reaches the PBX; then the PBX hangs up.
    net.send(
        TRUNK,
        &carrier_request(&at_trunk, "ACK", 5, "callee1", &call.from_tag),
    );
    net.settle();
    let ack = net.take_one(PBX);
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(ack.call_id(), call.call_id.as_bytes());
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK);
    assert_hidden(&bye, &call.call_id);
    net.send(TRUNK, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(200));
    assert_all_gone(&mut net);
}

#[test]
fn a_reinvite_from_the_pbx_to_a_new_party_keeps_our_contact_and_routes_back_to_the_new_one() {
    let mut net = hiding_net();
    let (mut call, at_trunk) = outbound_answered(&mut net, "transfer");
    // REFER-less transfer: the PBX moves the call to another phone (new Contact, new
    // identity) with a re-INVITE.
    let reinvite = call
        .caller_request("INVITE")
        .replace(
            "Contact: <sip:alice@127.0.0.2:5060>",
            "Contact: <sip:bob@127.0.0.2:5090>",
        )
        .replace(
            "Content-Length: 0",
            "P-Asserted-Identity: <sip:203@127.0.0.2>\r\nContent-Length: 0",
        );
    net.send(PBX, &reinvite);
    net.settle();
    let at = net.take_one(TRUNK);
    assert_hidden(&at, &call.call_id);
    assert_eq!(at.call_id(), at_trunk.call_id());
    assert_eq!(
        at.first(HeaderName::PAssertedIdentity),
        Some(&b"<sip:203@127.0.0.1>"[..])
    );
    assert_eq!(
        at.first(HeaderName::Contact),
        at_trunk.first(HeaderName::Contact),
        "the same Contact of ours for the whole dialog"
    );
    net.send(TRUNK, &reply(&at, 200, "OK", "callee1", TRUNK));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(200));
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    assert_hidden(&net.take_one(TRUNK), &call.call_id);
    // The carrier hangs up: to the new phone.
    net.send(
        TRUNK,
        &carrier_request(&at_trunk, "BYE", 2, "callee1", &call.from_tag),
    );
    net.settle();
    let bye = net.take_one("127.0.0.2:5090");
    assert_eq!(bye.method(), Some(Method::Bye));
    assert_eq!(bye.request_uri(), Some(&b"sip:bob@127.0.0.2:5090"[..]));
    net.send("127.0.0.2:5090", &reply(&bye, 200, "OK", "", ""));
    net.settle();
    assert_hidden(&net.take_one(TRUNK), &call.call_id);
    assert_all_gone(&mut net);
}

#[test]
fn cancel_and_the_ack_of_its_487_carry_the_outer_call_id() {
    let mut net = hiding_net();
    let mut call = Call::new("cancel", PBX, TRUNK);
    let (invite, branch) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    let inv = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&inv, 180, "Ringing", "callee1", TRUNK));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(180));
    let cancel = format!(
        "CANCEL sip:5551234@{PROXY} SIP/2.0
Via: SIP/2.0/UDP {PBX};branch={branch}
Max-Forwards: 70
From: <sip:alice@{PBX}>;tag={ft}
To: <sip:5551234@{PROXY}>
Call-ID: {cid}
CSeq: 1 CANCEL
Content-Length: 0

",
        ft = call.from_tag,
        cid = call.call_id,
    );
    net.send(PBX, &cancel);
    net.settle();
    assert_eq!(
        net.take_one(PBX).status(),
        Some(200),
        "our 200 to the CANCEL"
    );
    let c = net.take_one(TRUNK);
    assert_eq!(c.method(), Some(Method::Cancel));
    assert_hidden(&c, &call.call_id);
    assert_eq!(c.call_id(), inv.call_id());
    assert_eq!(c.top_via().branch(), inv.top_via().branch());
    net.send(TRUNK, &reply(&c, 200, "OK", "", ""));
    net.send(
        TRUNK,
        &reply(&inv, 487, "Request Terminated", "callee1", ""),
    );
    net.settle();
    let ack = net.take_one(TRUNK);
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_hidden(&ack, &call.call_id);
    assert_eq!(ack.call_id(), inv.call_id());
    let t = net.take_one(PBX);
    assert_eq!(t.status(), Some(487));
    assert_eq!(t.call_id(), call.call_id.as_bytes());
    assert_eq!(t.top_via().branch(), Some(branch.as_bytes()));
    assert_all_gone(&mut net);
}

#[test]
fn a_busy_trunk_gets_its_ack_hidden_and_the_pbx_its_486() {
    let mut net = hiding_net();
    let mut call = Call::new("busy", PBX, TRUNK);
    net.send(PBX, &rich_invite(&mut call));
    net.settle();
    let inv = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&inv, 486, "Busy Here", "callee1", ""));
    net.settle();
    let ack = net.take_one(TRUNK);
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_hidden(&ack, &call.call_id);
    let busy = net.take_one(PBX);
    assert_eq!(busy.status(), Some(486));
    assert_eq!(busy.call_id(), call.call_id.as_bytes());
    assert_eq!(busy.top_via().host, b"127.0.0.2");
    // The trunk retransmits its 486 (our ACK was lost): the ACK again, the same.
    net.send(TRUNK, &reply(&inv, 486, "Busy Here", "callee1", ""));
    net.settle();
    let again = net.take_one(TRUNK);
    assert_eq!(again.as_bytes(), ack.as_bytes());
    assert_all_gone(&mut net);
}

#[test]
fn retransmissions_keep_the_outer_call_id_and_a_late_2xx_is_restored() {
    let mut net = hiding_net();
    let mut call = Call::new("retransmit", PBX, TRUNK);
    net.send(PBX, &rich_invite(&mut call));
    // Timer A: the trunk hears the INVITE three times before it answers.
    net.run_for(Duration::from_millis(1600));
    let invites = net.take(TRUNK);
    assert_eq!(invites.len(), 3, "{}", describe(&invites));
    assert!(invites.iter().all(|m| m.call_id() == invites[0].call_id()));
    assert!(
        invites
            .iter()
            .all(|m| m.as_bytes() == invites[0].as_bytes())
    );
    let inv = &invites[0];
    net.send(TRUNK, &reply(inv, 200, "OK", "callee1", TRUNK));
    net.settle();
    let got = net.take(PBX);
    assert_eq!(
        got.last().and_then(|m| m.status()),
        Some(200),
        "{}",
        describe(&got)
    );
    assert!(got.iter().all(|m| m.call_id() == call.call_id.as_bytes()));
    // The 200 again (its ACK is late): relayed along the dialog, the PBX's values back.
    net.send(TRUNK, &reply(inv, 200, "OK", "callee1", TRUNK));
    net.settle();
    let again = net.take_one(PBX);
    assert_eq!(again.status(), Some(200));
    assert_eq!(again.call_id(), call.call_id.as_bytes());
    assert_eq!(again.via_count(), 1);
    assert_eq!(again.top_via().host, b"127.0.0.2");
    call.to_tag = Some("callee1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let got = net.take(TRUNK);
    assert_eq!(got.len(), 2);
    for m in &got {
        assert_hidden(m, &call.call_id);
        assert_eq!(m.call_id(), inv.call_id());
    }
    net.send(TRUNK, &reply(&got[1], 200, "OK", "", ""));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(200));
    assert_all_gone(&mut net);
}

#[test]
fn forked_answers_each_reach_the_pbx_and_their_acks_and_byes_go_out_hidden() {
    let mut net = hiding_net();
    let mut call = Call::new("fork", PBX, TRUNK);
    net.send(PBX, &rich_invite(&mut call));
    net.settle();
    let inv = net.take_one(TRUNK);
    let fork_b = "127.0.0.3:5071";
    net.send(TRUNK, &reply(&inv, 200, "OK", "tag-a", TRUNK));
    net.settle();
    net.send(fork_b, &reply(&inv, 200, "OK", "tag-b", fork_b));
    net.settle();
    let got = net.take(PBX);
    assert_eq!(got.len(), 2, "{}", describe(&got));
    for m in &got {
        assert_eq!(m.call_id(), call.call_id.as_bytes());
        assert_eq!(m.top_via().host, b"127.0.0.2");
    }
    let mut second = Call {
        to_tag: Some("tag-b".into()),
        branch_seq: 100,
        ..call.clone()
    };
    call.to_tag = Some("tag-a".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.send(PBX, &second.caller_request("ACK"));
    net.settle();
    let a = net.take_one(TRUNK);
    let b = net.take_one(fork_b);
    for m in [&a, &b] {
        assert_eq!(m.method(), Some(Method::Ack));
        assert_hidden(m, &call.call_id);
        assert_eq!(m.call_id(), inv.call_id());
    }
    second.cseq = call.cseq + 10;
    net.send(PBX, &second.caller_request("BYE"));
    net.settle();
    let bye_b = net.take_one(fork_b);
    assert_hidden(&bye_b, &call.call_id);
    net.send(fork_b, &reply(&bye_b, 200, "OK", "", ""));
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye_a = net.take_one(TRUNK);
    assert_hidden(&bye_a, &call.call_id);
    net.send(TRUNK, &reply(&bye_a, 200, "OK", "", ""));
    net.settle();
    assert_eq!(net.take(PBX).len(), 2);
    net.run_for(Duration::from_secs(40));
    assert_eq!(net.proxy.active_dialogs(), 0);
    assert_eq!(net.proxy.topology.len(), 0);
}
