//! Every transition on a fake clock: `base` is `Instant::now()` taken once, then
//! `base + Duration`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::{TrunkIds, tests::no_dns};
use trunkgate_config::Policy;

/// Trunk a (id 0) probed with `probe`, trunk b (id 1) not probed; `[health]` with `health`.
fn setup(probe: &str, health: &str) -> (RoutingTable, Health, Instant) {
    let src = format!(
        r#"
[listen]
sip = ["udp:127.0.0.1:5060"]
[pbx]
address = "127.0.0.2:5060"
[[trunk]]
name = "a"
address = "127.0.0.3:5060"
probe = {{ {probe} }}
[[trunk]]
name = "b"
address = "127.0.0.4:5060"
[health]
{health}
"#
    );
    let policy = Policy::from_toml(&src, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let table = RoutingTable::new(&policy, &mut TrunkIds::default(), no_dns).unwrap();
    let base = Instant::now();
    let health = Health::new(&table, &policy.health, base);
    (table, health, base)
}

const A: TrunkId = TrunkId(0);
const B: TrunkId = TrunkId(1);

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn change(h: &Health, now: Instant, t: TrunkId) -> TrunkState {
    h.state(now, t).unwrap()
}

#[test]
fn starts_up_and_usable() {
    let (_, h, base) = setup("", "");
    assert_eq!(change(&h, base, A), TrunkState::Up);
    assert!(h.usable(base, A) && h.usable(base, B));
    assert!(h.usable(base, TrunkId(9)), "unknown ids have no verdict");
    assert_eq!(h.probe_timeout(A), Some(s(2)));
    assert_eq!(h.probe_timeout(B), None);
}

#[test]
fn probes_down_after_and_up_after() {
    let (_, mut h, t) = setup("down_after = 3, up_after = 2", "");
    assert_eq!(h.on_probe(t, A, ProbeOutcome::Timeout, None), None);
    assert_eq!(
        h.on_probe(t + s(10), A, ProbeOutcome::Reply(503), None),
        None
    );
    let down = h
        .on_probe(t + s(20), A, ProbeOutcome::TransportError, None)
        .unwrap();
    assert_eq!((down.old, down.new), (TrunkState::Up, TrunkState::Down));
    assert_eq!(down.why.to_string(), "probe: 3 consecutive failures");
    assert!(!h.usable(t + s(20), A));
    assert_eq!(
        h.on_probe(
            t + s(30),
            A,
            ProbeOutcome::Reply(200),
            Some(Duration::from_millis(12))
        ),
        None
    );
    // A failure in between restarts the count of successes.
    assert_eq!(h.on_probe(t + s(40), A, ProbeOutcome::Timeout, None), None);
    assert_eq!(
        h.on_probe(t + s(50), A, ProbeOutcome::Reply(200), None),
        None
    );
    let up = h
        .on_probe(t + s(60), A, ProbeOutcome::Reply(200), None)
        .unwrap();
    assert_eq!((up.old, up.new), (TrunkState::Down, TrunkState::Up));
    assert_eq!(up.why.to_string(), "probe: 2 consecutive successes");
    assert!(h.usable(t + s(60), A));
}

#[test]
fn probe_reachability_default_rule() {
    for (code, reachable) in [
        (200, true),
        (404, true),
        (405, true),
        (486, true),
        (408, false),
        (503, false),
        (500, false),
        (603, false),
    ] {
        let (_, mut h, t) = setup("down_after = 1, up_after = 1", "");
        let c = h.on_probe(t, A, ProbeOutcome::Reply(code), None);
        assert_eq!(c.is_none(), reachable, "{code}");
    }
    let (_, mut h, t) = setup("down_after = 1", "");
    assert!(h.on_probe(t, A, ProbeOutcome::Timeout, None).is_some());
}

#[test]
fn ok_codes_override_the_rule() {
    let (_, mut h, t) = setup("down_after = 1, up_after = 1, ok_codes = [200]", "");
    let down = h.on_probe(t, A, ProbeOutcome::Reply(404), None).unwrap();
    assert_eq!(down.new, TrunkState::Down);
    let up = h
        .on_probe(t + s(1), A, ProbeOutcome::Reply(200), None)
        .unwrap();
    assert_eq!(up.new, TrunkState::Up);
    let (_, mut h, t) = setup("down_after = 1, ok_codes = [503]", "");
    assert_eq!(h.on_probe(t, A, ProbeOutcome::Reply(503), None), None);
}

#[test]
fn probes_of_an_unprobed_trunk_are_ignored() {
    let (_, mut h, t) = setup("down_after = 1", "");
    assert_eq!(h.on_probe(t, B, ProbeOutcome::Timeout, None), None);
    assert_eq!(change(&h, t, B), TrunkState::Up);
}

#[test]
fn breaker_trips_within_the_window() {
    let (_, mut h, t) = setup("", "breaker_failures = 3\nbreaker_window = \"10s\"");
    assert_eq!(h.on_branch(t, B, BranchOutcome::Timeout), None);
    assert_eq!(h.on_branch(t + s(1), B, BranchOutcome::Final(503)), None);
    let down = h.on_branch(t + s(2), B, BranchOutcome::Final(408)).unwrap();
    assert_eq!((down.old, down.new), (TrunkState::Up, TrunkState::Down));
    assert_eq!(down.why.to_string(), "breaker: 3 consecutive failures");
    assert!(!h.usable(t + s(2), B));
}

#[test]
fn breaker_failures_outside_the_window_do_not_add_up() {
    let (_, mut h, t) = setup("", "breaker_failures = 3\nbreaker_window = \"10s\"");
    assert_eq!(h.on_branch(t, B, BranchOutcome::TransportError), None);
    assert_eq!(h.on_branch(t + s(8), B, BranchOutcome::Final(500)), None);
    // The first is 12 s old: only two fall within 10 s.
    assert_eq!(h.on_branch(t + s(12), B, BranchOutcome::Final(502)), None);
    assert!(h.on_branch(t + s(13), B, BranchOutcome::Timeout).is_some());
}

#[test]
fn breaker_resets_on_success_and_ignores_the_callees_answers() {
    let (_, mut h, t) = setup("", "breaker_failures = 2");
    for ok in [
        BranchOutcome::Answered,
        BranchOutcome::Final(486),
        BranchOutcome::Final(404),
        BranchOutcome::Final(603),
        BranchOutcome::Final(302),
    ] {
        assert_eq!(h.on_branch(t, B, BranchOutcome::Final(503)), None);
        assert_eq!(h.on_branch(t, B, ok), None, "{ok:?} resets");
    }
    // 100 Trying is no verdict: 100 then 503, twice, trips.
    assert_eq!(h.on_branch(t, B, BranchOutcome::Provisional), None);
    assert_eq!(h.on_branch(t, B, BranchOutcome::Final(503)), None);
    assert_eq!(h.on_branch(t, B, BranchOutcome::Provisional), None);
    assert!(h.on_branch(t, B, BranchOutcome::Final(503)).is_some());
}

#[test]
fn half_open_trial_success_brings_it_up() {
    let (_, mut h, t) = setup("", "breaker_failures = 1\nbreaker_cooldown = \"30s\"");
    h.on_branch(t, B, BranchOutcome::Timeout).unwrap();
    assert!(!h.usable(t + s(29), B));
    assert_eq!(h.next_deadline(), Some(t), "a's first probe is due at once");
    let mut due = Vec::new();
    h.due_probes(t, &mut due);
    assert_eq!(h.next_deadline(), Some(t + s(10)));
    let mut changes = Vec::new();
    h.on_timeout(t + s(10), &mut changes);
    assert!(changes.is_empty());
    // The cooldown ends at t + 30 s: one trial may go.
    assert!(h.usable(t + s(30), B));
    assert_eq!(change(&h, t + s(30), B), TrunkState::HalfOpen);
    h.on_timeout(t + s(30), &mut changes);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].new, changes[0].why),
        (TrunkState::HalfOpen, ChangeReason::CooldownOver)
    );
    assert_eq!(h.trial_started(t + s(31), B), None);
    assert!(!h.usable(t + s(31), B), "the one trial is out");
    assert_eq!(h.on_branch(t + s(32), B, BranchOutcome::Provisional), None);
    assert!(!h.usable(t + s(32), B));
    let up = h.on_branch(t + s(33), B, BranchOutcome::Answered).unwrap();
    assert_eq!(
        (up.old, up.new, up.why),
        (
            TrunkState::HalfOpen,
            TrunkState::Up,
            ChangeReason::TrialSucceeded
        )
    );
    assert!(h.usable(t + s(33), B));
}

