//! Admission in the core: session limits with overflow to the next trunk, call-rate
//! limits, 503 with Retry-After, unknown sources, blocked user agents, REGISTER storms,
//! bounds; and a property test that session counts never leak or go negative whatever
//! order messages arrive in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::simnet::*;
use crate::admission::{RejectReason, TrunkLimits, UnknownSource};
use crate::message::{HeaderName, Method, SipMessage};
use crate::metrics::ProxyMetrics;
use proptest::prelude::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub(super) fn net_with(admission: TestAdmission) -> SimNet {
    SimNet::with_admission(Some(Arc::new(admission)))
}

pub(super) fn rejects(metrics: &ProxyMetrics, slot: usize, reason: RejectReason) -> u64 {
    metrics.peers[slot].rejects[reason.index()].load(Ordering::Relaxed)
}

/// Send an INVITE for `call` from the PBX; return what arrived where.
pub(super) fn offer(
    net: &mut SimNet,
    call: &mut Call,
) -> (Vec<SipMessage>, Vec<SipMessage>, Vec<SipMessage>) {
    let (invite, _) = call.invite();
    net.send(call.caller, &invite);
    net.settle();
    (net.take(PBX), net.take(TRUNK), net.take(TRUNK_B))
}

pub(super) fn statuses(msgs: &[SipMessage]) -> Vec<u16> {
    msgs.iter().filter_map(SipMessage::status).collect()
}

#[test]
fn over_max_sessions_a_call_overflows_to_the_next_trunk() {
    let mut admission = TestAdmission::default();
    admission.limits[0] = TrunkLimits {
        max_sessions: Some(2),
        ..Default::default()
    };
    let mut net = net_with(admission);
    let mut calls: Vec<Call> = (0..3)
        .map(|i| Call::new(&format!("ovf{i}"), PBX, TRUNK))
        .collect();
    let (_, a0, _) = offer(&mut net, &mut calls[0]);
    let (_, a1, _) = offer(&mut net, &mut calls[1]);
    let (_, a2, b2) = offer(&mut net, &mut calls[2]);
    assert_eq!((a0.len(), a1.len(), a2.len(), b2.len()), (1, 1, 0, 1));
    assert_eq!(rejects(&net.metrics, 2, RejectReason::Sessions), 1);
    // The first call is refused by the trunk: its session ends, the next call fits again.
    net.send(TRUNK, &reply(&a0[0], 486, "Busy Here", "x", ""));
    net.settle();
    net.take(TRUNK);
    net.take(PBX);
    let mut fourth = Call::new("ovf3", PBX, TRUNK);
    let (_, a3, b3) = offer(&mut net, &mut fourth);
    assert_eq!((a3.len(), b3.len()), (1, 0));
    assert_eq!(net.metrics.peers[2].dialogs[0].load(Ordering::Relaxed), 2);
    assert_eq!(net.metrics.peers[3].dialogs[0].load(Ordering::Relaxed), 1);
}

#[test]
fn no_trunk_left_gives_503_with_retry_after() {
    let admission = TestAdmission {
        limits: [TrunkLimits {
            max_sessions: Some(1),
            ..Default::default()
        }; 2],
        ..Default::default()
    };
    let mut net = net_with(admission);
    let mut calls: Vec<Call> = (0..3)
        .map(|i| Call::new(&format!("full{i}"), PBX, TRUNK))
        .collect();
    offer(&mut net, &mut calls[0]);
    offer(&mut net, &mut calls[1]);
    let (pbx, a, b) = offer(&mut net, &mut calls[2]);
    assert!(a.is_empty() && b.is_empty());
    let refusal = pbx.iter().find(|m| m.status() == Some(503)).expect("503");
    assert!(String::from_utf8_lossy(refusal.as_bytes()).contains("Retry-After: 10\r\n"));
    assert_eq!(
        net.proxy.active_dialogs(),
        2,
        "the refused call holds no dialog"
    );
}

