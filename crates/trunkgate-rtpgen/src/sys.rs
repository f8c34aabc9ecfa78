//! Process limits and CPU accounting from /proc.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 0,
    }
}

/// USER_HZ: the unit of utime/stime in /proc/*/stat (100 on every Linux architecture
/// we run on).
const CLK_TCK: u64 = 100;

/// utime + stime in microseconds, and the thread name, from a /proc/.../stat file.
fn read_stat(path: &str) -> Option<(u64, String)> {
    let s = std::fs::read_to_string(path).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let name = s.get(open + 1..close)?.to_string();
    let mut fields = s.get(close + 1..)?.split_whitespace();
    // After the name: state(3) ppid(4) ... utime(14) stime(15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(((utime + stime) * 1_000_000 / CLK_TCK, name))
}

/// CPU time of a process (all threads) in microseconds.
pub fn process_cpu_us(pid: u32) -> Option<u64> {
    read_stat(&format!("/proc/{pid}/stat")).map(|(us, _)| us)
}

/// Per-thread CPU time of a process: (tid, name, µs).
pub fn thread_cpu_us(pid: u32) -> Vec<(u32, String, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((us, name)) = read_stat(&format!("/proc/{pid}/task/{tid}/stat")) {
            out.push((tid, name, us));
        }
    }
    out
}

/// A CPU sample of the relay process (and its threads), of this process and of the whole
/// host.
#[derive(Debug, Clone)]
pub struct CpuSample {
    pub at_ns: u64,
    pub relay_us: Option<u64>,
    pub relay_threads: Vec<(u32, String, u64)>,
    pub self_us: Option<u64>,
    /// Busy time of all CPUs (user, nice, system, irq, softirq, steal; not idle or iowait)
    /// from /proc/stat, in µs: what a relay in the kernel costs shows up here — in softirq
    /// and in the sender's system time — and not in any process of its own.
    pub host_us: Option<u64>,
    /// Open descriptors of the relay process.
    pub relay_fds: Option<usize>,
}

pub fn sample(pid: Option<u32>) -> CpuSample {
    CpuSample {
        at_ns: crate::clock::now_ns(),
        relay_us: pid.and_then(process_cpu_us),
        relay_threads: pid.map(thread_cpu_us).unwrap_or_default(),
        self_us: process_cpu_us(std::process::id()),
        host_us: host_busy_us(),
        relay_fds: pid.and_then(|p| {
            std::fs::read_dir(format!("/proc/{p}/fd"))
                .ok()
                .map(|d| d.count())
        }),
    }
}

/// All CPUs' busy time in µs (the "cpu" line of /proc/stat, USER_HZ ticks).
pub fn host_busy_us() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| v.get(i))
        .sum::<u64>();
    Some(busy * 1_000_000 / CLK_TCK)
}

/// System-wide UDP counters from /proc/net/snmp: (InErrors, RcvbufErrors, SndbufErrors).
/// Datagrams the kernel dropped because a socket's receive queue was full show up here,
/// whichever process (the relay or this tool) owned the socket.
pub fn udp_errors() -> Option<[u64; 3]> {
    let s = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut lines = s.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |n: &str| -> Option<u64> {
        let i = names.iter().position(|x| *x == n)?;
        values.get(i)?.parse().ok()
    };
    Some([get("InErrors")?, get("RcvbufErrors")?, get("SndbufErrors")?])
}
