//! Human output of `trunkgate ctl`: aligned tables and key/value blocks from the admin API's
//! JSON answers. Missing fields print as `-`.

use serde_json::Value;
use std::fmt::Write as _;

/// Columns padded to their widest cell, two spaces apart.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (cell, w) in cells.zip(&widths) {
            let _ = write!(text, "{cell:<w$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, &mut headers.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

pub(super) fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// `90061` s → `1d 1h 1m`.
fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h}h {m:02}m"),
    }
}

fn ms_span(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| "-".to_owned(), |ms| span(ms.div_ceil(1000)))
}

/// Unix milliseconds as `2026-12-01 21:43:28 UTC`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn when(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".to_owned(), utc)
}

pub fn status(v: &Value) -> String {
    let p = &v["policy"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trunkgate {}, up {}",
        s(&v["version"]),
        span(v["uptime_s"].as_u64().unwrap_or(0))
    );
    let _ = writeln!(
        out,
        "policy   {} (hash {}, loaded {})",
        s(&p["file"]),
        s(&p["hash"]),
        when(&p["loaded_unix_ms"])
    );
    let draining = list(&p["draining"]);
    if !draining.is_empty() {
        let names: Vec<String> = draining.iter().map(s).collect();
        let _ = writeln!(out, "draining {}", names.join(", "));
    }
    let _ = writeln!(
        out,
        "calls    {} in progress, {} calls/s{}",
        s(&v["calls"]),
        s(&v["cps"]),
        if v["shutting_down"] == Value::Bool(true) {
            " (shutting down)"
        } else {
            ""
        }
    );
    let drills = list(&v["drills"]);
    if drills.is_empty() {
        out.push_str("drills   none\n");
    } else {
        for (i, d) in drills.iter().enumerate() {
            let _ = writeln!(
                out,
                "{}{} {} for {} more (drill {}, by {})",
                if i == 0 { "drills   " } else { "         " },
                s(&d["trunk"]),
                s(&d["mode"]),
                ms_span(&d["left_ms"]),
                s(&d["id"]),
                s(&d["started_by"])
            );
        }
    }
    out
}

pub fn trunks(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(&v["trunks"])
        .iter()
        .map(|t| {
            let limit = |key: &str| match &t[key] {
                Value::Null => "-".to_owned(),
                other => other.to_string(),
            };
            let mut state = s(&t["state"]);
            if t["draining"] == Value::Bool(true) {
                state.push_str(" (draining)");
            }
            let probe = match &t["last_probe"] {
                Value::Null => "-".to_owned(),
                p => format!("{} {} ago", s(p), ms_span(&t["last_probe_age_ms"])),
            };
            vec![
                s(&t["name"]),
                state,
                s(&t["why"]),
                format!("{}/{}", s(&t["sessions"]), limit("max_sessions")),
                format!("{}/{}", s(&t["cps"]), limit("max_cps")),
                probe,
                s(&t["failovers"]),
                s(&t["drill"]),
            ]
        })
        .collect();
    table(
        &[
            "TRUNK",
            "STATE",
            "WHY",
            "SESSIONS",
            "CPS",
            "LAST PROBE",
            "FAILOVERS",
            "DRILL",
        ],
        &rows,
    )
}

pub fn calls(v: &Value) -> String {
    let calls = list(&v["calls"]);
    let rows: Vec<Vec<String>> = calls
        .iter()
        .map(|c| {
            let secs = |key: &str| {
                c[key]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |f| format!("{f:.1}s"))
            };
            vec![
                s(&c["call_id"]),
                s(&c["trunk"]),
                s(&c["direction"]),
                secs("age_secs"),
                secs("idle_secs"),
                if c["on_hold"] == Value::Bool(true) {
                    "yes".to_owned()
                } else {
                    "no".to_owned()
                },
            ]
        })
        .collect();
    let mut out = table(
        &["CALL-ID", "TRUNK", "DIRECTION", "AGE", "IDLE", "HOLD"],
        &rows,
    );
    let _ = writeln!(out, "{} of {} calls shown", calls.len(), s(&v["total"]));
    out
}

pub fn changes(v: &Value) -> String {
    let changes = list(&v["changes"]);
    if changes.is_empty() {
        return "no changes\n".to_owned();
    }
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            vec![
                s(&c["key"]),
                s(&c["old"]),
                s(&c["new"]),
                if c["restart"] == Value::Bool(true) {
                    "at next start".to_owned()
                } else {
                    "on reload".to_owned()
                },
            ]
        })
        .collect();
    table(&["KEY", "NOW", "NEW", "APPLIES"], &rows)
}

pub fn reloaded(v: &Value) -> String {
    let mut out = String::new();
    match v["result"].as_str() {
        Some("dry-run") => {
            let _ = writeln!(
                out,
                "{}: valid (hash {}); nothing applied (dry run)",
                s(&v["file"]),
                s(&v["hash"])
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "{}: reloaded (hash {}, {} changes)",
                s(&v["file"]),
                s(&v["hash"]),
                list(&v["changes"]).len()
            );
        }
    }
    let restart = list(&v["restart_needed"]);
    if !restart.is_empty() {
        let keys: Vec<String> = restart.iter().map(s).collect();
        let _ = writeln!(
            out,
            "needs a restart (running value kept until then): {}",
            keys.join(", ")
        );
    }
    let draining = list(&v["draining"]);
    if !draining.is_empty() {
        let names: Vec<String> = draining.iter().map(s).collect();
        let _ = writeln!(
            out,
            "draining (removed, calls still up): {}",
            names.join(", ")
        );
    }
    out
}

