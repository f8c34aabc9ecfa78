//! Topology hiding toward trunk 0 (`topology.rs`) over the simulated network: what the trunk
//! receives never names the PBX (127.0.0.2) or carries the PBX's Call-ID, and every call
//! flow still routes: both directions, BYE from either side, re-INVITE from the carrier and
//! from the PBX to a new party, CANCEL, ACK for 2xx and non-2xx, forked answers,
//! retransmissions, a reload that turns hiding off, and the state gone with the dialogs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::simnet::*;
use crate::message::{HeaderName, Method, SipMessage};
use crate::routing::{Party, RouteChoice, Routing, Target, TrunkLoad};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The test routing with trunk 0 hiding (`hide` false: none does).
struct Hiding {
    inner: TestRouting,
    hide: bool,
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
}

fn hiding_net() -> SimNet {
    let mut net = SimNet::new();
    set_hiding(&mut net, true);
    net
}

fn set_hiding(net: &mut SimNet, hide: bool) {
    net.proxy.set_routing(Arc::new(Hiding {
        inner: TestRouting::default(),
        hide,
    }));
}

fn text(m: &SipMessage) -> String {
    String::from_utf8_lossy(m.as_bytes()).into_owned()
}

/// Nothing of the inside in a message the trunk received.
fn assert_hidden(m: &SipMessage, pbx_call_id: &str) {
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
fn rich_invite(call: &mut Call) -> String {
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
fn carrier_request(
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

fn strip_tag(value: &[u8]) -> String {
    let v = String::from_utf8_lossy(value);
    match v.find(";tag=") {
        Some(i) => v[..i].to_string(),
        None => v.into_owned(),
    }
}

/// A PBX response with its own Contact and product string.
fn pbx_reply(req: &SipMessage, code: u16, reason: &str, tag: &str) -> String {
    reply(req, code, reason, tag, PBX).replace(
        "Content-Length: 0",
        "Server: PBX-Product 18.2\r\nP-Asserted-Identity: <sip:201@127.0.0.2>\r\nContent-Length: 0",
    )
}

/// An outbound call PBX → trunk 0 (hiding), answered: the INVITE and 200 the trunk saw/sent
/// (as the trunk saw them), and the call.
fn outbound_answered(net: &mut SimNet, id: &str) -> (Call, SipMessage) {
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

fn assert_all_gone(net: &mut SimNet) {
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
fn inbound_call_from_a_hiding_trunk_answers_with_nothing_of_the_pbx() {
    let mut net = hiding_net();
    let mut call = Call::new("inbound", TRUNK, PBX);
    let (invite, _) = call.invite();
    net.send(TRUNK, &invite);
    net.settle();
    let at_pbx = net.take_one(PBX);
    assert_eq!(
        at_pbx.call_id(),
        call.call_id.as_bytes(),
        "the carrier's Call-ID is its own"
    );
    net.send(PBX, &pbx_reply(&at_pbx, 180, "Ringing", "pbx1"));
    net.send(PBX, &pbx_reply(&at_pbx, 200, "OK", "pbx1"));
    net.settle();
    let got = net.take(TRUNK);
    assert_eq!(got.len(), 2, "{}", describe(&got));
    for m in &got {
        assert_hidden(m, "never-replaced");
        assert_eq!(m.call_id(), call.call_id.as_bytes());
        assert_eq!(m.first_named(b"Server"), Some(&b"Trunkgate/test"[..]));
        let contact = String::from_utf8_lossy(m.first(HeaderName::Contact).unwrap()).into_owned();
        assert!(contact.starts_with("<sip:tg"), "{contact}");
    }
    // The carrier ACKs our Contact: the PBX gets it at its own.
    call.to_tag = Some("pbx1".into());
    let ok = &got[1];
    let ack = carrier_in_call(ok, "ACK", call.cseq, &call.from_tag, "pbx1");
    net.send(TRUNK, &ack);
    net.settle();
    let ack = net.take_one(PBX);
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(ack.request_uri(), Some(&b"sip:127.0.0.2:5060"[..]));
    // The PBX hangs up.
    let bye = format!(
        "BYE sip:alice@{TRUNK} SIP/2.0
Via: SIP/2.0/UDP {PBX};branch=z9hG4bK-pbx-bye
Via: SIP/2.0/UDP 127.0.0.2:5080;branch=z9hG4bK-inside-proxy
Max-Forwards: 70
Route: <sip:127.0.0.1:5060;lr>
From: <sip:5551234@127.0.0.1:5060>;tag=pbx1
To: <sip:alice@{TRUNK}>;tag={ft}
Call-ID: {cid}
CSeq: 1 BYE
User-Agent: PBX-Product 18.2
Content-Length: 0

",
        ft = call.from_tag,
        cid = call.call_id,
    );
    net.send(PBX, &bye);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    assert_eq!(at_trunk.method(), Some(Method::Bye));
    assert_hidden(&at_trunk, "never-replaced");
    net.send(TRUNK, &reply(&at_trunk, 200, "OK", "", ""));
    net.settle();
    let ok = net.take_one(PBX);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.via_count(), 2, "the PBX's Vias restored");
    assert_all_gone(&mut net);
}

/// A request of the carrier (the caller) in its inbound call, from the 2xx it received.
fn carrier_in_call(
    ok: &SipMessage,
    method: &str,
    cseq: u32,
    from_tag: &str,
    to_tag: &str,
) -> String {
    let contact = ok
        .first(HeaderName::Contact)
        .map(|c| {
            String::from_utf8_lossy(c)
                .trim_matches(['<', '>'])
                .to_string()
        })
        .unwrap();
    let mut route: Vec<String> = ok
        .values(HeaderName::RecordRoute)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    route.reverse();
    format!(
        "{method} {contact} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-carrier-{method}-{cseq}
Max-Forwards: 70
Route: {route}
From: {from};tag={from_tag}
To: {to};tag={to_tag}
Call-ID: {cid}
CSeq: {cseq} {method}
Content-Length: 0

",
        route = route.join(", "),
        from = strip_tag(ok.from_value()),
        to = strip_tag(ok.to_value()),
        cid = String::from_utf8_lossy(ok.call_id()),
    )
}

#[test]
fn inbound_call_hung_up_by_the_carrier_and_its_reinvite() {
    let mut net = hiding_net();
    let mut call = Call::new("inbound-bye", TRUNK, PBX);
    let (invite, _) = call.invite();
    net.send(TRUNK, &invite);
    net.settle();
    let at_pbx = net.take_one(PBX);
    net.send(PBX, &pbx_reply(&at_pbx, 200, "OK", "pbx1"));
    net.settle();
    let ok = net.take_one(TRUNK);
    assert_hidden(&ok, "never-replaced");
    net.send(
        TRUNK,
        &carrier_in_call(&ok, "ACK", 1, &call.from_tag, "pbx1"),
    );
    net.settle();
    assert_eq!(net.take_one(PBX).method(), Some(Method::Ack));
    for (method, cseq) in [("INVITE", 2), ("BYE", 3)] {
        net.send(
            TRUNK,
            &carrier_in_call(&ok, method, cseq, &call.from_tag, "pbx1"),
        );
        net.settle();
        let req = net.take_one(PBX);
        assert_eq!(req.method().map(|m| m.as_str()), Some(method));
        assert_eq!(req.request_uri(), Some(&b"sip:127.0.0.2:5060"[..]));
        net.send(PBX, &pbx_reply(&req, 200, "OK", ""));
        net.settle();
        let answer = net.take_one(TRUNK);
        assert_eq!(answer.status(), Some(200));
        assert_hidden(&answer, "never-replaced");
        if method == "INVITE" {
            net.send(
                TRUNK,
                &carrier_in_call(&ok, "ACK", 2, &call.from_tag, "pbx1"),
            );
            net.settle();
            assert_eq!(net.take_one(PBX).method(), Some(Method::Ack));
        }
    }
    call.cseq = 4;
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

#[test]
fn a_request_outside_any_dialog_gets_its_call_id_back_in_the_answer() {
    let mut net = hiding_net();
    let options = format!(
        "OPTIONS sip:5551234@{TRUNK} SIP/2.0
Via: SIP/2.0/UDP {PBX};branch=z9hG4bK-options-1
Max-Forwards: 70
From: <sip:pbx@{PBX}>;tag=o1
To: <sip:5551234@{TRUNK}>
Call-ID: options-1@inside
CSeq: 1 OPTIONS
Contact: <sip:pbx@{PBX}>
Content-Length: 0

"
    );
    net.send(PBX, &options);
    net.settle();
    let at = net.take_one(TRUNK);
    assert_hidden(&at, "options-1@inside");
    net.send(TRUNK, &reply(&at, 200, "OK", "t1", ""));
    net.settle();
    let ok = net.take_one(PBX);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.call_id(), b"options-1@inside");
    assert_eq!(ok.top_via().branch(), Some(&b"z9hG4bK-options-1"[..]));
    assert_all_gone(&mut net);
}

#[test]
fn a_call_set_up_while_hiding_stays_hidden_after_a_reload_turns_it_off() {
    let mut net = hiding_net();
    let (mut call, at_trunk) = outbound_answered(&mut net, "reload");
    set_hiding(&mut net, false);
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK);
    assert_hidden(&bye, &call.call_id);
    assert_eq!(bye.call_id(), at_trunk.call_id());
    net.send(TRUNK, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    assert_eq!(net.take_one(PBX).call_id(), call.call_id.as_bytes());
    assert_all_gone(&mut net);
    // A call set up before hiding was turned on stays unhidden to its end.
    let mut net = SimNet::new();
    let mut call = Call::new("before", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    let inv = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&inv, 200, "OK", "callee1", TRUNK));
    net.settle();
    net.take(PBX);
    set_hiding(&mut net, true);
    call.to_tag = Some("callee1".into());
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK);
    assert_eq!(bye.call_id(), call.call_id.as_bytes());
}

#[test]
fn many_calls_leave_no_state_behind() {
    let mut net = hiding_net();
    for i in 0..50 {
        let (mut call, _) = outbound_answered(&mut net, &format!("many-{i}"));
        net.send(PBX, &call.caller_request("BYE"));
        net.settle();
        let bye = net.take_one(TRUNK);
        net.send(TRUNK, &reply(&bye, 200, "OK", "", ""));
        net.settle();
        net.take(PBX);
    }
    assert_eq!(net.proxy.topology.len(), 0);
    assert_all_gone(&mut net);
}

/// An inside proxy on 127.0.0.2:5080 that Record-Routes.
const INSIDE_PROXY: &str = "127.0.0.2:5080";

#[test]
fn an_inside_proxys_record_route_is_kept_from_the_trunk_and_its_requests_still_pass_it() {
    let mut net = hiding_net();
    let mut call = Call::new("inside-proxy-out", PBX, TRUNK);
    let invite = rich_invite(&mut call).replacen(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\nRecord-Route: <sip:{INSIDE_PROXY};lr>\r\n"),
        1,
    );
    net.send(PBX, &invite);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    assert_hidden(&at_trunk, &call.call_id);
    let rr: Vec<&[u8]> = at_trunk.values(HeaderName::RecordRoute).collect();
    assert_eq!(rr, [&b"<sip:127.0.0.1:5060;lr>"[..]]);
    net.send(TRUNK, &reply(&at_trunk, 200, "OK", "callee1", TRUNK));
    net.settle();
    let ok = net.take_one(PBX);
    // Ours, then the inside's proxy the trunk never saw: the PBX's route set is whole.
    let rr: Vec<&[u8]> = ok.values(HeaderName::RecordRoute).collect();
    assert_eq!(
        rr,
        [&b"<sip:127.0.0.1:5060;lr>"[..], b"<sip:127.0.0.2:5080;lr>"]
    );
    call.to_tag = Some("callee1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    net.take_one(TRUNK);
    // The carrier's BYE follows our Route, then the inside proxy's.
    net.send(
        TRUNK,
        &carrier_request(&at_trunk, "BYE", 1, "callee1", &call.from_tag),
    );
    net.settle();
    let bye = net.take_one(INSIDE_PROXY);
    assert_eq!(bye.method(), Some(Method::Bye));
    assert_eq!(bye.call_id(), call.call_id.as_bytes());
    let routes: Vec<&[u8]> = bye.values(HeaderName::Route).collect();
    assert_eq!(routes, [&b"<sip:127.0.0.2:5080;lr>"[..]]);
    net.send(INSIDE_PROXY, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    assert_hidden(&net.take_one(TRUNK), &call.call_id);
    assert_all_gone(&mut net);

    // A call from the trunk answered through the inside proxy: its Record-Route is taken
    // off the answer and put back as a Route on the carrier's requests.
    let mut call = Call::new("inside-proxy-in", TRUNK, PBX);
    let (invite, _) = call.invite();
    net.send(TRUNK, &invite);
    net.settle();
    let at_pbx = net.take_one(PBX);
    let answer = pbx_reply(&at_pbx, 200, "OK", "pbx1").replacen(
        "Record-Route:",
        &format!("Record-Route: <sip:{INSIDE_PROXY};lr>\r\nRecord-Route:"),
        1,
    );
    net.send(INSIDE_PROXY, &answer);
    net.settle();
    let ok = net.take_one(TRUNK);
    assert_hidden(&ok, "never-replaced");
    let rr: Vec<&[u8]> = ok.values(HeaderName::RecordRoute).collect();
    assert_eq!(rr, [&b"<sip:127.0.0.1:5060;lr>"[..]]);
    for (method, cseq) in [("ACK", 1), ("BYE", 2)] {
        net.send(
            TRUNK,
            &carrier_in_call(&ok, method, cseq, &call.from_tag, "pbx1"),
        );
        net.settle();
        let req = net.take_one(INSIDE_PROXY);
        assert_eq!(req.method().map(|m| m.as_str()), Some(method));
        let routes: Vec<&[u8]> = req.values(HeaderName::Route).collect();
        assert_eq!(routes, [&b"<sip:127.0.0.2:5080;lr>"[..]]);
        if method == "BYE" {
            net.send(INSIDE_PROXY, &reply(&req, 200, "OK", "", ""));
            net.settle();
            assert_hidden(&net.take_one(TRUNK), "never-replaced");
        }
    }
    assert_all_gone(&mut net);
}

#[test]
fn failover_from_a_hiding_trunk_to_one_that_does_not_hide() {
    let failover = crate::routing::FailoverPolicy::standard();
    let mut net = SimNet::with_failover(failover);
    net.proxy.set_routing(Arc::new(Hiding {
        inner: TestRouting {
            failover,
            ..TestRouting::default()
        },
        hide: true,
    }));
    let mut call = Call::new("failover", PBX, TRUNK);
    net.send(PBX, &rich_invite(&mut call));
    net.settle();
    let at_a = net.take_one(TRUNK);
    assert_hidden(&at_a, &call.call_id);
    net.send(TRUNK, &reply(&at_a, 503, "Service Unavailable", "a1", ""));
    net.settle();
    let ack = net.take_one(TRUNK);
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_hidden(&ack, &call.call_id);
    // Trunk 1 does not hide: it gets the call as the PBX sent it.
    let at_b = net.take_one(TRUNK_B);
    assert_eq!(at_b.call_id(), call.call_id.as_bytes());
    assert_eq!(at_b.via_count(), 2);
    net.send(TRUNK_B, &reply(&at_b, 200, "OK", "b1", TRUNK_B));
    net.settle();
    let ok = net.take(PBX);
    assert_eq!(ok.last().and_then(|m| m.status()), Some(200));
    call.to_tag = Some("b1".into());
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK_B);
    assert_eq!(bye.call_id(), call.call_id.as_bytes());
    net.send(TRUNK_B, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(200));
    assert_all_gone(&mut net);
}

/// A relay that names itself (127.0.0.1) in every body, and reports every call silent.
struct Relay;

impl crate::media::MediaRelay for Relay {
    fn offer(
        &self,
        _call: &crate::media::MediaCall<'_>,
        _from: crate::media::MediaSide,
        _sdp: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), crate::media::MediaFailure> {
        out.extend_from_slice(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nc=IN IP4 127.0.0.1\r\n");
        Ok(())
    }
    fn answer(
        &self,
        call: &crate::media::MediaCall<'_>,
        from: crate::media::MediaSide,
        sdp: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), crate::media::MediaFailure> {
        self.offer(call, from, sdp, out)
    }
    fn delete(&self, _dialog: u64) {}
    fn idle(&self, _dialog: u64) -> Option<Duration> {
        Some(Duration::from_secs(3600))
    }
}

#[test]
fn updates_both_ways_and_our_own_bye_on_dead_media_are_hidden_too() {
    let mut net = hiding_net();
    net.proxy.set_media(Arc::new(Relay));
    let (mut call, at_trunk) = outbound_answered(&mut net, "update");
    assert!(
        text(&at_trunk).contains("c=IN IP4 127.0.0.1"),
        "anchored: {}",
        text(&at_trunk)
    );
    // UPDATE from the PBX (with an offer), then one from the carrier.
    let update = call
        .caller_request("UPDATE")
        .replace(
            "Content-Length: 0\n",
            "Content-Type: application/sdp\nContent-Length: 5\n",
        )
        .replacen("\n\n", "\n\nv=0\n", 1);
    net.send(PBX, &update);
    net.settle();
    let at = net.take_one(TRUNK);
    assert_eq!(at.method(), Some(Method::Update));
    assert_hidden(&at, &call.call_id);
    net.send(TRUNK, &reply(&at, 200, "OK", "", TRUNK));
    net.settle();
    let ok = net.take_one(PBX);
    assert_eq!(
        (ok.status(), ok.call_id()),
        (Some(200), call.call_id.as_bytes())
    );
    net.send(
        TRUNK,
        &carrier_request(&at_trunk, "UPDATE", 3, "callee1", &call.from_tag),
    );
    net.settle();
    let at_pbx = net.take_one(PBX);
    assert_eq!(at_pbx.method(), Some(Method::Update));
    assert_eq!(at_pbx.call_id(), call.call_id.as_bytes());
    net.send(PBX, &pbx_reply(&at_pbx, 200, "OK", ""));
    net.settle();
    assert_hidden(&net.take_one(TRUNK), &call.call_id);
    // The media dies: our own BYE to the trunk carries the outer Call-ID and our hosts.
    let dialog = net.proxy.dialogs.keys().copied().next().unwrap();
    assert!(net.media_timeout(dialog, Duration::from_secs(60)));
    net.settle();
    let bye = net.take_one(TRUNK);
    assert_eq!(bye.method(), Some(Method::Bye));
    assert_hidden(&bye, &call.call_id);
    assert_eq!(bye.call_id(), at_trunk.call_id());
    let to_pbx = net.take_one(PBX);
    assert_eq!(to_pbx.call_id(), call.call_id.as_bytes());
    net.send(TRUNK, &reply(&bye, 200, "OK", "", ""));
    net.send(PBX, &reply(&to_pbx, 200, "OK", "", ""));
    net.settle();
    assert!(net.take(PBX).is_empty() && net.take(TRUNK).is_empty());
    call.cseq += 1;
    assert_all_gone(&mut net);
}