#[test]
fn half_open_trial_failure_takes_it_down_for_another_cooldown() {
    let (_, mut h, t) = setup("", "breaker_failures = 1\nbreaker_cooldown = \"30s\"");
    h.on_branch(t, B, BranchOutcome::Final(500)).unwrap();
    // No on_timeout call: trial_started moves it to HalfOpen itself.
    let c = h.trial_started(t + s(40), B).unwrap();
    assert_eq!(c.new, TrunkState::HalfOpen);
    let down = h
        .on_branch(t + s(41), B, BranchOutcome::Final(503))
        .unwrap();
    assert_eq!(
        (down.old, down.new, down.why),
        (
            TrunkState::HalfOpen,
            TrunkState::Down,
            ChangeReason::TrialFailed
        )
    );
    assert!(!h.usable(t + s(70), B));
    assert!(h.usable(t + s(71), B));
    assert!(h.next_deadline().is_some_and(|d| d <= t + s(71)));
}

#[test]
fn probed_trunk_comes_back_only_through_probes() {
    let (_, mut h, t) = setup(
        "up_after = 2",
        "breaker_failures = 1\nbreaker_cooldown = \"5s\"",
    );
    h.on_probe(t, A, ProbeOutcome::Reply(200), None);
    h.on_probe(t, A, ProbeOutcome::Reply(200), None);
    let down = h.on_branch(t, A, BranchOutcome::Timeout).unwrap();
    assert_eq!(down.why, ChangeReason::Breaker(1));
    assert!(!h.usable(t + s(60), A), "no half-open for a probed trunk");
    assert_eq!(h.on_branch(t + s(61), A, BranchOutcome::Answered), None);
    assert_eq!(
        h.on_probe(t + s(62), A, ProbeOutcome::Reply(200), None),
        None
    );
    let up = h
        .on_probe(t + s(72), A, ProbeOutcome::Reply(200), None)
        .unwrap();
    assert_eq!(up.new, TrunkState::Up);
}

