#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::TrunkIds;
use trunkgate_config::Policy;

fn table() -> RoutingTable {
    let policy = Policy::embedded_default().unwrap();
    RoutingTable::new(&policy, &mut TrunkIds::default(), |_, _| {
        Err(std::io::Error::other("no DNS in tests"))
    })
    .unwrap()
}

fn request(trunk: u16, mode: DrillMode, secs: u64) -> DrillRequest {
    DrillRequest {
        trunk: TrunkId(trunk),
        trunk_name: format!("t{trunk}"),
        mode,
        duration: Duration::from_secs(secs),
        started_by: "local".into(),
        max_duration: Duration::from_secs(1800),
        state_before: Some(TrunkState::Up),
    }
}

#[test]
fn modes_parse_and_print() {
    for text in ["down", "drain", "reject-503", "cap=5", "probe-fail"] {
        assert_eq!(text.parse::<DrillMode>().unwrap().to_string(), text);
    }
    assert!("cap=x".parse::<DrillMode>().unwrap_err().contains("cap=N"));
    assert!("off".parse::<DrillMode>().is_err());
}

#[test]
fn a_drill_is_bounded_and_expires() {
    let t0 = Instant::now();
    let mut drills = Drills::default();
    assert_eq!(
        drills
            .start(t0, 0, request(0, DrillMode::Down, 0))
            .unwrap_err(),
        DrillError::NoDuration
    );
    assert!(matches!(
        drills.start(t0, 0, request(0, DrillMode::Down, 3600)),
        Err(DrillError::TooLong { .. })
    ));
    drills
        .start(t0, 1_000, request(0, DrillMode::Down, 20))
        .unwrap();
    assert!(matches!(
        drills.start(t0, 0, request(0, DrillMode::Drain, 20)),
        Err(DrillError::Busy(_))
    ));
    assert_eq!(drills.mode(TrunkId(0)), Some(DrillMode::Down));
    assert_eq!(drills.mode(TrunkId(1)), None);
    assert_eq!(drills.next_deadline(), Some(t0 + Duration::from_secs(20)));
    assert!(drills.expire(t0 + Duration::from_secs(19), 0).is_empty());
    let ended = drills.expire(t0 + Duration::from_secs(20), 21_000);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].1.end, DrillEnd::Expired);
    assert_eq!(ended[0].1.ends_unix_ms, 21_000);
    assert!(drills.is_empty());
    assert_eq!(drills.mode(TrunkId(0)), None);
    assert_eq!(drills.report(None).unwrap().id, 1);
}

#[test]
fn reports_count_calls_on_the_drilled_route() {
    let t0 = Instant::now();
    let mut drills = Drills::default();
    // Before the drill: two answered calls (setup 100 and 300 ms).
    drills.call_answered(t0, 1, Some((TrunkId(0), "a")), Duration::from_millis(100));
    drills.call_answered(t0, 2, Some((TrunkId(0), "a")), Duration::from_millis(300));
    drills
        .start(t0, 0, request(0, DrillMode::Reject503, 20))
        .unwrap();
    let route = [TrunkId(0), TrunkId(1)];
    for dialog in 10..15 {
        drills.call_attempt(dialog, &route);
        drills.failover(Some(dialog));
    }
    for dialog in 10..14 {
        drills.call_answered(
            t0,
            dialog,
            Some((TrunkId(1), "b")),
            Duration::from_millis(50),
        );
        drills.call_ended(dialog);
    }
    drills.call_failed(14, "503");
    // A call on a route without the trunk is not the drill's.
    drills.call_attempt(99, &[TrunkId(1)]);
    let report = drills.report(None).unwrap();
    assert_eq!(report.calls_attempted, 5);
    assert_eq!(report.failovers, 5);
    assert_eq!(report.rerouted, 4);
    assert_eq!(report.carried_by.get("b"), Some(&4));
    assert_eq!(report.failed, 1);
    assert_eq!(report.rejects.get("503"), Some(&1));
    assert_eq!(report.setup_before.calls, 2);
    assert_eq!(report.setup_before.p50_ms, Some(100));
    assert_eq!(report.setup_before.p95_ms, Some(300));
    assert_eq!(report.setup_during.p50_ms, Some(50));
    let stopped = drills.stop(5, None);
    assert_eq!(stopped[0].1.end, DrillEnd::Stopped);
}

#[test]
fn only_the_last_twenty_reports_are_kept() {
    let t0 = Instant::now();
    let mut drills = Drills::default();
    for i in 0..25 {
        drills
            .start(t0, i, request(0, DrillMode::Drain, 1))
            .unwrap();
        drills.stop(i, Some(TrunkId(0)));
    }
    let reports = drills.reports();
    assert_eq!(reports.len(), REPORTS_KEPT);
    assert_eq!(reports.first().unwrap().id, 6);
    assert_eq!(drills.report(Some(3)), None);
}

#[test]
fn dry_run_names_a_route_left_empty() {
    let table = table();
    let a = table.trunk_id("carrier-a").unwrap();
    let b = table.trunk_id("carrier-b").unwrap();
    let all_up = |_: TrunkId| true;
    let sessions = |id: TrunkId| if id == a { 10 } else { 0 };
    let run = dry_run(&table, a, DrillMode::Down, &all_up, &sessions, 40);
    assert_eq!(run.empty_routes(), Vec::<&str>::new());
    assert_eq!(run.routes[0].trunks_left, vec!["carrier-b".to_owned()]);
    assert_eq!(run.moving_now, 10);
    assert_eq!(run.moving_at_peak, 40);
    assert!(run.enough_now);
    // carrier-b down too: the route would be empty.
    let only_a = |id: TrunkId| id != b;
    let run = dry_run(&table, a, DrillMode::Down, &only_a, &sessions, 40);
    assert_eq!(run.empty_routes(), vec![table.routes()[0].name.as_str()]);
    assert!(!run.enough_now);
    // A cap keeps the trunk in the route.
    let run = dry_run(&table, a, DrillMode::Cap(5), &only_a, &sessions, 40);
    assert!(run.empty_routes().is_empty());
    assert_eq!(run.moving_now, 5);
}
