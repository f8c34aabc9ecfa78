//! Provider accounts in the core: a full account sends overflow to another provider (not to
//! a sibling trunk), the account's call rate refuses without spending the trunk's, inbound
//! calls over the account get 503, a failover moves the account count with the call (or
//! keeps it, within one account); and the property test of `tests_admission` with accounts:
//! counts per trunk and per account agree with the dialog table after every step and are 0
//! at the end.
//!
//! Layout used throughout: trunks 0 (127.0.0.3) and 1 (127.0.0.4) in account 0, trunk 2
//! (127.0.0.6) in account 1; PBX calls try 0, 1, 2 in that order.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::simnet::*;
use super::tests_admission::{check_session_counts, net_with, offer, rejects, statuses, step};
use crate::admission::{RejectReason, TrunkLimits};
use crate::message::{Method, SipMessage};
use crate::routing::FailoverPolicy;
use proptest::prelude::*;
use std::sync::Arc;
use std::sync::atomic::Ordering;

fn limit(max_sessions: u32) -> TrunkLimits {
    TrunkLimits {
        max_sessions: Some(max_sessions),
        ..Default::default()
    }
}

/// Trunks 0 and 1 in account 0, trunk 2 in account 1; no limits yet.
fn two_providers() -> TestAdmission {
    TestAdmission {
        accounts: [Some(0), Some(0), Some(1)],
        ..Default::default()
    }
}

fn three_trunks(admission: TestAdmission, failover: FailoverPolicy) -> SimNet {
    let routing = TestRouting {
        failover,
        third_trunk: true,
        ..TestRouting::default()
    };
    SimNet::with(Some(Arc::new(admission)), routing)
}

/// PBX sends an INVITE: which trunk (0, 1, 2) it reached, if any, and what the PBX got.
fn place(net: &mut SimNet, call: &mut Call) -> (Option<usize>, Vec<u16>) {
    let (reached, pbx, _) = place_invite(net, call);
    (reached, pbx)
}

/// As [`place`], with the INVITE the trunk received.
fn place_invite(
    net: &mut SimNet,
    call: &mut Call,
) -> (Option<usize>, Vec<u16>, Option<SipMessage>) {
    let (pbx, a, b) = offer(net, call);
    let c = net.take(TRUNK_C);
    let mut invite = None;
    let mut reached = None;
    for (i, got) in [a, b, c].into_iter().enumerate() {
        if let Some(m) = got.into_iter().find(|m| m.method() == Some(Method::Invite)) {
            reached = Some(i);
            invite = Some(m);
        }
    }
    (reached, statuses(&pbx), invite)
}

fn gauge(net: &SimNet, account: usize) -> i64 {
    net.metrics.accounts[account].load(Ordering::Relaxed)
}

#[test]
fn a_full_account_overflows_to_another_provider_not_to_a_sibling_trunk() {
    let mut admission = two_providers();
    admission.limits[0] = limit(1);
    admission.account_limits[0] = limit(2);
    let mut net = three_trunks(admission, FailoverPolicy::NONE);
    let mut calls: Vec<Call> = (0..5)
        .map(|i| Call::new(&format!("acc{i}"), PBX, TRUNK))
        .collect();
    let placed: Vec<_> = calls
        .iter_mut()
        .map(|c| place_invite(&mut net, c))
        .collect();
    let reached: Vec<Option<usize>> = placed.iter().map(|p| p.0).collect();
    // Trunk 0 takes one (its own limit), trunk 1 the second (the account's limit), then the
    // account is full: trunk 1 is skipped although it has room, trunk 2 takes the rest.
    assert_eq!(reached, vec![Some(0), Some(1), Some(2), Some(2), Some(2)]);
    assert_eq!(net.proxy.account_sessions(0), 2);
    assert_eq!(net.proxy.account_sessions(1), 3);
    assert_eq!((gauge(&net, 0), gauge(&net, 1)), (2, 3));
    assert_eq!(rejects(&net.metrics, 2, RejectReason::Sessions), 4);
    assert_eq!(rejects(&net.metrics, 3, RejectReason::AccountSessions), 3);
    assert_eq!(rejects(&net.metrics, 3, RejectReason::Sessions), 0);
    // The callee on trunk 1 refuses its call: the account has room again and the next call
    // goes to trunk 1 (trunk 0 is still at its own limit).
    let at_b = placed[1].2.as_ref().expect("INVITE at trunk 1");
    net.send(TRUNK_B, &reply(at_b, 486, "Busy Here", "b1", ""));
    net.settle();
    assert!(
        net.take(TRUNK_B)
            .iter()
            .any(|m| m.method() == Some(Method::Ack)),
        "our ACK"
    );
    assert!(statuses(&net.take(PBX)).contains(&486));
    assert_eq!((net.proxy.account_sessions(0), gauge(&net, 0)), (1, 1));
    let mut sixth = Call::new("acc5", PBX, TRUNK);
    assert_eq!(place(&mut net, &mut sixth).0, Some(1));
    assert_eq!((net.proxy.account_sessions(0), gauge(&net, 0)), (2, 2));
}

