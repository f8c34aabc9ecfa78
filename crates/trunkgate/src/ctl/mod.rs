//! `trunkgate ctl`: the operator's client of the admin API.
//!
//! The address comes from `--admin URL`, else the policy's `admin.listen` (`--config FILE`,
//! else the embedded default); the token from `--token-file F`, else the policy's
//! `[admin] token_file`, else `TRUNKGATE_ADMIN_TOKEN`. Every subcommand prints a human
//! table, or the API's JSON answer with `--json`. Exit codes: 0 done, 1 refused by the
//! daemon (the reason on stderr), 2 the daemon could not be reached (with the address tried).

mod http;
mod records;
mod render;
mod validate;

use clap::{Args, Subcommand};
use http::Client;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Policy file naming the admin address and token file (default: the embedded default).
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Admin API address, e.g. http://127.0.0.1:9091 (instead of the policy's admin.listen).
    #[arg(long, value_name = "URL", global = true)]
    pub admin: Option<String>,
    /// File whose first line is the admin token.
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Version, uptime, the policy in force, calls, call rate, drills.
    Status {
        /// Also write each trunk's 24 h concurrency chart (the status page's, from
        /// `GET /concurrency`) to FILE as one SVG document.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Each trunk: state and why, sessions/limit, cps/limit, last probe, failovers, drill.
    Trunks,
    /// Live (anchored) calls.
    Calls {
        /// Only this trunk's calls.
        #[arg(long, value_name = "TRUNK")]
        trunk: Option<String>,
    },
    /// Call records: one per call attempt, oldest first.
    Records {
        /// How far back: 30m, 1h, 7d (records of calls that ended within it).
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        since: String,
        /// Only this trunk's records.
        #[arg(long, value_name = "TRUNK")]
        trunk: Option<String>,
        /// CSV instead of a table.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Per trunk: busy hour, Erlangs, peak, limit, channels needed (Erlang B), bandwidth.
    Capacity {
        /// Growth to plan for, e.g. 30%.
        #[arg(long, value_name = "PERCENT", default_value = "0%")]
        growth: String,
        /// Grade of service, e.g. 1%.
        #[arg(long, value_name = "PERCENT", default_value = "1%")]
        gos: String,
        /// Days of records to read.
        #[arg(long, value_name = "N", default_value_t = 7)]
        days: u32,
        /// Also write each trunk's 24 h concurrency chart against its limit, with the busy
        /// hour marked (the status page's), to FILE as one SVG document.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Re-read the policy file: validate, apply (the running policy stays if it is refused).
    Reload {
        /// Print what changes (per trunk, route and key) before applying it.
        #[arg(long)]
        diff: bool,
        /// Only validate and print the diff; apply nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Failover drills: rehearse a trunk outage.
    #[command(subcommand)]
    Drill(DrillCommand),
    /// Place one test call with audio and report it (exit 1 when it fails).
    Testcall(validate::TestcallArgs),
    /// Run the policy's [[test_call]]s (a suite of them) and print a pass/fail table (exit
    /// 1 on any failure); `validate report [ID]` shows a kept run.
    Validate(validate::ValidateArgs),
}

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Start a drill on TRUNK (it always expires).
    Start {
        trunk: String,
        /// down | drain | reject-503 | cap=N | probe-fail
        #[arg(long, value_name = "MODE")]
        mode: String,
        /// How long, e.g. 20s or 10m (at most drill.max_duration, default 30m).
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Say what would happen now; start nothing.
        #[arg(long)]
        dry_run: bool,
        /// Start even if a route would be left with no healthy trunk.
        #[arg(long)]
        force: bool,
    },
    /// Stop the drill on TRUNK, or every drill with --all.
    Stop {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        trunk: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Running drills.
    Status,
    /// A drill's report (default: the latest).
    Report { id: Option<u64> },
}

/// The address and token from the flags and the policy.
fn client(args: &CtlArgs) -> Result<Client, String> {
    let (listen, policy_token_file) = policy_admin(args.config.as_deref())?;
    let address = args.admin.clone().unwrap_or(listen);
    let token_file = args.token_file.clone().or(policy_token_file);
    let token = match token_file {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
            Some(text.lines().next().unwrap_or_default().trim().to_owned())
        }
        None => std::env::var(crate::admin_auth::TOKEN_ENV)
            .ok()
            .map(|t| t.trim().to_owned()),
    }
    .filter(|t| !t.is_empty());
    Ok(Client::new(&address, token))
}

/// `admin.listen` and `admin.token_file` of the policy. A file that does not validate (the
/// one about to be reloaded, say) is still read as TOML for these two keys.
fn policy_admin(path: Option<&Path>) -> Result<(String, Option<PathBuf>), String> {
    let Some(path) = path else {
        let policy = trunkgate_config::Policy::embedded_default().map_err(|e| e.to_string())?;
        return Ok((policy.admin.listen.to_string(), policy.admin.token_file));
    };
    if let Ok(policy) = trunkgate_config::Policy::load(path) {
        return Ok((policy.admin.listen.to_string(), policy.admin.token_file));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let listen = admin_key(&text, "listen").unwrap_or_else(|| "127.0.0.1:9091".to_owned());
    Ok((listen, admin_key(&text, "token_file").map(PathBuf::from)))
}

/// `key = "value"` in the `[admin]` table of a policy text that may not even parse as TOML
/// (a reload of a broken file must still reach the daemon it was meant for).
fn admin_key(text: &str, key: &str) -> Option<String> {
    let mut in_admin = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_admin = line.trim_start_matches('[').trim_end_matches(']').trim() == "admin";
            continue;
        }
        if !in_admin {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() == key {
            let v = v.split('#').next().unwrap_or_default().trim();
            return Some(v.trim_matches('"').trim_matches('\'').to_owned());
        }
    }
    None
}

/// What one subcommand got back.
enum Answer {
    Done(Value),
    Refused(u16, Value),
}

fn call(c: &Client, method: &str, path: &str, body: Option<Value>) -> Result<Answer, ExitCode> {
    match c.call(method, path, body.as_ref()) {
        Ok((status, json)) if (200..300).contains(&status) => Ok(Answer::Done(json)),
        Ok((status, json)) => Ok(Answer::Refused(status, json)),
        Err(e) => {
            eprintln!(
                "trunkgate ctl: cannot reach the admin API at {}: {} (is trunkgate running? \
                 --admin URL or --config FILE names the address)",
                e.address, e.why
            );
            Err(ExitCode::from(2))
        }
    }
}

/// Print a refusal on stderr (and the JSON on stdout with `--json`): exit code 1.
fn refused(json_out: bool, status: u16, body: &Value) -> ExitCode {
    if json_out {
        println!("{body}");
    }
    let error = body
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            body.get("errors")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.to_string());
    if status == 401 {
        eprintln!(
            "trunkgate ctl: refused (401 unauthorized): this call needs the admin token \
             (--token-file FILE, [admin] token_file or {})",
            crate::admin_auth::TOKEN_ENV
        );
    } else {
        eprintln!("trunkgate ctl: refused ({status}): {error}");
    }
    ExitCode::from(1)
}

pub fn run(args: CtlArgs) -> ExitCode {
    let c = match client(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("trunkgate ctl: {e}");
            return ExitCode::from(1);
        }
    };
    let json_out = args.json;
    type Show = fn(&Value) -> String;
    let (method, path, body, show): (&str, String, Option<Value>, Show) = match &args.command {
        CtlCommand::Status { svg: Some(file) } => return write_svg(&c, json_out, file, true),
        CtlCommand::Status { svg: None } => ("GET", "/status".into(), None, render::status),
        CtlCommand::Trunks => ("GET", "/trunks".into(), None, render::trunks),
        CtlCommand::Calls { trunk } => {
            let path = match trunk {
                Some(t) => format!("/calls?trunk={}", percent(t)),
                None => "/calls".to_owned(),
            };
            ("GET", path, None, render::calls)
        }
        CtlCommand::Records { since, trunk, csv } => {
            let mut path = format!("/records?since={}", percent(since));
            if let Some(t) = trunk {
                path.push_str(&format!("&trunk={}", percent(t)));
            }
            let show: Show = if *csv {
                records::records_csv
            } else {
                records::records
            };
            ("GET", path, None, show)
        }
        CtlCommand::Capacity {
            growth,
            gos,
            days,
            svg,
        } => {
            let (Some(growth), Some(gos)) =
                (crate::plan::fraction(growth), crate::plan::fraction(gos))
            else {
                eprintln!("trunkgate ctl: --growth and --gos are percentages, e.g. 30% and 1%");
                return ExitCode::from(1);
            };
            if let Some(file) = svg {
                let written = write_svg(&c, json_out, file, false);
                if written != ExitCode::SUCCESS {
                    return written;
                }
            }
            let path = format!("/capacity?growth={growth}&gos={gos}&days={days}");
            ("GET", path, None, records::capacity)
        }
        CtlCommand::Reload { diff, dry_run } => return reload(&c, json_out, *diff, *dry_run),
        CtlCommand::Testcall(a) => return validate::testcall(&c, json_out, a),
        CtlCommand::Validate(a) => return validate::validate(&c, json_out, a),
        CtlCommand::Drill(DrillCommand::Start {
            trunk,
            mode,
            duration,
            dry_run,
            force,
        }) => {
            let body = json!({
                "trunk": trunk, "mode": mode, "for": duration,
                "dry_run": dry_run, "force": force,
            });
            ("POST", "/drills".into(), Some(body), render::drill_started)
        }
        CtlCommand::Drill(DrillCommand::Stop { trunk, all }) => {
            let body = match trunk {
                Some(t) if !*all => json!({ "trunk": t }),
                _ => json!({ "all": true }),
            };
            (
                "POST",
                "/drills/stop".into(),
                Some(body),
                render::drills_stopped,
            )
        }
        CtlCommand::Drill(DrillCommand::Status) => {
            ("GET", "/drills".into(), None, render::drill_status)
        }
        CtlCommand::Drill(DrillCommand::Report { id }) => {
            let path = match id {
                Some(id) => format!("/drills/reports/{id}"),
                None => "/drills/reports/latest".to_owned(),
            };
            ("GET", path, None, render::drill_report)
        }
    };
    let result = call(&c, method, &path, body).map(|answer| (answer, show));
    match result {
        Err(code) => code,
        Ok((Answer::Done(body), show)) => {
            if json_out {
                println!("{body}");
            } else {
                print!("{}", show(&body));
            }
            ExitCode::SUCCESS
        }
        Ok((Answer::Refused(status, body), _)) => {
            // A refused dry run still says what it found.
            if !json_out {
                if let Some(run) = body.get("dry_run") {
                    print!("{}", render::dry_run(run));
                }
            }
            refused(json_out, status, &body)
        }
    }
}

