//! Deterministic scenarios of the core over [`super::simnet::SimNet`]: RFC 3261 call flows,
//! loss and retransmission, timeouts, cancellation, in-dialog routing. No sleeping: the
//! whole suite runs in milliseconds of real time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::simnet::*;
use crate::message::{HeaderName, Method, SipMessage};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Drive an outbound call up to confirmed: returns the INVITE the trunk saw.
fn establish(net: &mut SimNet, call: &mut Call) -> SipMessage {
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    // The trunk's answer comes within 200 ms: no 100 Trying is needed.
    assert!(net.take(PBX).is_empty());
    let at_trunk = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&at_trunk, 180, "Ringing", "callee1", TRUNK));
    net.send(TRUNK, &reply(&at_trunk, 200, "OK", "callee1", TRUNK));
    net.settle();
    let got = net.take(PBX);
    assert_eq!(
        got.iter().map(|m| m.status()).collect::<Vec<_>>(),
        vec![Some(180), Some(200)]
    );
    call.to_tag = Some("callee1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    let ack = net.take_one(TRUNK);
    assert_eq!(ack.method(), Some(Method::Ack));
    at_trunk
}

fn hangup_from_caller(net: &mut SimNet, call: &mut Call) {
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK);
    assert_eq!(bye.method(), Some(Method::Bye));
    net.send(TRUNK, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    let ok = net.take_one(PBX);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.cseq().1, Method::Bye);
}

fn assert_idle_after_timers(net: &mut SimNet) {
    assert_eq!(net.proxy.active_dialogs(), 0, "dialogs left");
    net.run_for(Duration::from_secs(40));
    assert_eq!(net.proxy.active_transactions(), 0, "transactions left");
    assert_eq!(net.metrics.transactions.load(Ordering::Relaxed), 0);
    assert_eq!(net.metrics.dialogs_total.load(Ordering::Relaxed), 0);
}

