//! SIP over TLS in the core (issue 12): the core sees TLS as one more reliable stream
//! transport. A call from the PBX over UDP to a trunk over TLS carries `SIP/2.0/TLS` in
//! our Via, a double Record-Route (RFC 5658) whose trunk-side entry says `transport=tls`
//! (`sips:` for a `sips:` request), is never retransmitted, and follows the connection
//! the trunk answered on; a failed handshake (the shell's `transport_failed`) fails the
//! call over at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::simnet::*;
use crate::message::{HeaderName, Method, SipMessage};
use crate::routing::FailoverPolicy;
use crate::transport::{ConnId, Transport};
use std::time::Duration;

fn tls_routing(failover: FailoverPolicy) -> TestRouting {
    TestRouting {
        failover,
        first_transport: Some(Transport::Tls),
        ..TestRouting::default()
    }
}

fn values(msg: &SipMessage, name: HeaderName) -> Vec<String> {
    msg.values(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The flows of every transmit to `to` so far.
fn flows_to(net: &SimNet, to: &str) -> Vec<crate::transport::Flow> {
    net.sent_flows
        .iter()
        .filter(|(d, _)| *d == addr(to))
        .map(|(_, f)| *f)
        .collect()
}

#[test]
fn a_call_to_a_tls_trunk_says_tls_in_via_and_record_route_and_is_never_retransmitted() {
    let mut net = SimNet::with_tls(tls_routing(FailoverPolicy::NONE));
    let mut call = Call::new("tls-out", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    let via = values(&at_trunk, HeaderName::Via);
    assert!(
        via[0].starts_with("SIP/2.0/TLS 127.0.0.1:5061;branch=") && via[0].ends_with(";alias"),
        "our Via over TLS offers the connection for reuse (RFC 5923): {via:?}"
    );
    let rr = values(&at_trunk, HeaderName::RecordRoute);
    assert_eq!(
        rr,
        vec![
            "<sip:127.0.0.1:5061;transport=tls;lr>".to_owned(),
            "<sip:127.0.0.1:5060;lr>".to_owned()
        ],
        "double Record-Route: the trunk's side over TLS first"
    );
    let flows = flows_to(&net, TRUNK);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].transport, Transport::Tls);
    assert_eq!(flows[0].local, addr(PROXY_TLS));
    assert_eq!(
        flows[0].conn, None,
        "any connection to the trunk, or a new one"
    );
    // Reliable: no Timer A retransmission in 10 s of silence.
    net.run_for(Duration::from_secs(10));
    assert!(net.take(TRUNK).is_empty(), "retransmitted over TLS");
    // The trunk answers on connection 4 (the one the shell opened to it), its Contact
    // where it listens.
    net.send_stream(
        Transport::Tls,
        TRUNK,
        4,
        &reply(&at_trunk, 200, "OK", "t1", "127.0.0.3:5060;transport=tls"),
    );
    net.settle();
    let ok = net.take(PBX);
    assert_eq!(ok.last().and_then(SipMessage::status), Some(200));
    assert_eq!(
        values(ok.last().unwrap(), HeaderName::RecordRoute).len(),
        2,
        "the PBX sees both Record-Routes"
    );
    call.to_tag = Some("t1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let at_trunk = net.take(TRUNK);
    let methods: Vec<_> = at_trunk.iter().map(SipMessage::method).collect();
    assert_eq!(methods, vec![Some(Method::Ack), Some(Method::Bye)]);
    for flow in flows_to(&net, TRUNK).iter().skip(1) {
        assert_eq!(flow.transport, Transport::Tls);
        assert_eq!(
            flow.conn,
            Some(ConnId(4)),
            "in-dialog requests reuse the connection the trunk answered on"
        );
    }
    let bye = at_trunk.last().unwrap();
    net.send_stream(Transport::Tls, TRUNK, 4, &reply(bye, 200, "OK", "", ""));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(200));
    net.run_for(Duration::from_secs(40));
    assert!(net.proxy_is_idle(), "state left after the TLS call");
}

#[test]
fn a_sips_request_gets_a_sips_record_route_on_the_tls_side() {
    let mut net = SimNet::with_tls(tls_routing(FailoverPolicy::NONE));
    let mut call = Call::new("tls-sips", PBX, TRUNK);
    let (invite, _) = call.invite();
    let invite = invite.replacen("INVITE sip:", "INVITE sips:", 1);
    net.send(PBX, &invite);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    assert!(
        at_trunk
            .request_uri()
            .is_some_and(|u| u.starts_with(b"sips:")),
        "the scheme is kept"
    );
    let rr = values(&at_trunk, HeaderName::RecordRoute);
    assert_eq!(rr[0], "<sips:127.0.0.1:5061;lr>", "{rr:?}");
    // The UDP side cannot be sips: it keeps sip: (RFC 5630 §3.1.3 is about TLS hops).
    assert_eq!(rr[1], "<sip:127.0.0.1:5060;lr>", "{rr:?}");
}

#[test]
fn a_failed_handshake_fails_over_to_the_next_trunk_at_once() {
    let mut net = SimNet::with_tls(tls_routing(FailoverPolicy::standard()));
    let mut call = Call::new("tls-mismatch", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    let _ = net.take_one(TRUNK);
    // The shell's handshake with carrier-a failed (certificate for another name).
    net.transport_failed(Transport::Tls, TRUNK);
    net.settle();
    let at_b = net.take_one(TRUNK_B);
    assert_eq!(at_b.method(), Some(Method::Invite));
    let via = values(&at_b, HeaderName::Via);
    assert!(
        via[0].starts_with("SIP/2.0/UDP"),
        "carrier-b over UDP: {via:?}"
    );
    assert_eq!(
        net.metrics
            .transport_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // A failure reported for the same address over another transport is not this branch's.
    net.transport_failed(Transport::Tcp, TRUNK_B);
    net.settle();
    assert!(net.take(PBX).iter().all(|m| m.status() == Some(100)));
}

#[test]
fn a_call_from_a_tls_trunk_is_answered_on_its_connection() {
    // Calls from trunks go to the PBX over the transport they came in on unless the PBX
    // names one (`transport = "auto"`, the default, as here): so a policy with TLS trunks
    // and a UDP PBX says `transport = "udp"` in [pbx] (docs/policy.md).
    let mut net = SimNet::with_tls(TestRouting::default());
    let mut call = Call::new("tls-in", TRUNK, PBX);
    let (invite, _) = call.invite();
    let invite = invite.replace("SIP/2.0/UDP 127.0.0.3:5060", "SIP/2.0/TLS 127.0.0.3:5061");
    net.send_stream(Transport::Tls, "127.0.0.3:40001", 9, &invite);
    net.settle();
    let upstream = flows_to(&net, "127.0.0.3:40001");
    assert!(
        upstream
            .iter()
            .all(|f| f.transport == Transport::Tls && f.conn == Some(ConnId(9))),
        "100 Trying goes back on connection 9: {upstream:?}"
    );
    // Auto: the PBX is reached over TLS too, from our TLS listener.
    let at_pbx = net.take_one(PBX);
    let via = values(&at_pbx, HeaderName::Via);
    assert!(via[0].starts_with("SIP/2.0/TLS 127.0.0.1:5061"), "{via:?}");
}
