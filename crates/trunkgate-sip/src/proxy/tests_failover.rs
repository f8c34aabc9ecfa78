//! Failover scenarios over [`super::simnet::SimNet`]: every way a branch ends reaches the
//! decision point; the PBX never sees a failure that another trunk could absorb, never two
//! answers, and every counter, timer and dialog is back to zero afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::event::{Event, Outcome, ProbeResult};
use super::simnet::*;
use crate::message::{Method, SipMessage};
use crate::routing::{CodeSet, FailoverPolicy, Party, Target};
use crate::transport::Transport;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn policy() -> FailoverPolicy {
    FailoverPolicy::standard()
}

fn statuses(msgs: &[SipMessage]) -> Vec<Option<u16>> {
    msgs.iter().map(SipMessage::status).collect()
}

/// The PBX sends an INVITE; returns what trunk 0 (carrier-a) received.
fn invite_to_a(net: &mut SimNet, call: &mut Call) -> SipMessage {
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    net.take_one(TRUNK)
}

/// carrier-b answers `at_b` with 180 + 200, the PBX ACKs and hangs up; asserts the PBX saw
/// exactly 180 and 200 (plus an optional 100 Trying).
fn answer_at_b_and_hang_up(net: &mut SimNet, call: &mut Call, at_b: &SipMessage) {
    net.send(TRUNK_B, &reply(at_b, 180, "Ringing", "b1", TRUNK_B));
    net.send(TRUNK_B, &reply(at_b, 200, "OK", "b1", TRUNK_B));
    net.settle();
    let got: Vec<_> = statuses(&net.take(PBX))
        .into_iter()
        .filter(|s| *s != Some(100))
        .collect();
    assert_eq!(got, vec![Some(180), Some(200)]);
    call.to_tag = Some("b1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    assert_eq!(net.take_one(TRUNK_B).method(), Some(Method::Ack));
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK_B);
    assert_eq!(bye.method(), Some(Method::Bye));
    net.send(TRUNK_B, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(200));
}

fn assert_idle_after_timers(net: &mut SimNet) {
    assert_eq!(net.proxy.active_dialogs(), 0, "dialogs left");
    net.run_for(Duration::from_secs(200));
    assert_eq!(net.proxy.active_transactions(), 0, "transactions left");
    assert_eq!(net.metrics.transactions.load(Ordering::Relaxed), 0);
    assert_eq!(net.metrics.dialogs_total.load(Ordering::Relaxed), 0);
    assert_eq!(net.proxy.trunk_sessions(0), 0);
    assert_eq!(net.proxy.trunk_sessions(1), 0);
    for peer in net.metrics.peers.iter() {
        assert_eq!(peer.dialogs[0].load(Ordering::Relaxed), 0);
        assert_eq!(peer.dialogs[1].load(Ordering::Relaxed), 0);
    }
}

#[test]
fn every_failover_code_moves_the_call_to_the_next_trunk() {
    for code in [408, 480, 500, 502, 503, 504] {
        let mut net = SimNet::with_failover(policy());
        let mut call = Call::new(&format!("fo{code}"), PBX, TRUNK);
        let at_a = invite_to_a(&mut net, &mut call);
        net.send(TRUNK, &reply(&at_a, code, "Failure", "a1", ""));
        net.settle();
        // carrier-a's failure is ACKed hop by hop and never reaches the PBX.
        assert_eq!(net.take_one(TRUNK).method(), Some(Method::Ack));
        let at_b = net.take_one(TRUNK_B);
        assert_eq!(at_b.method(), Some(Method::Invite));
        assert_eq!(at_b.call_id(), at_a.call_id());
        assert_ne!(at_b.top_via().branch(), at_a.top_via().branch());
        assert!(
            String::from_utf8_lossy(at_b.request_uri().unwrap()).contains("127.0.0.4"),
            "Request-URI retargeted to carrier-b"
        );
        // While failing over the call counts against carrier-b, not carrier-a.
        assert_eq!(net.proxy.trunk_sessions(0), 0, "code {code}");
        assert_eq!(net.proxy.trunk_sessions(1), 1, "code {code}");
        answer_at_b_and_hang_up(&mut net, &mut call, &at_b);
        let events = net.events();
        assert!(events.iter().any(|e| matches!(e,
            Event::BranchEnded { to: Party::Trunk(0), outcome: Outcome::Final(c), failover: true, .. } if *c == code)));
        assert!(events.iter().any(|e| matches!(
            e,
            Event::CallAnswered {
                to: Party::Trunk(1),
                ..
            }
        )));
        assert_idle_after_timers(&mut net);
    }
}