#[test]
fn inbound_over_the_trunks_limit_gets_503() {
    let mut admission = TestAdmission::default();
    admission.limits[0] = TrunkLimits {
        max_sessions: Some(5),
        max_inbound: Some(1),
        ..Default::default()
    };
    let mut net = net_with(admission);
    let mut first = Call::new("in1", TRUNK, PBX);
    let (invite, _) = first.invite();
    net.send(TRUNK, &invite);
    net.settle();
    assert_eq!(net.take(PBX).len(), 1);
    let mut second = Call::new("in2", TRUNK, PBX);
    let (invite, _) = second.invite();
    net.send(TRUNK, &invite);
    net.settle();
    assert!(net.take(PBX).is_empty());
    assert!(statuses(&net.take(TRUNK)).contains(&503));
    assert_eq!(rejects(&net.metrics, 2, RejectReason::Sessions), 1);
    // Outbound still has room within max_sessions.
    let mut out = Call::new("out1", PBX, TRUNK);
    let (_, a, _) = offer(&mut net, &mut out);
    assert_eq!(a.len(), 1);
}

#[test]
fn over_the_call_rate_a_call_overflows_then_gets_503() {
    let admission = TestAdmission::default();
    *admission.cps_tokens.lock().unwrap() = [Some(1), Some(1)];
    let mut net = net_with(admission);
    let mut calls: Vec<Call> = (0..3)
        .map(|i| Call::new(&format!("cps{i}"), PBX, TRUNK))
        .collect();
    let (_, a, _) = offer(&mut net, &mut calls[0]);
    assert_eq!(a.len(), 1);
    let (_, a, b) = offer(&mut net, &mut calls[1]);
    assert_eq!((a.len(), b.len()), (0, 1));
    let (pbx, a, b) = offer(&mut net, &mut calls[2]);
    assert_eq!((a.len(), b.len()), (0, 0));
    assert!(statuses(&pbx).contains(&503));
    assert_eq!(rejects(&net.metrics, 2, RejectReason::Cps), 2);
    assert_eq!(rejects(&net.metrics, 3, RejectReason::Cps), 1);
}

#[test]
fn unknown_source_under_reject_gets_403_and_no_state() {
    let admission = TestAdmission {
        unknown: UnknownSource::Reject,
        ..Default::default()
    };
    let mut net = net_with(admission);
    let mut call = Call::new("scan", STRANGER, TRUNK);
    let (invite, _) = call.invite();
    net.send(STRANGER, &invite);
    net.settle();
    assert_eq!(statuses(&net.take(STRANGER)), vec![403]);
    assert!(net.take(TRUNK).is_empty());
    assert_eq!(net.proxy.active_transactions(), 0);
    assert_eq!(rejects(&net.metrics, 0, RejectReason::UnknownSource), 1);
}

#[test]
fn banned_sources_and_blocked_user_agents_are_dropped_silently() {
    let admission = TestAdmission {
        blocked_agent: Some("friendly-scanner"),
        banned: Some("127.0.0.9".parse().unwrap()),
        unknown: UnknownSource::Reject,
        ..Default::default()
    };
    let mut net = net_with(admission);
    let mut call = Call::new("ua", PBX, TRUNK);
    let (invite, _) = call.invite();
    let scanner = invite.replace(
        "Max-Forwards: 70",
        "Max-Forwards: 70\nUser-Agent: friendly-scanner",
    );
    net.send(PBX, &scanner);
    net.send(STRANGER, &invite);
    net.settle();
    assert!(
        net.take(PBX).is_empty() && net.take(TRUNK).is_empty() && net.take(STRANGER).is_empty()
    );
    assert_eq!(rejects(&net.metrics, 0, RejectReason::UserAgent), 1);
    assert_eq!(rejects(&net.metrics, 0, RejectReason::Flood), 1);
    assert_eq!(net.proxy.active_transactions(), 0);
}

