//! The Prometheus alert rules in `deploy/prometheus/` are valid (`promtool check rules`) and
//! fire as intended on synthetic series (`promtool test rules` with the `.test.yml` beside
//! them), for `trunkgate-quality.rules.yml` and `alerts.yml`. (tests/e2e_status.rs checks
//! every metric both files and the Grafana dashboard read against a running Trunkgate's
//! `/metrics`.) promtool comes with Debian's `prometheus` package, which `scripts/test.sh`
//! installs; a missing promtool fails this test, it never skips it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus")
}

/// `$PROMTOOL`, else the first `promtool` on `PATH`.
fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("PROMTOOL") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool not found on PATH: the alert rules are checked with it (Debian \
                 package `prometheus`); run scripts/test.sh, which installs it"
            )
        })
}

fn run(args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(deploy_dir())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn quality_rules_are_valid() {
    let out = run(&["check", "rules", "trunkgate-quality.rules.yml"]);
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
}

#[test]
fn quality_rules_fire_on_low_mos_loss_and_one_way_rate() {
    let out = run(&["test", "rules", "trunkgate-quality.rules.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn capacity_and_availability_alerts_are_valid() {
    let out = run(&["check", "rules", "alerts.yml"]);
    assert!(out.contains("SUCCESS: 8 rules found"), "{out}");
}

/// Utilisation against the exported limit (and a raised limit clearing it), capacity
/// rejects, trunk down outside drills, registration down, PBX node down.
#[test]
fn capacity_and_availability_alerts_fire_as_intended() {
    let out = run(&["test", "rules", "alerts.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every metric the rules read is one Trunkgate exports (a renamed metric would leave an
/// alert that can never fire, and promtool cannot tell).
#[test]
fn quality_rules_read_only_exported_metrics() {
    let rules = std::fs::read_to_string(deploy_dir().join("trunkgate-quality.rules.yml"))
        .expect("read rules");
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/media_metrics.rs"))
            .expect("read media_metrics.rs");
    let mut names: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("trunkgate_"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 5, "{names:?}");
    for name in names {
        let family = name
            .strip_suffix("_total")
            .or_else(|| name.strip_suffix("_bucket"))
            .or_else(|| name.strip_suffix("_count"))
            .unwrap_or(name);
        assert!(
            source.contains(&format!("\"{family}\"")),
            "the rules read {name}, which src/media_metrics.rs does not export"
        );
    }
}
