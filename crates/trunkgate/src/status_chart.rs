//! The concurrency chart of one trunk as an SVG string: sessions per minute over a time
//! window against the trunk's `max_sessions` limit line, the busy hour shaded, the trunk's
//! state in the title. Pure: plain data in, text out, no clock and no I/O, so the status
//! page (`GET /`), `trunkgate ctl status --svg` and `ctl capacity --svg` draw the same
//! chart from whatever source they have (the in-memory history, the call records).
//!
//! Every name is escaped ([`escape`]); the elements tests and stylesheets can find carry a
//! class: `trunk-chart` (the `<svg>`), `concurrency` (the sessions path), `limit-line`,
//! `busy-hour` (the shaded window), `state`.

use std::fmt::Write as _;

/// Colour of the limit line (the status page test looks for it in the screenshot).
pub const LIMIT_COLOUR: &str = "#e00000";
/// Colour of the busy-hour band, drawn at [`BUSY_OPACITY`].
pub const BUSY_COLOUR: &str = "#f0a000";
pub const BUSY_OPACITY: &str = "0.35";
const LINE_COLOUR: &str = "#1f5fa8";

const WIDTH: u32 = 760;
const HEIGHT: u32 = 220;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 30.0;

/// What one chart shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub trunk: String,
    /// `max_sessions`; `None`: the trunk has no limit (no line is drawn).
    pub limit: Option<u32>,
    /// The window shown: minutes since the Unix epoch (UTC), `from` included, `to` excluded.
    pub from_minute: u64,
    pub to_minute: u64,
    /// Peak sessions per minute `(minute, sessions)`, sorted; minutes left out are gaps.
    pub samples: Vec<(u64, u32)>,
    /// The busy hour `(start_minute, end_minute, erlangs)`, if there was traffic.
    pub busy_hour: Option<(u64, u64, f64)>,
    /// `up`, `down`, `half-open`, or a drill such as `up, drill down`.
    pub state: String,
}

/// `text` safe inside XML/HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // XML 1.0 forbids most control characters even as references.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `HH:MM` (UTC) of a Unix minute.
pub fn clock(minute: u64) -> String {
    let of_day = minute % (24 * 60);
    format!("{:02}:{:02}", of_day / 60, of_day % 60)
}

/// Round the top of the y axis up to a readable number.
fn nice_top(v: u32) -> u32 {
    let v = v.max(4);
    let step = match v {
        0..=10 => 2,
        11..=50 => 10,
        51..=200 => 25,
        201..=1000 => 100,
        _ => 10u32.pow(v.ilog10().saturating_sub(1)) * 5,
    };
    v.div_ceil(step).saturating_mul(step)
}

/// The chart as a standalone `<svg>` element (with its namespace, so it is a valid SVG
/// document on its own and inline in HTML).
pub fn render_svg(chart: &Chart) -> String {
    render_at(chart, 0)
}

/// Several charts stacked in one SVG document (`ctl status --svg`).
pub fn render_document(charts: &[Chart]) -> String {
    let height = HEIGHT.saturating_mul(u32::try_from(charts.len().max(1)).unwrap_or(u32::MAX));
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\">\n"
    );
    if charts.is_empty() {
        out.push_str("<text x=\"10\" y=\"20\">no trunks</text>\n");
    }
    for (i, chart) in charts.iter().enumerate() {
        let y = HEIGHT.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
        out.push_str(&render_at(chart, y));
    }
    out.push_str("</svg>\n");
    out
}

