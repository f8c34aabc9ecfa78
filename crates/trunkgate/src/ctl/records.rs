//! `trunkgate ctl records` and `ctl capacity`: tables and CSV from `GET /records` and
//! `GET /capacity`.

use super::render::{s, table, utc};
use serde_json::Value;

fn list(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn when(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".to_owned(), utc)
}

fn secs(ms: &Value) -> String {
    ms.as_u64()
        .map_or_else(|| "-".to_owned(), |ms| format!("{:.1}", ms as f64 / 1000.0))
}

/// Attempts as `carrier-a:503>carrier-b:200`.
fn attempts(r: &Value) -> String {
    let a: Vec<String> = list(r, "attempts")
        .iter()
        .map(|a| format!("{}:{}", s(&a["to"]), s(&a["outcome"])))
        .collect();
    if a.is_empty() {
        "-".into()
    } else {
        a.join(">")
    }
}

pub fn records(v: &Value) -> String {
    let rows: Vec<Vec<String>> = list(v, "records")
        .iter()
        .map(|r| {
            vec![
                when(&r["start_ms"]),
                s(&r["direction"]),
                s(&r["trunk"]),
                s(&r["route"]),
                s(&r["caller"]),
                s(&r["callee"]),
                s(&r["code"]),
                secs(&r["setup_ms"]),
                secs(&r["duration_ms"]),
                attempts(r),
                match r["reject"].as_str() {
                    Some(why) => format!("refused: {why}"),
                    None => s(&r["end_reason"]),
                },
            ]
        })
        .collect();
    let mut out = table(
        &[
            "START",
            "DIR",
            "TRUNK",
            "ROUTE",
            "FROM",
            "TO",
            "CODE",
            "SETUP_S",
            "DURATION_S",
            "ATTEMPTS",
            "END",
        ],
        &rows,
    );
    let more = if v["truncated"].as_bool() == Some(true) {
        " (truncated: narrow --since or --trunk)"
    } else {
        ""
    };
    out.push_str(&format!("{} records{more}\n", s(&v["count"])));
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// One line per record, RFC 4180 quoting; attempts as `to:outcome>…`, times as Unix ms.
pub fn records_csv(v: &Value) -> String {
    let cols = [
        "call_id",
        "start_ms",
        "answer_ms",
        "end_ms",
        "direction",
        "trunk",
        "route",
        "pbx_node",
        "caller",
        "callee",
        "code",
        "first_provisional_ms",
        "setup_ms",
        "duration_ms",
        "end_reason",
        "reject",
        "transfer",
    ];
    let mut out = cols.join(",");
    out.push_str(",attempts\n");
    for r in list(v, "records") {
        let mut cells: Vec<String> = cols
            .iter()
            .map(|c| match &r[*c] {
                Value::Null => String::new(),
                Value::String(t) => csv_field(t),
                other => other.to_string(),
            })
            .collect();
        cells.push(csv_field(&attempts(&r)));
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

fn f2(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |f| format!("{f:.2}"))
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |f| format!("{:.0}%", f * 100.0))
}

pub fn capacity(v: &Value) -> String {
    let trunks = list(v, "trunks");
    let rows: Vec<Vec<String>> = trunks
        .iter()
        .map(|t| {
            let bh = &t["busy_hour"];
            vec![
                s(&t["key"]),
                bh.get("start_ms").map_or_else(|| "-".to_owned(), when),
                f2(&t["carried_erlangs"]),
                f2(&t["offered_erlangs"]),
                s(&t["peak_concurrency"]),
                s(&t["max_sessions"]),
                pct(&t["utilisation_at_peak"]),
                s(&t["capacity_rejects"]),
                pct(&t["asr"]),
                format!("{:.0}", t["mean_holding_s"].as_f64().unwrap_or(0.0)),
                s(&t["channels_needed_after_growth"]),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "TRUNK",
            "BUSY HOUR",
            "ERLANGS",
            "OFFERED",
            "PEAK",
            "LIMIT",
            "UTIL",
            "CAP_REJ",
            "ASR",
            "MHT_S",
            "NEEDED",
        ],
        &rows,
    );
    for t in &trunks {
        for b in list(t, "bandwidth") {
            out.push_str(&format!(
                "  {} {}: {:.1} kbit/s per call and direction, {:.1} kbit/s in the busy hour, \
                 {:.1} kbit/s for the channels needed\n",
                s(&t["key"]),
                s(&b["codec"]),
                b["call_kbps"].as_f64().unwrap_or(0.0),
                b["busy_hour_kbps"].as_f64().unwrap_or(0.0),
                b["needed_kbps_after_growth"].as_f64().unwrap_or(0.0),
            ));
        }
    }
    let amp = &v["amplification"];
    out.push_str(&format!(
        "leg amplification: {} trunk legs for {} customer calls ({} legs per call)\n",
        s(&amp["legs"]),
        s(&amp["customer_calls"]),
        f2(&amp["ratio"])
    ));
    let h = &v["headroom"];
    if let (Some(us), Some(share)) = (
        h["cpu_per_call_us"].as_f64(),
        h["cpu_share_at_busy_hour"].as_f64(),
    ) {
        out.push_str(&format!(
            "trunkgate: {us:.0} µs CPU per call since start × {:.2} busy-hour calls/s = {:.1} % of {} cores ({:.1} % after growth)\n",
            h["busy_hour_calls_per_s"].as_f64().unwrap_or(0.0),
            share * 100.0,
            s(&h["cores"]),
            h["cpu_share_after_growth"].as_f64().unwrap_or(share) * 100.0,
        ));
    }
    for t in &trunks {
        out.push_str(&s(&t["advice"]));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_table_and_csv() {
        let v = json!({"count": 1, "truncated": false, "records": [{
            "call_id": "a,b", "start_ms": 0, "answer_ms": null, "end_ms": 5, "direction": "outbound",
            "trunk": "carrier-b", "route": "default", "caller": "1", "callee": "2", "code": 200,
            "setup_ms": 1500, "duration_ms": 60000, "end_reason": "bye-caller", "reject": null,
            "attempts": [{"to": "carrier-a", "outcome": "503"}, {"to": "carrier-b", "outcome": "200"}]
        }]});
        let t = records(&v);
        assert!(t.contains("carrier-a:503>carrier-b:200"), "{t}");
        assert!(t.contains("1 records"), "{t}");
        let c = records_csv(&v);
        assert!(c.starts_with("call_id,start_ms,"), "{c}");
        assert!(c.contains("\"a,b\",0,,5,outbound"), "{c}");
    }
}
