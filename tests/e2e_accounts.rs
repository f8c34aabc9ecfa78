//! End-to-end tests of provider accounts (issue 16): two trunks of one `[[account]]` share
//! its `max_sessions` and its `max_cps`, a third trunk of another provider takes the
//! overflow, and the excess gets `503` with `Retry-After`; the real `trunkgate` binary
//! between SIPp peers on loopback, every figure asserted from SIPp's own counters and
//! `/metrics`.
//!
//! Each test owns `127.0.N.0/24` (N = 96, 97): Trunkgate on `.1` (admin API on port 9391),
//! the PBX on `.2`, the account's trunks `acme-east` on `.3` and `acme-west` on `.4`, the
//! other provider `globex` on `.5`. Every run is bounded (SIPp `-m`, hard deadlines) and
//! every child process is killed on drop. After every test, every session gauge (per trunk,
//! per account, dialogs) must be back to exactly 0.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::load::{LongCalls, PeakPoller, metric, metric_lines, uas_calls};
use common::sipp::{Transport, Uac, UacSpec, Uas};
use common::trunkgate::Trunkgate;
use common::{Net, http_get, samples, scratch_dir, tail};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// Test policies set `shutdown_grace = "5s"`; allow a margin on top.
const STOP_WITHIN: Duration = Duration::from_secs(10);

const ADMIN_PORT: u16 = 9391;

fn admin(net: Net) -> SocketAddr {
    SocketAddr::new(net.trunkgate_ip(), ADMIN_PORT)
}

/// The other provider's trunk.
fn globex_ip(net: Net) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, net.n, 5))
}

/// Three trunks, `acme-east` and `acme-west` in account `acme` (`account` = its limit keys),
/// `globex` alone; each trunk's own keys in `trunk`; one round-robin route over all three.
fn accounts_policy(net: Net, trunk: &str, account: &str) -> String {
    let tg = net.trunkgate_ip();
    let pbx = net.pbx_ip();
    let (east, west, globex) = (net.carrier_a_ip(), net.carrier_b_ip(), globex_ip(net));
    format!(
        r#"[listen]
sip = ["udp:{tg}:5060"]

[sip]
shutdown_grace = "5s"
overflow_retry_after = "10s"

[admin]
listen = "{tg}:{ADMIN_PORT}"

[pbx]
address = "{pbx}:5060"
allow = ["{pbx}/32"]

[[trunk]]
name = "acme-east"
address = "{east}:5060"
{trunk}

[[trunk]]
name = "acme-west"
address = "{west}:5060"
{trunk}

[[trunk]]
name = "globex"
address = "{globex}:5060"
{trunk}

[[account]]
name = "acme"
trunks = ["acme-east", "acme-west"]
{account}

[[route]]
name = "default"
match = {{ to_prefix = [""] }}
trunks = ["acme-east", "acme-west", "globex"]
strategy = "round-robin"
"#
    )
}

/// Write the policy, check it with `trunkgate check`, start Trunkgate on it.
fn start_trunkgate(dir: &Path, net: Net, policy_text: &str) -> Trunkgate {
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, policy_text).expect("write policy");
    Trunkgate::check(&policy);
    Trunkgate::start(dir, Some(&policy), admin(net))
}

fn uas(dir: &Path, name: &str, ip: IpAddr) -> Uas {
    Uas::start(dir, name, ip, Transport::Udp, Duration::from_secs(90))
}

fn rejects(exposition: &str, trunk: &str, reason: &str) -> f64 {
    metric(
        exposition,
        "trunkgate_rejects_total",
        &[("trunk", trunk), ("reason", reason)],
    )
}

/// Every per-trunk and per-account session gauge and the dialog gauge is 0 within 5 s
/// (each must be exported).
fn assert_all_sessions_zero(tg: &Trunkgate) {
    const FAMILIES: [&str; 3] = [
        "trunkgate_trunk_sessions",
        "trunkgate_account_sessions",
        "trunkgate_dialogs_active",
    ];
    let mut last = String::new();
    let zero = common::poll(Duration::from_secs(5), || {
        last = tg.metrics();
        FAMILIES
            .iter()
            .all(|name| {
                let s = samples(&last, name);
                !s.is_empty() && s.iter().all(|s| s.value == 0.0)
            })
            .then_some(())
    });
    assert!(
        zero.is_some(),
        "session gauges not back to 0 within 5 s:\n{}",
        metric_lines(&last, &FAMILIES)
    );
}

