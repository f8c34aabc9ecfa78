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

#[test]
fn a_second_2xx_from_another_fork_gets_a_dialog_of_its_own() {
    let mut net = SimNet::new();
    let mut call = Call::new("fork", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    // The carrier forks: two UAs answer, the second from another port of its network.
    let fork_b = "127.0.0.3:5071";
    net.send(TRUNK, &reply(&at_trunk, 200, "OK", "tag-a", TRUNK));
    net.settle();
    net.send(fork_b, &reply(&at_trunk, 200, "OK", "tag-b", fork_b));
    net.settle();
    let got = net.take(PBX);
    assert_eq!(got.len(), 2, "both answers relayed: {}", describe(&got));
    assert_eq!(net.sessions(0), 1, "one call, one session");
    // The PBX ACKs both and hangs up the second answer: each goes to its own UA.
    // (Its own branch numbers: a branch reused by the first call's BYE would be taken for a
    // retransmission.)
    let mut second = Call {
        to_tag: Some("tag-b".into()),
        branch_seq: 100,
        ..call.clone()
    };
    call.to_tag = Some("tag-a".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.send(PBX, &second.caller_request("ACK"));
    net.settle();
    assert_eq!(net.take_one(TRUNK).method(), Some(Method::Ack));
    assert_eq!(net.take_one(fork_b).method(), Some(Method::Ack));
    second.cseq = call.cseq + 10;
    net.send(PBX, &second.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(fork_b);
    assert_eq!(bye.method(), Some(Method::Bye));
    assert!(
        net.take(TRUNK).is_empty(),
        "the answered call is not touched"
    );
    net.send(fork_b, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    assert_eq!(net.take(PBX).len(), 1);
    // The first answer's call is still up, and ends normally.
    assert_eq!(net.sessions(0), 1);
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    assert_eq!(net.sessions(0), 0);
    assert_eq!(net.proxy.active_dialogs(), 0);
}

#[test]
fn notify_after_an_out_of_dialog_refer_reaches_the_referrer() {
    let mut net = SimNet::new();
    let mut call = Call::new("refer", PBX, TRUNK);
    let (invite, _) = call.invite();
    let refer = invite
        .replace("INVITE sip:", "REFER sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 REFER")
        .replace(
            "Content-Type: application/sdp\nContent-Length: 5\n\nv=0\n",
            "Refer-To: <sip:5550000@127.0.0.3>\nContent-Length: 0\n\n",
        );
    assert!(refer.contains("Refer-To"), "{refer}");
    net.send(PBX, &refer);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    assert_eq!(at_trunk.method(), Some(Method::Refer));
    net.send(TRUNK, &reply(&at_trunk, 202, "Accepted", "notifier", TRUNK));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(202));
    // The notifier's NOTIFY: From = its tag, To = the referrer's.
    call.to_tag = Some("notifier".into());
    let notify = call
        .callee_request("NOTIFY", &format!("<sip:{PROXY};lr>"), 1)
        .replace(
            "Content-Length: 0",
            "Event: refer\r\nSubscription-State: terminated;reason=noresource\r\nContent-Length: 0",
        );
    net.send(TRUNK, &notify);
    net.settle();
    let at_pbx = net.take_one(PBX);
    assert_eq!(at_pbx.method(), Some(Method::Notify), "forwarded, not 481");
    net.send(PBX, &reply(&at_pbx, 200, "OK", "", ""));
    net.settle();
    assert_eq!(net.take_one(TRUNK).status(), Some(200));
    assert_eq!(net.sessions(0), 0, "a subscription is no session");
    assert_eq!(net.proxy.active_dialogs(), 0, "and no call");
    // Forgotten after its Expires (3600 s by default) plus grace: nothing left.
    net.run_for(std::time::Duration::from_secs(3700));
    assert!(
        net.proxy_is_idle(),
        "state left after the subscription expired"
    );
}

#[test]
fn a_refused_subscribe_leaves_no_dialog() {
    let mut net = SimNet::new();
    let call = Call::new("subscribe-refused", PBX, TRUNK);
    let mut c = call.clone();
    let (invite, _) = c.invite();
    let subscribe = invite
        .replace("INVITE sip:", "SUBSCRIBE sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 SUBSCRIBE")
        .replace(
            "Content-Type: application/sdp\nContent-Length: 5\n\nv=0\n",
            "Event: presence\nExpires: 60\nContent-Length: 0\n\n",
        );
    net.send(PBX, &subscribe);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&at_trunk, 489, "Bad Event", "t", ""));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(489));
    net.run_for(std::time::Duration::from_secs(40));
    assert!(net.proxy_is_idle());
}

#[test]
fn a_response_whose_tcp_connection_closed_goes_to_the_via_sent_by_port() {
    let mut net = SimNet::with_tcp();
    let mut call = Call::new("tcp-gone", PBX, TRUNK);
    let (invite, _) = call.invite();
    let invite = invite.replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    // From the PBX's ephemeral port; its Via says it listens on 5060.
    net.send_tcp("127.0.0.2:40123", 7, &invite);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    net.close_tcp(7);
    net.send(TRUNK, &reply(&at_trunk, 486, "Busy Here", "b", ""));
    net.settle();
    let upstream: Vec<_> = net
        .sent_flows
        .iter()
        .filter(|(to, _)| to.ip() == addr(PBX).ip())
        .collect();
    assert_eq!(upstream.len(), 1, "{upstream:?}");
    let (to, flow) = upstream[0];
    assert_eq!(*to, addr(PBX), "the sent-by port, not 40123");
    assert_eq!(flow.transport, crate::transport::Transport::Tcp);
    assert_eq!(flow.conn, None, "a new connection");
    assert_eq!(net.take_one(PBX).status(), Some(486));
}
