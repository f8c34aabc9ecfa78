//! End-to-end tests of the operator's view (issue 10, items 4 and 5). The status page: Trunkgate between SIPp peers with
//! two trunks of different `max_sessions`, calls on both, then `GET /` rendered in headless
//! Chromium (`--dump-dom` and `--screenshot`): each trunk's chart has its limit line and
//! its busy-hour band, in the DOM and as coloured pixels in the PNG; every inline SVG and
//! the document `trunkgate ctl status --svg` writes parse as XML (roxmltree); the page needs
//! no token and shows none. The monitoring: every metric the Grafana dashboard and the
//! Prometheus rules read is a series a running Trunkgate's `/metrics` has.
//!
//! Owns `127.0.120.0/24` and `127.0.121.0/24` (see `common::Net`). Bounded: SIPp `-m`, every wait polls with a
//! deadline, every child (Trunkgate, SIPp, Chromium) is killed on drop or by its PID.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::chromium;
use common::load::LongCalls;
use common::sipp::{Transport, Uas};
use common::trunkgate::{BIN, Trunkgate};
use common::{Net, http_get, poll, scratch_dir, test_policy};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "status-page-secret-7f3a";
const LIMITS: [(&str, u32); 2] = [("carrier-a", 20), ("carrier-b", 12)];

/// The test policy with carrier-a and carrier-b limited to [`LIMITS`], calls spread
/// round-robin over both, and an admin token in a file.
fn policy(net: Net, dir: &Path) -> String {
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut limits = LIMITS.iter();
    let mut out = String::new();
    for line in test_policy(net).lines() {
        let line = match line.trim() {
            "max_sessions = 100000" => match limits.next() {
                Some((_, n)) => format!("max_sessions = {n}"),
                None => line.to_owned(),
            },
            "strategy = \"priority\"" => "strategy = \"round-robin\"".to_owned(),
            "[admin]" => format!(
                "[admin]\ntoken_file = {:?}",
                token_file.display().to_string()
            ),
            _ => line.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert!(limits.next().is_none(), "limits not all set:\n{out}");
    assert!(
        out.contains("round-robin") && out.contains("token_file"),
        "{out}"
    );
    out
}

/// `policy` without carrier-b (its `[[trunk]]` table and its place in the route).
fn without_carrier_b(policy: &str) -> String {
    let mut out = String::new();
    let mut block = String::new();
    let flush = |block: &mut String, out: &mut String| {
        if !block.contains("name = \"carrier-b\"") || !block.starts_with("[[trunk]]") {
            out.push_str(block);
        }
        block.clear();
    };
    for line in policy.lines() {
        if line.starts_with('[') {
            flush(&mut block, &mut out);
        }
        let line = line.replace(", \"carrier-b\"]", "]");
        block.push_str(&line);
        block.push('\n');
    }
    flush(&mut block, &mut out);
    assert!(
        !out.contains("name = \"carrier-b\"") && out.contains("trunks = [\"carrier-a\"]\n"),
        "{out}"
    );
    out
}

/// `trunkgate ctl --config POLICY ARGS` (the token comes from the policy's token_file).
fn ctl(policy: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["ctl", "--config"])
        .arg(policy)
        .args(args)
        .env_remove("TRUNKGATE_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run trunkgate ctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ctl {args:?}: {text}");
    text
}

/// `GET /concurrency`.
fn concurrency(net: Net) -> Value {
    let (status, body) = http_get(net.admin(), "/concurrency").expect("GET /concurrency");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Every `<svg …>…</svg>` element at the top level of an HTML text.
fn inline_svgs(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        let Some(len) = rest[start..].find("</svg>") else {
            break;
        };
        let end = start + len + "</svg>".len();
        out.push(&rest[start..end]);
        rest = &rest[end..];
    }
    out
}

/// Elements with `class` in a parsed SVG.
fn with_class<'a>(doc: &'a roxmltree::Document, class: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.attribute("class") == Some(class))
        .collect()
}