/// `ctl status --svg FILE`: the status page's charts as one SVG document.
/// Write the status page's charts to `file`; `announce`: say so on stdout (with `--json`,
/// print the data) — `ctl capacity --svg` prints its own report instead.
fn write_svg(c: &Client, json_out: bool, file: &Path, announce: bool) -> ExitCode {
    let data = match call(c, "GET", "/concurrency", None) {
        Err(code) => return code,
        Ok(Answer::Refused(status, body)) => return refused(json_out, status, &body),
        Ok(Answer::Done(body)) => body,
    };
    let charts = crate::status_page::charts(&data);
    let svg = crate::status_chart::render_document(&charts);
    if let Err(e) = std::fs::write(file, svg) {
        eprintln!("trunkgate ctl: cannot write {}: {e}", file.display());
        return ExitCode::from(1);
    }
    if !announce {
        return ExitCode::SUCCESS;
    }
    if json_out {
        println!("{data}");
    } else {
        println!(
            "wrote {} trunk chart(s), last 24 h, to {}",
            charts.len(),
            file.display()
        );
    }
    ExitCode::SUCCESS
}

/// `ctl reload`: with `--diff`, a dry run first prints the changes, then the reload runs.
fn reload(c: &Client, json_out: bool, diff: bool, dry_run: bool) -> ExitCode {
    let mut printed_diff = false;
    if diff && !dry_run {
        match call(c, "POST", "/reload", Some(json!({ "dry_run": true }))) {
            Err(code) => return code,
            Ok(Answer::Refused(status, body)) => return reload_refused(json_out, status, &body),
            Ok(Answer::Done(body)) => {
                if !json_out {
                    print!("{}", render::changes(&body));
                    printed_diff = true;
                }
            }
        }
    }
    match call(c, "POST", "/reload", Some(json!({ "dry_run": dry_run }))) {
        Err(code) => code,
        Ok(Answer::Refused(status, body)) => reload_refused(json_out, status, &body),
        Ok(Answer::Done(body)) => {
            if json_out {
                println!("{body}");
            } else {
                if (diff || dry_run) && !printed_diff {
                    print!("{}", render::changes(&body));
                }
                print!("{}", render::reloaded(&body));
            }
            ExitCode::SUCCESS
        }
    }
}

fn reload_refused(json_out: bool, status: u16, body: &Value) -> ExitCode {
    if status == 422 {
        if json_out {
            println!("{body}");
        }
        let errors = body
            .get("errors")
            .and_then(Value::as_str)
            .unwrap_or_default();
        eprintln!("trunkgate ctl: reload refused; the running policy stays in force:\n{errors}");
        return ExitCode::from(1);
    }
    refused(json_out, status, body)
}

/// Percent-encode a query value (trunk names are `[a-z0-9-]`, but be safe).
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_address_is_found_in_a_broken_file() {
        let text = "[sip]\nlisten = \"x\"\n[admin]\nlisten = \"127.0.9.1:9091\"  # here\ntoken_file = '/t'\nbogus = [\n";
        assert_eq!(admin_key(text, "listen").as_deref(), Some("127.0.9.1:9091"));
        assert_eq!(admin_key(text, "token_file").as_deref(), Some("/t"));
        assert_eq!(admin_key("[sip]\nlisten = \"x\"\n", "listen"), None);
    }
}