#[test]
fn register_storm_gets_503_with_the_policys_retry_after() {
    let admission = TestAdmission {
        register_retry: Some(77),
        ..Default::default()
    };
    let mut net = net_with(admission);
    let register = format!(
        "REGISTER sip:{PROXY} SIP/2.0
Via: SIP/2.0/UDP {PBX};branch=z9hG4bK-reg1
Max-Forwards: 70
From: <sip:100@{PBX}>;tag=r1
To: <sip:100@{PBX}>
Call-ID: reg@test
CSeq: 1 REGISTER
Contact: <sip:100@{PBX}>
Content-Length: 0
"
    );
    net.send(
        PBX,
        &register.replace(&format!("sip:{PROXY} SIP"), &format!("sip:100@{PROXY} SIP")),
    );
    net.settle();
    let got = net.take(PBX);
    assert_eq!(statuses(&got), vec![503]);
    assert!(String::from_utf8_lossy(got[0].as_bytes()).contains("Retry-After: 77\r\n"));
    assert!(net.take(TRUNK).is_empty());
    assert_eq!(rejects(&net.metrics, 0, RejectReason::RegisterRate), 1);
}

#[test]
fn oversized_and_too_deep_messages_are_answered_513_and_400() {
    let mut net = SimNet::new();
    let mut call = Call::new("big", PBX, TRUNK);
    let (invite, _) = call.invite();
    let padding = format!("X-Pad: {}\n", "a".repeat(70_000));
    let big = invite.replace(
        "Max-Forwards: 70\n",
        &format!("Max-Forwards: 70\n{padding}"),
    );
    net.send(PBX, &big);
    net.settle();
    assert_eq!(statuses(&net.take(PBX)), vec![513]);
    let mut vias = String::new();
    for i in 0..130 {
        vias.push_str(&format!(
            "Via: SIP/2.0/UDP 10.0.0.{i}:5060;branch=z9hG4bK{i}\n"
        ));
    }
    let (invite, _) = Call::new("deep", PBX, TRUNK).invite();
    let deep = invite.replacen("Max-Forwards", &format!("{vias}Max-Forwards"), 1);
    net.send(PBX, &deep);
    net.settle();
    assert_eq!(statuses(&net.take(PBX)), vec![400]);
    assert!(net.take(TRUNK).is_empty());
    assert_eq!(rejects(&net.metrics, 0, RejectReason::TooLarge), 1);
    assert_eq!(rejects(&net.metrics, 0, RejectReason::Malformed), 1);
}

/// One step of a random call mix; call slots are chosen by index.
#[derive(Debug, Clone)]
pub(super) enum Step {
    Invite(usize),
    Respond(usize, u16),
    Ack(usize),
    CallerBye(usize),
    CalleeBye(usize),
    Cancel(usize),
    Wait(u64),
}

pub(super) fn step() -> impl Strategy<Value = Step> {
    let slot = 0usize..6;
    prop_oneof![
        slot.clone().prop_map(Step::Invite),
        (
            slot.clone(),
            prop::sample::select(vec![180u16, 200, 486, 503, 408])
        )
            .prop_map(|(s, c)| Step::Respond(s, c)),
        slot.clone().prop_map(Step::Ack),
        slot.clone().prop_map(Step::CallerBye),
        slot.clone().prop_map(Step::CalleeBye),
        slot.prop_map(Step::Cancel),
        (1u64..40_000).prop_map(Step::Wait),
    ]
}

