//! End-to-end test of the status page (issue 10, item 4): Trunkgate between SIPp peers with
//! two trunks of different `max_sessions`, calls on both, then `GET /` rendered in headless
//! Chromium (`--dump-dom` and `--screenshot`): each trunk's chart has its limit line and
//! its busy-hour band, in the DOM and as coloured pixels in the PNG; every inline SVG and
//! the document `trunkgate ctl status --svg` writes parse as XML (roxmltree); the page needs
//! no token and shows none.
//!
//! Owns `127.0.120.0/24` (see `common::Net`). Bounded: SIPp `-m`, every wait polls with a
//! deadline, every child (Trunkgate, SIPp, Chromium) is killed on drop or by its PID.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::chromium;
use common::load::LongCalls;
use common::sipp::{Transport, Uas};
use common::trunkgate::{BIN, Trunkgate};
use common::{Net, http_get, poll, scratch_dir, test_policy};
use serde_json::Value;
use std::path::Path;
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
    }

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

    // `ctl status --svg`: the same charts in one SVG document, without a token.
    let svg_path = dir.join("status.svg");
    let out = Command::new(BIN)
        .args(["ctl", "--config"])
        .arg(&policy_path)
        .args(["status", "--svg"])
        .arg(&svg_path)
        .env_remove("TRUNKGATE_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run ctl status --svg");
    assert!(
        out.status.success(),
        "ctl status --svg: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
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

    assert!(tg.is_alive());
    tg.stop(Duration::from_secs(10));
}
