//! End-to-end tests of test calls and validation runs (issue 18): the real `trunkgate`
//! binary places its own calls through its real routing, drills and media relay to SIPp
//! carriers and a SIPp PBX on loopback, and `trunkgate ctl testcall` / `ctl validate`
//! report them.
//!
//! Networks: 127.0.160.x (ad-hoc test calls), 127.0.161.x (validation suite and drill).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::sipp::{Scenario, SippPeer};
use common::trunkgate::{Trunkgate, ctl};
use common::{Net, media_test_policy, scratch_dir};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A SIPp UAS on `ip:5060` (answering, `-rtp_echo` when `echo`), or running `scenario`.
fn uas(dir: &Path, name: &str, ip: IpAddr, echo: bool, scenario: Option<&Path>) -> SippPeer {
    let mut args: Vec<String> = vec!["-m".into(), "50".into()];
    if echo {
        args.push("-rtp_echo".into());
    }
    args.extend(["-mi".into(), ip.to_string(), "-mp".into(), "18000".into()]);
    let scenario = match scenario {
        Some(path) => Scenario::File(path),
        None => Scenario::Builtin("uas"),
    };
    let mut peer = SippPeer::spawn(
        dir,
        name,
        scenario,
        ip,
        None,
        &args,
        Duration::from_secs(90),
    );
    std::thread::sleep(Duration::from_millis(400));
    peer.assert_running();
    peer
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ctl printed no JSON ({e}); status {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn ip(net: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, net, host))
}

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/testcall")
        .join(name)
}

/// `ctl testcall` against an echoing carrier, a busy one and one that sends no audio back,
/// all three at once (each its own trunk).
#[test]
fn testcall_reports_echo_busy_and_one_way_audio() {
    let net = Net::new(160);
    let dir = scratch_dir("testcall_reports_echo_busy_and_one_way_audio");
    let mut policy = media_test_policy(net, &[], &[]);
    policy.push_str(&format!(
        "\n[[trunk]]\nname = \"carrier-c\"\naddress = \"{}:5060\"\nallow = [\"{}/32\"]\n",
        ip(160, 5),
        ip(160, 5)
    ));
    let path = dir.join("policy.toml");
    std::fs::write(&path, &policy).expect("write policy");
    Trunkgate::check(&path);
    let mut tg = Trunkgate::start(&dir, Some(&path), net.admin());
    tg.wait_healthy(Duration::from_secs(10));
    let echo_peer = uas(&dir, "carrier-a", net.carrier_a_ip(), true, None);
    let busy_xml = scenario("uas_486.xml");
    let _busy = uas(
        &dir,
        "carrier-b",
        net.carrier_b_ip(),
        false,
        Some(&busy_xml),
    );
    let _silent = uas(&dir, "carrier-c", ip(160, 5), false, None);

    let run = |trunk: &'static str, to: &'static str, path: PathBuf| {
        std::thread::spawn(move || {
            let p = path.as_path();
            ctl(
                p,
                &[
                    "--json", "testcall", "--trunk", trunk, "--to", to, "--for", "5s",
                ],
            )
        })
    };
    let a = run("carrier-a", "1000", path.clone());
    let b = run("carrier-b", "1001", path.clone());
    let c = run("carrier-c", "1002", path.clone());
    let (a, b, c) = (
        a.join().expect("a"),
        b.join().expect("b"),
        c.join().expect("c"),
    );

    // The echo: answered, PDD, media both ways with no loss, our pattern back, a round trip.
    let run_a = json_of(&a);
    assert!(
        a.status.success(),
        "echo test call failed: {run_a:#}\n{}",
        tg.log_tail()
    );
    let t = &run_a["tests"][0];
    assert_eq!(t["outcome"], "answered", "{t:#}");
    assert_eq!(t["carried_by"], "carrier-a", "{t:#}");
    assert!(t["pdd_ms"].as_f64().is_some_and(|p| p > 0.0), "{t:#}");
    let m = &t["media"];
    assert!(
        m["sent"].as_u64().is_some_and(|n| n >= 240),
        "5 s of 20 ms frames sent: {m:#}"
    );
    assert!(m["received"].as_u64().is_some_and(|n| n >= 240), "{m:#}");
    assert_eq!(m["lost"], 0, "{m:#}");
    assert_eq!(m["one_way_audio"], false, "{m:#}");
    assert_eq!(m["echo"]["recognised"], true, "{m:#}");
    let rtt = m["echo"]["round_trip_ms"].as_f64().expect("round trip");
    assert!(rtt > 0.0 && rtt < 500.0, "{m:#}");
    assert!(m["mos"].as_f64().is_some_and(|mos| mos > 4.0), "{m:#}");
    eprintln!(
        "echo test call: pdd {} ms, rtt {rtt:.2} ms, mos {}",
        t["pdd_ms"], m["mos"]
    );

    // What the carrier saw is a plain call from Trunkgate: its Via, one Record-Route of
    // ours, our test User-Agent; nothing of the in-process agent's flow.
    let seen = echo_peer.messages();
    let invite = seen
        .iter()
        .find(|m| m.is_request("INVITE"))
        .expect("carrier-a got the INVITE");
    let rr = invite.header("Record-Route").unwrap_or_default();
    assert_eq!(
        rr,
        format!("<sip:{}:5060;lr>", net.trunkgate_ip()),
        "{}",
        invite.text
    );
    assert!(
        invite
            .header("User-Agent")
            .is_some_and(|ua| ua.starts_with("Trunkgate test call")),
        "{}",
        invite.text
    );
    for m in &seen {
        assert!(
            !m.text.contains(":0;") && !m.text.contains("INTERNAL"),
            "{}",
            m.text
        );
    }

    // Busy: the code, and a non-zero exit.
    let run_b = json_of(&b);
    assert!(
        !b.status.success(),
        "a 486 must fail the test call: {run_b:#}"
    );
    let t = &run_b["tests"][0];
    assert_eq!(t["outcome"], "refused", "{t:#}");
    assert_eq!(t["code"], 486, "{t:#}");
    assert_eq!(t["passed"], false, "{t:#}");

    // Answered but silent: one-way audio, and a non-zero exit.
    let run_c = json_of(&c);
    assert!(
        !c.status.success(),
        "one-way audio must fail the test call: {run_c:#}"
    );
    let t = &run_c["tests"][0];
    assert_eq!(t["outcome"], "answered", "{t:#}");
    assert_eq!(t["media"]["one_way_audio"], true, "{t:#}");
    assert!(t["failures"].to_string().contains("one-way audio"), "{t:#}");

    // The human table of the latest run.
    let report = ctl(&path, &["validate", "report"]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("TEST") && text.contains("adhoc-"), "{text}");
    tg.assert_dialogs_drain(Duration::from_secs(10));
}