#[test]
fn a_486_or_404_is_relayed_never_retried() {
    for code in [486, 404] {
        let mut net = SimNet::with_failover(policy());
        let mut call = Call::new(&format!("nofo{code}"), PBX, TRUNK);
        let at_a = invite_to_a(&mut net, &mut call);
        net.send(TRUNK, &reply(&at_a, code, "No", "a1", ""));
        net.settle();
        assert_eq!(net.take_one(TRUNK).method(), Some(Method::Ack));
        assert_eq!(statuses(&net.take(PBX)), vec![Some(code)]);
        assert!(net.take(TRUNK_B).is_empty(), "carrier-b never tried");
        assert_idle_after_timers(&mut net);
    }
}

#[test]
fn when_every_trunk_fails_the_pbx_gets_the_last_failure_and_503_becomes_500() {
    let mut net = SimNet::with_failover(policy());
    let mut call = Call::new("allfail", PBX, TRUNK);
    let at_a = invite_to_a(&mut net, &mut call);
    net.send(TRUNK, &reply(&at_a, 502, "Bad Gateway", "a1", ""));
    net.settle();
    net.take(TRUNK);
    let at_b = net.take_one(TRUNK_B);
    net.send(TRUNK_B, &reply(&at_b, 480, "Unavailable", "b1", ""));
    net.settle();
    assert_eq!(statuses(&net.take(PBX)), vec![Some(480)]);
    assert_idle_after_timers(&mut net);

    // A 503 from the last trunk must not make the PBX back off from Trunkgate itself
    // (RFC 3261 §16.7): it becomes 500.
    let mut net = SimNet::with_failover(policy());
    let mut call = Call::new("all503", PBX, TRUNK);
    let at_a = invite_to_a(&mut net, &mut call);
    net.send(TRUNK, &reply(&at_a, 503, "Busy", "a1", ""));
    net.settle();
    let at_b = net.take_one(TRUNK_B);
    net.send(TRUNK_B, &reply(&at_b, 503, "Busy", "b1", ""));
    net.settle();
    assert_eq!(statuses(&net.take(PBX)), vec![Some(500)]);
    assert_idle_after_timers(&mut net);
}

#[test]
fn max_attempts_one_means_no_failover() {
    let mut net = SimNet::with_failover(FailoverPolicy {
        max_attempts: 1,
        ..policy()
    });
    let mut call = Call::new("one", PBX, TRUNK);
    let at_a = invite_to_a(&mut net, &mut call);
    net.send(TRUNK, &reply(&at_a, 502, "Bad Gateway", "a1", ""));
    net.settle();
    assert_eq!(statuses(&net.take(PBX)), vec![Some(502)]);
    assert!(net.take(TRUNK_B).is_empty());
    assert_idle_after_timers(&mut net);
}

#[test]
fn failover_on_is_the_routes_own_list() {
    let mut net = SimNet::with_failover(FailoverPolicy {
        failover_on: CodeSet::from_codes([486]),
        ..policy()
    });
    let mut call = Call::new("own", PBX, TRUNK);
    let at_a = invite_to_a(&mut net, &mut call);
    net.send(TRUNK, &reply(&at_a, 486, "Busy", "a1", ""));
    net.settle();
    assert_eq!(net.take_one(TRUNK_B).method(), Some(Method::Invite));
    assert!(net.take(PBX).iter().all(|m| m.status() == Some(100)));
}