pub fn dry_run(run: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "drill {} on {}: {} calls on it now, {} at its peak in the last hour; {} would move now ({} at peak)",
        s(&run["mode"]),
        s(&run["trunk"]),
        s(&run["concurrency_now"]),
        s(&run["peak_last_hour"]),
        s(&run["moving_now"]),
        s(&run["moving_at_peak"])
    );
    let rows: Vec<Vec<String>> = list(&run["routes"])
        .iter()
        .map(|r| {
            let left: Vec<String> = list(&r["trunks_left"]).iter().map(s).collect();
            vec![
                s(&r["route"]),
                if left.is_empty() {
                    "NONE".to_owned()
                } else {
                    left.join(", ")
                },
                match &r["capacity_left"] {
                    Value::Null => "unlimited".to_owned(),
                    c => c.to_string(),
                },
                if r["empty"] == Value::Bool(true) {
                    "route left EMPTY".to_owned()
                } else {
                    "ok".to_owned()
                },
            ]
        })
        .collect();
    out.push_str(&table(
        &["ROUTE", "TRUNKS LEFT", "FREE SESSIONS", "VERDICT"],
        &rows,
    ));
    let verdict = |ok: &Value| {
        if ok == &Value::Bool(true) {
            "enough room"
        } else {
            "NOT enough room"
        }
    };
    let _ = writeln!(
        out,
        "now: {}; at last hour's peak: {}",
        verdict(&run["enough_now"]),
        verdict(&run["enough_at_peak"])
    );
    out
}

pub fn drill_started(v: &Value) -> String {
    let mut out = String::new();
    if let Some(run) = v.get("dry_run") {
        out.push_str(&dry_run(run));
    }
    if let Some(d) = v.get("drill") {
        let _ = writeln!(
            out,
            "drill {} started: {} {} until {} (by {})",
            s(&d["id"]),
            s(&d["trunk"]),
            s(&d["mode"]),
            when(&d["ends_unix_ms"]),
            s(&d["started_by"])
        );
    } else {
        out.push_str("dry run: nothing started\n");
    }
    out
}

pub fn drills_stopped(v: &Value) -> String {
    let mut out = String::new();
    for r in list(&v["stopped"]) {
        let _ = writeln!(
            out,
            "drill {} on {} ({}) stopped; trunk restored. `trunkgate ctl drill report {}` has its report",
            s(&r["id"]),
            s(&r["trunk"]),
            s(&r["mode"]),
            s(&r["id"])
        );
    }
    out
}

pub fn drill_status(v: &Value) -> String {
    let drills = list(&v["drills"]);
    if drills.is_empty() {
        return "no drill running\n".to_owned();
    }
    let rows: Vec<Vec<String>> = drills
        .iter()
        .map(|d| {
            vec![
                s(&d["id"]),
                s(&d["trunk"]),
                s(&d["mode"]),
                ms_span(&d["left_ms"]),
                s(&d["started_by"]),
                s(&d["calls_attempted"]),
                s(&d["rerouted"]),
                s(&d["failed"]),
            ]
        })
        .collect();
    table(
        &[
            "ID", "TRUNK", "MODE", "LEFT", "BY", "CALLS", "REROUTED", "FAILED",
        ],
        &rows,
    )
}

fn counts(v: &Value) -> String {
    match v.as_object() {
        Some(map) if !map.is_empty() => map
            .iter()
            .map(|(k, n)| format!("{k} {}", s(n)))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "none".to_owned(),
    }
}

fn setup(v: &Value) -> String {
    format!(
        "p50 {} ms, p95 {} ms ({} calls)",
        s(&v["p50_ms"]),
        s(&v["p95_ms"]),
        s(&v["calls"])
    )
}

pub fn drill_report(v: &Value) -> String {
    let r = &v["report"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "drill {}: {} {} ({})",
        s(&r["id"]),
        s(&r["trunk"]),
        s(&r["mode"]),
        s(&r["end"])
    );
    let rows = [
        ("started", when(&r["started_unix_ms"])),
        ("ended", when(&r["ends_unix_ms"])),
        ("started by", s(&r["started_by"])),
        ("calls attempted", s(&r["calls_attempted"])),
        ("carried by", counts(&r["carried_by"])),
        ("re-routed", s(&r["rerouted"])),
        ("failed", s(&r["failed"])),
        ("failovers", s(&r["failovers"])),
        ("rejects", counts(&r["rejects"])),
        ("setup before", setup(&r["setup_before"])),
        ("setup during", setup(&r["setup_during"])),
    ];
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<16} {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_and_dates_are_utc() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_161_408_000), "2026-12-01 21:43:28 UTC");
        assert_eq!(span(90_061), "1d 1h 01m");
    }

    #[test]
    fn trunks_table_reads_the_api_answer() {
        let v = json!({"trunks": [{"name": "carrier-a", "state": "up", "why": "start",
            "sessions": 3, "max_sessions": 300, "cps": 2.5, "max_cps": null,
            "last_probe": "reply 200", "last_probe_age_ms": 1500, "failovers": 4,
            "drill": "down", "draining": false}]});
        let out = trunks(&v);
        assert!(out.starts_with("TRUNK"), "{out}");
        assert!(out.contains("carrier-a  up     start  3/300"), "{out}");
        assert!(out.contains("2.5/-"), "{out}");
        assert!(out.contains("reply 200 2s ago"), "{out}");
    }
}
