//! Digest on the PBX's behalf over [`super::simnet::SimNet`]: a trunk's 401/407 is answered
//! with CSeq + 1 and credentials, the PBX never sees it, and the dialog's CSeqs are mapped
//! per leg in both directions for the rest of the call.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::simnet::*;
use crate::digest::{Credentials, Secret};
use crate::message::{Method, SipMessage};
use crate::routing::{CodeSet, FailoverPolicy};
use md5::{Digest as _, Md5};
use std::sync::atomic::Ordering;
use std::time::Duration;

const PASSWORD: &str = "s3cret-test-pw";

fn net_with_auth(failover: FailoverPolicy) -> SimNet {
    let mut net = SimNet::with_failover(failover);
    net.proxy.set_trunk_credentials(
        0,
        Some(Credentials {
            user: "acct-a".into(),
            password: Secret::new(PASSWORD),
            realm: None,
        }),
    );
    net
}

fn challenge(req: &SipMessage, code: u16, extra: &str) -> String {
    let (header, reason) = match code {
        407 => ("Proxy-Authenticate", "Proxy Authentication Required"),
        _ => ("WWW-Authenticate", "Unauthorized"),
    };
    let text = reply(req, code, reason, "ch", "");
    let line = format!(
        "{header}: Digest realm=\"carrier-a\", nonce=\"n-{}\", qop=\"auth\"{extra}\r\n",
        req.cseq().0
    );
    text.replacen("Content-Length: 0", &format!("{line}Content-Length: 0"), 1)
}

