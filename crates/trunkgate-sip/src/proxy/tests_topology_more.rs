//! Topology hiding, continued (`tests_topology.rs` has the harness and the calls from the
//! PBX): calls from the trunk, an inside proxy that Record-Routes, requests outside a
//! dialog, failover, reloads, UPDATE and our own BYE on an anchored call, and no state left
//! after many calls.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::simnet::*;
use super::tests_topology::*;
use crate::message::{HeaderName, Method, SipMessage};
use std::sync::Arc;
use std::time::Duration;

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
        rules: None,
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

#[test]
fn ice_candidates_naming_the_pbx_are_not_sent_to_the_trunk() {
    let mut net = hiding_net();
    let mut call = Call::new("ice", PBX, TRUNK);
    let sdp = "v=0\r\nc=IN IP4 192.0.2.99\r\nm=audio 4000 RTP/AVP 0\r\n\
               a=candidate:1 1 UDP 2130706431 127.0.0.2 4000 typ host\r\na=ice-ufrag:Ab\r\n";
    let invite = rich_invite(&mut call)
        .replace(
            "Content-Length: 5",
            &format!("Content-Length: {}", sdp.len()),
        )
        .replace("\nv=0\n", &format!("\n{}", sdp.replace("\r\n", "\n")));
    net.send(PBX, &invite);
    net.settle();
    let inv = net.take_one(TRUNK);
    assert_hidden(&inv, &call.call_id);
    assert_eq!(
        inv.body(),
        b"v=0\r\nc=IN IP4 192.0.2.99\r\nm=audio 4000 RTP/AVP 0\r\n"
    );
    assert_eq!(inv.content_length(), Some(inv.body().len()));
}

#[test]
fn over_tcp_our_contact_names_the_transport() {
    let mut net = SimNet::with_tcp();
    set_hiding(&mut net, true);
    let mut call = Call::new("tcp", PBX, TRUNK);
    let invite = crlf(&rich_invite(&mut call)).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    net.send_tcp(PBX, 1, &invite);
    net.settle();
    let inv = net.take_one(TRUNK);
    assert_hidden(&inv, &call.call_id);
    assert!(
        inv.top_via_raw()
            .starts_with(b"SIP/2.0/TCP 127.0.0.1:5060;")
    );
    let contact = String::from_utf8_lossy(inv.first(HeaderName::Contact).unwrap()).into_owned();
    assert!(
        contact.ends_with("@127.0.0.1:5060;transport=tcp>"),
        "{contact}"
    );
}

#[test]
fn the_trunks_header_rules_and_hiding_work_together() {
    let mut net = SimNet::new();
    net.proxy.set_routing(Arc::new(Hiding {
        inner: TestRouting::default(),
        hide: true,
        rules: Some(crate::normalise::Normalise {
            calling: vec![(b"201".to_vec(), b"+44201".to_vec())],
            add: vec![b"X-Account: 1234".to_vec()],
            user_agent: Some(b"Carrier-UA".to_vec()),
            ..Default::default()
        }),
    }));
    let mut call = Call::new("rules", PBX, TRUNK);
    net.send(PBX, &rich_invite(&mut call));
    net.settle();
    let inv = net.take_one(TRUNK);
    assert_hidden(&inv, &call.call_id);
    assert_eq!(
        inv.first(HeaderName::UserAgent),
        Some(&b"Carrier-UA"[..]),
        "the rule wins"
    );
    assert_eq!(
        inv.first(HeaderName::PAssertedIdentity),
        Some(&b"\"Alice\" <sip:+44201@127.0.0.1>"[..]),
        "renumbered and hidden"
    );
    assert_eq!(inv.first_named(b"X-Account"), Some(&b"1234"[..]));
}

/// The PBX on 127.0.0.2, a hiding trunk 0 on 2001:db8::3; Trunkgate on both families.
struct DualHiding;

impl crate::routing::Routing for DualHiding {
    fn classify(&self, source: std::net::IpAddr) -> crate::routing::Party {
        match source.to_string().as_str() {
            "127.0.0.2" => crate::routing::Party::Pbx,
            "2001:db8::3" => crate::routing::Party::Trunk(0),
            _ => crate::routing::Party::Unknown,
        }
    }
    fn candidates(
        &self,
        _now: std::time::Instant,
        _from: crate::routing::Party,
        _user: Option<&[u8]>,
        _load: &dyn crate::routing::TrunkLoad,
        out: &mut Vec<crate::routing::Target>,
    ) -> crate::routing::RouteChoice {
        out.push(crate::routing::Target {
            party: crate::routing::Party::Trunk(0),
            address: "[2001:db8::3]:5060".parse().unwrap(),
            transport: None,
            uri_host: "[2001:db8::3]:5060".into(),
            local_answer: None,
        });
        crate::routing::RouteChoice::default()
    }
    fn topology_hiding(&self, trunk: u16) -> bool {
        trunk == 0
    }
    fn any_topology_hiding(&self) -> bool {
        true
    }
}

#[test]
fn toward_an_ipv6_trunk_our_ipv6_host_is_written_bracketed() {
    use crate::transport::{Flow, Transport};
    let udp = |a: &str| Flow {
        transport: Transport::Udp,
        local: a.parse().unwrap(),
        conn: None,
    };
    let config = super::ProxyConfig {
        advertised: "127.0.0.1".into(),
        advertised_alternate: Some("2001:db8::1".into()),
        listeners: vec![udp("127.0.0.1:5060"), udp("[2001:db8::1]:5060")],
        timers: super::Timers::default(),
        limits: crate::message::Limits::default(),
        server_name: "Trunkgate/test".into(),
        dialog_timeout: Duration::from_secs(3600),
    };
    let mut p = super::Proxy::new(
        config,
        Arc::new(DualHiding),
        Arc::new(crate::metrics::ProxyMetrics::with_accounts(1, 0)),
    );
    let mut call = Call::new("dual", PBX, "[2001:db8::3]:5060");
    let now = std::time::Instant::now();
    p.handle_input(
        now,
        udp("127.0.0.1:5060"),
        PBX.parse().unwrap(),
        bytes::Bytes::from(crlf(&rich_invite(&mut call))),
    );
    let t = std::iter::from_fn(|| p.poll_transmit())
        .find(|t| t.destination.is_ipv6())
        .expect("INVITE to the trunk");
    let inv = SipMessage::parse(t.data, &crate::message::Limits::default()).unwrap();
    assert_hidden(&inv, &call.call_id);
    let contact = String::from_utf8_lossy(inv.first(HeaderName::Contact).unwrap()).into_owned();
    assert!(
        contact.starts_with("<sip:tg") && contact.ends_with("@[2001:db8::1]:5060>"),
        "{contact}"
    );
    assert_eq!(inv.from_value(), b"<sip:alice@[2001:db8::1]>;tag=ft-dual");
    assert_eq!(
        inv.first(HeaderName::PAssertedIdentity),
        Some(&b"\"Alice\" <sip:201@[2001:db8::1]>"[..])
    );
}