/// `GET /trunks` as JSON.
fn trunks_json(net: Net) -> serde_json::Value {
    let (status, body) = http_get(admin(net), "/trunks").expect("GET /trunks");
    assert_eq!(status, 200, "GET /trunks:\n{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET /trunks ({e}):\n{body}"))
}

/// `acme` (10 sessions) over `acme-east` and `acme-west` (10 each), `globex` (10) of another
/// provider; 30 calls of 8 s offered at once: the account's two trunks carry 10 together, globex
/// 10, and the last 10 get `503` with `Retry-After`. Neither acme trunk reaches its own limit:
/// the account is what refuses them.
#[test]
fn account_sessions_are_shared_and_overflow_to_another_provider() {
    let net = Net::new(96);
    let dir = scratch_dir("accounts_sessions_shared");
    let policy = accounts_policy(net, "max_sessions = 10", "max_sessions = 10");
    let mut tg = start_trunkgate(&dir, net, &policy);
    let m = tg.metrics();
    assert_eq!(
        metric(
            &m,
            "trunkgate_account_sessions_limit",
            &[("account", "acme")]
        ),
        10.0,
        "{}",
        metric_lines(&m, &["trunkgate_account_sessions"])
    );
    let listing = trunks_json(net);
    let acme = &listing["accounts"][0];
    assert!(
        acme["name"] == "acme" && acme["max_sessions"] == 10 && acme["sessions"] == 0,
        "/trunks accounts:\n{listing}"
    );
    assert_eq!(
        acme["trunks"],
        serde_json::json!(["acme-east", "acme-west"])
    );
    let trunks = listing["trunks"].as_array().expect("trunks array");
    let account_of = |name: &str| {
        trunks
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["account"].clone())
    };
    assert_eq!(account_of("acme-west"), Some("acme".into()));
    assert_eq!(account_of("globex"), Some(serde_json::Value::Null));

    let _east = uas(&dir, "uas_east", net.carrier_a_ip());
    let _west = uas(&dir, "uas_west", net.carrier_b_ip());
    let _globex = uas(&dir, "uas_globex", globex_ip(net));
    let peak = PeakPoller::start(
        admin(net),
        "trunkgate_account_sessions",
        &[("account", "acme")],
    );
    let uac = LongCalls::spawn(&dir, "uac", net, 30, 30, Duration::from_secs(8));
    // While the calls are up, /trunks shows the account full on both of its trunks.
    let mut seen = serde_json::Value::Null;
    let full = common::poll(Duration::from_secs(6), || {
        seen = trunks_json(net);
        let east = seen["trunks"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == "acme-east")?
            .clone();
        (seen["accounts"][0]["sessions"] == 10
            && east["account_sessions"] == 10
            && east["account_max_sessions"] == 10)
            .then_some(())
    });
    assert!(
        full.is_some(),
        "/trunks never showed acme at 10 of 10:\n{seen}"
    );
    let (counters, report) = uac.wait();
    let (peak, polls) = peak.finish();

    assert!(
        counters.exit_code == Some(1)
            && counters.created == 30
            && counters.successful == 20
            && counters.failed == 10,
        "PBX side: {counters:?}, expected 20 successful and 10 failed (503)\n{report}"
    );
    let [east, west, globex] = uas_calls(&dir, ["uas_east", "uas_west", "uas_globex"]);
    eprintln!(
        "account sessions: acme-east {east} + acme-west {west} = {}, globex {globex}; \
         peak trunkgate_account_sessions{{acme}} {peak} over {polls} polls",
        east + west
    );
    assert_eq!(
        (east + west, globex),
        (10, 10),
        "calls received by (acme-east + acme-west, globex): ({east} + {west}, {globex})"
    );
    assert!(
        east > 0 && west > 0,
        "round-robin: both acme trunks carry calls ({east}, {west})"
    );
    assert!(polls >= 30, "only {polls} /metrics polls during the run");
    assert_eq!(peak, 10.0, "peak of trunkgate_account_sessions{{acme}}");
    // SIPp logs each call it aborts with the message that aborted it: 10 times a 503.
    let errors = std::fs::read_to_string(dir.join("uac_errors.log")).unwrap_or_default();
    let refusals = errors
        .split("Aborting call")
        .skip(1)
        .filter(|e| e.contains("SIP/2.0 503") && e.contains("Retry-After:"))
        .count();
    assert_eq!(
        refusals,
        10,
        "calls SIPp aborted on a 503 with Retry-After (uac_errors.log):\n{}",
        tail(&dir.join("uac_errors.log"), 1500)
    );
    let m = tg.metrics();
    let shown = metric_lines(&m, &["trunkgate_rejects_total"]);
    let by_account =
        rejects(&m, "acme-east", "account_sessions") + rejects(&m, "acme-west", "account_sessions");
    // Each refused call was refused by both acme trunks for the account (plus some of the
    // calls globex took, tried at an acme trunk first).
    assert!(
        by_account >= 20.0,
        "account_sessions rejects {by_account}:\n{shown}"
    );
    assert_eq!(
        rejects(&m, "acme-east", "sessions") + rejects(&m, "acme-west", "sessions"),
        0.0,
        "no acme trunk reached its own max_sessions:\n{shown}"
    );
    assert!(rejects(&m, "globex", "sessions") >= 10.0, "{shown}");
    assert_all_sessions_zero(&tg);
    assert!(tg.is_alive(), "trunkgate died");
    tg.stop(STOP_WITHIN);
}