#[test]
fn basic_call_invite_180_200_ack_bye() {
    let mut net = SimNet::new();
    let mut call = Call::new("basic", PBX, TRUNK);
    let at_trunk = establish(&mut net, &mut call);

    // What the trunk saw: our Via on top, Record-Route, Max-Forwards decremented, the
    // Request-URI retargeted to the trunk, the body intact.
    let vias: Vec<_> = at_trunk.values(HeaderName::Via).collect();
    assert_eq!(vias.len(), 2);
    assert!(vias[0].starts_with(b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-tg-"));
    assert_eq!(
        at_trunk.first(HeaderName::RecordRoute),
        Some(&b"<sip:127.0.0.1:5060;lr>"[..])
    );
    assert_eq!(at_trunk.max_forwards(), Some(69));
    assert_eq!(
        at_trunk.request_uri(),
        Some(&b"sip:5551234@127.0.0.3:5060"[..])
    );
    assert_eq!(at_trunk.body(), b"v=0\r\n");
    assert_eq!(net.proxy.active_dialogs(), 1);
    assert_eq!(net.metrics.peers[2].dialogs[0].load(Ordering::Relaxed), 1);

    hangup_from_caller(&mut net, &mut call);
    assert_idle_after_timers(&mut net);
    assert_eq!(net.metrics.peers[2].dialogs[0].load(Ordering::Relaxed), 0);
}

#[test]
fn ack_and_bye_reach_the_callee_at_its_contact() {
    let mut net = SimNet::new();
    let mut call = Call::new("contact", PBX, TRUNK);
    establish(&mut net, &mut call);
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK);
    // The caller addressed the proxy (no Route); the proxy retargets to the callee Contact.
    assert_eq!(bye.request_uri(), Some(&b"sip:127.0.0.3:5060"[..]));
    assert_eq!(bye.values(HeaderName::Via).count(), 2);
}

#[test]
fn invite_lost_once_is_retransmitted_per_timer_a() {
    let mut net = SimNet::new();
    let mut first = true;
    net.drop_rule = Some(Box::new(move |_, to, text| {
        if to == addr(TRUNK) && text.starts_with("INVITE") && first {
            first = false;
            return true;
        }
        false
    }));
    let mut call = Call::new("lostinvite", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    assert_eq!(net.take(TRUNK).len(), 0);
    assert_eq!(net.dropped, 1);
    net.run_for(Duration::from_millis(500));
    let at_trunk = net.take_one(TRUNK);
    assert_eq!(at_trunk.method(), Some(Method::Invite));
    assert_eq!(net.metrics.retransmissions.load(Ordering::Relaxed), 1);
    net.send(TRUNK, &reply(&at_trunk, 200, "OK", "c", TRUNK));
    net.settle();
    let got = net.take(PBX);
    assert_eq!(got.last().and_then(|m| m.status()), Some(200));
    // No more retransmissions once answered.
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.take(TRUNK).len(), 0);
}

#[test]
fn lost_200_is_retransmitted_by_the_uas_and_acked_end_to_end() {
    let mut net = SimNet::new();
    let mut dropped_ok = false;
    net.drop_rule = Some(Box::new(move |_, to, text| {
        if to == addr(PBX) && text.starts_with("SIP/2.0 200") && !dropped_ok {
            dropped_ok = true;
            return true;
        }
        false
    }));
    let mut call = Call::new("lost200", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    net.take(PBX);
    let at_trunk = net.take_one(TRUNK);
    let ok = reply(&at_trunk, 200, "OK", "c200", TRUNK);
    net.send(TRUNK, &ok);
    net.settle();
    assert_eq!(net.take(PBX).len(), 0, "the first 200 was lost");
    // The UAS retransmits its 2xx (RFC 3261 §13.3.1.4) after T1.
    net.run_for(Duration::from_millis(500));
    net.send(TRUNK, &ok);
    net.settle();
    let got = net.take_one(PBX);
    assert_eq!(got.status(), Some(200));
    call.to_tag = Some("c200".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    assert_eq!(net.take_one(TRUNK).method(), Some(Method::Ack));
    hangup_from_caller(&mut net, &mut call);
    assert_idle_after_timers(&mut net);
}

#[test]
fn cancel_before_answer_gives_487_to_the_caller() {
    let mut net = SimNet::new();
    let mut call = Call::new("cancel", PBX, TRUNK);
    let (invite, branch) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    net.take(PBX);
    let at_trunk = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&at_trunk, 180, "Ringing", "cx", TRUNK));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(180));

    let cancel = format!(
        "CANCEL sip:5551234@{PROXY} SIP/2.0
Via: SIP/2.0/UDP {PBX};branch={branch}
Max-Forwards: 70
From: <sip:alice@{PBX}>;tag={}
To: <sip:5551234@{PROXY}>
Call-ID: {}
CSeq: 1 CANCEL
Content-Length: 0
",
        call.from_tag, call.call_id
    );
    net.send(PBX, &cancel);
    net.settle();
    let ok = net.take_one(PBX);
    assert_eq!((ok.status(), ok.cseq().1), (Some(200), Method::Cancel));
    let down = net.take_one(TRUNK);
    assert_eq!(down.method(), Some(Method::Cancel));
    // Same branch as the INVITE we sent (RFC 3261 §9.1).
    assert_eq!(down.top_via().branch(), at_trunk.top_via().branch());
    net.send(TRUNK, &reply(&down, 200, "OK", "cx", ""));
    net.send(
        TRUNK,
        &reply(&at_trunk, 487, "Request Terminated", "cx", ""),
    );
    net.settle();
    let ack = net.take_one(TRUNK);
    assert_eq!(ack.method(), Some(Method::Ack));
    let terminated = net.take_one(PBX);
    assert_eq!(terminated.status(), Some(487));
    // The caller's ACK for the 487 is hop by hop: absorbed here.
    let ack_up = format!(
        "ACK sip:5551234@{PROXY} SIP/2.0
Via: SIP/2.0/UDP {PBX};branch={branch}
Max-Forwards: 70
From: <sip:alice@{PBX}>;tag={}
To: <sip:5551234@{PROXY}>;tag=cx
Call-ID: {}
CSeq: 1 ACK
Content-Length: 0
",
        call.from_tag, call.call_id
    );
    net.send(PBX, &ack_up);
    net.settle();
    assert_eq!(net.take(TRUNK).len(), 0);
    assert_idle_after_timers(&mut net);
}

