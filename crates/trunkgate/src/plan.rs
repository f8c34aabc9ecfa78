//! `trunkgate plan`: capacity planning without records — channels by Erlang B for a
//! grade of service, now and after growth, and the bandwidth per codec with IP/UDP/RTP
//! overhead. The numbers come from [`trunkgate_records::plan::plan`].

use clap::Args;
use std::process::ExitCode;
use trunkgate_records::plan::{self, Codec};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Calls in the busy hour (offered, not only answered).
    #[arg(long, value_name = "N")]
    pub busy_hour_calls: f64,
    /// Mean holding time: 180s, 3m, or seconds.
    #[arg(long, value_name = "DURATION")]
    pub aht: String,
    /// Grade of service: the share of calls allowed to find every channel busy (1% or 0.01).
    #[arg(long, value_name = "PERCENT", default_value = "1%")]
    pub gos: String,
    /// Growth to plan for, e.g. 30%.
    #[arg(long, value_name = "PERCENT", default_value = "0%")]
    pub growth: String,
    /// G711 (PCMU/PCMA), G722, G729, GSM, OPUS.
    #[arg(long, value_name = "NAME", default_value = "G711")]
    pub codec: String,
    /// Packetisation time in ms.
    #[arg(long, value_name = "MS", default_value_t = 20)]
    pub ptime: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `30%` → 0.3, `0.3` → 0.3, `30` → 0.3 (a bare number above 1 is read as percent).
pub fn fraction(text: &str) -> Option<f64> {
    let t = text.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok()? / 100.0,
        None => {
            let v: f64 = t.parse().ok()?;
            if v.abs() > 1.0 { v / 100.0 } else { v }
        }
    };
    v.is_finite().then_some(v)
}

/// `180s`, `3m`, `1h`, `90` (seconds) → seconds.
fn seconds(text: &str) -> Option<f64> {
    let t = text.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v = num.trim().parse::<f64>().ok()? * mult;
    (v.is_finite() && v > 0.0).then_some(v)
}

fn percent(f: f64) -> String {
    let p = f * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0} %")
    } else {
        format!("{p:.2} %")
    }
}

pub fn run(args: &PlanArgs) -> ExitCode {
    let fail = |m: String| {
        eprintln!("trunkgate plan: {m}");
        ExitCode::from(2)
    };
    let Some(aht) = seconds(&args.aht) else {
        return fail(format!("--aht {:?}: write e.g. 180s or 3m", args.aht));
    };
    let Some(gos) = fraction(&args.gos) else {
        return fail(format!("--gos {:?}: write e.g. 1%", args.gos));
    };
    let Some(growth) = fraction(&args.growth) else {
        return fail(format!("--growth {:?}: write e.g. 30%", args.growth));
    };
    let Some(codec) = Codec::named(&args.codec) else {
        let known: Vec<&str> = plan::CODECS.iter().map(|c| c.name).collect();
        return fail(format!(
            "--codec {:?}: one of {}",
            args.codec,
            known.join(", ")
        ));
    };
    let p = match plan::plan(args.busy_hour_calls, aht, gos, growth, codec, args.ptime) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    if args.json {
        println!("{}", serde_json::to_string(&p).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    print!("{}", render(&p));
    ExitCode::SUCCESS
}

pub fn render(p: &plan::Plan) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "offered traffic   {:.1} E  ({} busy-hour calls × {} s mean holding time / 3600)\n",
        p.erlangs, p.busy_hour_calls, p.aht_s
    ));
    out.push_str(&format!(
        "channels          {} for {} grade of service (Erlang B)\n",
        p.channels,
        percent(p.gos)
    ));
    if p.growth != 0.0 {
        let label = format!("after {:+.0} %", p.growth * 100.0);
        out.push_str(&format!(
            "{label:<18}{:.1} E → {} channels\n",
            p.erlangs_after_growth, p.channels_after_growth
        ));
    }
    out.push_str(&format!(
        "bandwidth         {} at {} ms: {:.1} kbit/s per call and direction (IP/UDP/RTP), {:.1} with Ethernet\n",
        p.codec, p.ptime_ms, p.call_kbps_ip, p.call_kbps_ethernet
    ));
    out.push_str(&format!(
        "                  {:.2} Mbit/s each way for {} channels",
        p.kbps_ip / 1000.0,
        p.channels
    ));
    if p.growth != 0.0 {
        out.push_str(&format!(
            "; {:.2} Mbit/s ({:.2} with Ethernet) for {} after growth",
            p.kbps_ip_after_growth / 1000.0,
            p.kbps_ethernet_after_growth / 1000.0,
            p.channels_after_growth
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_and_the_worked_example() {
        assert_eq!(fraction("30%"), Some(0.3));
        assert_eq!(fraction("0.01"), Some(0.01));
        assert_eq!(fraction("1"), Some(1.0));
        assert_eq!(fraction("x%"), None);
        assert_eq!(seconds("180s"), Some(180.0));
        assert_eq!(seconds("3m"), Some(180.0));
        assert_eq!(seconds("-3"), None);
        let g711 = Codec::named("G711").unwrap();
        let p = plan::plan(1200.0, 180.0, 0.01, 0.3, g711, 20).unwrap();
        let text = render(&p);
        assert!(text.contains("offered traffic   60.0 E"), "{text}");
        assert!(
            text.contains("channels          75 for 1 % grade of service"),
            "{text}"
        );
        assert!(text.contains("78.0 E → 94 channels"), "{text}");
        assert!(text.contains("80.0 kbit/s per call"), "{text}");
        assert!(text.contains("7.52 Mbit/s"), "{text}");
    }
}
