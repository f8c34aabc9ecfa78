//! Finished transactions as compact records (`finished.rs`): what they still do for the
//! RFC 3261 §17 timers, with nothing else of the transaction left.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::simnet::*;
use super::state::{FinishedClient, FinishedServer};
use crate::message::Method;
use std::time::Duration;

/// The PBX's ACK for a non-2xx final to `invite` (same branch, the final's To tag).
fn ack_for(invite: &str, to_tag: &str) -> String {
    let head = invite.split("\n\n").next().unwrap_or_default();
    head.replacen("INVITE sip:", "ACK sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace(
            &format!("To: <sip:5551234@{PROXY}>"),
            &format!("To: <sip:5551234@{PROXY}>;tag={to_tag}"),
        )
        .replace("Content-Type: application/sdp\n", "")
        .replace("Content-Length: 5", "Content-Length: 0")
        + "\n\n"
}

#[test]
fn a_refused_invite_leaves_records_that_resend_the_final_and_the_ack_until_their_timers() {
    let mut net = SimNet::new();
    let mut call = Call::new("finished", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&at_trunk, 486, "Busy Here", "b", ""));
    net.settle();
    let ack = net.take_raw(TRUNK);
    assert_eq!(ack.len(), 1);
    let busy = net.take_raw(PBX);
    assert_eq!(busy.len(), 1);
    // Both transactions have their finals: only compact records are left.
    let f = net.proxy.footprint();
    assert_eq!((f.servers, f.clients), (0, 0), "{f:?}");
    assert_eq!((f.finished_servers, f.finished_clients), (1, 1), "{f:?}");

    // A retransmitted 486 from the trunk: the same ACK again, nothing to the PBX.
    net.send(TRUNK, &reply(&at_trunk, 486, "Busy Here", "b", ""));
    net.settle();
    assert_eq!(net.take_raw(TRUNK), ack, "the ACK again, byte for byte");
    assert!(net.take(PBX).is_empty());
    // A retransmitted INVITE from the PBX: our 486 again, nothing to the trunk.
    net.send(PBX, &invite);
    net.settle();
    assert_eq!(net.take_raw(PBX), busy, "the 486 again, byte for byte");
    assert!(net.take(TRUNK).is_empty());
    // The PBX's ACK is absorbed and stops Timer G; later INVITE retransmissions are
    // absorbed without an answer (Confirmed).
    net.send(PBX, &ack_for(&invite, "b"));
    net.settle();
    assert!(
        net.take(TRUNK).is_empty(),
        "the ACK of a non-2xx is hop by hop"
    );
    net.run_for(Duration::from_secs(2));
    assert!(net.take(PBX).is_empty(), "no Timer G after the ACK");
    net.send(PBX, &invite);
    net.settle();
    assert!(net.take(PBX).is_empty() && net.take(TRUNK).is_empty());
    // Timer I (T4) ends the server record, Timer D (32 s) the client's.
    net.run_for(Duration::from_secs(5));
    let f = net.proxy.footprint();
    assert_eq!((f.finished_servers, f.finished_clients), (0, 1), "{f:?}");
    net.run_for(Duration::from_secs(30));
    assert!(net.proxy_is_idle());
    assert_eq!(net.proxy.active_transactions(), 0);
}

#[test]
fn a_retransmitted_bye_gets_the_relayed_200_again_from_the_record() {
    let mut net = SimNet::new();
    let mut call = Call::new("finished-bye", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&at_trunk, 200, "OK", "callee1", TRUNK));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(200));
    call.to_tag = Some("callee1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    assert_eq!(net.take_one(TRUNK).method(), Some(Method::Ack));
    let bye = call.caller_request("BYE");
    net.send(PBX, &bye);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    let ok = reply(&at_trunk, 200, "OK", "", "");
    net.send(TRUNK, &ok);
    net.settle();
    let relayed = net.take_raw(PBX);
    assert_eq!(relayed.len(), 1);
    assert_eq!(net.proxy.active_dialogs(), 0);
    let f = net.proxy.footprint();
    assert_eq!((f.servers, f.clients), (0, 0), "{f:?}");
    // INVITE (Accepted, Timer L) and BYE (Completed, Timer J); the BYE's client (Timer K).
    assert_eq!((f.finished_servers, f.finished_clients), (2, 1), "{f:?}");
    net.send(PBX, &bye);
    net.settle();
    assert_eq!(net.take_raw(PBX), relayed, "the same 200 again");
    assert!(net.take(TRUNK).is_empty(), "the BYE is not forwarded again");
    net.send(TRUNK, &ok);
    net.settle();
    assert!(net.take(PBX).is_empty(), "a retransmitted 200 is absorbed");
    // A retransmitted INVITE is absorbed by the Accepted record (RFC 6026).
    net.send(PBX, &invite);
    net.settle();
    assert!(net.take(PBX).is_empty() && net.take(TRUNK).is_empty());
    net.run_for(Duration::from_secs(40));
    assert!(net.proxy_is_idle());
}

/// The records stay small: what a finished transaction costs is its key and, for a
/// `Completed` server transaction, the final's bytes.
#[test]
fn finished_records_are_compact() {
    assert!(
        size_of::<FinishedServer>() <= 32,
        "{}",
        size_of::<FinishedServer>()
    );
    assert!(
        size_of::<FinishedClient>() <= 32,
        "{}",
        size_of::<FinishedClient>()
    );
}