#[test]
fn busy_486_is_passed_back_and_acked_hop_by_hop() {
    let mut net = SimNet::new();
    let mut call = Call::new("busy", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    net.take(PBX);
    let at_trunk = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&at_trunk, 486, "Busy Here", "b", ""));
    net.settle();
    let ack = net.take_one(TRUNK);
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(ack.to_tag(), Some(&b"b"[..]));
    let busy = net.take_one(PBX);
    assert_eq!(busy.status(), Some(486));
    assert_eq!(busy.values(HeaderName::Via).count(), 1);
    // Our 486 is retransmitted (Timer G) until the caller ACKs.
    net.run_for(Duration::from_millis(600));
    assert_eq!(net.take_one(PBX).status(), Some(486));
    assert_eq!(net.proxy.active_dialogs(), 0);
    // A retransmitted 486 from the trunk gets our ACK again and is not relayed twice.
    net.send(TRUNK, &reply(&at_trunk, 486, "Busy Here", "b", ""));
    net.settle();
    assert_eq!(net.take_one(TRUNK).method(), Some(Method::Ack));
    assert_idle_after_timers(&mut net);
}

#[test]
fn reinvite_in_dialog_passes_through() {
    let mut net = SimNet::new();
    let mut call = Call::new("reinvite", PBX, TRUNK);
    establish(&mut net, &mut call);
    let mut reinvite = call.caller_request("INVITE");
    reinvite = reinvite.replace(
        "Content-Length: 0\n",
        "Content-Type: application/sdp\nContent-Length: 5\n\nv=0",
    );
    net.send(PBX, &reinvite);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    assert_eq!(at_trunk.method(), Some(Method::Invite));
    assert_eq!(at_trunk.to_tag(), Some(&b"callee1"[..]));
    net.send(TRUNK, &reply(&at_trunk, 200, "OK", "", TRUNK));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(200));
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    assert_eq!(net.take_one(TRUNK).method(), Some(Method::Ack));
    // A re-INVITE refused does not end the call.
    net.send(PBX, &call.caller_request("INVITE"));
    net.settle();
    net.take(PBX);
    let again = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&again, 488, "Not Acceptable Here", "", ""));
    net.settle();
    assert_eq!(net.take(PBX).last().and_then(|m| m.status()), Some(488));
    assert_eq!(net.take_one(TRUNK).method(), Some(Method::Ack));
    assert_eq!(net.proxy.active_dialogs(), 1);
    hangup_from_caller(&mut net, &mut call);
    assert_idle_after_timers(&mut net);
}

