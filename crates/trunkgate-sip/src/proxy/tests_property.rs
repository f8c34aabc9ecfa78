//! A stateful property test of the core (issue 11): random interleavings of several calls,
//! each with its own script — answered, busy, refused, silent, ringing then cancelled, hung
//! up by either side — with duplicated INVITEs, retransmitted 2xx, requests lost on their
//! way to the trunk, garbage from an allowed peer and from an unknown one. After every timer
//! has run (13 h of simulated time, milliseconds of real time), the invariants:
//!
//! - every INVITE server transaction sent the PBX exactly one final response code, and the
//!   one its script implies (200, 486, 500 for the trunk's 503, 408, 487);
//! - no transaction, dialog, index entry or session is left, and no timer;
//! - garbage never produced an answer to the unknown source.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::simnet::*;
use crate::message::Method;
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// How the trunk treats one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    RingThenOk,
    Busy,
    Unavailable,
    Silent,
    RingThenCancel,
}

#[derive(Debug, Clone)]
struct Plan {
    answer: Answer,
    /// The PBX sends its INVITE twice (a retransmission).
    dup_invite: bool,
    /// The trunk retransmits its 2xx once.
    dup_ok: bool,
    /// The first INVITE toward the trunk is lost (the proxy's Timer A resends it).
    lose_first: bool,
    /// The callee hangs up (else the caller).
    callee_hangs_up: bool,
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        prop_oneof![
            Just(Answer::Ok),
            Just(Answer::RingThenOk),
            Just(Answer::Busy),
            Just(Answer::Unavailable),
            Just(Answer::Silent),
            Just(Answer::RingThenCancel),
        ],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(answer, dup_invite, dup_ok, lose_first, callee_hangs_up)| Plan {
                answer,
                dup_invite,
                dup_ok,
                lose_first,
                callee_hangs_up,
            },
        )
}

/// Where a call's script is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Invite,
    Answer,
    Confirm,
    HangUp,
    Done,
}

struct Running {
    plan: Plan,
    call: Call,
    stage: Stage,
    /// The INVITE as the trunk got it (for its responses).
    at_trunk: Option<crate::message::SipMessage>,
}

fn expected(answer: Answer) -> u16 {
    match answer {
        Answer::Ok | Answer::RingThenOk => 200,
        Answer::Busy => 486,
        // A trunk's 503 is not passed on as is (RFC 3261 §16.7 step 6).
        Answer::Unavailable => 500,
        Answer::Silent => 408,
        Answer::RingThenCancel => 487,
    }
}

/// What the endpoints saw: the PBX's finals to INVITE by Call-ID, the INVITEs the trunk got
/// and has not answered yet.
#[derive(Default)]
struct Seen {
    finals: HashMap<String, BTreeSet<u16>>,
    invites: Vec<crate::message::SipMessage>,
}

/// One step of call `r`'s script.
fn step(net: &mut SimNet, r: &mut Running, seen: &mut Seen) {
    match r.stage {
        Stage::Invite => {
            let (invite, _) = r.call.invite();
            net.send(PBX, &invite);
            if r.plan.dup_invite {
                net.send(PBX, &invite);
            }
            net.settle();
            if r.plan.lose_first {
                // Lost on its way: the trunk never saw it; Timer A brings it again.
                collect(net, seen);
                let id = r.call.call_id.as_bytes();
                seen.invites.retain(|m| m.call_id() != id);
                net.run_for(Duration::from_millis(600));
            }
            r.stage = Stage::Answer;
        }
        Stage::Answer => {
            collect(net, seen);
            let id = r.call.call_id.as_bytes();
            let found = seen.invites.iter().position(|m| m.call_id() == id);
            let Some(invite) = found.map(|i| seen.invites.remove(i)) else {
                // Silent trunk, or another call's messages: nothing to answer (yet).
                r.stage = if r.plan.answer == Answer::Silent {
                    Stage::Done
                } else {
                    Stage::Answer
                };
                if r.plan.answer != Answer::Silent {
                    net.run_for(Duration::from_millis(600));
                }
                return;
            };
            let tag = "callee";
            match r.plan.answer {
                Answer::Ok => net.send(TRUNK, &reply(&invite, 200, "OK", tag, TRUNK)),
                Answer::RingThenOk => {
                    net.send(TRUNK, &reply(&invite, 180, "Ringing", tag, TRUNK));
                    net.settle();
                    net.send(TRUNK, &reply(&invite, 200, "OK", tag, TRUNK));
                }
                Answer::Busy => net.send(TRUNK, &reply(&invite, 486, "Busy Here", tag, "")),
                Answer::Unavailable => {
                    net.send(TRUNK, &reply(&invite, 503, "Service Unavailable", tag, ""))
                }
                Answer::Silent => {}
                Answer::RingThenCancel => {
                    net.send(TRUNK, &reply(&invite, 180, "Ringing", tag, TRUNK));
                    net.settle();
                    let cancel = cancel_of(&r.call, r.call.branch_seq);
                    net.send(PBX, &cancel);
                }
            }
            if r.plan.dup_ok && matches!(r.plan.answer, Answer::Ok | Answer::RingThenOk) {
                net.settle();
                net.send(TRUNK, &reply(&invite, 200, "OK", tag, TRUNK));
            }
            net.settle();
            r.at_trunk = Some(invite);
            r.stage = match r.plan.answer {
                Answer::Ok | Answer::RingThenOk => Stage::Confirm,
                _ => Stage::Done,
            };
        }
        Stage::Confirm => {
            r.call.to_tag = Some("callee".into());
            net.send(PBX, &r.call.caller_request("ACK"));
            net.settle();
            r.stage = Stage::HangUp;
        }
        Stage::HangUp => {
            if r.plan.callee_hangs_up {
                let route = format!("<sip:{PROXY};lr>");
                net.send(TRUNK, &r.call.callee_request("BYE", &route, 9));
            } else {
                net.send(PBX, &r.call.caller_request("BYE"));
            }
            net.settle();
            r.stage = Stage::Done;
        }
        Stage::Done => {}
    }
    collect(net, seen);
}