#[test]
fn status_page_draws_limits_and_busy_hours_in_chromium() {
    let net = Net::new(120);
    let dir = scratch_dir("status_page_draws_limits_and_busy_hours_in_chromium");
    let policy_path = dir.join("policy.toml");
    std::fs::write(&policy_path, policy(net, &dir)).unwrap();
    Trunkgate::check(&policy_path);
    let mut tg = Trunkgate::start(&dir, Some(&policy_path), net.admin());
    let _a = Uas::start(
        &dir,
        "uas_a",
        net.carrier_a_ip(),
        Transport::Udp,
        Duration::from_secs(120),
    );
    let _b = Uas::start(
        &dir,
        "uas_b",
        net.carrier_b_ip(),
        Transport::Udp,
        Duration::from_secs(120),
    );
    // 40 calls of 4 s, at most 16 at once: about 8 per trunk, under both limits.
    let uac = LongCalls::spawn_at(&dir, "uac", net, 5060, 10, 40, 16, Duration::from_secs(4));

    // The history samples every second: wait until both trunks have traffic in it.
    let seen = poll(Duration::from_secs(30), || {
        let c = concurrency(net);
        let trunks = c["trunks"].as_array()?.clone();
        let busy = trunks.iter().all(|t| t["peak_24h"].as_u64() >= Some(3));
        busy.then_some(c)
    });
    assert!(
        seen.is_some(),
        "no traffic in /concurrency: {}",
        concurrency(net)
    );
    let (counters, log) = uac.wait();
    assert!(
        counters.exit_code == Some(0) && counters.successful == 40 && counters.failed == 0,
        "SIPp {counters:?}\n{log}"
    );

    let data = concurrency(net);
    let trunks = data["trunks"].as_array().unwrap();
    assert_eq!(trunks.len(), 2, "{data}");
    for (t, (name, limit)) in trunks.iter().zip(LIMITS) {
        assert_eq!(t["name"], name);
        assert_eq!(t["max_sessions"], limit);
        assert_eq!(t["state"], "up", "{t}");
        let peak = t["peak_24h"].as_u64().unwrap();
        assert!(
            (3..=u64::from(limit)).contains(&peak),
            "{name}: peak {peak}"
        );
        let busy = &t["busy_hour"];
        assert_eq!(
            busy["end_minute"].as_u64().unwrap() - busy["start_minute"].as_u64().unwrap(),
            60,
            "{t}"
        );
        assert_eq!(busy["peak"].as_u64(), Some(peak), "{t}");
    }

    // The page without a token (a read, like /trunks), with no secret on it.
    let (status, html) = http_get(net.admin(), "/").expect("GET /");
    assert_eq!(status, 200, "{html}");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(!html.contains(TOKEN), "the admin token is on the page");
    assert!(!html.contains("<script"), "the page has JavaScript");
    let svgs = inline_svgs(&html);
    assert_eq!(svgs.len(), 2, "one chart per trunk");
    for (svg, (name, _)) in svgs.iter().zip(LIMITS) {
        let doc = roxmltree::Document::parse(svg)
            .unwrap_or_else(|e| panic!("inline SVG of {name} is not XML: {e}\n{svg}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert_eq!(doc.root_element().attribute("data-trunk"), Some(name));
        assert_eq!(with_class(&doc, "limit-line").len(), 1, "{name}");
        assert_eq!(with_class(&doc, "busy-hour").len(), 1, "{name}");
        assert_eq!(with_class(&doc, "concurrency").len(), 1, "{name}");
    }

    // A drill shows on its trunk (started with the token; the page itself needs none).
    ctl(
        &policy_path,
        &[
            "drill",
            "start",
            "carrier-b",
            "--mode",
            "cap=5",
            "--for",
            "5m",
        ],
    );

    // Rendered by Chromium: the DOM keeps each trunk's chart with its marks.
    let url = format!("http://{}/", net.admin());
    let dom = chromium::dump_dom(&dir, &url);
    let sections: Vec<&str> = dom.split("<section class=\"trunk\"").skip(1).collect();
    assert_eq!(sections.len(), 2, "trunk sections in the DOM:\n{dom}");
    for (section, (name, limit)) in sections.iter().zip(LIMITS) {
        assert!(
            section.contains(&format!("data-trunk=\"{name}\"")),
            "{section}"
        );
        assert!(
            section.contains("class=\"limit-line\""),
            "{name}: no limit line"
        );
        assert!(
            section.contains("class=\"busy-hour\""),
            "{name}: no busy hour"
        );
        assert!(section.contains(&format!("max_sessions {limit}")), "{name}");
        // The capacity line from the call records (Erlang B over the records' busy hour).
        assert!(
            section.contains("class=\"capacity\"") && section.contains(&format!("{name}:")),
            "{name}: no capacity line"
        );
        let drilled = section.contains("drill cap=5");
        assert_eq!(
            drilled,
            name == "carrier-b",
            "{name}: drill shown? {section}"
        );
    }
    let summary = dom.split("<section").next().unwrap();
    // (How long is left depends on when Chromium got the page: only that it is said.)
    let drill_cell = summary.split(">cap=5</span>, ").nth(1).unwrap_or_default();
    assert!(
        drill_cell
            .split('<')
            .next()
            .is_some_and(|c| c.ends_with(" left")),
        "{summary}"
    );

    // The screenshot: the limit lines' red and the busy-hour band's amber are painted.
    let png = dir.join("status.png");
    chromium::screenshot(&dir, &url, &png, 900, 1100);
    let image = chromium::decode_png(&png);
    assert_eq!((image.width, image.height), (900, 1100));
    assert!(image.colours() > 20, "a blank screenshot");
    let red = image.count_near([0xe0, 0x00, 0x00], 40);
    // Two lines, 2 px by ~690 px each (text of the label adds a little).
    assert!(red >= 2 * 2 * 600, "limit-line pixels: {red}");
    // #f0a000 at 35 % over white, as the band is drawn (the sessions line crosses it).
    let amber = image.count_near([250, 222, 166], 12);
    assert!(amber >= 2 * 1000, "busy-hour pixels: {amber}");
    eprintln!(
        "status page: {} colours, {red} limit-line pixels, {amber} busy-hour pixels; {}",
        image.colours(),
        png.display()
    );

    // `ctl status --svg`: the same charts in one SVG document.
    let svg_path = dir.join("status.svg");
    ctl(
        &policy_path,
        &["status", "--svg", svg_path.to_str().unwrap()],
    );
    let text = std::fs::read_to_string(&svg_path).expect("read status.svg");
    let doc = roxmltree::Document::parse(&text).expect("ctl status --svg writes XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    assert_eq!(with_class(&doc, "trunk-chart").len(), 2);
    assert_eq!(with_class(&doc, "limit-line").len(), 2);
    assert_eq!(with_class(&doc, "busy-hour").len(), 2);
    assert!(!text.contains(TOKEN));
    // `ctl capacity --svg`: the same document, beside the capacity report.
    let cap_svg = dir.join("capacity.svg");
    let report = ctl(
        &policy_path,
        &["capacity", "--svg", cap_svg.to_str().unwrap()],
    );
    assert!(report.contains("carrier-a"), "{report}");
    let cap_text = std::fs::read_to_string(&cap_svg).expect("read capacity.svg");
    let cap_doc = roxmltree::Document::parse(&cap_text).expect("ctl capacity --svg writes XML");
    assert_eq!(cap_doc.root_element().tag_name().name(), "svg");
    assert_eq!(with_class(&cap_doc, "limit-line").len(), 2);
    assert_eq!(with_class(&cap_doc, "busy-hour").len(), 2);

    // A reload that removes carrier-b: carrier-a keeps its history (kept by name),
    // carrier-b's goes with it once it has drained (it has no call left).
    let before = concurrency(net)["trunks"][0].clone();
    ctl(&policy_path, &["drill", "stop", "--all"]);
    let policy_text = std::fs::read_to_string(&policy_path).unwrap();
    std::fs::write(&policy_path, without_carrier_b(&policy_text)).unwrap();
    ctl(&policy_path, &["reload"]);
    let after = poll(Duration::from_secs(10), || {
        let c = concurrency(net);
        (c["trunks"].as_array()?.len() == 1).then_some(c)
    })
    .unwrap_or_else(|| panic!("carrier-b still listed: {}", concurrency(net)));
    let a = &after["trunks"][0];
    assert_eq!(a["name"], "carrier-a");
    assert_eq!(a["peak_24h"], before["peak_24h"], "{a}");
    assert_eq!(a["busy_hour"]["peak"], before["busy_hour"]["peak"], "{a}");

    assert!(tg.is_alive());
    tg.stop(Duration::from_secs(10));
}

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

/// The `trunkgate_…` metric names in a text (PromQL, YAML): words of `[A-Za-z0-9_:]` that
/// start with `trunkgate_` (recording rules, `trunk:…`, are not metrics).
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("trunkgate_"))
        .map(str::to_owned)
        .collect()
}

/// Every string under the keys `expr`, `query` and `definition` of a Grafana dashboard.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", Value::String(q)) => out.push(q.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// A Trunkgate with a probed trunk and a registering trunk (so their families have series)
/// and no call: what every dashboard and rule reads must be in its `/metrics` already.
#[test]
fn dashboard_and_alert_rules_name_only_exported_metrics() {
    let net = Net::new(121);
    let dir = scratch_dir("dashboard_and_alert_rules_name_only_exported_metrics");
    let password = dir.join("carrier-b.password");
    std::fs::write(&password, "not-a-real-password\n").unwrap();
    let mut text = String::new();
    for line in test_policy(net).lines() {
        text.push_str(line);
        text.push('\n');
        match line.trim() {
            "name = \"carrier-a\"" => text.push_str(
                "probe = { interval = \"10s\", timeout = \"2s\", down_after = 3, up_after = 2 }\n",
            ),
            "name = \"carrier-b\"" => text.push_str(&format!(
                "register = {{ user = \"tg\", password_file = {:?}, route_when_down = true }}\n",
                password.display().to_string()
            )),
            _ => {}
        }
    }
    let policy_path = dir.join("policy.toml");
    std::fs::write(&policy_path, &text).unwrap();
    Trunkgate::check(&policy_path);
    let mut tg = Trunkgate::start(&dir, Some(&policy_path), net.admin());
    let exposition = tg.metrics();
    // Series names, and the names of families declared with no series yet (a drill
    // running, an account): `# TYPE name type`, a histogram's as its three series.
    let mut exported: BTreeSet<String> = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    for declared in exposition.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        match declared.split_once(' ') {
            Some((name, "histogram")) => {
                // The family's own name too (prose in the rules names it).
                for suffix in ["", "_bucket", "_sum", "_count"] {
                    exported.insert(format!("{name}{suffix}"));
                }
            }
            Some((name, _)) => {
                exported.insert(name.to_owned());
            }
            None => {}
        }
    }
    assert!(exported.len() > 50, "{exposition}");
    assert!(!exposition.contains("not-a-real-password"));

    let dashboard = std::fs::read_to_string(deploy("grafana/trunkgate.json")).unwrap();
    let dashboard: Value =
        serde_json::from_str(&dashboard).expect("deploy/grafana/trunkgate.json is not JSON");
    assert_eq!(dashboard["uid"], "trunkgate");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id: {p}"
        );
        if p["type"] != "row" {
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "panel without a query: {}", p["title"]);
        }
    }
    let mut exprs = Vec::new();
    queries(&dashboard, &mut exprs);
    assert!(exprs.len() >= 25, "{exprs:?}");
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(used.len() >= 20, "{used:?}");
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard reads metrics Trunkgate does not export: {missing:?}"
    );

    for rules in [
        "prometheus/alerts.yml",
        "prometheus/trunkgate-quality.rules.yml",
    ] {
        let used = metric_names(&std::fs::read_to_string(deploy(rules)).unwrap());
        assert!(used.len() >= 5, "{rules}: {used:?}");
        let missing: Vec<&String> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{rules} reads metrics Trunkgate does not export: {missing:?}"
        );
    }
    eprintln!(
        "dashboard: {} queries over {} metrics, all among the {} exported",
        exprs.len(),
        used.len(),
        exported.len()
    );
    assert!(tg.is_alive());
    tg.stop(Duration::from_secs(10));
}
