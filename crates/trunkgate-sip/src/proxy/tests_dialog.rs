//! In-dialog routing by the book (RFC 3261 §12, §16.12): requests go to the leg's remote
//! target or the next Route, when that address belongs to the leg's own peer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::simnet::*;
use crate::message::Method;

/// An outbound call answered with `contact` as the callee's Contact; returns the call
/// (confirmed: the ACK went out and was taken from wherever it went).
fn answered_with_contact(net: &mut SimNet, id: &str, contact: &str) -> Call {
    let mut call = Call::new(id, PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&at_trunk, 200, "OK", "callee1", contact));
    net.settle();
    assert_eq!(net.take(PBX).last().and_then(|m| m.status()), Some(200));
    call.to_tag = Some("callee1".into());
    call
}

#[test]
fn requests_to_the_callee_go_to_its_contact_when_it_is_the_trunks() {
    let mut net = SimNet::new();
    let other_port = "127.0.0.3:5070";
    let mut call = answered_with_contact(&mut net, "contact-port", other_port);
    net.settle();
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    let ack = net.take_one(other_port);
    assert_eq!(ack.method(), Some(Method::Ack));
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(other_port);
    assert_eq!(bye.request_uri(), Some(&b"sip:127.0.0.3:5070"[..]));
    assert!(net.take(TRUNK).is_empty(), "nothing to the set-up address");
}

#[test]
fn a_contact_outside_the_trunk_is_not_followed() {
    let mut net = SimNet::new();
    // A Contact naming a host that is not the trunk's (another network, a private or
    // forged address): the trunk's traffic stays on the address the call was set up with.
    let mut call = answered_with_contact(&mut net, "contact-elsewhere", "10.9.9.9:5060");
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    assert_eq!(net.take_one(TRUNK).method(), Some(Method::Ack));
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK);
    // Addressed to the remote target all the same (the trunk routes on it).
    assert_eq!(bye.request_uri(), Some(&b"sip:10.9.9.9:5060"[..]));
    assert!(net.take("10.9.9.9:5060").is_empty());
}

#[test]
fn the_next_route_after_ours_is_the_next_hop() {
    let mut net = SimNet::new();
    let mut call = answered_with_contact(&mut net, "route-set", TRUNK);
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    net.take_one(TRUNK);
    // The PBX's route set (from Record-Route): us, then a proxy of the carrier's on .3:5080.
    let bye = call.caller_request("BYE").replace(
        "Max-Forwards: 70",
        &format!("Route: <sip:{PROXY};lr>, <sip:127.0.0.3:5080;lr>\r\nMax-Forwards: 70"),
    );
    net.send(PBX, &bye);
    net.settle();
    let at = net.take_one("127.0.0.3:5080");
    assert_eq!(at.method(), Some(Method::Bye));
    let routes: Vec<&[u8]> = at.values(crate::message::HeaderName::Route).collect();
    assert_eq!(
        routes,
        [&b"<sip:127.0.0.3:5080;lr>"[..]],
        "ours popped, theirs kept"
    );
}

#[test]
fn requests_to_the_caller_follow_a_refreshed_contact() {
    let mut net = SimNet::new();
    let mut call = answered_with_contact(&mut net, "refresh", TRUNK);
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    net.take_one(TRUNK);
    // The PBX moves its Contact to another port of its own address in a re-INVITE.
    let reinvite = call.caller_request("INVITE").replace(
        "Contact: <sip:alice@127.0.0.2:5060>",
        "Contact: <sip:alice@127.0.0.2:5090>",
    );
    net.send(PBX, &reinvite);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&at_trunk, 200, "OK", "callee1", TRUNK));
    net.settle();
    net.take(PBX);
    // The callee's BYE, as SIPp sends it (Request-URI at the proxy): to the new Contact.
    let route = format!("<sip:{PROXY};lr>");
    net.send(
        TRUNK,
        &call
            .callee_request("BYE", &route, 7)
            .replace("BYE sip:alice@127.0.0.2:5060", &format!("BYE sip:{PROXY}")),
    );
    net.settle();
    let bye = net.take_one("127.0.0.2:5090");
    assert_eq!(bye.method(), Some(Method::Bye));
}
