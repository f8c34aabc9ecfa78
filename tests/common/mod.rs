//! Shared harness for the end-to-end tests: a `trunkgate` child process, SIPp peers, a
//! minimal HTTP client for the admin API, Prometheus text parsing, and malformed-SIP
//! generators. Every child process is owned by a guard that kills it on drop, and every
//! wait has a hard deadline, so a broken Trunkgate fails a test instead of hanging it.
//!
//! Address plan: test number `N` owns `127.0.N.0/24`: Trunkgate on `.1` (SIP 5060, admin
//! 9091), the PBX on `.2`, carrier-a on `.3`, carrier-b on `.4`, an unknown source on `.9`.
//! Only the acceptance test (`N = 0`) uses the embedded default's `127.0.0.x` addresses.

#![allow(dead_code)]

pub mod chromium;
pub mod conformance;
pub mod dnsmasq;
pub mod garbage;
pub mod kamailio;
pub mod load;
pub mod peers;
pub mod sipp;
pub mod trunkgate;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The loopback addresses one test owns.
#[derive(Debug, Clone, Copy)]
pub struct Net {
    pub n: u8,
}

impl Net {
    pub const fn new(n: u8) -> Net {
        Net { n }
    }
    fn ip(self, host: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, self.n, host))
    }
    pub fn trunkgate_ip(self) -> IpAddr {
        self.ip(1)
    }
    pub fn pbx_ip(self) -> IpAddr {
        self.ip(2)
    }
    pub fn carrier_a_ip(self) -> IpAddr {
        self.ip(3)
    }
    pub fn carrier_b_ip(self) -> IpAddr {
        self.ip(4)
    }
    /// A source in no allow list.
    pub fn unknown_ip(self) -> IpAddr {
        self.ip(9)
    }
    pub fn sip(self) -> SocketAddr {
        SocketAddr::new(self.trunkgate_ip(), 5060)
    }
    pub fn admin(self) -> SocketAddr {
        SocketAddr::new(self.trunkgate_ip(), 9091)
    }
}

/// Kills a child process if this test process dies first (SIGTERM from a test runner that
/// cancels, a `pkill` by someone else, a crash): `Drop` guards do not run then, and an
/// orphaned Trunkgate or SIPp would hold its addresses and break the next run. A small `sh`
/// loop polls both PIDs; it ends by itself when the child ends.
pub struct Watchdog(std::process::Child);

impl Watchdog {
    pub fn guard(child_pid: u32) -> Option<Watchdog> {
        std::process::Command::new("sh")
            .args([
                "-c",
                "while kill -0 \"$1\" 2>/dev/null && kill -0 \"$2\" 2>/dev/null; do sleep 0.5; done; \
                 kill -0 \"$1\" 2>/dev/null || kill -9 \"$2\" 2>/dev/null",
                "e2e-watchdog",
            ])
            .arg(std::process::id().to_string())
            .arg(child_pid.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()
            .map(Watchdog)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh, empty scratch directory for one test (policy, logs, SIPp stats), kept after the
/// run for inspection under `target/tmp/e2e/`.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// The embedded default policy, as shipped in `config/trunkgate.toml`.
pub fn default_policy_text() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/trunkgate.toml");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read the default policy {}: {e}", path.display()))
}

/// The default policy's layout moved onto `net`'s addresses, with limits that do not get in
/// the way of a load test and a short shutdown grace. Derived from the shipped file so that
/// the tests follow its schema as it evolves.
pub fn test_policy(net: Net) -> String {
    let text = default_policy_text();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let line = match key {
            "max_cps" => "max_cps = 100000".to_owned(),
            "max_sessions" => "max_sessions = 100000".to_owned(),
            "shutdown_grace" => "shutdown_grace = \"5s\"".to_owned(),
            _ => line.replace("127.0.0.", &format!("127.0.{}.", net.n)),
        };
        out.push_str(&line);
        out.push('\n');
    }
    for needle in [
        format!("udp:{}", net.sip()),
        format!("tcp:{}", net.sip()),
        net.admin().to_string(),
        format!("{}:5060", net.pbx_ip()),
        format!("{}:5060", net.carrier_a_ip()),
    ] {
        assert!(
            out.contains(&needle),
            "the test policy derived from config/trunkgate.toml lacks {needle:?}; \
             the default policy's layout changed, update tests/common/mod.rs:\n{out}"
        );
    }
    out
}