fn render_at(chart: &Chart, y_offset: u32) -> String {
    let span = chart.to_minute.saturating_sub(chart.from_minute).max(1) as f64;
    let plot_w = f64::from(WIDTH) - LEFT - RIGHT;
    let plot_h = f64::from(HEIGHT) - TOP - BOTTOM;
    let peak = chart.samples.iter().map(|s| s.1).max().unwrap_or(0);
    let top = nice_top(peak.max(chart.limit.unwrap_or(0)).saturating_add(1));
    let x = |minute: u64| {
        let m = minute.clamp(chart.from_minute, chart.to_minute);
        LEFT + (m - chart.from_minute) as f64 / span * plot_w
    };
    let y = |v: u32| (TOP + plot_h - f64::from(v) / f64::from(top) * plot_h).round();
    let name = escape(&chart.trunk);
    let state = escape(&chart.state);
    let mut s = String::with_capacity(16 * 1024);
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"trunk-chart\" data-trunk=\"{name}\" \
         y=\"{y_offset}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = writeln!(
        s,
        "<title>{name}: sessions per minute, {} to {} UTC</title>",
        clock(chart.from_minute),
        clock(chart.to_minute)
    );
    let _ = writeln!(
        s,
        "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#ffffff\"/>"
    );
    if let Some((start, end, erlangs)) = chart.busy_hour {
        let (x0, x1) = (x(start), x(end));
        let _ = writeln!(
            s,
            "<rect class=\"busy-hour\" x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{plot_h}\" \
             fill=\"{BUSY_COLOUR}\" fill-opacity=\"{BUSY_OPACITY}\"><title>busy hour {}–{} UTC, \
             {erlangs:.1} E</title></rect>",
            (x1 - x0).max(2.0),
            clock(start),
            clock(end)
        );
        // The label reads away from the band's nearer edge of the plot.
        let (lx, anchor) = if x0 > LEFT + plot_w / 2.0 {
            (x1, "end")
        } else {
            (x0, "start")
        };
        let _ = writeln!(
            s,
            "<text class=\"busy-hour-label\" x=\"{lx:.1}\" y=\"{}\" text-anchor=\"{anchor}\" \
             fill=\"#8a5a00\">busy hour {}–{} UTC · {erlangs:.1} E</text>",
            TOP - 4.0,
            clock(start),
            clock(end)
        );
    }
    // Axes, grid and labels: y at 0, top/2, top; x every 3 hours on the clock.
    for v in [0, top / 2, top] {
        let yy = y(v);
        let _ = writeln!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{yy}\" y2=\"{yy}\" stroke=\"#dddddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555555\">{v}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    // Every 3 h on the clock for a day; for a longer window (ctl capacity over days) about
    // eight ticks, on whole hours.
    let step = (span as u64 / 8).div_ceil(60).saturating_mul(60).max(180);
    let first_tick = chart.from_minute.div_ceil(step).saturating_mul(step);
    let ticks = (first_tick..=chart.to_minute).step_by(usize::try_from(step).unwrap_or(usize::MAX));
    for tick in ticks.take(16) {
        let xx = x(tick);
        let _ = writeln!(
            s,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#eeeeee\"/>\
             <text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555555\">{}</text>",
            TOP + plot_h,
            TOP + plot_h + 16.0,
            clock(tick)
        );
    }
    // Sessions: a step line per minute, broken where minutes are missing.
    let mut d = String::new();
    let mut last: Option<u64> = None;
    for &(minute, v) in &chart.samples {
        if minute < chart.from_minute || minute >= chart.to_minute {
            continue;
        }
        let (x0, x1, yy) = (x(minute), x(minute + 1), y(v));
        if last.is_some_and(|l| l + 1 == minute) {
            let _ = write!(d, "L{x0:.1},{yy}");
        } else {
            let _ = write!(d, "M{x0:.1},{yy}");
        }
        let _ = write!(d, "L{x1:.1},{yy}");
        last = Some(minute);
    }
    // The newest minute as a dot: visible even when it is the only one.
    if let Some(&(minute, v)) = chart
        .samples
        .iter()
        .rfind(|(m, _)| *m >= chart.from_minute && *m < chart.to_minute)
    {
        let _ = writeln!(
            s,
            "<circle class=\"latest\" cx=\"{:.1}\" cy=\"{}\" r=\"3\" fill=\"{LINE_COLOUR}\">\
             <title>{} UTC: peak {v}</title></circle>",
            x(minute) + 0.5 * plot_w / span,
            y(v),
            clock(minute)
        );
    }
    if !d.is_empty() {
        let _ = writeln!(
            s,
            "<path class=\"concurrency\" d=\"{d}\" fill=\"none\" stroke=\"{LINE_COLOUR}\" \
             stroke-width=\"1.5\"/>"
        );
    }
    match chart.limit {
        Some(limit) => {
            let yy = y(limit);
            let _ = writeln!(
                s,
                "<line class=\"limit-line\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{yy}\" y2=\"{yy}\" \
                 stroke=\"{LIMIT_COLOUR}\" stroke-width=\"2\"/>\
                 <text class=\"limit-label\" x=\"{:.1}\" y=\"{}\" text-anchor=\"end\" \
                 fill=\"{LIMIT_COLOUR}\">max_sessions {limit}</text>",
                LEFT + plot_w,
                LEFT + plot_w,
                yy - 4.0
            );
        }
        None => {
            let _ = writeln!(
                s,
                "<text class=\"limit-label\" x=\"{:.1}\" y=\"{}\" text-anchor=\"end\" \
                 fill=\"#555555\">no max_sessions</text>",
                LEFT + plot_w,
                TOP - 4.0
            );
        }
    }
    let _ = writeln!(
        s,
        "<text class=\"trunk-name\" x=\"{LEFT}\" y=\"14\" font-size=\"13\" font-weight=\"bold\">\
         {name}</text><text class=\"state\" x=\"{:.1}\" y=\"14\" text-anchor=\"end\">{state} · \
         peak {peak} in 24 h</text>",
        LEFT + plot_w
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> Chart {
        Chart {
            trunk: "carrier-a".into(),
            limit: Some(30),
            from_minute: 1000,
            to_minute: 1000 + 1440,
            samples: vec![(1100, 5), (1101, 7), (1200, 3)],
            busy_hour: Some((1100, 1160, 0.2)),
            state: "up".into(),
        }
    }

    #[test]
    fn escapes_markup_quotes_and_control_characters() {
        assert_eq!(
            escape("<a href=\"x\">&'\u{1}"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;\u{fffd}"
        );
    }

    #[test]
    fn draws_limit_busy_hour_and_a_broken_step_line() {
        let svg = render_svg(&chart());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"trunk-chart\""));
        assert_eq!(svg.matches("class=\"limit-line\"").count(), 1);
        assert_eq!(svg.matches("class=\"busy-hour\"").count(), 1);
        assert!(svg.contains("max_sessions 30"));
        // Minutes 1100 and 1101 joined, 1200 a new segment.
        let d = svg.split("class=\"concurrency\" d=\"").nth(1).unwrap();
        let d = d.split('"').next().unwrap();
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert!(svg.contains("busy hour 18:20–19:20 UTC"), "{svg}");
    }

    #[test]
    fn a_hostile_trunk_name_stays_text() {
        let mut c = chart();
        c.trunk = "</text><script>alert(1)</script>".into();
        c.state = "down\"onload=\"x".into();
        let svg = render_svg(&c);
        assert!(!svg.contains("<script"));
        assert!(!svg.contains("\"onload"));
    }

    #[test]
    fn no_limit_no_line_and_empty_document_is_still_svg() {
        let mut c = chart();
        c.limit = None;
        c.busy_hour = None;
        c.samples.clear();
        let svg = render_svg(&c);
        assert!(!svg.contains("limit-line") && !svg.contains("class=\"busy-hour\""));
        assert!(svg.contains("no max_sessions"));
        let doc = render_document(&[]);
        assert!(doc.starts_with("<svg") && doc.trim_end().ends_with("</svg>"));
        let doc = render_document(&[chart(), chart()]);
        assert_eq!(doc.matches("class=\"trunk-chart\"").count(), 2);
    }

    #[test]
    fn a_hostile_window_stays_bounded() {
        let mut c = chart();
        c.from_minute = 0;
        c.to_minute = u64::MAX;
        c.samples = vec![(u64::MAX - 1, u32::MAX), (0, 1)];
        let svg = render_svg(&c);
        assert!(svg.len() < 64 * 1024, "{} bytes", svg.len());
        c.from_minute = u64::MAX;
        assert!(render_svg(&c).ends_with("</svg>\n"));
    }

    #[test]
    fn the_axis_top_is_above_limit_and_peak() {
        assert_eq!(nice_top(0), 4);
        assert_eq!(nice_top(7), 8);
        assert_eq!(nice_top(31), 40);
        assert_eq!(nice_top(301), 400);
        assert!(nice_top(123_456) >= 123_456);
    }
}