/// `acme` `max_cps = 5` (burst 5) over its two trunks, which have no rate of their own;
/// 20 calls/s for 10 s: the two acme trunks together take what the account's bucket allows,
/// globex the rest, and every call succeeds.
#[test]
fn account_call_rate_holds_across_its_trunks() {
    const RATE: u32 = 20;
    const CALLS: u32 = 200;
    let net = Net::new(97);
    let dir = scratch_dir("accounts_call_rate");
    let policy = accounts_policy(net, "", "max_cps = 5");
    let mut tg = start_trunkgate(&dir, net, &policy);
    let _east = uas(&dir, "uas_east", net.carrier_a_ip());
    let _west = uas(&dir, "uas_west", net.carrier_b_ip());
    let _globex = uas(&dir, "uas_globex", globex_ip(net));
    let spec = UacSpec::new(net.pbx_ip(), net.sip(), Transport::Udp, RATE, CALLS);
    let result = Uac::spawn(&dir, "uac", spec).wait();
    let [east, west, globex] = uas_calls(&dir, ["uas_east", "uas_west", "uas_globex"]);
    let m = tg.metrics();
    let account_cps =
        rejects(&m, "acme-east", "account_cps") + rejects(&m, "acme-west", "account_cps");
    eprintln!(
        "account call rate: PBX {} ok / {} failed in {:?}; acme-east {east} + acme-west {west} \
         = {}, globex {globex}; rejects{{acme trunks, account_cps}} {account_cps}",
        result.successful,
        result.failed,
        result.elapsed,
        east + west
    );
    result.assert_all_succeeded(CALLS);
    assert_eq!(east + west + globex, u64::from(CALLS));
    // 5 in the bucket at the start, then 5/s over the run (10 s, unless a loaded machine
    // stretched SIPp's schedule: the bound follows the measured run time); +1 for timing.
    let most = 5 + (5.0 * result.elapsed.as_secs_f64()).floor() as u64 + 1;
    let acme = east + west;
    assert!(
        (40..=most.max(56)).contains(&acme),
        "acme's trunks received {acme} calls at an account max_cps = 5 over a {:?} run, \
         expected 40..={}",
        result.elapsed,
        most.max(56)
    );
    assert!(
        east > 0 && west > 0,
        "both acme trunks carry calls ({east}, {west})"
    );
    let shown = metric_lines(&m, &["trunkgate_rejects_total"]);
    assert!(account_cps >= 1.0, "{shown}");
    assert_eq!(
        rejects(&m, "acme-east", "cps") + rejects(&m, "acme-west", "cps"),
        0.0,
        "the acme trunks have no rate of their own:\n{shown}"
    );
    assert_all_sessions_zero(&tg);
    assert!(tg.is_alive(), "trunkgate died");
    tg.stop(STOP_WITHIN);
}