/// The `sipp` binary: `$SIPP`, else the first `sipp` on `PATH`. A missing SIPp fails the
/// test (never skips it): `scripts/test.sh` installs it.
pub fn sipp_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SIPP") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("sipp");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "sipp not found on PATH: the end-to-end tests need SIPp (Debian package `sip-tester`); \
         run scripts/test.sh, which installs it"
    );
}

/// A blocking HTTP/1.0 GET over a plain TCP stream. Returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP response: {head:?}")))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size_line, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// One Prometheus sample: its label text (without braces) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: String,
    pub value: f64,
}

/// Every sample of metric `name` in a Prometheus text exposition.
pub fn samples(exposition: &str, name: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in exposition.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, rest) = if let Some(r) = rest.strip_prefix('{') {
            match r.split_once('}') {
                Some((labels, rest)) => (labels.to_owned(), rest),
                None => continue,
            }
        } else if rest.starts_with(' ') {
            (String::new(), rest)
        } else {
            continue; // a longer name with this prefix
        };
        if let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse().ok()) {
            out.push(Sample { labels, value });
        }
    }
    out
}

/// The sum of every sample of `name` (0 when absent).
pub fn sum(exposition: &str, name: &str) -> f64 {
    samples(exposition, name).iter().map(|s| s.value).sum()
}

/// Poll `f` every 100 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `max` bytes of a file, for failure messages.
pub fn tail(path: &std::path::Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("<{}: {e}>", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_samples() {
        let text = "# HELP x y\n\
            trunkgate_dialogs_active{trunk=\"carrier-a\",direction=\"outbound\"} 3\n\
            trunkgate_dialogs_active{trunk=\"carrier-b\",direction=\"inbound\"} 0\n\
            trunkgate_dialogs_active_peak 9\n\
            trunkgate_sip_parse_errors_total 12\n";
        let s = samples(text, "trunkgate_dialogs_active");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].value, 3.0);
        assert_eq!(sum(text, "trunkgate_sip_parse_errors_total"), 12.0);
        assert_eq!(sum(text, "missing"), 0.0);
    }

    #[test]
    fn dechunks() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}

// ---- Media tests (tests/e2e_media*.rs) ----

/// [`test_policy`] with `listen` lines added to `[listen]` and, when `media` is not empty, a
/// `[media]` section of those lines (e.g. `timeout = "3s"`).
pub fn media_test_policy(net: Net, listen: &[&str], media: &[&str]) -> String {
    let mut text = test_policy(net);
    if !listen.is_empty() {
        assert!(
            text.contains("[listen]\n"),
            "the test policy has no [listen] section:\n{text}"
        );
        text = text.replacen(
            "[listen]\n",
            &format!("[listen]\n{}\n", listen.join("\n")),
            1,
        );
    }
    if !media.is_empty() {
        text.push_str("\n[media]\n");
        for line in media {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// The sum of the samples of `name` whose labels include every `key="value"` of `labels`
/// (0 when none).
pub fn value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(exposition, name)
        .iter()
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.split(',').any(|l| l == format!("{k}=\"{v}\"")))
        })
        .map(|s| s.value)
        .sum()
}

/// `GET /calls` on the admin API, parsed; panics unless it answers 200 with JSON that has a
/// `calls` array.
pub fn get_calls(admin: SocketAddr) -> serde_json::Value {
    let (status, body) =
        http_get(admin, "/calls").unwrap_or_else(|e| panic!("GET /calls on {admin}: {e}"));
    assert_eq!(status, 200, "GET /calls answered {status}:\n{body}");
    let v: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET /calls is not JSON ({e}):\n{body}"));
    assert!(
        v.get("calls").is_some_and(serde_json::Value::is_array),
        "GET /calls has no \"calls\" array:\n{body}"
    );
    v
}

