//! The operator's status page, `GET /` on the admin listener, and the data behind it,
//! `GET /concurrency` (docs/api.md). Server-rendered HTML with one inline SVG chart per
//! trunk ([`crate::status_chart`]): sessions per minute over the last 24 h against the
//! trunk's `max_sessions` line, the busy hour shaded, the trunk's state and running drill.
//! No JavaScript, no external asset; the page reloads itself every 60 s (a meta refresh).
//!
//! Both are reads, so like `/trunks` they need no token (the admin listener's own exposure
//! is the protection; start-up refuses a non-loopback listener without a token for writes).
//! Nothing secret is on them: names, counts, states. Every name is escaped.
//!
//! The page is rendered from the same JSON `/concurrency` answers ([`charts`]), so
//! `trunkgate ctl status --svg FILE` draws exactly the charts the page shows.

use crate::admin::AdminState;
use crate::concurrency::{self, BusyHour, MinuteLoad};
use crate::status_chart::{self, Chart, escape};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// `GET /concurrency`: per trunk, the last 24 h of per-minute peaks and means, its busy
/// hour, limit, sessions now, state and drill.
pub async fn concurrency(State(state): State<AdminState>) -> Response {
    axum::Json(concurrency_json(&state, concurrency::unix_minute())).into_response()
}

/// `GET /`: the status page.
pub async fn page(State(state): State<AdminState>) -> Response {
    let now = concurrency::unix_minute();
    let data = concurrency_json(&state, now);
    // The capacity lines from the call records (7 days, 1 % GoS), when records are on.
    let advice = crate::records_api::advice_lines(&state).await;
    let header = PageHeader {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: state.live.as_ref().map_or(0, |l| l.uptime().as_secs()),
        policy_hash: state
            .live
            .as_ref()
            .map(|l| l.current().hash.clone())
            .unwrap_or_default(),
        calls: state.status.dialogs.load(Ordering::Relaxed),
        shutting_down: state.status.shutting_down.load(Ordering::Relaxed),
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render_page(&header, &data, &advice),
    )
        .into_response()
}

fn busy_json(b: &BusyHour) -> Value {
    json!({
        "start_minute": b.start_minute,
        "end_minute": b.end_minute,
        "erlangs": (b.erlangs * 100.0).round() / 100.0,
        "peak": b.peak,
    })
}

/// The `/concurrency` answer for the 24 h ending with minute `now`.
pub fn concurrency_json(state: &AdminState, now: u64) -> Value {
    let from = concurrency::window_start(now);
    let (Some(view), Some(live)) = (&state.trunks, &state.live) else {
        return json!({ "from_minute": from, "to_minute": now + 1, "trunks": [] });
    };
    let at = Instant::now();
    let trunks = view.snapshot(at);
    let drills = crate::admin_control::active_drills(live, at);
    let list = trunks["trunks"].as_array().cloned().unwrap_or_default();
    let out: Vec<Value> = list
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap_or_default();
            let drill_left_ms = drills
                .as_array()
                .and_then(|d| d.iter().find(|d| d["trunk"].as_str() == Some(name)))
                .map(|d| d["left_ms"].clone());
            let series: Vec<MinuteLoad> = live.history_series(name, now);
            let busy = concurrency::busy_hour(&series);
            let samples: Vec<Value> = series
                .iter()
                .map(|m| json!([m.minute, m.peak, (m.erlangs() * 100.0).round() / 100.0]))
                .collect();
            json!({
                "name": name,
                "max_sessions": t["max_sessions"],
                "sessions": t["sessions"],
                "state": t["state"].as_str().unwrap_or("unknown"),
                "why": t["why"],
                "drill": t["drill"],
                "drill_left_ms": drill_left_ms,
                "draining": t["draining"],
                "peak_24h": series.iter().map(|m| m.peak).max().unwrap_or(0),
                "busy_hour": busy.as_ref().map(busy_json),
                "samples": samples,
            })
        })
        .collect();
    json!({ "from_minute": from, "to_minute": now + 1, "trunks": out })
}

/// The state a chart shows: health state, and the drill if one runs.
fn state_text(t: &Value) -> String {
    let state = t["state"].as_str().unwrap_or("unknown");
    match t["drill"].as_str() {
        Some(drill) => format!("{state}, drill {drill}"),
        None if t["draining"].as_bool() == Some(true) => format!("{state}, draining"),
        None => state.to_owned(),
    }
}