#[test]
fn bye_from_the_callee_follows_record_route() {
    let mut net = SimNet::new();
    let mut call = Call::new("calleebye", PBX, TRUNK);
    let at_trunk = establish(&mut net, &mut call);
    let route =
        String::from_utf8_lossy(at_trunk.first(HeaderName::RecordRoute).unwrap()).to_string();
    net.send(TRUNK, &call.callee_request("BYE", &route, 1));
    net.settle();
    let bye = net.take_one(PBX);
    assert_eq!(bye.method(), Some(Method::Bye));
    assert_eq!(bye.first(HeaderName::Route), None, "our Route is popped");
    assert_eq!(bye.request_uri(), Some(&b"sip:alice@127.0.0.2:5060"[..]));
    net.send(PBX, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    assert_eq!(net.take_one(TRUNK).status(), Some(200));
    assert_idle_after_timers(&mut net);
}

#[test]
fn inbound_call_goes_to_the_pbx() {
    let mut net = SimNet::new();
    let mut call = Call::new("inbound", TRUNK, PBX);
    let (invite, _) = call.invite();
    net.send(TRUNK, &invite);
    net.settle();
    let at_pbx = net.take_one(PBX);
    assert_eq!(
        at_pbx.request_uri(),
        Some(&b"sip:5551234@127.0.0.2:5060"[..])
    );
    assert_eq!(
        net.metrics.peers[2].dialogs[1].load(Ordering::Relaxed),
        1,
        "inbound on trunk 0"
    );
    net.send(PBX, &reply(&at_pbx, 200, "OK", "p", PBX));
    net.settle();
    assert_eq!(net.take_one(TRUNK).status(), Some(200));
    call.to_tag = Some("p".into());
    net.send(TRUNK, &call.caller_request("ACK"));
    net.settle();
    assert_eq!(net.take_one(PBX).method(), Some(Method::Ack));
    net.send(TRUNK, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(PBX);
    net.send(PBX, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    assert_eq!(net.take_one(TRUNK).status(), Some(200));
    assert_idle_after_timers(&mut net);
}

#[test]
fn no_answer_at_all_gives_408_after_timer_b() {
    let mut net = SimNet::new();
    let mut call = Call::new("silent", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    assert!(net.take(PBX).is_empty());
    // Nothing from downstream within 200 ms: 100 Trying stops the caller retransmitting.
    net.run_for(Duration::from_millis(200));
    assert_eq!(net.take_one(PBX).status(), Some(100));
    net.run_for(Duration::from_millis(31_700));
    // Timer A: 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s.
    assert_eq!(net.take(TRUNK).len(), 7);
    assert_eq!(net.take(PBX).len(), 0);
    net.run_for(Duration::from_millis(200));
    let timeout = net.take_one(PBX);
    assert_eq!(timeout.status(), Some(408));
    assert!(timeout.to_tag().is_some());
    assert_eq!(net.metrics.timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(net.proxy.active_dialogs(), 0);
}

#[test]
fn non_invite_timeout_gives_408_after_timer_f() {
    let mut net = SimNet::new();
    let mut call = Call::new("options", PBX, TRUNK);
    let branch = call.next_branch();
    let options = format!(
        "OPTIONS sip:5551234@{PROXY} SIP/2.0
Via: SIP/2.0/UDP {PBX};branch={branch}
Max-Forwards: 70
From: <sip:alice@{PBX}>;tag=o1
To: <sip:5551234@{PROXY}>
Call-ID: opt@test
CSeq: 1 OPTIONS
Content-Length: 0
"
    );
    net.send(PBX, &options);
    net.run_for(Duration::from_secs(33));
    // Timer E: 0, .5, 1.5, 3.5, 7.5, then every T2 = 4 s up to 32 s.
    assert!(net.take(TRUNK).len() >= 10);
    assert_eq!(net.take_one(PBX).status(), Some(408));
}

#[test]
fn options_to_trunkgate_itself_is_answered() {
    let mut net = SimNet::new();
    for from in [PBX, TRUNK] {
        let msg = format!(
            "OPTIONS sip:{PROXY} SIP/2.0
Via: SIP/2.0/UDP {from};branch=z9hG4bK-ka
Max-Forwards: 70
From: <sip:ping@{from}>;tag=k
To: <sip:{PROXY}>
Call-ID: ka@test
CSeq: 7 OPTIONS
Content-Length: 0
"
        );
        net.send(from, &msg);
        net.settle();
        let ok = net.take_one(from);
        assert_eq!(ok.status(), Some(200));
        assert!(ok.first(HeaderName::Other).is_some() || !ok.as_bytes().is_empty());
    }
    assert_eq!(net.proxy.active_transactions(), 0);
}

#[test]
fn unknown_source_gets_nothing_and_no_state() {
    let mut net = SimNet::new();
    let mut call = Call::new("stranger", STRANGER, TRUNK);
    let (invite, _) = call.invite();
    net.send(STRANGER, &invite);
    net.settle();
    assert!(net.take(STRANGER).is_empty());
    assert!(net.take(TRUNK).is_empty());
    assert_eq!(net.proxy.active_transactions(), 0);
    assert_eq!(net.proxy.active_dialogs(), 0);
    assert_eq!(net.metrics.unknown_source.load(Ordering::Relaxed), 1);
}

#[test]
fn max_forwards_zero_gets_483_and_our_own_via_gets_482() {
    let mut net = SimNet::new();
    let mut call = Call::new("hops", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite.replace("Max-Forwards: 70", "Max-Forwards: 0"));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(483));
    let mut call = Call::new("loop", PBX, TRUNK);
    let (invite, _) = call.invite();
    let looped = invite.replacen(
        "Via: ",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-tg-1-2\nVia: ",
        1,
    );
    net.send(PBX, &looped);
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(482));
    assert!(net.take(TRUNK).is_empty());
}

#[test]
fn retransmitted_invite_is_absorbed_and_answered_with_the_last_provisional() {
    let mut net = SimNet::new();
    let mut call = Call::new("retrans", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    net.take(PBX);
    let at_trunk = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&at_trunk, 180, "Ringing", "r", TRUNK));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(180));
    net.send(PBX, &invite);
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(180));
    assert!(
        net.take(TRUNK).is_empty(),
        "retransmission not forwarded again"
    );
}