#[test]
fn retry_after_is_capped_and_can_be_ignored() {
    let (_, mut h, t) = setup("", "retry_after_max = \"20s\"");
    assert_eq!(h.retry_after(t, B, 300), s(20));
    assert!(!h.usable(t + s(19), B));
    assert_eq!(
        change(&h, t + s(19), B),
        TrunkState::Up,
        "cooling is no state change"
    );
    assert_eq!(h.view(t + s(5))[1].cooling, Some(s(15)));
    assert!(h.usable(t + s(20), B));
    assert_eq!(h.retry_after(t, B, 5), s(5));
    let (_, mut h, t) = setup("", "retry_after_max = \"0s\"");
    assert_eq!(h.retry_after(t, B, 300), Duration::ZERO);
    assert!(h.usable(t, B));
}

#[test]
fn probe_schedule_is_spread_and_regular() {
    let (_, mut h, t) = setup("interval = \"10s\"", "");
    let mut due = Vec::new();
    h.due_probes(t, &mut due);
    assert_eq!(due, [A]);
    due.clear();
    h.due_probes(t + s(9), &mut due);
    assert!(due.is_empty());
    h.due_probes(t + s(10), &mut due);
    assert_eq!(due, [A]);
    assert_eq!(h.next_deadline(), Some(t + s(20)));
}