/// The calls array of `GET /calls`.
pub fn calls_list(admin: SocketAddr) -> Vec<serde_json::Value> {
    get_calls(admin)["calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The connection address and first `m=` port of an SIP message's SDP body: the `c=` line
/// that applies to the first media line (its own, else the session's).
pub fn sdp_media_address(message: &str) -> Option<(IpAddr, u16)> {
    let (_, body) = message
        .split_once("\r\n\r\n")
        .or_else(|| message.split_once("\n\n"))?;
    let mut session_c: Option<IpAddr> = None;
    let mut media: Option<(u16, Option<IpAddr>)> = None;
    for line in body.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("c=") {
            let ip = rest.split_whitespace().nth(2)?.parse().ok()?;
            match media.as_mut() {
                Some((_, c @ None)) => *c = Some(ip),
                Some(_) => {}
                None => session_c = Some(ip),
            }
        } else if let Some(rest) = line.strip_prefix("m=") {
            if media.is_some() {
                break;
            }
            media = Some((rest.split_whitespace().nth(1)?.parse().ok()?, None));
        }
    }
    let (port, c) = media?;
    Some((c.or(session_c)?, port))
}

/// The `trunkgate-rtpgen` binary Cargo builds for the workspace, next to the `trunkgate`
/// binary under test (`cargo build --workspace` builds both; `scripts/test.sh` does).
pub fn rtpgen_bin() -> PathBuf {
    let bin = std::path::Path::new(trunkgate::BIN)
        .parent()
        .expect("trunkgate binary has a directory")
        .join("trunkgate-rtpgen");
    assert!(
        bin.is_file(),
        "{} is missing: the media tests drive it; build it with \
         `cargo build -p trunkgate-rtpgen` (scripts/test.sh builds the whole workspace)",
        bin.display()
    );
    bin
}

/// `trunkgate-rtpgen sip` between `net`'s PBX (`.2`, its RTP there too) and carrier-a
/// (`.3`) through Trunkgate (`.1`), then `extra` (`--calls`, `--cps`, …).
pub fn rtpgen_sip_args(net: Net, extra: &[&str]) -> Vec<String> {
    let (pbx, trunk) = (net.pbx_ip(), net.carrier_a_ip());
    [
        "sip".to_owned(),
        "--sbc".to_owned(),
        net.sip().to_string(),
        "--pbx".to_owned(),
        SocketAddr::new(pbx, 5060).to_string(),
        "--trunk".to_owned(),
        SocketAddr::new(trunk, 5060).to_string(),
        "--media-ip".to_owned(),
        pbx.to_string(),
        "--trunk-media-ip".to_owned(),
        trunk.to_string(),
    ]
    .into_iter()
    .chain(extra.iter().map(|s| (*s).to_owned()))
    .collect()
}

/// One finished `trunkgate-rtpgen` run.
#[derive(Debug)]
pub struct RtpgenRun {
    /// `None`: killed at the hard deadline.
    pub exit_code: Option<i32>,
    /// Its `--json` report (`Null` when stdout was not JSON).
    pub report: serde_json::Value,
    pub elapsed: Duration,
    /// Tail of its stderr, for failure messages.
    pub log: String,
}

/// Run `trunkgate-rtpgen ARGS --json` (stdout and stderr kept in `dir` as `NAME.json` /
/// `NAME.log`), killing it after `hard_timeout`.
pub fn run_rtpgen(
    dir: &std::path::Path,
    name: &str,
    args: &[String],
    hard_timeout: Duration,
) -> RtpgenRun {
    let out_path = dir.join(format!("{name}.json"));
    let log_path = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&out_path).expect("create rtpgen output file");
    let log = std::fs::File::create(&log_path).expect("create rtpgen log file");
    let started = Instant::now();
    let mut child = std::process::Command::new(rtpgen_bin())
        .args(args)
        .arg("--json")
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(log)
        .spawn()
        .expect("spawn trunkgate-rtpgen");
    let _watchdog = Watchdog::guard(child.id());
    let deadline = started + hard_timeout;
    let exit_code = loop {
        match child.try_wait().expect("try_wait trunkgate-rtpgen") {
            Some(status) => break status.code(),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    RtpgenRun {
        exit_code,
        report: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        elapsed: started.elapsed(),
        log: tail(&log_path, 4000),
    }
}