#[test]
fn shutdown_refuses_new_invites_but_keeps_calls() {
    let mut net = SimNet::new();
    let mut call = Call::new("before", PBX, TRUNK);
    establish(&mut net, &mut call);
    net.proxy.begin_shutdown();
    let mut late = Call::new("after", PBX, TRUNK);
    let (invite, _) = late.invite();
    net.send(PBX, &invite);
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(503));
    hangup_from_caller(&mut net, &mut call);
    assert_eq!(net.proxy.active_dialogs(), 0);
}

#[test]
fn garbage_never_panics_and_is_counted() {
    let mut net = SimNet::new();
    let mut call = Call::new("g", PBX, TRUNK);
    let (invite, _) = call.invite();
    let bytes = invite.as_bytes();
    let mut seed = 0x1234_5678_u64;
    for i in 0..3000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut data = bytes.to_vec();
        match i % 3 {
            0 => data.truncate((seed as usize) % bytes.len()),
            1 => {
                let at = (seed as usize) % data.len();
                data[at] = (seed >> 32) as u8;
            }
            _ => {
                data = (0..(seed % 200))
                    .map(|k| (seed >> (k % 56)) as u8)
                    .collect()
            }
        }
        net.proxy.handle_input(
            net.now,
            crate::transport::Flow {
                transport: crate::transport::Transport::Udp,
                local: addr(PROXY),
                conn: None,
            },
            addr(PBX),
            bytes::Bytes::from(data),
        );
        while net.proxy.poll_transmit().is_some() {}
    }
    assert!(net.metrics.parse_errors.load(Ordering::Relaxed) > 0);
    net.run_for(Duration::from_secs(200));
    assert_eq!(net.proxy.active_dialogs(), 0);
}

#[test]
fn a_challenged_bye_keeps_the_call_until_the_authenticated_bye() {
    let mut net = SimNet::new();
    let mut call = Call::new("authbye", PBX, TRUNK);
    establish(&mut net, &mut call);
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK);
    net.send(
        TRUNK,
        &reply(&bye, 407, "Proxy Authentication Required", "", ""),
    );
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(407));
    assert_eq!(
        net.proxy.active_dialogs(),
        1,
        "a challenge does not end the call"
    );
    hangup_from_caller(&mut net, &mut call);
    assert_idle_after_timers(&mut net);
}

#[test]
fn a_call_whose_bye_never_comes_is_forgotten_after_the_dialog_timeout() {
    let mut net = SimNet::new();
    let mut call = Call::new("lostbye", PBX, TRUNK);
    establish(&mut net, &mut call);
    // Activity pushes the expiry back.
    net.run_for(Duration::from_secs(11 * 3600));
    net.send(PBX, &call.caller_request("INFO"));
    net.settle();
    let info = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&info, 200, "OK", "", ""));
    net.settle();
    net.take(PBX);
    net.run_for(Duration::from_secs(2 * 3600));
    assert_eq!(net.proxy.active_dialogs(), 1);
    net.run_for(Duration::from_secs(11 * 3600));
    assert_eq!(net.proxy.active_dialogs(), 0);
    assert_eq!(net.metrics.dialogs_expired.load(Ordering::Relaxed), 1);
    assert_eq!(net.metrics.peers[2].dialogs[0].load(Ordering::Relaxed), 0);
}