#[test]
fn a_silent_trunk_is_left_after_try_timeout_and_its_late_2xx_is_acked_and_byed() {
    let mut net = SimNet::with_failover(policy());
    let mut call = Call::new("silent", PBX, TRUNK);
    let at_a = invite_to_a(&mut net, &mut call);
    // No provisional from carrier-a: after 3 s (try_timeout) carrier-b gets the call, and
    // the PBX only ever saw our 100 Trying.
    net.run_for(Duration::from_millis(2900));
    assert!(net.take(TRUNK_B).is_empty());
    let retransmissions = net.take(TRUNK).len();
    assert!(
        retransmissions >= 2,
        "Timer A retransmits to carrier-a meanwhile"
    );
    net.run_for(Duration::from_millis(200));
    let at_b = net.take_one(TRUNK_B);
    assert_eq!(statuses(&net.take(PBX)), vec![Some(100)]);
    // The abandoned branch is no longer retransmitted.
    net.run_for(Duration::from_secs(2));
    assert!(net.take(TRUNK).is_empty());
    net.send(TRUNK_B, &reply(&at_b, 180, "Ringing", "b1", TRUNK_B));
    net.send(TRUNK_B, &reply(&at_b, 200, "OK", "b1", TRUNK_B));
    net.settle();
    net.take(TRUNK_B);
    assert_eq!(statuses(&net.take(PBX)), vec![Some(180), Some(200)]);
    // carrier-a wakes up and answers too: ACK + BYE from us, nothing to the PBX.
    net.send(TRUNK, &reply(&at_a, 200, "OK", "a-late", TRUNK));
    net.settle();
    let to_a = net.take(TRUNK);
    let methods: Vec<_> = to_a.iter().map(SipMessage::method).collect();
    assert_eq!(methods, vec![Some(Method::Ack), Some(Method::Bye)]);
    assert_eq!(to_a[1].to_tag(), Some(&b"a-late"[..]));
    assert_eq!(to_a[1].cseq(), (at_a.cseq().0 + 1, Method::Bye));
    assert!(net.take(PBX).is_empty(), "never two 2xx to the PBX");
    assert_eq!(net.metrics.late_answers.load(Ordering::Relaxed), 1);
    net.send(TRUNK, &reply(&to_a[1], 200, "OK", "", ""));
    call.to_tag = Some("b1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    assert_eq!(net.take_one(TRUNK_B).method(), Some(Method::Ack));
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK_B);
    net.send(TRUNK_B, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    let events = net.events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::BranchEnded {
            to: Party::Trunk(0),
            outcome: Outcome::TryTimeout,
            failover: true,
            ..
        }
    )));
    assert_idle_after_timers(&mut net);
}

#[test]
fn a_provisional_from_an_abandoned_branch_gets_a_cancel() {
    let mut net = SimNet::with_failover(policy());
    let mut call = Call::new("latering", PBX, TRUNK);
    let at_a = invite_to_a(&mut net, &mut call);
    net.run_for(Duration::from_millis(3100));
    let at_b = net.take_one(TRUNK_B);
    net.take(TRUNK);
    net.send(TRUNK, &reply(&at_a, 180, "Ringing", "a1", TRUNK));
    net.settle();
    let cancel = net.take_one(TRUNK);
    assert_eq!(cancel.method(), Some(Method::Cancel));
    assert!(statuses(&net.take(PBX)).iter().all(|s| *s == Some(100)));
    net.send(TRUNK, &reply(&cancel, 200, "OK", "a1", ""));
    net.send(TRUNK, &reply(&at_a, 487, "Terminated", "a1", ""));
    net.settle();
    assert_eq!(net.take_one(TRUNK).method(), Some(Method::Ack));
    assert!(net.take(PBX).is_empty());
    answer_at_b_and_hang_up(&mut net, &mut call, &at_b);
    assert_idle_after_timers(&mut net);
}

#[test]
fn a_refused_connection_fails_over_at_once() {
    let mut net = SimNet::with_failover(policy());
    let mut call = Call::new("refused", PBX, TRUNK);
    let _at_a = invite_to_a(&mut net, &mut call);
    net.transport_failed(Transport::Udp, TRUNK);
    net.settle();
    let at_b = net.take_one(TRUNK_B);
    assert_eq!(net.metrics.transport_failures.load(Ordering::Relaxed), 1);
    answer_at_b_and_hang_up(&mut net, &mut call, &at_b);
    assert!(net.events().iter().any(|e| matches!(
        e,
        Event::BranchEnded {
            outcome: Outcome::Transport,
            failover: true,
            ..
        }
    )));
    assert_idle_after_timers(&mut net);
}

#[test]
fn retry_after_is_reported_with_the_failover() {
    let mut net = SimNet::with_failover(policy());
    let mut call = Call::new("retry", PBX, TRUNK);
    let at_a = invite_to_a(&mut net, &mut call);
    let busy = reply(&at_a, 503, "Service Unavailable", "a1", "").replace(
        "Content-Length: 0",
        "Retry-After: 20 (maintenance)\r\nContent-Length: 0",
    );
    net.send(TRUNK, &busy);
    net.settle();
    let at_b = net.take_one(TRUNK_B);
    answer_at_b_and_hang_up(&mut net, &mut call, &at_b);
    assert!(net.events().iter().any(|e| matches!(
        e,
        Event::BranchEnded {
            to: Party::Trunk(0),
            retry_after: Some(20),
            failover: true,
            ..
        }
    )));
    assert_idle_after_timers(&mut net);
}

fn cancel_for(call: &Call, branch: &str) -> String {
    format!(
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
    )
}

