//! SIPp peers as child processes, built-in `uas`/`uac` scenarios. The UAC's verdict comes
//! from SIPp's own counters: its exit code (0 = every call succeeded, 1 = at least one
//! failed) and the cumulative `SuccessfulCall(C)` / `FailedCall(C)` of its `-trace_stat`
//! file. Every SIPp gets a global `-timeout`, the UAC a `-recv_timeout`, and the harness a
//! hard kill deadline on top.

use super::{sipp_bin, tail};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn flag(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
}

/// Files SIPp writes for one peer, all in the test's scratch directory.
#[derive(Debug, Clone)]
struct Files {
    name: String,
    stat: PathBuf,
    screen: PathBuf,
    errors: PathBuf,
    output: PathBuf,
}

impl Files {
    fn new(dir: &Path, name: &str) -> Files {
        Files {
            name: name.to_owned(),
            stat: dir.join(format!("{name}_stat.csv")),
            screen: dir.join(format!("{name}_screen.txt")),
            errors: dir.join(format!("{name}_errors.log")),
            output: dir.join(format!("{name}.out")),
        }
    }

    fn report(&self) -> String {
        format!(
            "---- SIPp {} errors ({}) ----\n{}\n---- SIPp {} screen ----\n{}\n---- SIPp {} output ----\n{}",
            self.name,
            self.errors.display(),
            tail(&self.errors, 3000),
            self.name,
            tail(&self.screen, 3000),
            self.name,
            tail(&self.output, 2000),
        )
    }
}

fn command(
    dir: &Path,
    files: &Files,
    scenario: &str,
    transport: Transport,
    local_ip: IpAddr,
) -> Command {
    let out = std::fs::File::create(&files.output).expect("create SIPp output file");
    let mut cmd = Command::new(sipp_bin());
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone SIPp output handle"))
        .stderr(out)
        .args(["-sn", scenario, "-t", transport.flag(), "-i"])
        .arg(local_ip.to_string())
        .args(["-p", "5060", "-bind_local", "-nostdin", "-aa"])
        .args(["-max_socket", "4096"])
        .args(["-buff_size", "4194304"])
        .args(["-trace_stat", "-fd", "1", "-stf"])
        .arg(&files.stat)
        .args(["-trace_screen", "-screen_file"])
        .arg(&files.screen)
        .args(["-trace_err", "-error_file"])
        .arg(&files.errors);
    cmd
}

/// Whether a socket is bound on `addr` (UDP) or listening on it (TCP), per `/proc/net`.
pub fn bound(addr: SocketAddr, transport: Transport) -> bool {
    let (table, listening) = match (addr.ip(), transport) {
        (IpAddr::V4(_), Transport::Udp) => ("/proc/net/udp", None),
        (IpAddr::V4(_), Transport::Tcp) => ("/proc/net/tcp", Some("0A")),
        (IpAddr::V6(_), Transport::Udp) => ("/proc/net/udp6", None),
        (IpAddr::V6(_), Transport::Tcp) => ("/proc/net/tcp6", Some("0A")),
    };
    let local = match addr.ip() {
        IpAddr::V4(ip) => format!("{:08X}", u32::from_le_bytes(ip.octets())),
        IpAddr::V6(ip) => ip
            .octets()
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
            .collect(),
    };
    let want = format!("{local}:{:04X}", addr.port());
    std::fs::read_to_string(table).is_ok_and(|text| {
        text.lines().skip(1).any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.get(1) == Some(&want.as_str())
                && listening.is_none_or(|st| cols.get(3) == Some(&st))
        })
    })
}

/// A SIPp `uas` answering every call; it never exits by itself and is killed on drop.
pub struct Uas {
    child: Option<Child>,
    _watchdog: Option<super::Watchdog>,
    files: Files,
}