#[test]
fn a_481_to_an_in_dialog_request_ends_the_call() {
    let mut net = SimNet::new();
    let mut call = Call::new("gone", PBX, TRUNK);
    establish(&mut net, &mut call);
    net.send(PBX, &call.caller_request("UPDATE"));
    net.settle();
    let update = net.take_one(TRUNK);
    net.send(
        TRUNK,
        &reply(&update, 481, "Call/Transaction Does Not Exist", "", ""),
    );
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(481));
    assert_eq!(net.proxy.active_dialogs(), 0);
}

#[test]
fn an_invite_at_the_header_limit_can_still_be_cancelled() {
    let mut net = SimNet::new();
    let mut call = Call::new("fat", PBX, TRUNK);
    let (invite, branch) = call.invite();
    // Fill up to exactly the limit (128 headers): the forwarded copy has 2 more.
    let have = SipMessage::parse(
        bytes::Bytes::from(crlf(&invite)),
        &crate::message::Limits::default(),
    )
    .unwrap()
    .headers()
    .len();
    let mut extra = String::new();
    for i in 0..(128 - have) {
        extra.push_str(&format!("X-Fill-{i}: x\n"));
    }
    let fat = invite.replacen(
        "Max-Forwards: 70\n",
        &format!("Max-Forwards: 70\n{extra}"),
        1,
    );
    net.send(PBX, &fat);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&at_trunk, 180, "Ringing", "f", TRUNK));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(180));
    let cancel = format!(
        "CANCEL sip:5551234@{PROXY} SIP/2.0\nVia: SIP/2.0/UDP {PBX};branch={branch}\nFrom: <sip:alice@{PBX}>;tag={}\nTo: <sip:5551234@{PROXY}>\nCall-ID: {}\nCSeq: 1 CANCEL\nContent-Length: 0\n",
        call.from_tag, call.call_id
    );
    net.send(PBX, &cancel);
    net.settle();
    assert_eq!(net.take_one(TRUNK).method(), Some(Method::Cancel));
    // The trunk never answers the INVITE: it is given up 64*T1 after the CANCEL.
    net.run_for(Duration::from_secs(40));
    let got = net.take(PBX);
    assert!(
        got.iter().any(|m| m.status() == Some(487)),
        "{}",
        describe(&got)
    );
    net.run_for(Duration::from_secs(40));
    assert_eq!(net.proxy.active_transactions(), 0);
    assert_eq!(net.proxy.active_dialogs(), 0);
}

#[test]
fn stale_timers_are_compacted_once_calls_are_over() {
    let mut net = SimNet::new();
    for i in 0..3000 {
        let mut call = Call::new(&format!("many{i}"), PBX, TRUNK);
        establish(&mut net, &mut call);
        hangup_from_caller(&mut net, &mut call);
    }
    // Every call left a Timer C entry (180 s) and a few transaction timers behind.
    net.run_for(Duration::from_secs(40));
    assert_eq!(net.proxy.active_transactions(), 0);
    assert!(
        net.proxy.timers.len() < 4096 + 64,
        "stale timers kept: {}",
        net.proxy.timers.len()
    );
}

#[test]
fn a_retransmitted_2xx_to_the_callees_reinvite_goes_back_to_the_callee() {
    let mut net = SimNet::new();
    let mut call = Call::new("calleereinvite", PBX, TRUNK);
    let at_trunk = establish(&mut net, &mut call);
    let route =
        String::from_utf8_lossy(at_trunk.first(HeaderName::RecordRoute).unwrap()).to_string();
    net.send(TRUNK, &call.callee_request("INVITE", &route, 2));
    net.settle();
    let at_pbx = net.take_one(PBX);
    assert_eq!(at_pbx.method(), Some(Method::Invite));
    let ok = reply(&at_pbx, 200, "OK", "", PBX);
    net.send(PBX, &ok);
    net.settle();
    assert_eq!(net.take_one(TRUNK).status(), Some(200));
    // The PBX did not see an ACK yet and retransmits its 2xx: it must reach the callee
    // again (the client transaction is gone; the dialog routes it by From tag).
    net.send(PBX, &ok);
    net.settle();
    assert_eq!(net.take_one(TRUNK).status(), Some(200));
    assert!(net.take(PBX).is_empty());
}