#[test]
fn the_pbxs_cancel_during_a_failover_ends_everything_with_one_487() {
    // Case 1: carrier-b is ringing when the PBX cancels: CANCEL goes to carrier-b.
    let mut net = SimNet::with_failover(policy());
    let mut call = Call::new("cxl1", PBX, TRUNK);
    let (invite, branch) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    let at_a = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&at_a, 503, "Busy", "a1", ""));
    net.settle();
    net.take(TRUNK);
    let at_b = net.take_one(TRUNK_B);
    net.send(TRUNK_B, &reply(&at_b, 180, "Ringing", "b1", TRUNK_B));
    net.settle();
    assert_eq!(statuses(&net.take(PBX)), vec![Some(180)]);
    net.send(PBX, &cancel_for(&call, &branch));
    net.settle();
    assert_eq!(statuses(&net.take(PBX)), vec![Some(200)]);
    let cancel = net.take_one(TRUNK_B);
    assert_eq!(cancel.method(), Some(Method::Cancel));
    net.send(TRUNK_B, &reply(&cancel, 200, "OK", "b1", ""));
    net.send(TRUNK_B, &reply(&at_b, 487, "Terminated", "b1", ""));
    net.settle();
    assert_eq!(statuses(&net.take(PBX)), vec![Some(487)]);
    assert!(net.take(TRUNK).is_empty(), "carrier-a not tried again");
    net.run_for(Duration::from_secs(40));
    // Only Timer G retransmissions of the one 487 (no ACK sent by this PBX).
    assert!(statuses(&net.take(PBX)).iter().all(|s| *s == Some(487)));
    assert_idle_after_timers(&mut net);

    // Case 2: carrier-b has not answered anything yet: the PBX gets 487 at once, and
    // carrier-b's later 180 is cancelled.
    let mut net = SimNet::with_failover(policy());
    let mut call = Call::new("cxl2", PBX, TRUNK);
    let (invite, branch) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    let at_a = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&at_a, 503, "Busy", "a1", ""));
    net.settle();
    let at_b = net.take_one(TRUNK_B);
    net.send(PBX, &cancel_for(&call, &branch));
    net.settle();
    let got = statuses(&net.take(PBX));
    assert_eq!(got, vec![Some(200), Some(487)]);
    net.send(TRUNK_B, &reply(&at_b, 180, "Ringing", "b1", TRUNK_B));
    net.settle();
    assert_eq!(net.take_one(TRUNK_B).method(), Some(Method::Cancel));
    assert!(net.take(PBX).iter().all(|m| m.status() == Some(487)));
    assert_idle_after_timers(&mut net);
}

#[test]
fn no_answer_anywhere_ends_with_408_after_the_setup_timeout() {
    let mut net = SimNet::with_failover(FailoverPolicy {
        setup_timeout: Duration::from_secs(5),
        ..policy()
    });
    let mut call = Call::new("setup", PBX, TRUNK);
    let _at_a = invite_to_a(&mut net, &mut call);
    net.run_for(Duration::from_millis(3100));
    let _at_b = net.take_one(TRUNK_B);
    // carrier-b is silent too; at 5 s the setup time is over: 408, no third attempt.
    net.run_for(Duration::from_secs(2));
    let got: Vec<_> = statuses(&net.take(PBX))
        .into_iter()
        .filter(|s| *s != Some(100))
        .collect();
    assert_eq!(got[0], Some(408));
    assert_idle_after_timers(&mut net);
}

#[test]
fn a_failover_after_ringing_is_allowed_and_a_2xx_is_final() {
    let mut net = SimNet::with_failover(policy());
    let mut call = Call::new("ring", PBX, TRUNK);
    let at_a = invite_to_a(&mut net, &mut call);
    net.send(TRUNK, &reply(&at_a, 180, "Ringing", "a1", TRUNK));
    net.settle();
    assert_eq!(statuses(&net.take(PBX)), vec![Some(180)]);
    net.send(TRUNK, &reply(&at_a, 503, "Busy", "a1", ""));
    net.settle();
    let at_b = net.take_one(TRUNK_B);
    answer_at_b_and_hang_up(&mut net, &mut call, &at_b);
    // A retransmitted 200 from carrier-b after the call ended: ACKed and BYEd, never relayed.
    assert_idle_after_timers(&mut net);
}