#[test]
fn an_account_at_its_rate_refuses_without_spending_the_trunks_token() {
    let admission = two_providers();
    *admission.cps_tokens.lock().unwrap() = [Some(5), None];
    *admission.account_tokens.lock().unwrap() = [Some(1), None];
    let admission = Arc::new(admission);
    let routing = TestRouting {
        third_trunk: true,
        ..TestRouting::default()
    };
    let mut net = SimNet::with(Some(admission.clone()), routing);
    let mut first = Call::new("rate0", PBX, TRUNK);
    assert_eq!(place(&mut net, &mut first).0, Some(0));
    assert_eq!(admission.cps_tokens.lock().unwrap()[0], Some(4));
    let mut second = Call::new("rate1", PBX, TRUNK);
    assert_eq!(
        place(&mut net, &mut second).0,
        Some(2),
        "to the other provider"
    );
    assert_eq!(
        admission.cps_tokens.lock().unwrap()[0],
        Some(4),
        "trunk 0's token was given back when the account refused"
    );
    assert_eq!(rejects(&net.metrics, 2, RejectReason::AccountCps), 1);
    assert_eq!(rejects(&net.metrics, 3, RejectReason::AccountCps), 1);
    assert_eq!(rejects(&net.metrics, 2, RejectReason::Cps), 0);
    // With no account token and no other provider, the PBX gets 503.
    let routing = TestRouting::default();
    let admission = two_providers();
    *admission.account_tokens.lock().unwrap() = [Some(0), None];
    let mut net = SimNet::with(Some(Arc::new(admission)), routing);
    let mut call = Call::new("rate2", PBX, TRUNK);
    let (reached, got) = place(&mut net, &mut call);
    assert_eq!((reached, got.contains(&503)), (None, true));
    assert_eq!(net.proxy.active_dialogs(), 0);
}

#[test]
fn inbound_over_the_account_gets_503_with_the_account_reason() {
    let mut admission = two_providers();
    admission.account_limits[0] = TrunkLimits {
        max_sessions: Some(5),
        max_inbound: Some(1),
        max_outbound: None,
    };
    let mut net = net_with(admission);
    let mut first = Call::new("in-a", TRUNK, PBX);
    let (invite, _) = first.invite();
    net.send(TRUNK, &invite);
    net.settle();
    assert_eq!(net.take(PBX).len(), 1);
    // The sibling trunk shares the account's inbound share.
    let mut second = Call::new("in-b", TRUNK_B, PBX);
    let (invite, _) = second.invite();
    net.send(TRUNK_B, &invite);
    net.settle();
    assert!(net.take(PBX).is_empty());
    let refusal = net.take(TRUNK_B);
    assert!(statuses(&refusal).contains(&503));
    assert!(
        refusal
            .iter()
            .any(|m| String::from_utf8_lossy(m.as_bytes()).contains("Retry-After: 10\r\n"))
    );
    assert_eq!(rejects(&net.metrics, 3, RejectReason::AccountSessions), 1);
    assert_eq!(net.proxy.account_sessions(0), 1);
    // Outbound still has room within the account's max_sessions.
    let mut out = Call::new("out-a", PBX, TRUNK);
    let (_, a, _) = offer(&mut net, &mut out);
    assert_eq!(a.len(), 1);
    assert_eq!(net.proxy.account_sessions(0), 2);
}