impl Uas {
    /// Start a UAS on `ip:5060` and wait (up to 10 s) until its socket is bound there, as
    /// the kernel's socket table says (never a fixed sleep); panics if SIPp exits first.
    pub fn start(
        dir: &Path,
        name: &str,
        ip: IpAddr,
        transport: Transport,
        timeout: Duration,
    ) -> Uas {
        let files = Files::new(dir, name);
        let child = command(dir, &files, "uas", transport, ip)
            .arg("-timeout")
            .arg(format!("{}s", timeout.as_secs().max(1)))
            .spawn()
            .expect("spawn sipp uas");
        let mut uas = Uas {
            _watchdog: super::Watchdog::guard(child.id()),
            child: Some(child),
            files,
        };
        // Ready when its socket is bound (polled in /proc/net, not guessed with a sleep).
        let addr = SocketAddr::new(ip, 5060);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = uas.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "SIPp UAS {name} on {ip} exited at start ({status}):\n{}",
                    uas.files.report()
                );
            }
            if bound(addr, transport) {
                return uas;
            }
            assert!(
                Instant::now() < deadline,
                "SIPp UAS {name} not bound on {addr} within 10 s:\n{}",
                uas.files.report()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("{}", self.files.report());
            }
        }
    }
}

/// What a UAC run should do.
#[derive(Debug, Clone)]
pub struct UacSpec {
    pub local_ip: IpAddr,
    pub target: SocketAddr,
    pub transport: Transport,
    /// Calls per second.
    pub rate: u32,
    /// Total calls (`-m`).
    pub calls: u32,
    /// Request-URI user (`-s`).
    pub service: String,
}

impl UacSpec {
    pub fn new(
        local_ip: IpAddr,
        target: SocketAddr,
        transport: Transport,
        rate: u32,
        calls: u32,
    ) -> UacSpec {
        UacSpec {
            local_ip,
            target,
            transport,
            rate,
            calls,
            service: "1000".to_owned(),
        }
    }

    /// Time the run needs at its rate, plus slack for set-up and the last calls.
    pub fn budget(&self) -> Duration {
        Duration::from_secs(u64::from(self.calls / self.rate.max(1)) + 30)
    }
}

/// A running SIPp UAC (it exits after `-m` calls).
pub struct Uac {
    child: Option<Child>,
    _watchdog: Option<super::Watchdog>,
    files: Files,
    spec: UacSpec,
    hard_deadline: Instant,
}

/// SIPp's verdict on a UAC run.
#[derive(Debug, Clone)]
pub struct UacResult {
    /// `None`: killed by the harness at the hard deadline.
    pub exit_code: Option<i32>,
    pub successful: u64,
    pub failed: u64,
    pub created: u64,
    pub elapsed: Duration,
    report: String,
}

impl Uac {
    pub fn spawn(dir: &Path, name: &str, spec: UacSpec) -> Uac {
        let files = Files::new(dir, name);
        let budget = spec.budget();
        let child = command(dir, &files, "uac", spec.transport, spec.local_ip)
            .arg(spec.target.to_string())
            .args(["-s", &spec.service])
            .args(["-r", &spec.rate.to_string(), "-m", &spec.calls.to_string()])
            .args([
                "-timeout",
                &format!("{}s", budget.as_secs()),
                "-timeout_error",
            ])
            .args(["-recv_timeout", "10000"])
            .spawn()
            .expect("spawn sipp uac");
        Uac {
            _watchdog: super::Watchdog::guard(child.id()),
            child: Some(child),
            files,
            spec,
            hard_deadline: Instant::now() + budget + Duration::from_secs(15),
        }
    }