/// The core's own session counts (per trunk and per account), the dialog table and the
/// exported gauges agree, nothing is negative, and no trunk or account is over its
/// `max_sessions`.
fn assert_counts_agree(net: &SimNet) {
    const TRUNKS: usize = 3;
    const ACCOUNTS: usize = 2;
    let mut per_trunk = [[0i64; 2]; TRUNKS];
    let mut per_account = [[0i64; 2]; ACCOUNTS];
    for dialog in net.proxy.dialogs.values() {
        if let Some(t) = dialog.trunk {
            per_trunk[usize::from(t)][dialog.direction.index()] += 1;
            assert_eq!(
                dialog.account,
                net.proxy.admission.trunk_account(t),
                "a dialog counts against its trunk's account"
            );
        }
        if let Some(a) = dialog.account {
            per_account[usize::from(a)][dialog.direction.index()] += 1;
        }
    }
    for (t, counts) in per_trunk.iter().enumerate() {
        let core = net.proxy.sessions_of(t as u16);
        for d in 0..2 {
            let gauge = net.metrics.peers[2 + t].dialogs[d].load(Ordering::Relaxed);
            assert_eq!(
                i64::from(core[d]),
                counts[d],
                "core count, trunk {t} dir {d}"
            );
            assert_eq!(gauge, counts[d], "gauge, trunk {t} dir {d}");
        }
        let limit = net.proxy.admission.trunk_limits(t as u16).max_sessions;
        assert!(
            limit.is_none_or(|max| core[0] + core[1] <= max),
            "trunk {t} over its limit {limit:?}: {core:?}"
        );
    }
    for (a, counts) in per_account.iter().enumerate() {
        let core = net.proxy.account_sessions_of(a as u16);
        for d in 0..2 {
            assert_eq!(
                i64::from(core[d]),
                counts[d],
                "core count, account {a} dir {d}"
            );
        }
        let gauge = net.metrics.accounts[a].load(Ordering::Relaxed);
        assert_eq!(gauge, counts[0] + counts[1], "gauge, account {a}");
        assert_eq!(net.proxy.account_sessions(a as u16), core[0] + core[1]);
        let limit = net.proxy.admission.account_limits(a as u16).max_sessions;
        assert!(
            limit.is_none_or(|max| core[0] + core[1] <= max),
            "account {a} over its limit {limit:?}: {core:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn session_counts_never_leak_or_go_negative(steps in prop::collection::vec(step(), 1..60)) {
        let mut admission = TestAdmission::default();
        admission.limits[0] = TrunkLimits { max_sessions: Some(3), ..Default::default() };
        check_session_counts(net_with(admission), steps)?;
    }

    /// The same with failover between the trunks: a call's session moves with it.
    #[test]
    fn session_counts_follow_failovers(steps in prop::collection::vec(step(), 1..60)) {
        let mut admission = TestAdmission::default();
        admission.limits[0] = TrunkLimits { max_sessions: Some(3), ..Default::default() };
        let routing = TestRouting { failover: crate::routing::FailoverPolicy::standard(), ..TestRouting::default() };
        check_session_counts(SimNet::with(Some(Arc::new(admission)), routing), steps)?;
    }
}

pub(super) fn check_session_counts(mut net: SimNet, steps: Vec<Step>) -> Result<(), TestCaseError> {
    {
        let mut calls: Vec<Call> = (0..6)
            .map(|i| Call::new(&format!("p{i}"), PBX, TRUNK))
            .collect();
        let mut seen: Vec<Option<(SipMessage, &'static str)>> = vec![None; 6];
        let mut branches: Vec<String> = vec![String::new(); 6];
        for step in steps {
            match step {
                Step::Invite(i) => {
                    let (invite, branch) = calls[i].invite();
                    branches[i] = branch;
                    net.send(PBX, &invite);
                }
                Step::Respond(i, code) => {
                    if let Some((invite, at)) = &seen[i] {
                        let tag = format!("t{i}");
                        net.send(at, &reply(invite, code, "R", &tag, at));
                        if code >= 180 {
                            calls[i].to_tag = Some(tag);
                        }
                    }
                }
                Step::Ack(i) => net.send(PBX, &calls[i].caller_request("ACK")),
                Step::CallerBye(i) => net.send(PBX, &calls[i].caller_request("BYE")),
                Step::CalleeBye(i) => {
                    if let Some((_, at)) = &seen[i] {
                        let route = format!("<sip:{PROXY};lr>");
                        net.send(at, &calls[i].callee_request("BYE", &route, 9));
                    }
                }
                Step::Cancel(i) => {
                    if branches[i].is_empty() {
                        branches[i] = format!("z9hG4bK-never-invited-{i}");
                    }
                    let cancel = format!(
                        "CANCEL sip:5551234@{PROXY} SIP/2.0\nVia: SIP/2.0/UDP {PBX};branch={}\nFrom: <sip:alice@{PBX}>;tag={}\nTo: <sip:5551234@{PROXY}>\nCall-ID: {}\nCSeq: {} CANCEL\nContent-Length: 0\n",
                        branches[i], calls[i].from_tag, calls[i].call_id, calls[i].cseq
                    );
                    net.send(PBX, &cancel);
                }
                Step::Wait(ms) => net.run_for(Duration::from_millis(ms)),
            }
            net.settle();
            // Remember the latest INVITE each trunk saw per call, so responses can be made.
            for at in [TRUNK, TRUNK_B, TRUNK_C] {
                for msg in net.take(at) {
                    if msg.method() == Some(Method::Invite) {
                        let id = String::from_utf8_lossy(msg.call_id()).to_string();
                        if let Some(i) = calls.iter().position(|c| c.call_id == id) {
                            seen[i] = Some((msg, at));
                        }
                    }
                }
            }
            net.take(PBX);
            assert_counts_agree(&net);
        }
        // Let every transaction and Timer C run out: everything returns to zero.
        for _ in 0..8 {
            net.run_for(Duration::from_secs(60));
            for at in [TRUNK, TRUNK_B, TRUNK_C, PBX] {
                net.take(at);
            }
        }
        // Confirmed calls stay up until a BYE: hang them all up from the caller.
        for call in calls.iter_mut() {
            if call.to_tag.is_some() {
                net.send(PBX, &call.caller_request("BYE"));
            }
        }
        net.settle();
        for at in [TRUNK, TRUNK_B, TRUNK_C] {
            for msg in net.take(at) {
                if msg.method() == Some(Method::Bye) {
                    net.send(at, &reply(&msg, 200, "OK", "", ""));
                }
            }
        }
        net.run_for(Duration::from_secs(120));
        assert_counts_agree(&net);
        prop_assert_eq!(
            net.proxy.active_dialogs(),
            0,
            "dialogs left: {:?}",
            net.proxy.dialogs.len()
        );
        prop_assert_eq!(net.proxy.active_transactions(), 0);
        prop_assert_eq!(net.metrics.transactions.load(Ordering::Relaxed), 0);
        for t in 0..3 {
            prop_assert_eq!(net.proxy.trunk_sessions(t), 0, "trunk {}", t);
        }
        for a in 0..2 {
            prop_assert_eq!(net.proxy.account_sessions(a), 0, "account {}", a);
            prop_assert_eq!(
                net.metrics.accounts[usize::from(a)].load(Ordering::Relaxed),
                0
            );
        }
        let _ = HeaderName::Via;
    }
    Ok(())
}

#[test]
fn a_refused_call_is_an_event_naming_the_trunk_that_had_no_room() {
    use super::event::{Event, Refusal};
    let admission = TestAdmission {
        limits: [TrunkLimits {
            max_sessions: Some(1),
            ..Default::default()
        }; 2],
        ..Default::default()
    };
    let mut net = net_with(admission);
    let mut calls: Vec<Call> = (0..3)
        .map(|i| Call::new(&format!("ev{i}"), PBX, TRUNK))
        .collect();
    offer(&mut net, &mut calls[0]);
    offer(&mut net, &mut calls[1]);
    let attempts = net
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::CallAttempt { .. }))
        .count();
    assert_eq!(attempts, 2);
    offer(&mut net, &mut calls[2]);
    let events = net.events();
    let refused: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::CallRejected { .. }))
        .collect();
    assert_eq!(refused.len(), 1, "{events:?}");
    let Event::CallRejected {
        trunk,
        code,
        refusal,
        call_id,
        ..
    } = refused[0]
    else {
        unreachable!()
    };
    // Both trunks were full: the first candidate refused is named.
    assert_eq!(
        (*trunk, *code, *refusal),
        (Some(0), 503, Refusal::Limit(RejectReason::Sessions))
    );
    assert!(!call_id.is_empty());
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::CallAttempt { .. })),
        "a refused call makes no attempt"
    );
}