/// A suite of four test calls (two trunks × two directions, inbound answered by the PBX's
/// SIPp) in parallel; during a `down` drill of carrier-a the outbound test is carried by
/// carrier-b and the drill report lists the run. Test calls take no session from a trunk
/// whose `max_sessions` is 1, and make no call record.
#[test]
fn validate_suite_both_directions_and_during_a_drill() {
    let net = Net::new(161);
    let dir = scratch_dir("validate_suite_both_directions_and_during_a_drill");
    let records = dir.join("records.sqlite");
    let mut policy = media_test_policy(net, &[], &[]);
    // carrier-a takes one call at a time and one call per second: four test calls at once
    // (two of them on carrier-a) pass only because test calls are not counted.
    policy = policy.replacen("max_sessions = 100000", "max_sessions = 1", 1);
    policy = policy.replacen("max_cps = 100000", "max_cps = 1", 1);
    policy.push_str(&format!(
        r#"
[records]
path = "{records}"

[validate]
concurrency = 4
start_interval = "50ms"
after_reload = "outbound"

[[test_call]]
name = "a-out"
trunk = "carrier-a"
to = "2000"
duration = "3s"
echo = true
suites = ["smoke", "outbound"]

[[test_call]]
name = "b-out"
trunk = "carrier-b"
to = "2001"
duration = "3s"
echo = true
suites = ["smoke", "outbound"]

[[test_call]]
name = "a-in"
trunk = "carrier-a"
direction = "inbound"
to = "3000"
duration = "3s"
echo = true
suites = ["smoke"]

[[test_call]]
name = "b-in"
trunk = "carrier-b"
direction = "inbound"
to = "3001"
duration = "3s"
echo = true
suites = ["smoke"]
"#,
        records = records.display()
    ));
    let path = dir.join("policy.toml");
    std::fs::write(&path, &policy).expect("write policy");
    Trunkgate::check(&path);
    let mut tg = Trunkgate::start(&dir, Some(&path), net.admin());
    tg.wait_healthy(Duration::from_secs(10));
    let _pbx = uas(&dir, "pbx", net.pbx_ip(), true, None);
    let _a = uas(&dir, "carrier-a", net.carrier_a_ip(), true, None);
    let _b = uas(&dir, "carrier-b", net.carrier_b_ip(), true, None);

    // Sessions are sampled while the suite runs: test calls must never show.
    let admin = net.admin();
    let sampler = std::thread::spawn(move || {
        let mut max = 0.0f64;
        for _ in 0..40 {
            if let Ok((200, text)) = common::http_get(admin, "/metrics") {
                let sessions: f64 = common::samples(&text, "trunkgate_trunk_sessions")
                    .iter()
                    .map(|s| s.value)
                    .sum();
                max = max.max(sessions);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        max
    });
    let out = ctl(&path, &["--json", "validate", "--suite", "smoke"]);
    let run = json_of(&out);
    assert!(
        out.status.success(),
        "suite failed: {run:#}\n{}",
        tg.log_tail()
    );
    let tests = run["tests"].as_array().expect("tests");
    assert_eq!(tests.len(), 4, "{run:#}");
    let by_name = |n: &str| {
        tests
            .iter()
            .find(|t| t["name"] == n)
            .unwrap_or_else(|| panic!("no {n} in {run:#}"))
            .clone()
    };
    for (name, carried) in [
        ("a-out", "carrier-a"),
        ("b-out", "carrier-b"),
        ("a-in", "pbx"),
        ("b-in", "pbx"),
    ] {
        let t = by_name(name);
        assert_eq!(t["passed"], true, "{t:#}");
        assert_eq!(t["carried_by"], carried, "{t:#}");
        assert_eq!(t["media"]["echo"]["recognised"], true, "{t:#}");
        assert_eq!(t["media"]["lost"], 0, "{t:#}");
    }
    // In parallel: four 3 s calls finished well within 2 × 3 s, not 4 × 3 s.
    let took = run["finished_unix_ms"].as_u64().unwrap_or(0)
        - run["started_unix_ms"].as_u64().unwrap_or(0);
    assert!(
        took < 7_000,
        "the suite took {took} ms: not run in parallel? {run:#}"
    );
    let max_sessions = sampler.join().expect("sampler");
    assert_eq!(
        max_sessions, 0.0,
        "test calls were counted as trunk sessions"
    );
    let text = String::from_utf8_lossy(&ctl(&path, &["validate", "report"]).stdout).into_owned();
    assert!(text.contains("passed: 4 of 4"), "{text}");

    // During a down drill of carrier-a, the outbound test of carrier-a goes to carrier-b.
    let drill = json_of(&ctl(
        &path,
        &[
            "--json",
            "drill",
            "start",
            "carrier-a",
            "--mode",
            "down",
            "--for",
            "60s",
            "--force",
        ],
    ));
    let drill_id = drill["drill"]["id"]
        .as_u64()
        .or_else(|| drill["id"].as_u64())
        .unwrap_or_else(|| panic!("drill id in {drill:#}"));
    let id = drill_id.to_string();
    let out = ctl(
        &path,
        &[
            "--json",
            "validate",
            "--suite",
            "outbound",
            "--during-drill",
            &id,
        ],
    );
    let run = json_of(&out);
    assert!(
        out.status.success(),
        "outbound suite during the drill failed: {run:#}"
    );
    let a_out = run["tests"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "a-out"))
        .cloned()
        .expect("a-out");
    assert_eq!(a_out["carried_by"], "carrier-b", "{a_out:#}");
    assert_eq!(a_out["rerouted"], true, "{a_out:#}");
    assert_eq!(run["drills"][0].as_u64(), Some(drill_id), "{run:#}");
    let table = String::from_utf8_lossy(&ctl(&path, &["validate", "report"]).stdout).into_owned();
    assert!(table.contains("carrier-a → carrier-b"), "{table}");
    let _ = ctl(&path, &["drill", "stop", "carrier-a"]);
    let report = json_of(&ctl(&path, &["--json", "drill", "report", &id]));
    let runs = report["validation"]
        .as_array()
        .expect("validation runs in the drill report");
    assert!(
        runs.iter().any(|r| r["id"] == run["id"]),
        "the drill report does not list the run: {report:#}"
    );

    // No call records: test calls are not traffic.
    tg.assert_dialogs_drain(Duration::from_secs(10));
    let records = json_of(&ctl(&path, &["--json", "records", "--since", "1h"]));
    let n = records["records"].as_array().map_or(0, Vec::len);
    assert_eq!(n, 0, "test calls made call records: {records:#}");
    let metrics = tg.metrics();
    assert_eq!(
        common::value(
            &metrics,
            "trunkgate_testcalls_total",
            &[("result", "passed")]
        ),
        6.0,
        "{}",
        common::load::metric_lines(&metrics, &["trunkgate_testcall"])
    );
    assert_eq!(
        common::value(&metrics, "trunkgate_validate_passed", &[("suite", "smoke")]),
        1.0
    );

    // A reload runs `validate.after_reload`'s suite; `ctl validate --after-reload` follows it.
    let out = ctl(&path, &["--json", "validate", "--after-reload"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // --json prints the reload's outcome (not in JSON mode: the table) and then the run.
    let last = text.lines().last().unwrap_or_default();
    let run: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(
        out.status.success(),
        "after-reload suite failed: {run:#}\n{}",
        tg.log_tail()
    );
    assert_eq!(run["kind"], "after-reload", "{run:#}");
    assert_eq!(run["suite"], "outbound", "{run:#}");
    assert_eq!(run["tests"].as_array().map_or(0, Vec::len), 2, "{run:#}");
}