/// CANCEL for the INVITE `call` sent with branch number `branch`.
fn cancel_of(call: &Call, branch: u32) -> String {
    let b = format!("z9hG4bK-{}-{}", call.call_id.replace('@', "."), branch);
    format!(
        "CANCEL sip:5551234@{PROXY} SIP/2.0
Via: SIP/2.0/UDP {caller};branch={b}
Max-Forwards: 70
From: <sip:alice@{caller}>;tag={ftag}
To: <sip:5551234@{PROXY}>
Call-ID: {cid}
CSeq: {cseq} CANCEL
Content-Length: 0

",
        caller = call.caller,
        ftag = call.from_tag,
        cid = call.call_id,
        cseq = 1,
    )
}

/// The finals to INVITE the PBX got so far, by Call-ID, and the INVITEs the trunk got; the
/// UAs' side answered (BYEs and CANCELs get 200, ACKs need nothing).
fn collect(net: &mut SimNet, seen: &mut Seen) {
    for m in net.take(PBX) {
        if let Some(code) = m.status() {
            if code >= 200 && m.cseq().1 == Method::Invite {
                seen.finals
                    .entry(String::from_utf8_lossy(m.call_id()).into_owned())
                    .or_default()
                    .insert(code);
            }
        } else if m.method() == Some(Method::Bye) {
            net.send(PBX, &reply(&m, 200, "OK", "", ""));
        }
    }
    for m in net.take(TRUNK) {
        match m.method() {
            Some(Method::Bye) => net.send(TRUNK, &reply(&m, 200, "OK", "", "")),
            Some(Method::Cancel) => net.send(TRUNK, &reply(&m, 200, "OK", "", "")),
            // A retransmission of one not answered yet needs nothing more.
            Some(Method::Invite) if !seen.invites.iter().any(|i| i.call_id() == m.call_id()) => {
                seen.invites.push(m);
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_end_clean(
        plans in proptest::collection::vec(plan(), 1..8),
        order in proptest::collection::vec(any::<u8>(), 0..64),
        garbage in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut net = SimNet::new();
        let mut running: Vec<Running> = plans
            .iter()
            .enumerate()
            .map(|(i, p)| Running {
                plan: p.clone(),
                call: Call::new(&format!("prop{i}"), PBX, TRUNK),
                stage: Stage::Invite,
                at_trunk: None,
            })
            .collect();
        let mut seen = Seen::default();
        // Garbage from an allowed peer and from an unknown source, between the calls.
        net.send_bytes(PBX, &garbage);
        net.send_bytes("127.0.0.9:5060", &garbage);
        // Random interleaving first, then every script to its end.
        for pick in order {
            let n = running.len();
            let r = &mut running[usize::from(pick) % n];
            step(&mut net, r, &mut seen);
        }
        for _ in 0..8 {
            for r in running.iter_mut() {
                step(&mut net, r, &mut seen);
            }
        }
        // Every timer runs out (Timer C, dialog timeouts: 13 h of simulated time).
        for _ in 0..4 {
            net.run_for(Duration::from_secs(60));
            collect(&mut net, &mut seen);
        }
        net.run_for(Duration::from_secs(13 * 3600));
        collect(&mut net, &mut seen);
        for r in &running {
            let got = seen.finals.get(&r.call.call_id).cloned().unwrap_or_default();
            prop_assert_eq!(
                got.len(), 1,
                "call {} ({:?}): final codes {:?}", r.call.call_id, r.plan, got
            );
            let want = expected(r.plan.answer);
            prop_assert!(got.contains(&want), "call {} ({:?}): {:?}, expected {}", r.call.call_id, r.plan, got, want);
        }
        prop_assert!(net.take("127.0.0.9:5060").is_empty(), "an answer to an unknown source");
        prop_assert!(net.proxy_is_idle(), "state left: {:?}", net.proxy);
        prop_assert_eq!(net.sessions(0), 0);
        prop_assert_eq!(net.proxy.poll_timeout(), None, "a timer left");
    }
}
