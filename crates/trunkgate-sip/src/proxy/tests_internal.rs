//! Test calls injected by Trunkgate's own agent (`Proxy::handle_internal`): the real
//! request path (routing, forwarding, responses back to the agent over the internal flow),
//! but no session, call-rate token or dialog gauge unless counted; a preferred trunk first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::simnet::*;
use super::{Event, INTERNAL_ADDR, InternalOrigin};
use crate::admission::TrunkLimits;
use crate::routing::Party;
use crate::transport::Transport;
use std::sync::Arc;
use std::sync::atomic::Ordering;

fn limited_net() -> SimNet {
    let mut admission = TestAdmission::default();
    admission.limits[0] = TrunkLimits {
        max_sessions: Some(1),
        ..Default::default()
    };
    SimNet::with_admission(Some(Arc::new(admission)))
}

const TEST: InternalOrigin = InternalOrigin {
    party: Party::Pbx,
    counted: false,
    prefer: None,
};

#[test]
fn uncounted_test_calls_take_the_real_path_but_no_session() {
    let mut net = limited_net();
    // Two test calls on a trunk that takes one session: both go to it.
    let mut calls = [Call::new("t1", PBX, TRUNK), Call::new("t2", PBX, TRUNK)];
    for call in &mut calls {
        let (invite, _) = call.invite();
        net.inject(TEST, &invite);
    }
    net.settle();
    let invites = net.take(TRUNK);
    assert_eq!(invites.len(), 2, "{}", describe(&invites));
    assert_eq!(net.sessions(0), 0);
    assert_eq!(net.metrics.dialogs_total.load(Ordering::Relaxed), 0);
    // Answers come back to the agent over the internal flow, never to a socket.
    for invite in &invites {
        net.send(
            TRUNK,
            &reply(invite, 200, "OK", "callee", "sip:b@127.0.0.3"),
        );
    }
    net.settle();
    let answers = net.take(INTERNAL);
    // One Record-Route: ours toward the trunk, none written for the in-process side.
    assert!(
        answers
            .iter()
            .all(|m| m.values(crate::message::HeaderName::RecordRoute).count() == 1),
        "{}",
        describe(&answers)
    );
    assert_eq!(
        answers.iter().filter(|m| m.status() == Some(200)).count(),
        2,
        "{}",
        describe(&answers)
    );
    assert!(net.take(PBX).is_empty());
    assert!(
        net.sent_flows
            .iter()
            .filter(|(to, _)| *to == INTERNAL_ADDR)
            .all(|(_, flow)| flow.transport == Transport::Internal)
    );
    let events = net.events();
    let attempts: Vec<bool> = events
        .iter()
        .filter_map(|e| match e {
            Event::CallAttempt { test, .. } => Some(*test),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [true, true]);
    // The agent hangs up: the dialogs end and still nothing was counted.
    for call in &mut calls {
        call.to_tag = Some("callee".into());
        let bye = call.caller_request("BYE");
        net.inject(TEST, &bye);
    }
    net.settle();
    for bye in net.take(TRUNK) {
        net.send(TRUNK, &reply(&bye, 200, "OK", "callee", ""));
    }
    net.settle();
    assert_eq!(net.sessions(0), 0);
    assert_eq!(net.proxy.active_dialogs(), 0);
}

#[test]
fn a_counted_test_call_is_held_to_the_limits_and_a_preferred_trunk_goes_first() {
    let mut net = limited_net();
    let counted = InternalOrigin {
        counted: true,
        ..TEST
    };
    let (invite, _) = Call::new("c1", PBX, TRUNK).invite();
    net.inject(counted, &invite);
    net.settle();
    assert_eq!(net.take(TRUNK).len(), 1);
    assert_eq!(net.sessions(0), 1, "a counted test call takes its session");
    // The trunk is full: the next counted one overflows to the second trunk.
    let (invite, _) = Call::new("c2", PBX, TRUNK).invite();
    net.inject(counted, &invite);
    net.settle();
    assert!(net.take(TRUNK).is_empty());
    assert_eq!(net.take(TRUNK_B).len(), 1);
    // Preferring the second trunk puts it first although the route lists it second.
    let preferring = InternalOrigin {
        prefer: Some(1),
        ..TEST
    };
    let (invite, _) = Call::new("p1", PBX, TRUNK).invite();
    net.inject(preferring, &invite);
    net.settle();
    assert!(net.take(TRUNK).is_empty());
    assert_eq!(net.take(TRUNK_B).len(), 1);
}
