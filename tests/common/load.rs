//! Helpers for end-to-end tests that assert from SIPp's own counters and from `/metrics`
//! while calls are up: long calls with a concurrency limit (`LongCalls`), the calls each
//! SIPp UAS received (`uas_calls`), the peak of a gauge over a run (`PeakPoller`), and
//! label-filtered sums of samples (`metric`).

use super::{Net, http_get, samples, sipp_bin, tail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The sum of the samples of `name` whose labels contain every `label=value` in `labels`.
pub fn metric(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(exposition, name)
        .iter()
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|s| s.value)
        .sum()
}

pub fn metric_lines(exposition: &str, prefixes: &[&str]) -> String {
    exposition
        .lines()
        .filter(|l| prefixes.iter().any(|p| l.starts_with(p)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls `/metrics` every 100 ms in a thread and records the peak of one gauge sample.
pub struct PeakPoller {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(f64, u32)>>,
}

impl PeakPoller {
    pub fn start(
        admin: SocketAddr,
        name: &'static str,
        labels: &'static [(&'static str, &'static str)],
    ) -> PeakPoller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut peak, mut polls) = (0.0_f64, 0_u32);
            while !flag.load(Ordering::Relaxed) {
                if let Ok((200, body)) = http_get(admin, "/metrics") {
                    peak = peak.max(metric(&body, name, labels));
                    polls += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (peak, polls)
        });
        PeakPoller {
            stop,
            thread: Some(thread),
        }
    }

    /// (peak, number of successful polls).
    pub fn finish(mut self) -> (f64, u32) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("poller thread")
            .join()
            .expect("poller thread panicked")
    }
}

impl Drop for PeakPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The columns of the last row of a SIPp `-trace_stat` CSV, and the number of data rows.
pub fn stat_last_row(path: &Path) -> Option<(Vec<(String, String)>, usize)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let rows: Vec<&str> = lines.collect();
    let last = rows.last()?;
    let row = header
        .iter()
        .zip(last.split(';'))
        .map(|(h, v)| ((*h).to_owned(), v.trim().to_owned()))
        .collect();
    Some((row, rows.len()))
}

pub fn column(row: &[(String, String)], name: &str) -> u64 {
    row.iter()
        .find(|(h, _)| h == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("SIPp stat column {name} missing or unreadable"))
}

/// Calls each SIPp UAS (started by `super::sipp::Uas::start(dir, name, ..)`) has received,
/// once none has a call in progress and each has dumped its statistics (every second) at
/// least twice since this call.
pub fn uas_calls<const N: usize>(dir: &Path, names: [&str; N]) -> [u64; N] {
    let paths = names.map(|name| dir.join(format!("{name}_stat.csv")));
    let rows_now = paths
        .each_ref()
        .map(|p| stat_last_row(p).map_or(0, |(_, n)| n));
    let settled = super::poll(Duration::from_secs(6), || {
        let mut calls = [0; N];
        for (i, path) in paths.iter().enumerate() {
            let (row, n) = stat_last_row(path)?;
            if n < rows_now[i] + 2 || column(&row, "CurrentCall") != 0 {
                return None;
            }
            calls[i] = column(&row, "IncomingCall(C)");
        }
        Some(calls)
    });
    settled.unwrap_or_else(|| {
        let stats: Vec<String> = paths
            .iter()
            .map(|p| format!("{}:\n{}", p.display(), tail(p, 1200)))
            .collect();
        panic!(
            "SIPp UAS {names:?}: calls still in progress or no statistics written:\n{}",
            stats.join("\n")
        )
    })
}

/// A SIPp `uac` with a call duration and a concurrency limit, which `super::sipp::UacSpec`
/// does not offer: `-r rate -l limit -m calls -d duration`. Killed on drop.
pub struct LongCalls {
    child: Option<Child>,
    _watchdog: Option<super::Watchdog>,
    dir: PathBuf,
    name: &'static str,
    deadline: Instant,
}

/// SIPp's counters after a `LongCalls` run.
#[derive(Debug)]
pub struct Counters {
    pub exit_code: Option<i32>,
    pub successful: u64,
    pub failed: u64,
    pub created: u64,
}

impl LongCalls {
    /// `calls` calls from the PBX, all started at once (`-r calls`), at most `limit` at a
    /// time, each `duration` long.
    pub fn spawn(
        dir: &Path,
        name: &'static str,
        net: Net,
        calls: u32,
        limit: u32,
        duration: Duration,
    ) -> LongCalls {
        Self::spawn_at(dir, name, net, 5060, calls, calls, limit, duration)
    }

    /// As [`LongCalls::spawn`] from PBX port `port`, at `rate` calls per second.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_at(
        dir: &Path,
        name: &'static str,
        net: Net,
        port: u16,
        rate: u32,
        calls: u32,
        limit: u32,
        duration: Duration,
    ) -> LongCalls {
        let file = |suffix: &str| dir.join(format!("{name}{suffix}"));
        let out = std::fs::File::create(file(".out")).expect("create SIPp output file");
        let budget = u64::from(calls / rate.max(1)) + duration.as_secs() + 30;
        let child = Command::new(sipp_bin())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone SIPp output handle"))
            .stderr(out)
            .arg(net.sip().to_string())
            .args(["-sn", "uac", "-t", "u1", "-i"])
            .arg(net.pbx_ip().to_string())
            .args([
                "-p",
                &port.to_string(),
                "-bind_local",
                "-nostdin",
                "-aa",
                "-s",
                "1000",
            ])
            .args(["-r", &rate.to_string(), "-l", &limit.to_string()])
            .args(["-m", &calls.to_string()])
            .args(["-d", &duration.as_millis().to_string()])
            .args(["-timeout", &format!("{budget}s"), "-timeout_error"])
            .args(["-recv_timeout", "10000"])
            .args(["-trace_stat", "-fd", "1", "-stf"])
            .arg(file("_stat.csv"))
            .args(["-trace_screen", "-screen_file"])
            .arg(file("_screen.txt"))
            .args(["-trace_err", "-error_file"])
            .arg(file("_errors.log"))
            .spawn()
            .expect("spawn sipp uac");
        LongCalls {
            _watchdog: super::Watchdog::guard(child.id()),
            child: Some(child),
            dir: dir.to_owned(),
            name,
            deadline: Instant::now() + Duration::from_secs(budget + 15),
        }
    }

    pub fn report(&self) -> String {
        let file = |suffix: &str| self.dir.join(format!("{}{suffix}", self.name));
        format!(
            "---- SIPp {n} errors ----\n{}\n---- SIPp {n} screen ----\n{}\n---- SIPp {n} output ----\n{}",
            tail(&file("_errors.log"), 2000),
            tail(&file("_screen.txt"), 2500),
            tail(&file(".out"), 1500),
            n = self.name
        )
    }

    /// Wait for SIPp to exit (killed at the hard deadline) and read its counters.
    pub fn wait(mut self) -> (Counters, String) {
        let mut child = self.child.take().expect("uac child");
        let exit_code = loop {
            match child.try_wait().expect("try_wait sipp uac") {
                Some(status) => break status.code(),
                None if Instant::now() >= self.deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let stat = self.dir.join(format!("{}_stat.csv", self.name));
        let Some((row, _)) = stat_last_row(&stat) else {
            panic!("SIPp {} wrote no statistics\n{}", self.name, self.report());
        };
        let counters = Counters {
            exit_code,
            successful: column(&row, "SuccessfulCall(C)"),
            failed: column(&row, "FailedCall(C)"),
            created: column(&row, "TotalCallCreated"),
        };
        (counters, self.report())
    }
}

impl Drop for LongCalls {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
