//! `trunkgate`: the session border controller binary.
//!
//! This crate wires the libraries together and owns every socket: the SIP shell around the
//! sans-IO proxy core ([`shell`]), the admin HTTP API ([`admin`]) with its Prometheus export
//! ([`metrics`]), the adapter from the control crate's routing table to the core's
//! [`trunkgate_sip::Routing`] trait ([`routing_adapter`]), and signal handling ([`shutdown`]).
//! Protocol logic does not live here: the shell only pumps bytes and time through the core.
//!
//! Subcommands: `run` (serve), `check` (validate a policy without binding anything) and
//! `ctl` (the operator's client of the admin API, [`ctl`]) and `plan` (capacity planning
//! without records, [`plan`]).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod account_metrics;
mod admin;
mod admin_auth;
mod admin_control;
mod admission_adapter;
mod concurrency;
mod credentials;
mod ctl;
mod dns;
mod drills;
mod fd_budget;
mod live;
mod media_adapter;
mod media_metrics;
mod metrics;
mod plan;
mod policy_diff;
mod records_api;
mod records_feed;
mod registration;
mod routing_adapter;
mod shell;
mod shutdown;
mod startup;
mod status_chart;
mod status_page;
#[cfg(test)]
mod strategy_sim;
mod testcall;
mod testcall_api;
mod trunk_health;
mod trunk_metrics;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "trunkgate",
    version,
    about = "Trunkgate SIP session border controller"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve SIP, the admin API and metrics with the given policy.
    Run {
        /// Policy file (TOML). Without it the embedded default policy is used.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a policy and print a one-line summary; binds no socket.
    Check {
        /// Policy file (TOML). Without it the embedded default policy is checked.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Talk to a running trunkgate: status, trunks, calls, records, capacity, reload, drills.
    Ctl(ctl::CtlArgs),
    /// Capacity planning without records: channels (Erlang B) and bandwidth for a busy hour.
    Plan(plan::PlanArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        // The operator's client: its output is its own, no log lines.
        Command::Ctl(args) => return ctl::run(args),
        Command::Plan(args) => return plan::run(&args),
        command => command,
    };
    // Held until exit: flushes the log writer thread.
    let _log_guard = init_logging();
    let result = match command {
        Command::Run { config } => startup::run(config.as_deref()),
        Command::Check { config } => startup::check(config.as_deref()),
        Command::Ctl(_) | Command::Plan(_) => Ok(ExitCode::FAILURE),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("trunkgate: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through a writer thread (a slow journald or terminal never stalls the
/// SIP core; when the writer falls behind, lines are dropped rather than waited for); the
/// filter comes from `RUST_LOG` (default `info`).
fn init_logging() -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    guard
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::path::Path;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_and_check_take_an_optional_config() {
        let cli = Cli::try_parse_from(["trunkgate", "check"]).unwrap();
        assert!(matches!(cli.command, Command::Check { config: None }));
        let cli = Cli::try_parse_from(["trunkgate", "run", "--config", "x.toml"]).unwrap();
        assert!(
            matches!(cli.command, Command::Run { config: Some(p) } if p == Path::new("x.toml"))
        );
    }

    #[test]
    fn ctl_flags_go_before_or_after_the_subcommand() {
        for argv in [
            &["trunkgate", "ctl", "--config", "x.toml", "--json", "status"][..],
            &["trunkgate", "ctl", "status", "--config", "x.toml", "--json"][..],
            &[
                "trunkgate",
                "ctl",
                "drill",
                "status",
                "--json",
                "-c",
                "x.toml",
            ][..],
        ] {
            let cli = Cli::try_parse_from(argv).unwrap();
            let Command::Ctl(args) = cli.command else {
                panic!("not ctl: {argv:?}");
            };
            assert!(args.json, "{argv:?}");
            assert_eq!(args.config.as_deref(), Some(Path::new("x.toml")));
        }
        let cli = Cli::try_parse_from([
            "trunkgate",
            "ctl",
            "drill",
            "start",
            "carrier-a",
            "--mode",
            "down",
            "--for",
            "20s",
            "--dry-run",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Ctl(ctl::CtlArgs {
                command: ctl::CtlCommand::Drill(ctl::DrillCommand::Start { dry_run: true, .. }),
                ..
            })
        ));
        assert!(Cli::try_parse_from(["trunkgate", "ctl", "drill", "stop"]).is_err());
        assert!(Cli::try_parse_from(["trunkgate", "ctl", "drill", "stop", "--all"]).is_ok());
        assert!(
            Cli::try_parse_from(["trunkgate", "ctl", "drill", "start", "a", "--mode", "down"])
                .is_err(),
            "--for is required"
        );
    }
}