#[test]
fn inbound_calls_fail_over_between_pbx_nodes() {
    let mut net = SimNet::with_failover(policy());
    let mut call = Call::new("inb", TRUNK, PBX);
    let (invite, _) = call.invite();
    net.send(TRUNK, &invite);
    net.settle();
    let at_pbx = net.take_one(PBX);
    net.send(PBX, &reply(&at_pbx, 503, "Down", "p1", ""));
    net.settle();
    net.take(PBX);
    let at_pbx_b = net.take_one(PBX_B);
    assert_eq!(at_pbx_b.method(), Some(Method::Invite));
    // The inbound session stays on the source trunk throughout.
    assert_eq!(net.proxy.trunk_sessions(0), 1);
    net.send(PBX_B, &reply(&at_pbx_b, 200, "OK", "p2", PBX_B));
    net.settle();
    assert!(statuses(&net.take(TRUNK)).contains(&Some(200)));
}

#[test]
fn options_probes_report_replies_and_timeouts() {
    let mut net = SimNet::new();
    let target = Target {
        party: Party::Trunk(0),
        address: addr(TRUNK),
        transport: None,
        uri_host: TRUNK.into(),
        local_answer: None,
    };
    assert!(net.probe(&target, Duration::from_secs(2)));
    net.settle();
    let options = net.take_one(TRUNK);
    assert_eq!(options.method(), Some(Method::Options));
    assert!(options.from_tag().is_some());
    net.send(TRUNK, &reply(&options, 404, "Not Found", "x", ""));
    net.settle();
    let events = net.events();
    assert!(matches!(
        events.as_slice(),
        [Event::Probe {
            to: Party::Trunk(0),
            result: ProbeResult::Reply(404),
            ..
        }]
    ));
    // Unanswered: a timeout at the probe's own timeout, not Timer F.
    net.probe(&target, Duration::from_secs(2));
    net.run_for(Duration::from_millis(2100));
    let events = net.events();
    assert!(matches!(
        events.as_slice(),
        [Event::Probe {
            to: Party::Trunk(0),
            result: ProbeResult::Timeout,
            ..
        }]
    ));
    assert_eq!(net.proxy.active_transactions(), 0);
    // A reply after the timeout is dropped quietly.
    let retransmitted = net.take(TRUNK);
    assert!(!retransmitted.is_empty());
    net.send(TRUNK, &reply(&retransmitted[0], 200, "OK", "x", ""));
    net.settle();
    assert!(net.events().is_empty());
}

#[test]
fn a_locally_answered_branch_runs_the_real_failover_path() {
    // A `reject-503` drill on carrier-a: nothing is sent there, the call fails over.
    let routing = TestRouting {
        failover: policy(),
        reject_first: Some(503),
        ..TestRouting::default()
    };
    let mut net = SimNet::with(None, routing);
    let mut call = Call::new("drill", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    assert!(net.take(TRUNK).is_empty(), "carrier-a never sees the call");
    let at_b = net.take_one(TRUNK_B);
    answer_at_b_and_hang_up(&mut net, &mut call, &at_b);
    assert!(net.events().iter().any(|e| matches!(
        e,
        Event::BranchEnded {
            to: Party::Trunk(0),
            outcome: Outcome::Final(503),
            failover: true,
            ..
        }
    )));
    assert_idle_after_timers(&mut net);

    // With no other trunk the PBX gets 500 (a 503 is never relayed).
    let routing = TestRouting {
        failover: FailoverPolicy {
            max_attempts: 1,
            ..policy()
        },
        reject_first: Some(503),
        ..TestRouting::default()
    };
    let mut net = SimNet::with(None, routing);
    let mut call = Call::new("drill1", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    assert_eq!(statuses(&net.take(PBX)), vec![Some(500)]);
    assert_idle_after_timers(&mut net);
}

#[test]
fn try_timeout_never_gives_up_the_last_candidate() {
    // Only carrier-a is left (max_attempts 1): a slow first provisional is waited for.
    let mut net = SimNet::with_failover(FailoverPolicy {
        max_attempts: 1,
        ..policy()
    });
    let mut call = Call::new("slow", PBX, TRUNK);
    let at_a = invite_to_a(&mut net, &mut call);
    net.run_for(Duration::from_secs(5));
    assert!(net.take(TRUNK_B).is_empty());
    assert!(statuses(&net.take(PBX)).iter().all(|s| *s == Some(100)));
    net.send(TRUNK, &reply(&at_a, 180, "Ringing", "a1", TRUNK));
    net.send(TRUNK, &reply(&at_a, 200, "OK", "a1", TRUNK));
    net.settle();
    let got: Vec<_> = statuses(&net.take(PBX));
    assert_eq!(got, vec![Some(180), Some(200)]);
}