    /// Wait for SIPp to finish (killing it at the hard deadline) and read its counters.
    pub fn wait(mut self) -> UacResult {
        let started = Instant::now();
        let mut child = self.child.take().expect("uac child");
        let exit_code = loop {
            match child.try_wait().expect("try_wait sipp uac") {
                Some(status) => break status.code(),
                None if Instant::now() >= self.hard_deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let elapsed = started.elapsed();
        let killed = if exit_code.is_none() {
            " (killed at the harness's hard deadline)"
        } else {
            ""
        };
        let (successful, failed, created) = read_counters(&self.files.stat, &self.files.screen)
            .unwrap_or_else(|e| {
                panic!(
                    "SIPp {}{killed}: {e}\n{}",
                    self.files.name,
                    self.files.report()
                )
            });
        UacResult {
            exit_code,
            successful,
            failed,
            created,
            elapsed,
            report: self.files.report(),
        }
    }

    /// Still placing or finishing calls.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn spec(&self) -> &UacSpec {
        &self.spec
    }
}

impl Drop for Uac {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl UacResult {
    /// Exit code 0, `calls` successful, 0 failed.
    pub fn assert_all_succeeded(&self, calls: u32) {
        assert!(
            self.exit_code == Some(0) && self.failed == 0 && self.successful == u64::from(calls),
            "SIPp UAC: exit code {:?} (0 = all calls succeeded), {} successful, {} failed, \
             {} created, expected {calls} successful and 0 failed\n{}",
            self.exit_code,
            self.successful,
            self.failed,
            self.created,
            self.report
        );
    }
}

/// (successful, failed, created) from the last row of the `-trace_stat` CSV, cross-checked
/// with the final screen when both exist.
fn read_counters(stat: &Path, screen: &Path) -> Result<(u64, u64, u64), String> {
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
    let counters = (
        field("SuccessfulCall(C)")?,
        field("FailedCall(C)")?,
        field("TotalCallCreated")?,
    );
    if let Ok(screen_text) = std::fs::read_to_string(screen) {
        let cumulative = |label: &str| -> Option<u64> {
            screen_text
                .lines()
                .rev()
                .find(|l| l.trim_start().starts_with(label))
                .and_then(|l| l.rsplit('|').next())
                .and_then(|v| v.trim().parse().ok())
        };
        if let (Some(ok), Some(failed)) = (cumulative("Successful call"), cumulative("Failed call"))
        {
            if (ok, failed) != (counters.0, counters.1) {
                return Err(format!(
                    "stat file says {}/{} successful/failed, screen says {ok}/{failed}",
                    counters.0, counters.1
                ));
            }
        }
    }
    Ok(counters)
}

// ---- Media tests: SIPp on scenario files, with extra arguments and message logs ----

/// The scenario a [`SippPeer`] plays.
#[derive(Debug, Clone, Copy)]
pub enum Scenario<'a> {
    /// `-sn NAME` (`uac`, `uas`, ...).
    Builtin(&'a str),
    /// `-sf FILE`.
    File(&'a Path),
}

/// One SIPp process over UDP on `ip:5060` for the media tests: any scenario, extra arguments
/// (`-m`, `-rtp_echo`, `-mi`, `-mp`, ...), every SIP message logged (`-trace_msg`) to
/// `NAME_messages.log` in the scratch directory. SIPp's own `-timeout` (an error) and a hard
/// kill deadline bound it; it is killed on drop.
pub struct SippPeer {
    child: Option<Child>,
    _watchdog: Option<super::Watchdog>,
    files: Files,
    messages: PathBuf,
    hard_deadline: Instant,
    exit_code: Option<Option<i32>>,
}

impl SippPeer {
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        dir: &Path,
        name: &str,
        scenario: Scenario<'_>,
        ip: IpAddr,
        remote: Option<SocketAddr>,
        args: &[String],
        timeout: Duration,
    ) -> SippPeer {
        let files = Files::new(dir, name);
        let messages = dir.join(format!("{name}_messages.log"));
        let out = std::fs::File::create(&files.output).expect("create SIPp output file");
        let mut cmd = Command::new(sipp_bin());
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone SIPp output handle"))
            .stderr(out);
        if let Some(remote) = remote {
            cmd.arg(remote.to_string());
        }
        match scenario {
            Scenario::Builtin(n) => cmd.args(["-sn", n]),
            Scenario::File(p) => cmd.arg("-sf").arg(p),
        };
        cmd.args(["-t", "u1", "-i"])
            .arg(ip.to_string())
            .args(["-p", "5060", "-bind_local", "-nostdin", "-aa"])
            .args(["-trace_stat", "-fd", "1", "-stf"])
            .arg(&files.stat)
            .args(["-trace_screen", "-screen_file"])
            .arg(&files.screen)
            .args(["-trace_err", "-error_file"])
            .arg(&files.errors)
            .args(["-trace_msg", "-message_file"])
            .arg(&messages)
            .arg("-timeout")
            .arg(format!("{}s", timeout.as_secs().max(1)))
            .arg("-timeout_error")
            .args(args);
        let child = cmd.spawn().expect("spawn sipp");
        SippPeer {
            _watchdog: super::Watchdog::guard(child.id()),
            child: Some(child),
            files,
            messages,
            hard_deadline: Instant::now() + timeout + Duration::from_secs(15),
            exit_code: None,
        }
    }

    /// Fails the test if SIPp has already exited (call after it has had time to bind).
    pub fn assert_running(&mut self) {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!(
                "SIPp {} exited early ({status}):\n{}",
                self.files.name,
                self.files.report()
            );
        }
    }

