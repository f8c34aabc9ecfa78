//! `ctl testcall` and `ctl validate`: start a run of test calls, wait for it (polling
//! `GET /validate/runs/{id}`), print its table, exit 1 unless every call passed.

use super::{Answer, call, refused, render};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct TestcallArgs {
    /// Outbound: this trunk first (its route's others as failover); inbound: the trunk the
    /// call comes from. Outbound without it: wherever the number's route sends it.
    #[arg(long, value_name = "TRUNK")]
    pub trunk: Option<String>,
    /// The number to call (an echo service, one of your DIDs).
    #[arg(long, value_name = "NUMBER")]
    pub to: String,
    /// How long to hold the call after the answer.
    #[arg(long = "for", value_name = "DURATION", default_value = "10s")]
    pub duration: String,
    /// outbound (as the PBX) or inbound (as the trunk, to the PBX).
    #[arg(long, value_name = "DIR", default_value = "outbound")]
    pub direction: String,
    /// PCMU or PCMA.
    #[arg(long, default_value = "PCMU")]
    pub codec: String,
    /// The call must be refused with this code instead of answered.
    #[arg(long, value_name = "CODE")]
    pub expect: Option<u16>,
    /// The far end echoes: fail unless our audio comes back.
    #[arg(long)]
    pub echo: bool,
    /// Calling number (From).
    #[arg(long, value_name = "NUMBER")]
    pub from: Option<String>,
    /// Count the call against the trunk's max_sessions/max_cps like a real one.
    #[arg(long)]
    pub count_limits: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ValidateArgs {
    /// Only the [[test_call]]s of this suite (default: all of them).
    #[arg(long, value_name = "NAME")]
    pub suite: Option<String>,
    /// Reload the policy first (as `ctl reload`), then validate the new one.
    #[arg(long)]
    pub after_reload: bool,
    /// The run belongs to this drill (it must be running): its report lists the run.
    #[arg(long, value_name = "ID")]
    pub during_drill: Option<u64>,
    #[command(subcommand)]
    pub command: Option<ValidateCommand>,
}

#[derive(Debug, Subcommand)]
pub enum ValidateCommand {
    /// A kept run (default: the latest finished one), or every kept run with --all.
    Report {
        id: Option<u64>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

/// Longest a `ctl` waits for a run.
const MAX_WAIT: Duration = Duration::from_secs(30 * 60);

pub fn testcall(c: &super::Client, json_out: bool, a: &TestcallArgs) -> ExitCode {
    let body = json!({
        "trunk": a.trunk, "to": a.to, "for": a.duration, "direction": a.direction,
        "codec": a.codec, "expect": a.expect, "echo": a.echo, "from": a.from,
        "count_limits": a.count_limits,
    });
    start_and_wait(c, json_out, "/testcalls", body)
}

pub fn validate(c: &super::Client, json_out: bool, a: &ValidateArgs) -> ExitCode {
    if let Some(ValidateCommand::Report { id, all }) = &a.command {
        let path = match (id, all) {
            (_, true) => "/validate/runs".to_owned(),
            (Some(id), _) => format!("/validate/runs/{id}"),
            (None, _) => "/validate/runs/latest".to_owned(),
        };
        return match call(c, "GET", &path, None) {
            Err(code) => code,
            Ok(Answer::Refused(status, body)) => refused(json_out, status, &body),
            Ok(Answer::Done(body)) => {
                if json_out {
                    println!("{body}");
                    return ExitCode::SUCCESS;
                }
                match body.get("runs").and_then(Value::as_array) {
                    Some(runs) => print!("{}", runs_table(runs)),
                    None => print!("{}", run_table(&body)),
                }
                ExitCode::SUCCESS
            }
        };
    }
    if a.after_reload {
        match call(c, "POST", "/reload", Some(json!({ "dry_run": false }))) {
            Err(code) => return code,
            Ok(Answer::Refused(status, body)) => return refused(json_out, status, &body),
            Ok(Answer::Done(body)) => {
                if !json_out {
                    print!("{}", render::reloaded(&body));
                }
                // The reload started `validate.after_reload`'s suite itself: follow that one.
                if let (Some(run), None) =
                    (body.get("validation_run").and_then(Value::as_u64), &a.suite)
                {
                    return wait(c, json_out, run);
                }
            }
        }
    }
    let body = json!({ "suite": a.suite, "during_drill": a.during_drill });
    start_and_wait(c, json_out, "/validate", body)
}

fn start_and_wait(c: &super::Client, json_out: bool, path: &str, body: Value) -> ExitCode {
    let run = match call(c, "POST", path, Some(body)) {
        Err(code) => return code,
        Ok(Answer::Refused(status, body)) => return refused(json_out, status, &body),
        Ok(Answer::Done(body)) => body.get("run").and_then(Value::as_u64),
    };
    let Some(run) = run else {
        eprintln!("trunkgate ctl: the daemon started no run");
        return ExitCode::from(1);
    };
    wait(c, json_out, run)
}

/// Poll run `id` until it is done; print it; exit 0 only if it passed.
fn wait(c: &super::Client, json_out: bool, id: u64) -> ExitCode {
    let started = Instant::now();
    if !json_out {
        eprintln!("trunkgate ctl: run {id} started; waiting for its calls");
    }
    loop {
        match call(c, "GET", &format!("/validate/runs/{id}"), None) {
            Err(code) => return code,
            Ok(Answer::Refused(status, body)) => return refused(json_out, status, &body),
            Ok(Answer::Done(run)) => {
                if run.get("state").and_then(Value::as_str) == Some("done") {
                    if json_out {
                        println!("{run}");
                    } else {
                        print!("{}", run_table(&run));
                    }
                    return if run.get("passed").and_then(Value::as_bool) == Some(true) {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    };
                }
            }
        }
        if started.elapsed() > MAX_WAIT {
            eprintln!(
                "trunkgate ctl: run {id} still running after {MAX_WAIT:?}; see `ctl validate report {id}`"
            );
            return ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn f1(v: &Value) -> Option<String> {
    v.as_f64().map(|x| format!("{x:.0}"))
}

/// One run: a line per test call, then the verdict.
pub fn run_table(run: &Value) -> String {
    let mut rows = Vec::new();
    let tests = run
        .get("tests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for t in &tests {
        let dash = || "-".to_owned();
        let media = &t["media"];
        let trunk = match (t["trunk"].as_str(), t["carried_by"].as_str()) {
            (Some(asked), Some(carried)) if asked != carried && t["direction"] == "outbound" => {
                format!("{asked} → {carried}")
            }
            (Some(asked), _) if t["direction"] == "outbound" => asked.to_owned(),
            (asked, carried) => asked.or(carried).unwrap_or("-").to_owned(),
        };
        let echo = match media.get("echo") {
            Some(e) if e["recognised"] == true => match e["round_trip_ms"].as_f64() {
                Some(rtt) => format!("yes {rtt:.0} ms"),
                None => "yes".to_owned(),
            },
            Some(e) if e.is_object() => "no".to_owned(),
            _ => dash(),
        };
        rows.push(vec![
            t["name"].as_str().unwrap_or("?").to_owned(),
            t["direction"].as_str().unwrap_or("?").to_owned(),
            trunk,
            if t["passed"] == true { "PASS" } else { "FAIL" }.to_owned(),
            match (t["outcome"].as_str(), t["code"].as_u64()) {
                (Some(o), Some(code)) => format!("{o} {code}"),
                (Some(o), None) => o.to_owned(),
                _ => dash(),
            },
            f1(&t["pdd_ms"]).map_or_else(dash, |v| format!("{v} ms")),
            match (media["sent"].as_u64(), media["received"].as_u64()) {
                (Some(s), Some(r)) => format!("{s}/{r}"),
                _ => dash(),
            },
            media["loss_ratio"]
                .as_f64()
                .map_or_else(dash, |l| format!("{:.2}%", l * 100.0)),
            media["jitter_ms"]
                .as_f64()
                .map_or_else(dash, |j| format!("{j:.1} ms")),
            media["mos"]
                .as_f64()
                .map_or_else(dash, |m| format!("{m:.2}")),
            echo,
            t["failures"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default(),
        ]);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {} ({}{}){}",
        run["id"],
        run["kind"].as_str().unwrap_or("?"),
        run["suite"]
            .as_str()
            .map(|s| format!(", suite {s}"))
            .unwrap_or_default(),
        run["drills"]
            .as_array()
            .filter(|d| !d.is_empty())
            .map(|d| format!(
                " during drill {}",
                d.iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .unwrap_or_default()
    );
    out.push_str(&render::table(
        &[
            "TEST",
            "DIR",
            "TRUNK",
            "RESULT",
            "OUTCOME",
            "PDD",
            "RTP OUT/IN",
            "LOSS",
            "JITTER",
            "MOS",
            "ECHO",
            "WHY",
        ],
        &rows,
    ));
    let failed = tests.iter().filter(|t| t["passed"] != true).count();
    let _ = match run["state"].as_str() {
        Some("done") if failed == 0 => {
            writeln!(out, "passed: {} of {} test calls", tests.len(), tests.len())
        }
        Some("done") => writeln!(out, "FAILED: {failed} of {} test calls", tests.len()),
        _ => writeln!(out, "running"),
    };
    out
}

fn runs_table(runs: &[Value]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let tests = r["tests"].as_array().map_or(0, Vec::len);
            vec![
                r["id"].to_string(),
                r["kind"].as_str().unwrap_or("?").to_owned(),
                r["suite"].as_str().unwrap_or("-").to_owned(),
                render::utc(r["started_unix_ms"].as_u64().unwrap_or(0)),
                tests.to_string(),
                match r["passed"].as_bool() {
                    Some(true) => "PASS".to_owned(),
                    Some(false) => "FAIL".to_owned(),
                    None => "running".to_owned(),
                },
            ]
        })
        .collect();
    render::table(
        &["RUN", "KIND", "SUITE", "STARTED", "CALLS", "RESULT"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_prints_one_row_per_call_and_its_verdict() {
        let run = json!({
            "id": 3, "kind": "validate", "suite": "smoke", "drills": [7], "state": "done",
            "passed": false,
            "tests": [
                {"name": "a-out", "direction": "outbound", "trunk": "carrier-a",
                 "carried_by": "carrier-b", "passed": true, "outcome": "answered", "code": 200,
                 "pdd_ms": 12.3, "failures": [],
                 "media": {"sent": 250, "received": 250, "loss_ratio": 0.0, "jitter_ms": 0.4,
                           "mos": 4.4, "echo": {"recognised": true, "round_trip_ms": 1.2}}},
                {"name": "a-busy", "direction": "outbound", "trunk": "carrier-a",
                 "carried_by": "carrier-a", "passed": false, "outcome": "refused", "code": 486,
                 "failures": ["expected an answer, got 486 Busy Here"], "media": null}
            ]
        });
        let t = run_table(&run);
        assert!(
            t.contains("run 3 (validate, suite smoke) during drill 7"),
            "{t}"
        );
        assert!(
            t.contains("carrier-a → carrier-b") && t.contains("yes 1 ms"),
            "{t}"
        );
        assert!(
            t.contains("refused 486") && t.contains("FAILED: 1 of 2"),
            "{t}"
        );
    }
}