/// The INVITE trunk `at` received, after the failover that sent it there.
fn invite_at(net: &mut SimNet, at: &str) -> SipMessage {
    net.take(at)
        .into_iter()
        .find(|m| m.method() == Some(Method::Invite))
        .unwrap_or_else(|| panic!("no INVITE at {at}"))
}

#[test]
fn a_failover_keeps_its_account_session_within_the_account_and_moves_it_across() {
    let mut admission = two_providers();
    admission.account_limits[0] = limit(1);
    let mut net = three_trunks(admission, FailoverPolicy::standard());
    let mut call = Call::new("fo-acc", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    let at_a = invite_at(&mut net, TRUNK);
    assert_eq!((net.proxy.account_sessions(0), gauge(&net, 0)), (1, 1));
    // Trunk 0 fails: the account is full, but with this very call, which moves to its
    // sibling and keeps its one session there.
    net.send(TRUNK, &reply(&at_a, 503, "Service Unavailable", "a1", ""));
    net.settle();
    let at_b = invite_at(&mut net, TRUNK_B);
    assert_eq!(net.proxy.account_sessions(0), 1);
    assert_eq!(
        (net.proxy.trunk_sessions(0), net.proxy.trunk_sessions(1)),
        (0, 1)
    );
    assert_eq!(rejects(&net.metrics, 3, RejectReason::AccountSessions), 0);
    // Meanwhile the account is full for other calls: they go to the other provider.
    let mut other = Call::new("fo-other", PBX, TRUNK);
    assert_eq!(place(&mut net, &mut other).0, Some(2));
    // Trunk 1 fails too: the call moves to the other account, its count with it.
    net.send(TRUNK_B, &reply(&at_b, 503, "Service Unavailable", "b1", ""));
    net.settle();
    let at_c = invite_at(&mut net, TRUNK_C);
    assert_eq!(
        (net.proxy.account_sessions(0), net.proxy.account_sessions(1)),
        (0, 2)
    );
    assert_eq!((gauge(&net, 0), gauge(&net, 1)), (0, 2));
    // It is answered and hung up: every count is back to zero for it.
    net.send(TRUNK_C, &reply(&at_c, 200, "OK", "c1", TRUNK_C));
    net.settle();
    call.to_tag = Some("c1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net
        .take(TRUNK_C)
        .into_iter()
        .find(|m| m.method() == Some(Method::Bye))
        .expect("BYE at trunk 2");
    net.send(TRUNK_C, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    assert_eq!(
        net.proxy.account_sessions(1),
        1,
        "the other call is still up"
    );
    assert_eq!(gauge(&net, 1), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Random call mixes with failover over three trunks of two accounts (trunks 0 and 1 in
    /// account 0 with 4 sessions, trunk 0 itself 3; trunk 2 in account 1 with 2): the counts
    /// per trunk and per account follow the dialog table after every step, never exceed a
    /// limit, and are 0 at the end.
    #[test]
    fn session_counts_per_account_follow_failovers(steps in prop::collection::vec(step(), 1..60)) {
        let mut admission = two_providers();
        admission.limits[0] = limit(3);
        admission.account_limits = [limit(4), limit(2)];
        check_session_counts(three_trunks(admission, FailoverPolicy::standard()), steps)?;
    }

    /// The same without failover, the account's rate limited too.
    #[test]
    fn session_counts_per_account_never_leak(steps in prop::collection::vec(step(), 1..60)) {
        let mut admission = two_providers();
        admission.account_limits[0] = limit(2);
        *admission.account_tokens.lock().unwrap() = [Some(20), Some(3)];
        check_session_counts(three_trunks(admission, FailoverPolicy::NONE), steps)?;
    }
}