    /// Still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Wait until SIPp exits (killed at the hard deadline) and read its counters.
    pub fn wait(&mut self) -> UacResult {
        let started = Instant::now();
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
            None => self.exit_code.flatten(),
        };
        self.exit_code = Some(exit_code);
        let elapsed = started.elapsed();
        let (successful, failed, created) = read_counters(&self.files.stat, &self.files.screen)
            .unwrap_or_else(|e| {
                panic!(
                    "SIPp {} (exit code {exit_code:?}): {e}\n{}",
                    self.files.name,
                    self.files.report()
                )
            });
        UacResult {
            exit_code,
            successful,
            failed,
            created,
            elapsed,
            report: self.report(),
        }
    }

    /// Errors, screen, output and the last SIP messages, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "{}\n---- SIPp {} messages ({}) ----\n{}",
            self.files.report(),
            self.files.name,
            self.messages.display(),
            tail(&self.messages, 6000)
        )
    }

    /// Every SIP message SIPp logged so far.
    pub fn messages(&self) -> Vec<LoggedMessage> {
        read_message_log(&self.messages)
    }

    /// The SIPp process id while it runs (to stop and continue it with signals); `None` once
    /// [`SippPeer::wait`] has reaped it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for SippPeer {
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

/// One SIP message from a SIPp `-trace_msg` log.
#[derive(Debug, Clone)]
pub struct LoggedMessage {
    /// Sent by SIPp (else received).
    pub sent: bool,
    /// SIPp's local wall-clock time stamp, in seconds (comparable between SIPp logs of one
    /// machine, not with UTC).
    pub time: f64,
    pub text: String,
}

impl LoggedMessage {
    pub fn start_line(&self) -> &str {
        self.text.lines().next().unwrap_or("").trim()
    }

    /// A request of `method`.
    pub fn is_request(&self, method: &str) -> bool {
        self.start_line().starts_with(&format!("{method} "))
    }

    /// A response with `code` to a request of `method` (by CSeq).
    pub fn is_response(&self, code: u16, method: &str) -> bool {
        self.start_line().starts_with(&format!("SIP/2.0 {code} "))
            && self.header("CSeq").is_some_and(|c| c.ends_with(method))
    }

    /// The first value of header `name` (long form only), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .skip(1)
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
            })
    }
}

/// Parse a SIPp `-trace_msg` log: entries start with a dashed line and a time stamp
/// (`----- 2026-11-25 15:07:20.284575`), then `UDP message sent (N bytes):` or
/// `UDP message received [N] bytes :`, a blank line and the message.
pub fn read_message_log(path: &Path) -> Vec<LoggedMessage> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut current: Option<(bool, f64, Vec<&str>)> = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("----------") {
            if let Some((sent, time, body)) = current.take() {
                out.push(LoggedMessage {
                    sent,
                    time,
                    text: body.join("\r\n").trim().to_owned(),
                });
            }
            let stamp = line.trim_start_matches('-').trim();
            let kind = lines.next().unwrap_or("");
            let sent = kind.contains("message sent");
            current = Some((sent, parse_stamp(stamp).unwrap_or(f64::NAN), Vec::new()));
        } else if let Some((_, _, body)) = current.as_mut() {
            body.push(line);
        }
    }
    if let Some((sent, time, body)) = current.take() {
        out.push(LoggedMessage {
            sent,
            time,
            text: body.join("\r\n").trim().to_owned(),
        });
    }
    out
}

/// A SIPp time stamp (`YYYY-MM-DD HH:MM:SS.ffffff`, as in `-trace_msg` logs and the
/// `StartTime` of `-trace_stat` files) in the seconds of [`LoggedMessage::time`].
pub fn stamp_seconds(stamp: &str) -> Option<f64> {
    parse_stamp(stamp)
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` (either separator) → seconds on a naive calendar.
fn parse_stamp(stamp: &str) -> Option<f64> {
    let mut parts = stamp.split(|c: char| c.is_whitespace());
    let date = parts.next()?;
    let time = parts.find(|p| !p.is_empty())?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let s = t.next()?.parse::<f64>().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}