#[test]
fn view_shows_probe_and_breaker_figures() {
    let (_, mut h, t) = setup("", "");
    h.on_probe(
        t,
        A,
        ProbeOutcome::Reply(200),
        Some(Duration::from_millis(7)),
    );
    h.on_branch(t, B, BranchOutcome::Timeout);
    let v = h.view(t + s(3));
    assert_eq!(v.len(), 2);
    assert_eq!(
        (v[0].trunk, v[0].name.as_str(), v[0].state),
        (A, "a", TrunkState::Up)
    );
    assert_eq!(v[0].why, "start");
    assert_eq!(v[0].since, s(3));
    assert_eq!(v[0].last_probe.as_deref(), Some("reply 200"));
    assert_eq!(v[0].last_probe_age, Some(s(3)));
    assert_eq!(v[0].rtt, Some(Duration::from_millis(7)));
    assert_eq!((v[0].probe_successes, v[0].probe_failures), (1, 0));
    assert_eq!(
        (v[1].branch_failures, v[1].last_probe.as_deref()),
        (1, None)
    );
}

#[test]
fn rebuild_keeps_state_by_id() {
    let (table, mut h, t) = setup("down_after = 1", "");
    h.on_probe(t, A, ProbeOutcome::Timeout, None).unwrap();
    let settings = h.settings().clone();
    h.rebuild(&table, &settings, t + s(1));
    assert_eq!(change(&h, t + s(1), A), TrunkState::Down);
    assert_eq!(change(&h, t + s(1), B), TrunkState::Up);
}

#[test]
fn a_probed_trunk_tripped_by_the_breaker_waits_out_the_cooldown_before_probes_bring_it_up() {
    let (_, mut h, t) = setup(
        "up_after = 2",
        "breaker_failures = 2\nbreaker_cooldown = \"30s\"",
    );
    assert_eq!(h.on_branch(t, A, BranchOutcome::Final(503)), None);
    let down = h.on_branch(t + s(1), A, BranchOutcome::Final(503)).unwrap();
    assert_eq!(down.new, TrunkState::Down);
    // It answers OPTIONS fine, but calls failed: not back before the cooldown is over.
    for i in 2..30 {
        assert_eq!(
            h.on_probe(t + s(i), A, ProbeOutcome::Reply(200), None),
            None,
            "up too early at {i} s"
        );
        assert!(!h.usable(t + s(i), A));
    }
    let up = h
        .on_probe(t + s(32), A, ProbeOutcome::Reply(200), None)
        .unwrap();
    assert_eq!((up.old, up.new), (TrunkState::Down, TrunkState::Up));
    assert!(h.usable(t + s(32), A));
}

#[test]
fn restore_puts_a_drilled_trunk_back_as_it_was() {
    let (_, mut h, t) = setup("down_after = 2, up_after = 2", "breaker_failures = 2");
    // A probe-fail drill took a down; a reject-503 drill tripped b's breaker.
    h.on_probe(t, A, ProbeOutcome::Timeout, None);
    h.on_probe(t, A, ProbeOutcome::Timeout, None);
    h.on_branch(t, B, BranchOutcome::Final(503));
    h.on_branch(t, B, BranchOutcome::Final(503));
    assert_eq!(change(&h, t, A), TrunkState::Down);
    assert_eq!(change(&h, t, B), TrunkState::Down);
    let back = h.restore(t + s(1), A, TrunkState::Up).unwrap();
    assert_eq!(
        (back.new, back.why),
        (TrunkState::Up, ChangeReason::DrillEnded)
    );
    h.restore(t + s(1), B, TrunkState::Up);
    assert!(h.usable(t + s(1), A) && h.usable(t + s(1), B));
    // Counters start over: one more failure does not take b down again.
    assert_eq!(h.on_branch(t + s(2), B, BranchOutcome::Final(503)), None);
    // a's next probe is due at once.
    let mut due = Vec::new();
    h.due_probes(t + s(1), &mut due);
    assert_eq!(due, vec![A]);
    assert_eq!(h.restore(t, TrunkId(9), TrunkState::Up), None);
}
