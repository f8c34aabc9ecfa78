//! End-to-end tests against Kamailio (issue 19): the real `trunkgate` binary registers
//! carrier-a with a Kamailio registrar that demands digest auth (`tests/kamailio/
//! registrar.cfg`: the `auth` module with a fixed test password in a variable, `usrloc` in
//! memory, read with `kamcmd ul.dump`).
//!
//! 1. Right password, `expires = "10s"`: registered, refreshed at least twice,
//!    `trunkgate_registration_up{trunk="carrier-a"} 1`, the Contact in Kamailio's location
//!    table, and gone from it after Trunkgate's shutdown (Expires: 0).
//! 2. Wrong password: `registration_up 0`, the failure counted and logged with Kamailio's
//!    code, at most a handful of attempts in a minute (exponential backoff).
//!
//! Neither the log nor `/metrics` ever contains a password (both tests grep for it).
//! Net numbers 90–91 (see `common::Net`). Kamailio is started as a child, stopped by PID.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::kamailio::Kamailio;
use common::trunkgate::Trunkgate;
use common::{Net, poll, scratch_dir, test_policy, value};
use std::path::Path;
use std::time::{Duration, Instant};

const PASSWORD: &str = "kam-Test-pw-7d1f";
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// The test policy with carrier-a registering (`password_file` in `dir`).
fn policy_with_register(net: Net, dir: &Path, password: &str) -> std::path::PathBuf {
    let pw = dir.join("carrier-a.pw");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    let text = test_policy(net);
    let anchor = format!("address = \"{}:5060\"", net.carrier_a_ip());
    assert!(text.contains(&anchor));
    let register = format!(
        "{anchor}\nregister = {{ user = \"acct-a\", password_file = \"{}\", expires = \"10s\", contact_user = \"tg-a\" }}",
        pw.display()
    );
    let text = text.replacen(&anchor, &register, 1);
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    Trunkgate::check(&path);
    path
}

fn registrar(dir: &Path, net: Net) -> Kamailio {
    let listen = format!("{}:5060", net.carrier_a_ip());
    Kamailio::start(
        dir,
        "registrar.cfg",
        &[("LISTEN", &listen), ("PASSWORD", PASSWORD)],
    )
}

fn metric(tg: &Trunkgate, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(&tg.metrics(), name, labels)
}

fn assert_no_password(tg: &Trunkgate, log: &Path, password: &str) {
    let metrics = tg.metrics();
    assert!(!metrics.contains(password), "password in /metrics");
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(!log_text.contains(password), "password in the log");
}

#[test]
fn registers_with_kamailio_refreshes_and_deregisters_at_shutdown() {
    let net = Net::new(90);
    let dir = scratch_dir("kamailio_register");
    let kam = registrar(&dir, net);
    let policy = policy_with_register(net, &dir, PASSWORD);
    let tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let up = [("trunk", "carrier-a")];
    let registered = [("trunk", "carrier-a"), ("result", "registered")];
    let first = poll(Duration::from_secs(10), || {
        (metric(&tg, "trunkgate_registration_up", &up) == 1.0).then_some(())
    });
    assert!(
        first.is_some(),
        "not registered in 10 s\ntrunkgate:\n{}\nkamailio:\n{}",
        tg.log_tail(),
        kam.log_tail()
    );
    let location = kam.location();
    assert!(
        location.contains("acct-a") && location.contains("sip:tg-a@"),
        "{location}"
    );
    // Two refreshes of a 10 s registration: at 5–8 s each.
    let started = Instant::now();
    let refreshed = poll(Duration::from_secs(25), || {
        (metric(&tg, "trunkgate_registrations_total", &registered) >= 3.0).then_some(())
    });
    assert!(
        refreshed.is_some(),
        "fewer than two refreshes in 25 s: {}\n{}",
        tg.metrics(),
        tg.log_tail()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "refreshes too early"
    );
    assert_eq!(metric(&tg, "trunkgate_registration_up", &up), 1.0);
    assert!(kam.location().contains("sip:tg-a@"));
    assert_no_password(&tg, &dir.join("trunkgate.log"), PASSWORD);
    tg.stop(STOP_WITHIN);
    // Deregistered: the location table no longer holds our Contact.
    let empty = poll(Duration::from_secs(5), || {
        let l = kam.location();
        (!l.contains("sip:tg-a@")).then_some(l)
    });
    assert!(
        empty.is_some(),
        "Contact left after shutdown:\n{}",
        kam.location()
    );
    let log = std::fs::read_to_string(dir.join("trunkgate.log")).unwrap();
    assert!(log.contains("registration up"), "{log}");
    assert!(!log.contains(PASSWORD));
}

#[test]
fn a_wrong_password_stays_down_counted_logged_and_backs_off() {
    let net = Net::new(91);
    let dir = scratch_dir("kamailio_register_wrong");
    let kam = registrar(&dir, net);
    let wrong = "not-the-kam-password";
    let policy = policy_with_register(net, &dir, wrong);
    let tg = Trunkgate::start(&dir, Some(&policy), net.admin());
    let failed = [("trunk", "carrier-a"), ("result", "auth_failed")];
    let counted = poll(Duration::from_secs(10), || {
        (metric(&tg, "trunkgate_registrations_total", &failed) >= 1.0).then_some(())
    });
    assert!(
        counted.is_some(),
        "no auth failure counted\n{}\n{}",
        tg.log_tail(),
        kam.log_tail()
    );
    let start = Instant::now();
    // Watch 35 s: with backoff 10 s, 20 s (+ up to 25 %) at most two more attempts.
    while start.elapsed() < Duration::from_secs(35) {
        assert_eq!(
            metric(&tg, "trunkgate_registration_up", &[("trunk", "carrier-a")]),
            0.0
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let attempts = metric(&tg, "trunkgate_registrations_total", &failed);
    assert!(
        (2.0..=3.0).contains(&attempts),
        "{attempts} failed attempts in ~40 s"
    );
    let log = std::fs::read_to_string(dir.join("trunkgate.log")).unwrap();
    let down: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("registration down"))
        .collect();
    assert_eq!(down.len(), 1, "one line per state change:\n{log}");
    assert!(down[0].contains("code=401"), "{}", down[0]);
    assert!(kam.location().find("sip:tg-a@").is_none());
    assert_no_password(&tg, &dir.join("trunkgate.log"), wrong);
    tg.stop(STOP_WITHIN);
    let log = std::fs::read_to_string(dir.join("trunkgate.log")).unwrap();
    assert!(!log.contains(wrong));
}