/// The charts of a `/concurrency` answer (anything missing or malformed is left out or
/// drawn empty; this JSON may come over the network in `ctl`).
pub fn charts(data: &Value) -> Vec<Chart> {
    let from = data["from_minute"].as_u64().unwrap_or(0);
    let to = data["to_minute"].as_u64().unwrap_or(from).max(from);
    let Some(trunks) = data["trunks"].as_array() else {
        return Vec::new();
    };
    trunks
        .iter()
        .map(|t| {
            let samples = t["samples"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(|p| {
                            let minute = p.get(0)?.as_u64()?;
                            let peak = u32::try_from(p.get(1)?.as_u64()?).ok()?;
                            Some((minute, peak))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let b = &t["busy_hour"];
            let busy_hour = match (b["start_minute"].as_u64(), b["end_minute"].as_u64()) {
                (Some(s), Some(e)) => Some((s, e, b["erlangs"].as_f64().unwrap_or(0.0))),
                _ => None,
            };
            Chart {
                trunk: t["name"].as_str().unwrap_or_default().to_owned(),
                limit: t["max_sessions"]
                    .as_u64()
                    .and_then(|l| u32::try_from(l).ok()),
                from_minute: from,
                to_minute: to,
                samples,
                busy_hour,
                state: state_text(t),
            }
        })
        .collect()
}

/// What the page shows above the trunks.
#[derive(Debug, Clone)]
pub struct PageHeader {
    pub version: &'static str,
    pub uptime_s: u64,
    pub policy_hash: String,
    pub calls: u64,
    pub shutting_down: bool,
}

const STYLE: &str = "body{font-family:sans-serif;margin:16px;color:#222;background:#f6f6f6}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:0 0 6px}\
p.meta{color:#555;margin:0 0 12px}table{border-collapse:collapse;background:#fff;margin-bottom:14px}\
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px;white-space:nowrap}\
section.trunk{background:#fff;border:1px solid #ccc;padding:8px;margin:0 0 12px;max-width:780px}\
.state-up{color:#11772b}.state-down{color:#c00000;font-weight:bold}\
.state-half-open{color:#b36b00;font-weight:bold}.drill{color:#7a2ea0;font-weight:bold}";

fn duration_text(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// The whole page for a `/concurrency` answer.
pub fn render_page(h: &PageHeader, data: &Value, advice: &[(String, String)]) -> String {
    let mut s = String::with_capacity(64 * 1024);
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    s.push_str("<meta http-equiv=\"refresh\" content=\"60\">");
    let _ = writeln!(
        s,
        "<title>Trunkgate status</title><style>{STYLE}</style></head><body>"
    );
    let _ = writeln!(
        s,
        "<h1>Trunkgate {}</h1><p class=\"meta\">up {} · policy {} · {} calls in progress{} · \
         sessions per minute, last 24 h (UTC), since this process started · refreshes every \
         60 s</p>",
        escape(h.version),
        duration_text(h.uptime_s),
        escape(&h.policy_hash),
        h.calls,
        if h.shutting_down {
            " · <b>shutting down</b>"
        } else {
            ""
        }
    );
    let trunks = data["trunks"].as_array().cloned().unwrap_or_default();
    if trunks.is_empty() {
        s.push_str("<p>No trunks in the policy in force.</p>\n");
    } else {
        s.push_str(
            "<table class=\"summary\"><tr><th>trunk</th><th>state</th><th>sessions</th>\
             <th>max_sessions</th><th>peak 24 h</th><th>headroom at peak</th>\
             <th>busy hour (UTC)</th><th>drill</th></tr>\n",
        );
        for t in &trunks {
            summary_row(&mut s, t);
        }
        s.push_str("</table>\n");
    }
    for (i, (t, chart)) in trunks.iter().zip(charts(data)).enumerate() {
        let _ = writeln!(
            s,
            "<section class=\"trunk\" id=\"trunk-{i}\" data-trunk=\"{}\">",
            escape(&chart.trunk)
        );
        if let Some(why) = t["why"].as_str().filter(|w| !w.is_empty()) {
            let _ = writeln!(
                s,
                "<p class=\"meta\">state {} ({})</p>",
                escape(t["state"].as_str().unwrap_or("unknown")),
                escape(why)
            );
        }
        if let Some((_, line)) = advice.iter().find(|(trunk, _)| *trunk == chart.trunk) {
            let _ = writeln!(s, "<p class=\"capacity\">{}</p>", escape(line));
        }
        s.push_str(&status_chart::render_svg(&chart));
        s.push_str("</section>\n");
    }
    s.push_str("</body></html>\n");
    s
}

fn summary_row(s: &mut String, t: &Value) {
    let name = escape(t["name"].as_str().unwrap_or_default());
    let state = t["state"].as_str().unwrap_or("unknown");
    let class = match state {
        "up" | "down" | "half-open" => state,
        _ => "unknown",
    };
    let sessions = t["sessions"].as_u64().unwrap_or(0);
    let peak = t["peak_24h"].as_u64().unwrap_or(0);
    let (limit, headroom) = match t["max_sessions"].as_u64() {
        Some(limit) => (
            limit.to_string(),
            format!(
                "{} ({:.0} % used)",
                limit.saturating_sub(peak),
                peak as f64 * 100.0 / limit.max(1) as f64
            ),
        ),
        None => ("none".to_owned(), "–".to_owned()),
    };
    let b = &t["busy_hour"];
    let busy = match (b["start_minute"].as_u64(), b["end_minute"].as_u64()) {
        (Some(start), Some(end)) => format!(
            "{}–{}, {:.1} E, peak {}",
            status_chart::clock(start),
            status_chart::clock(end),
            b["erlangs"].as_f64().unwrap_or(0.0),
            b["peak"].as_u64().unwrap_or(0)
        ),
        _ => "no traffic yet".to_owned(),
    };
    let drill = match t["drill"].as_str() {
        Some(d) => match t["drill_left_ms"].as_u64() {
            Some(ms) => format!(
                "<span class=\"drill\">{}</span>, {} left",
                escape(d),
                duration_text(ms.div_ceil(1000))
            ),
            None => format!("<span class=\"drill\">{}</span>", escape(d)),
        },
        None if t["draining"].as_bool() == Some(true) => "draining".to_owned(),
        None => "–".to_owned(),
    };
    let _ = writeln!(
        s,
        "<tr data-trunk=\"{name}\"><td>{name}</td><td class=\"state-{class}\">{}</td>\
         <td>{sessions}</td><td>{limit}</td><td>{peak}</td><td>{headroom}</td><td>{busy}</td>\
         <td>{drill}</td></tr>",
        escape(state)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Value {
        json!({
            "from_minute": 1000, "to_minute": 2440,
            "trunks": [
                { "name": "carrier-a", "max_sessions": 30, "sessions": 4, "state": "up",
                  "why": "start", "drill": null, "draining": false, "peak_24h": 7,
                  "busy_hour": { "start_minute": 1100, "end_minute": 1160, "erlangs": 0.2, "peak": 7 },
                  "samples": [[1100, 5, 4.5], [1101, 7, 6.0], ["bad"], [1102]] },
                { "name": "<b>evil</b>", "max_sessions": null, "sessions": 0, "state": "down",
                  "why": "probe: 3 failures", "drill": "reject-503", "drill_left_ms": 61000,
                  "peak_24h": 0,
                  "busy_hour": null, "samples": "nonsense" }
            ]
        })
    }

    fn header() -> PageHeader {
        PageHeader {
            version: "0.1.0",
            uptime_s: 4000,
            policy_hash: "abc".into(),
            calls: 4,
            shutting_down: false,
        }
    }

    #[test]
    fn charts_read_the_concurrency_answer_and_skip_malformed_parts() {
        let c = charts(&data());
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].samples, vec![(1100, 5), (1101, 7)]);
        assert_eq!(c[0].busy_hour, Some((1100, 1160, 0.2)));
        assert_eq!(c[0].limit, Some(30));
        assert_eq!(c[1].limit, None);
        assert_eq!(c[1].state, "down, drill reject-503");
        assert!(c[1].samples.is_empty());
        assert!(charts(&json!("garbage")).is_empty());
    }

    #[test]
    fn the_page_has_a_row_and_a_chart_per_trunk_and_escapes_names() {
        let advice = [(
            "carrier-a".to_owned(),
            "carrier-a: <enough> for now".to_owned(),
        )];
        let page = render_page(&header(), &data(), &advice);
        assert!(
            page.contains("<p class=\"capacity\">carrier-a: &lt;enough&gt; for now</p>"),
            "the capacity line, escaped"
        );
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(page.matches("<section class=\"trunk\"").count(), 2);
        assert_eq!(page.matches("class=\"trunk-chart\"").count(), 2);
        assert_eq!(page.matches("class=\"limit-line\"").count(), 1);
        assert_eq!(page.matches("class=\"busy-hour\"").count(), 1);
        assert!(page.contains("23 (23 % used)"), "{page}");
        assert!(page.contains("18:20–19:20, 0.2 E, peak 7"));
        assert!(page.contains("class=\"state-down\""));
        assert!(page.contains("<span class=\"drill\">reject-503</span>, 1m left"));
        assert!(!page.contains("<b>evil"), "an unescaped name");
        assert!(page.contains("&lt;b&gt;evil&lt;/b&gt;"));
        assert!(!page.contains("<script"), "no JavaScript");
        assert!(
            !page.contains("src=") && !page.contains("href="),
            "no external asset"
        );
    }

    #[test]
    fn an_empty_policy_still_renders() {
        let page = render_page(&header(), &json!({}), &[]);
        assert!(page.contains("No trunks"));
        assert_eq!(duration_text(59), "59s");
        assert_eq!(duration_text(3_700), "1h01m");
        assert_eq!(duration_text(90_000), "1d01h");
    }
}
