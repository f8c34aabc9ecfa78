//! Helpers for `tests/e2e_ipv6.rs` (included there with `#[path]`, so `tests/common/mod.rs`
//! stays as it is): SIPp peers on any address *and port* (every IPv6 peer
//! of the tests shares `::1`, told apart by port), SDP family checks on SIPp's message logs.
//! The address plan is in `tests/e2e_ipv6.rs`.

use crate::common::sipp::{LoggedMessage, read_message_log};
use crate::common::{Watchdog, sipp_bin, tail};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One SIPp over UDP on `local` (IP and port), every message logged (`-trace_msg`).
pub struct Peer {
    pub name: String,
    child: Option<Child>,
    _watchdog: Option<Watchdog>,
    stat: PathBuf,
    errors: PathBuf,
    output: PathBuf,
    messages: PathBuf,
    hard_deadline: Instant,
}

/// SIPp's verdict on a run: exit code and its cumulative counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// `None`: killed at the hard deadline.
    pub exit_code: Option<i32>,
    pub successful: u64,
    pub failed: u64,
}

impl Peer {
    /// Start SIPp: scenario arguments (`-sn uac`, `-sf FILE`, …) in `args`, `remote` as the
    /// target. It is bounded by its own `-timeout` and a hard kill 15 s later.
    pub fn spawn(
        dir: &Path,
        name: &str,
        local: SocketAddr,
        remote: Option<SocketAddr>,
        args: &[&str],
        timeout: Duration,
    ) -> Peer {
        let file = |suffix: &str| dir.join(format!("{name}{suffix}"));
        let (stat, errors, output, messages) = (
            file("_stat.csv"),
            file("_errors.log"),
            file(".out"),
            file("_messages.log"),
        );
        let out = std::fs::File::create(&output).expect("create SIPp output file");
        let mut cmd = Command::new(sipp_bin());
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone SIPp output handle"))
            .stderr(out);
        if let Some(remote) = remote {
            cmd.arg(remote.to_string());
        }
        cmd.args(args)
            .args(["-t", "u1", "-i"])
            .arg(local.ip().to_string())
            .arg("-p")
            .arg(local.port().to_string())
            .args(["-bind_local", "-nostdin", "-aa"])
            .args(["-trace_stat", "-fd", "1", "-stf"])
            .arg(&stat)
            .args(["-trace_err", "-error_file"])
            .arg(&errors)
            .args(["-trace_msg", "-message_file"])
            .arg(&messages)
            .arg("-timeout")
            .arg(format!("{}s", timeout.as_secs().max(1)))
            .arg("-timeout_error");
        let child = cmd.spawn().expect("spawn sipp");
        Peer {
            name: name.to_owned(),
            _watchdog: Watchdog::guard(child.id()),
            child: Some(child),
            stat,
            errors,
            output,
            messages,
            hard_deadline: Instant::now() + timeout + Duration::from_secs(15),
        }
    }

    /// Wait (up to 10 s) until SIPp's UDP socket is bound at `local`, per `/proc/net`.
    pub fn wait_bound(&mut self, local: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !crate::common::sipp::bound(local, crate::common::sipp::Transport::Udp) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "SIPp {} exited at start ({status}):\n{}",
                    self.name,
                    self.report()
                );
            }
            assert!(
                Instant::now() < deadline,
                "SIPp {} not bound on {local} within 10 s:\n{}",
                self.name,
                self.report()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for SIPp to exit (killed at the hard deadline) and read its counters.
    pub fn wait(&mut self) -> Verdict {
        let exit_code = match self.child.take() {
            Some(mut child) => loop {
                match child.try_wait().expect("try_wait sipp") {
                    Some(status) => break status.code(),
                    None if Instant::now() >= self.hard_deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                    None => std::thread::sleep(Duration::from_millis(50)),
                }
            },
            None => None,
        };
        let (successful, failed) = counters(&self.stat).unwrap_or_else(|e| {
            panic!(
                "SIPp {} (exit {exit_code:?}): {e}\n{}",
                self.name,
                self.report()
            )
        });
        Verdict {
            exit_code,
            successful,
            failed,
        }
    }

    /// Exit code 0, `calls` successful, none failed.
    pub fn assert_all_succeeded(&mut self, calls: u64) -> Verdict {
        let v = self.wait();
        assert!(
            v.exit_code == Some(0) && v.successful == calls && v.failed == 0,
            "SIPp {}: {v:?}, expected {calls} successful calls and none failed\n{}",
            self.name,
            self.report()
        );
        v
    }

    /// Every message SIPp logged.
    pub fn messages(&self) -> Vec<LoggedMessage> {
        read_message_log(&self.messages)
    }

    pub fn report(&self) -> String {
        format!(
            "---- SIPp {n} errors ----\n{}\n---- SIPp {n} output ----\n{}\n---- SIPp {n} messages ----\n{}",
            tail(&self.errors, 3000),
            tail(&self.output, 2000),
            tail(&self.messages, 5000),
            n = self.name
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.report());
        }
    }
}

/// (successful, failed) from the last row of a `-trace_stat` CSV.
fn counters(stat: &Path) -> Result<(u64, u64), String> {
    let text =
        std::fs::read_to_string(stat).map_err(|e| format!("read {}: {e}", stat.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().ok_or("empty stat file")?.split(';').collect();
    let last: Vec<&str> = lines
        .next_back()
        .ok_or("stat file has no data row")?
        .split(';')
        .collect();
    let field = |name: &str| -> Result<u64, String> {
        let i = header
            .iter()
            .position(|h| *h == name)
            .ok_or(format!("no column {name}"))?;
        last.get(i)
            .and_then(|v| v.trim().parse().ok())
            .ok_or(format!("column {name} unreadable"))
    };
    Ok((field("SuccessfulCall(C)")?, field("FailedCall(C)")?))
}

/// What an SDP body names: the `o=` address type and address, every `c=` line's type and
/// address, the first `m=` port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpFamily {
    pub origin: (String, IpAddr),
    pub connections: Vec<(String, IpAddr)>,
    pub port: u16,
}

impl SdpFamily {
    /// Every address in it is `ip`, written with the address type of `ip`'s family.
    pub fn all_at(&self, ip: IpAddr) -> bool {
        let ty = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let ok = |(t, a): &(String, IpAddr)| t == ty && *a == ip;
        ok(&self.origin) && !self.connections.is_empty() && self.connections.iter().all(ok)
    }
}

/// The SDP of a logged SIP message, or `None` when it has none (or it is malformed).
pub fn sdp_family(message: &str) -> Option<SdpFamily> {
    let (_, body) = message
        .split_once("\r\n\r\n")
        .or_else(|| message.split_once("\n\n"))?;
    let addr = |rest: &str, skip: usize| -> Option<(String, IpAddr)> {
        let mut t = rest.split_whitespace().skip(skip);
        let (net, ty, ip) = (t.next()?, t.next()?, t.next()?);
        if net != "IN" {
            return None;
        }
        Some((ty.to_owned(), ip.parse().ok()?))
    };
    let (mut origin, mut connections, mut port) = (None, Vec::new(), None);
    for line in body.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("o=") {
            origin = addr(rest, 3);
        } else if let Some(rest) = line.strip_prefix("c=") {
            connections.push(addr(rest, 0)?);
        } else if let Some(rest) = line.strip_prefix("m=") {
            port = port.or(rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()));
        }
    }
    Some(SdpFamily {
        origin: origin?,
        connections,
        port: port?,
    })
}