fn param(value: &str, name: &str) -> String {
    let start = value.find(&format!("{name}=")).unwrap() + name.len() + 1;
    let rest = value[start..].trim_start_matches('"');
    rest.split(['"', ',']).next().unwrap().trim().to_string()
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Check the digest answer `req` carries in `header` against RFC 2617 arithmetic.
fn assert_digest(req: &SipMessage, header: &[u8], password: &str) {
    let value = String::from_utf8(req.first_named(header).unwrap().to_vec()).unwrap();
    assert_eq!(param(&value, "username"), "acct-a");
    assert_eq!(param(&value, "realm"), "carrier-a");
    assert_eq!(param(&value, "qop"), "auth");
    assert_eq!(param(&value, "nc"), "00000001");
    let method = std::str::from_utf8(req.method_token().unwrap()).unwrap();
    let uri = std::str::from_utf8(req.request_uri().unwrap()).unwrap();
    assert_eq!(param(&value, "uri"), uri);
    let ha1 = md5_hex(&format!("acct-a:carrier-a:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let expected = md5_hex(&format!(
        "{ha1}:{}:00000001:{}:auth:{ha2}",
        param(&value, "nonce"),
        param(&value, "cnonce")
    ));
    assert_eq!(param(&value, "response"), expected);
    assert!(
        !value.contains(password),
        "the password itself is never sent"
    );
}

fn statuses(msgs: &[SipMessage]) -> Vec<Option<u16>> {
    msgs.iter().map(SipMessage::status).collect()
}

fn answered(net: &SimNet) -> u64 {
    net.metrics.peers[2].auth_answered.load(Ordering::Relaxed)
}

fn refused(net: &SimNet) -> u64 {
    net.metrics.peers[2].auth_refused.load(Ordering::Relaxed)
}

fn assert_idle(net: &mut SimNet) {
    assert_eq!(net.proxy.active_dialogs(), 0, "dialogs left");
    net.run_for(Duration::from_secs(200));
    assert_eq!(net.proxy.active_transactions(), 0, "transactions left");
    assert_eq!(net.proxy.trunk_sessions(0), 0);
    assert_eq!(net.proxy.trunk_sessions(1), 0);
}

/// PBX → carrier-a: the INVITE is challenged with 407; returns the re-sent INVITE.
fn challenged_invite(net: &mut SimNet, call: &mut Call) -> SipMessage {
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    let first = net.take_one(TRUNK);
    assert_eq!(first.cseq().0, 1);
    net.send(TRUNK, &challenge(&first, 407, ""));
    net.settle();
    let at_a = net.take(TRUNK);
    assert_eq!(
        at_a.len(),
        2,
        "ACK for the 407, the INVITE again: {}",
        describe(&at_a)
    );
    assert_eq!(at_a[0].method(), Some(Method::Ack));
    assert_eq!(
        at_a[0].cseq().0,
        1,
        "the 407's ACK keeps the challenged CSeq"
    );
    let again = at_a[1].clone();
    assert_eq!(again.method(), Some(Method::Invite));
    assert_eq!(again.cseq().0, 2, "CSeq + 1 on carrier-a's leg");
    assert_eq!(again.call_id(), first.call_id());
    assert_eq!(again.from_tag(), first.from_tag());
    assert_ne!(again.top_via().branch(), first.top_via().branch());
    assert_eq!(again.body(), first.body());
    assert_digest(&again, b"Proxy-Authorization", PASSWORD);
    assert!(net.take(PBX).iter().all(|m| m.status() == Some(100)));
    assert!(
        net.take(TRUNK_B).is_empty(),
        "a challenge is not a failover"
    );
    again
}

#[test]
fn a_challenged_invite_is_answered_and_every_later_cseq_is_mapped_per_leg() {
    let mut net = net_with_auth(FailoverPolicy::standard());
    let mut call = Call::new("auth-out", PBX, TRUNK);
    let again = challenged_invite(&mut net, &mut call);

    net.send(TRUNK, &reply(&again, 180, "Ringing", "a1", TRUNK));
    net.send(TRUNK, &reply(&again, 200, "OK", "a1", TRUNK));
    net.settle();
    let at_pbx: Vec<_> = net
        .take(PBX)
        .into_iter()
        .filter(|m| m.status() != Some(100))
        .collect();
    assert_eq!(statuses(&at_pbx), vec![Some(180), Some(200)]);
    assert!(
        at_pbx.iter().all(|m| m.cseq().0 == 1),
        "the PBX sees its CSeq"
    );
    // A retransmitted 2xx (after the transaction) is mapped too.
    net.send(TRUNK, &reply(&again, 200, "OK", "a1", TRUNK));
    net.settle();
    let retransmit = net.take_one(PBX);
    assert_eq!((retransmit.status(), retransmit.cseq().0), (Some(200), 1));

    call.to_tag = Some("a1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    let ack = net.take_one(TRUNK);
    assert_eq!((ack.method(), ack.cseq().0), (Some(Method::Ack), 2));

    // A re-INVITE from the PBX: CSeq 2 on the PBX's side, 3 on carrier-a's.
    net.send(PBX, &call.caller_request("INVITE"));
    net.settle();
    let reinvite = net.take_one(TRUNK);
    assert_eq!(reinvite.cseq().0, 3);
    net.send(TRUNK, &reply(&reinvite, 200, "OK", "", TRUNK));
    net.settle();
    let ok = net.take_one(PBX);
    assert_eq!((ok.status(), ok.cseq().0), (Some(200), 2));
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    assert_eq!(net.take_one(TRUNK).cseq().0, 3);

    // The PBX hangs up; carrier-a challenges the BYE too (401 this time).
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK);
    assert_eq!((bye.method(), bye.cseq().0), (Some(Method::Bye), 4));
    net.send(TRUNK, &challenge(&bye, 401, ""));
    net.settle();
    let bye2 = net.take_one(TRUNK);
    assert_eq!((bye2.method(), bye2.cseq().0), (Some(Method::Bye), 5));
    assert_digest(&bye2, b"Authorization", PASSWORD);
    assert!(net.take(PBX).is_empty(), "the PBX never sees the 401");
    net.send(TRUNK, &reply(&bye2, 200, "OK", "", ""));
    net.settle();
    let ok = net.take_one(PBX);
    assert_eq!((ok.status(), ok.cseq().0), (Some(200), 3));
    assert_eq!(answered(&net), 2);
    assert_eq!(refused(&net), 0);
    assert_idle(&mut net);
}

#[test]
fn the_carriers_own_requests_keep_their_cseq_after_a_bump() {
    let mut net = net_with_auth(FailoverPolicy::standard());
    let mut call = Call::new("auth-cbye", PBX, TRUNK);
    let again = challenged_invite(&mut net, &mut call);
    let ok = reply(&again, 200, "OK", "a1", TRUNK);
    let record_route = {
        let parsed = SipMessage::parse(crlf(&ok).into(), &crate::message::Limits::default());
        String::from_utf8(
            parsed
                .unwrap()
                .first_named(b"Record-Route")
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    };
    net.send(TRUNK, &ok);
    net.settle();
    net.take(PBX);
    call.to_tag = Some("a1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    assert_eq!(net.take_one(TRUNK).cseq().0, 2);
    // BYE from carrier-a, in its own CSeq space: passes unchanged both ways.
    net.send(TRUNK, &call.callee_request("BYE", &record_route, 7));
    net.settle();
    let bye = net.take_one(PBX);
    assert_eq!((bye.method(), bye.cseq().0), (Some(Method::Bye), 7));
    net.send(PBX, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    let ok = net.take_one(TRUNK);
    assert_eq!((ok.status(), ok.cseq().0), (Some(200), 7));
    assert_idle(&mut net);
}

#[test]
fn an_inbound_calls_bye_from_the_pbx_is_answered_on_the_carriers_leg() {
    let mut net = net_with_auth(FailoverPolicy::standard());
    let mut call = Call::new("auth-in", TRUNK, PBX);
    let (invite, _) = call.invite();
    net.send(TRUNK, &invite);
    net.settle();
    let at_pbx = net.take_one(PBX);
    let ok = reply(&at_pbx, 200, "OK", "p", PBX);
    let record_route = {
        let parsed = SipMessage::parse(crlf(&ok).into(), &crate::message::Limits::default());
        String::from_utf8(
            parsed
                .unwrap()
                .first_named(b"Record-Route")
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    };
    net.send(PBX, &ok);
    net.settle();
    assert_eq!(net.take_one(TRUNK).status(), Some(200));
    call.to_tag = Some("p".into());
    net.send(TRUNK, &call.caller_request("ACK"));
    net.settle();
    net.take(PBX);
    // The PBX (the callee) hangs up with its CSeq 20; carrier-a challenges.
    net.send(PBX, &call.callee_request("BYE", &record_route, 20));
    net.settle();
    let bye = net.take_one(TRUNK);
    assert_eq!(bye.cseq().0, 20);
    net.send(TRUNK, &challenge(&bye, 401, ""));
    net.settle();
    let bye2 = net.take_one(TRUNK);
    assert_eq!((bye2.method(), bye2.cseq().0), (Some(Method::Bye), 21));
    assert_digest(&bye2, b"Authorization", PASSWORD);
    net.send(TRUNK, &reply(&bye2, 200, "OK", "", ""));
    net.settle();
    let ok = net.take_one(PBX);
    assert_eq!((ok.status(), ok.cseq().0), (Some(200), 20));
    assert_eq!(answered(&net), 1);
    assert_idle(&mut net);
}

#[test]
fn wrong_credentials_relay_the_second_challenge_once_and_count_it() {
    let mut net = net_with_auth(FailoverPolicy::standard());
    let mut call = Call::new("auth-wrong", PBX, TRUNK);
    let again = challenged_invite(&mut net, &mut call);
    // carrier-a refuses the answer with a fresh challenge (no stale=true).
    net.send(TRUNK, &challenge(&again, 407, ""));
    net.settle();
    let at_a = net.take(TRUNK);
    assert_eq!(at_a.len(), 1, "only the ACK: {}", describe(&at_a));
    assert_eq!(at_a[0].method(), Some(Method::Ack));
    let at_pbx: Vec<_> = net
        .take(PBX)
        .into_iter()
        .filter(|m| m.status() != Some(100))
        .collect();
    assert_eq!(statuses(&at_pbx), vec![Some(407)], "relayed to the PBX");
    assert_eq!(at_pbx[0].cseq().0, 1, "with the PBX's own CSeq");
    assert!(net.take(TRUNK_B).is_empty(), "407 is not in failover_on");
    assert_eq!((answered(&net), refused(&net)), (1, 1));
    net.send(PBX, &{
        let mut ack = call.caller_request("ACK");
        ack = ack
            .replace(";tag=\r", ";tag=ch\r")
            .replace(";tag=\n", ";tag=ch\n");
        ack
    });
    net.settle();
    assert_idle(&mut net);
}

#[test]
fn wrong_credentials_fail_over_when_the_route_lists_407() {
    let mut failover = FailoverPolicy::standard();
    let mut codes = failover.failover_on;
    codes.insert(407);
    failover.failover_on = codes;
    let _ = CodeSet::EMPTY;
    let mut net = net_with_auth(failover);
    let mut call = Call::new("auth-fo", PBX, TRUNK);
    let again = challenged_invite(&mut net, &mut call);
    net.send(TRUNK, &challenge(&again, 407, ""));
    net.settle();
    assert_eq!(net.take_one(TRUNK).method(), Some(Method::Ack));
    let at_b = net.take_one(TRUNK_B);
    assert_eq!(at_b.method(), Some(Method::Invite));
    assert_eq!(
        at_b.cseq().0,
        1,
        "carrier-b's leg starts from the PBX's CSeq"
    );
    assert!(at_b.first_named(b"Proxy-Authorization").is_none());
    assert!(net.take(PBX).iter().all(|m| m.status() == Some(100)));
    net.send(TRUNK_B, &reply(&at_b, 200, "OK", "b1", TRUNK_B));
    net.settle();
    let ok = net.take_one(PBX);
    assert_eq!((ok.status(), ok.cseq().0), (Some(200), 1));
    call.to_tag = Some("b1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    assert_eq!(
        net.take_one(TRUNK_B).cseq().0,
        1,
        "no offset on carrier-b's leg"
    );
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK_B);
    assert_eq!(bye.cseq().0, 2);
    net.send(TRUNK_B, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(200));
    assert_eq!(refused(&net), 1);
    assert_idle(&mut net);
}

#[test]
fn a_stale_nonce_gets_one_more_answer_then_the_loop_stops() {
    let mut net = net_with_auth(FailoverPolicy::standard());
    let mut call = Call::new("auth-stale", PBX, TRUNK);
    let again = challenged_invite(&mut net, &mut call);
    net.send(TRUNK, &challenge(&again, 407, ", stale=true"));
    net.settle();
    let at_a = net.take(TRUNK);
    assert_eq!(at_a.len(), 2, "{}", describe(&at_a));
    let third = &at_a[1];
    assert_eq!(third.cseq().0, 3);
    assert_digest(third, b"Proxy-Authorization", PASSWORD);
    assert_eq!(
        third.all_named(b"Proxy-Authorization").count(),
        1,
        "the stale answer is replaced, not repeated"
    );
    // Stale again: not answered a third time.
    net.send(TRUNK, &challenge(third, 407, ", stale=true"));
    net.settle();
    assert_eq!(net.take(TRUNK).len(), 1, "only the ACK");
    let at_pbx: Vec<_> = net
        .take(PBX)
        .into_iter()
        .filter(|m| m.status() != Some(100))
        .collect();
    assert_eq!(statuses(&at_pbx), vec![Some(407)]);
    assert_eq!((answered(&net), refused(&net)), (2, 1));
    net.run_for(Duration::from_secs(200));
    assert_eq!(net.proxy.active_dialogs(), 0);
}

#[test]
fn a_trunk_without_credentials_has_its_challenge_relayed() {
    let mut net = SimNet::with_failover(FailoverPolicy::standard());
    let mut call = Call::new("noauth", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    let first = net.take_one(TRUNK);
    net.send(TRUNK, &challenge(&first, 407, ""));
    net.settle();
    assert_eq!(net.take_one(TRUNK).method(), Some(Method::Ack));
    let at_pbx: Vec<_> = net
        .take(PBX)
        .into_iter()
        .filter(|m| m.status() != Some(100))
        .collect();
    assert_eq!(statuses(&at_pbx), vec![Some(407)]);
    assert_eq!((answered(&net), refused(&net)), (0, 0));
}
