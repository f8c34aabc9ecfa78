//! trunkgate-rtpgen: RTP load generator and sink for media relay tests and benchmarks.
//!
//! Sets N calls up through a relay (Trunkgate over SIP, or rtpengine over its ng control
//! protocol, or no relay at all), sends one paced G.711-sized RTP stream in each direction of
//! every call, receives both ends in this process and reports delivered packets, loss,
//! one-way latency through the relay and the relay's CPU per packet.

mod bencode;
mod clock;
mod hist;
mod media;
mod ng;
mod sdp;
mod shared;
mod sip;
mod sipmsg;
mod sys;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::clock::{MS, SEC, now_ns};
use crate::media::{CallMedia, MediaOpts, Ports, Schedule, WorkerStats};

#[derive(Parser, Debug)]
#[command(
    name = "trunkgate-rtpgen",
    version,
    about = "RTP load generator/sink: sets calls up through a relay (SIP or rtpengine ng), sends paced G.711-sized RTP both ways, reports loss, one-way latency and relay CPU per packet"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Through a SIP SBC (Trunkgate): the tool is the PBX (UAC) and the trunk (UAS).
    Sip {
        /// The SBC's SIP UDP listener.
        #[arg(long, default_value = "127.0.0.1:5060")]
        sbc: SocketAddr,
        /// UAC socket: INVITE/ACK/BYE go from here to the SBC.
        #[arg(long, default_value = "127.0.0.2:5060")]
        pbx: SocketAddr,
        /// UAS socket: the SBC sends its INVITEs here.
        #[arg(long, default_value = "127.0.0.3:5060")]
        trunk: SocketAddr,
        #[command(flatten)]
        common: Common,
    },
    /// Through rtpengine, set up with its ng control protocol (offer/answer/delete).
    Ng {
        /// rtpengine's ng listener (--listen-ng).
        #[arg(long, default_value = "127.0.0.1:22222")]
        ng: SocketAddr,
        #[command(flatten)]
        common: Common,
    },
    /// No relay: both sides send straight to each other (the tool's own floor).
    Direct {
        #[command(flatten)]
        common: Common,
    },
    /// Print a markdown table of reports (JSON lines written by --json) from FILE(s).
    Table { files: Vec<std::path::PathBuf> },
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// IP of the tool's RTP sockets (UAC side, and UAS side unless --trunk-media-ip).
    #[arg(long, default_value = "127.0.0.1")]
    media_ip: IpAddr,
    /// IP of the UAS side's RTP sockets (default: --media-ip).
    #[arg(long)]
    trunk_media_ip: Option<IpAddr>,
    /// Port range for the tool's RTP sockets (even ports are used; keep it clear of the
    /// relay's range).
    #[arg(long, default_value = "40000-59999")]
    rtp_ports: String,
    /// Concurrent calls.
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// Call setup rate (calls/s).
    #[arg(long, default_value_t = 200.0)]
    cps: f64,
    /// Teardown rate (BYE or delete per second); default max(cps, 500).
    #[arg(long)]
    bye_cps: Option<f64>,
    /// Seconds of RTP, once every call is up.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Packets per second per stream.
    #[arg(long, default_value_t = 50)]
    pps: u32,
    /// RTP payload bytes (at least 16: send time, stream id, packet number).
    #[arg(long, default_value_t = 160)]
    payload: usize,
    /// RTP payload type.
    #[arg(long, default_value_t = 8)]
    pt: u8,
    /// Drop probability in the UAC→relay lossy forwarder (0 = no forwarder).
    #[arg(long, default_value_t = 0.0)]
    drop: f64,
    /// Uniform random delay 0..J ms per packet in the UAC→relay forwarder (order not kept).
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// The UAS side (the trunk) stops sending RTP this many seconds after the media start,
    /// the calls staying up (one-way audio). 0 = never. Not with --shared-sockets.
    #[arg(long, default_value_t = 0.0)]
    uas_stop_after: f64,
    /// Seed of the loss/jitter/SSRC generator.
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
    /// K sockets per side shared by all calls (call i on pair i mod K; batched sendmmsg/
    /// recvmmsg) instead of one socket per call per side. For high packet rates; no
    /// --drop/--jitter-ms in this mode.
    #[arg(long, default_value_t = 0)]
    shared_sockets: usize,
    /// Shared-socket mode: the send/receive loop's period in µs (sends leave at most this
    /// late; receive times come from the kernel).
    #[arg(long, default_value_t = 200)]
    tick_us: u64,
    /// RTP worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Relay process to sample CPU of (utime+stime from /proc/PID/stat).
    #[arg(long)]
    cpu_pid: Option<u32>,
    /// One JSON object on stdout at the end.
    #[arg(long)]
    json: bool,
    /// Do not end the calls at the end (no BYE / delete).
    #[arg(long)]
    hold_open: bool,
    /// Setup phase timeout in seconds beyond the ramp (calls/cps).
    #[arg(long, default_value_t = 35.0)]
    setup_timeout: f64,
    /// Teardown phase timeout in seconds beyond the ramp.
    #[arg(long, default_value_t = 10.0)]
    teardown_timeout: f64,
    /// Receive for this long after the last send before counting losses (ms).
    #[arg(long, default_value_t = 1000)]
    drain_ms: u64,
    /// Name of the relay in the report (`relay` field; default: the mode).
    #[arg(long)]
    label: Option<String>,
    /// Called numbers are PREFIX + 6-digit call index.
    #[arg(long, default_value = "4930555")]
    number_prefix: String,
}

/// What the signaling implementations need to know.
#[derive(Debug, Clone)]
pub struct SignalOpts {
    pub calls: usize,
    pub cps: f64,
    pub bye_cps: f64,
    pub run_id: String,
    pub number_prefix: String,
}

/// Session setup and teardown through a relay's control plane.
pub trait Signaling {
    /// Sets every call up (paced), filling `a_remote`/`b_remote` of the calls that came up.
    fn setup(&mut self, media: &mut [CallMedia], deadline_ns: u64) -> Result<()>;
    /// Serves the control plane for up to `wait_ms` (answers, retransmissions).
    fn service(&mut self, wait_ms: u16) -> Result<()>;
    /// Ends every established call (paced).
    fn teardown(&mut self, deadline_ns: u64) -> Result<()>;
    fn report(&self) -> serde_json::Value;
}

/// Hands out indexes 0..total at a fixed rate from its creation.
pub struct Pacer {
    t0: u64,
    interval: u64,
    next: usize,
    total: usize,
}

impl Pacer {
    pub fn new(rate: f64, total: usize) -> Self {
        let interval = if rate > 0.0 {
            (SEC as f64 / rate) as u64
        } else {
            0
        };
        Self {
            t0: now_ns(),
            interval,
            next: 0,
            total,
        }
    }

    pub fn next_due(&mut self, now: u64) -> Option<usize> {
        if self.next < self.total && self.t0 + self.next as u64 * self.interval <= now {
            self.next += 1;
            Some(self.next - 1)
        } else {
            None
        }
    }

    pub fn remaining(&self) -> usize {
        self.total - self.next
    }
}

/// No relay: each side sends to the other's socket.
struct Direct;

impl Signaling for Direct {
    fn setup(&mut self, media: &mut [CallMedia], _deadline_ns: u64) -> Result<()> {
        for m in media {
            m.a_remote = Some(m.b_local);
            m.b_remote = Some(m.a_sdp_addr());
        }
        Ok(())
    }
    fn service(&mut self, wait_ms: u16) -> Result<()> {
        std::thread::sleep(Duration::from_millis(u64::from(wait_ms)));
        Ok(())
    }
    fn teardown(&mut self, _deadline_ns: u64) -> Result<()> {
        Ok(())
    }
    fn report(&self) -> serde_json::Value {
        json!({})
    }
}

fn parse_range(s: &str) -> Result<(u16, u16)> {
    let (lo, hi) = s.split_once('-').context("port range is LO-HI")?;
    let lo: u16 = lo.trim().parse().context("port range low end")?;
    let hi: u16 = hi.trim().parse().context("port range high end")?;
    if lo == 0 || hi < lo {
        bail!("bad port range {s}");
    }
    Ok((lo, hi))
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("trunkgate-rtpgen: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    let nofile = sys::raise_nofile();
    // Precise wakeups for pacing (timer slack is inherited by the worker threads).
    let _ = nix::sys::prctl::set_timerslack(1000);
    let (mode_name, common) = match &cli.mode {
        Mode::Sip { common, .. } => ("sip", common.clone()),
        Mode::Ng { common, .. } => ("ng", common.clone()),
        Mode::Direct { common } => ("direct", common.clone()),
        Mode::Table { files } => return table(files),
    };
    let o = common;
    if o.payload < media::STAMP {
        bail!("--payload must be at least {}", media::STAMP);
    }
    if o.pps == 0 || o.calls == 0 || o.threads == 0 {
        bail!("--pps, --calls and --threads must be positive");
    }
    if !(0.0..1.0).contains(&o.drop) {
        bail!("--drop must be in [0, 1)");
    }
    let (lo, hi) = parse_range(&o.rtp_ports)?;
    let run_id = format!(
        "{:x}",
        (now_ns() ^ u64::from(std::process::id())) & 0xff_ffff
    );
    let sig_opts = SignalOpts {
        calls: o.calls,
        cps: o.cps,
        bye_cps: o.bye_cps.unwrap_or(o.cps.max(500.0)),
        run_id,
        number_prefix: o.number_prefix.clone(),
    };

    // Media sockets for every call, before any signaling (their ports go into the SDP).
    let impaired = o.drop > 0.0 || o.jitter_ms > 0.0 || o.uas_stop_after > 0.0;
    let mut ports = vec![Ports::new(o.media_ip, lo, hi)];
    if let Some(ip) = o.trunk_media_ip {
        if ip != o.media_ip {
            ports.push(Ports::new(ip, lo, hi));
        }
    }
    let mut calls = Vec::with_capacity(o.calls);
    let mut groups: Vec<Option<shared::Group>> = Vec::new();
    if o.shared_sockets > 0 {
        if impaired {
            bail!(
                "--drop/--jitter-ms/--uas-stop-after need one socket per call (no --shared-sockets)"
            );
        }
        let mut addrs = Vec::new();
        for g in 0..o.shared_sockets {
            let (a, al) = ports[0].bind_even()?;
            let last = ports.len() - 1;
            let (b, bl) = ports[last].bind_even()?;
            shared::enlarge(&a, 32 << 20);
            shared::enlarge(&b, 32 << 20);
            groups.push(Some(shared::Group { id: g, a, b }));
            addrs.push((al, bl));
        }
        for i in 0..o.calls {
            let g = i % o.shared_sockets;
            calls.push(CallMedia::shared(i, g, addrs[g].0, addrs[g].1));
        }
    } else {
        for i in 0..o.calls {
            calls.push(
                CallMedia::open(i, &mut ports, impaired).with_context(|| {
                    format!("RTP sockets for call {i} (RLIMIT_NOFILE {nofile})")
                })?,
            );
        }
    }

    let mut sig: Box<dyn Signaling> = match &cli.mode {
        Mode::Sip {
            sbc, pbx, trunk, ..
        } => Box::new(sip::SipUa::new(sig_opts.clone(), *sbc, *pbx, *trunk)?),
        Mode::Ng { ng, .. } => Box::new(ng::NgClient::new(sig_opts.clone(), *ng, o.media_ip)?),
        Mode::Direct { .. } => Box::new(Direct),
        Mode::Table { .. } => bail!("not a load mode"),
    };

    // Setup.
    eprintln!(
        "rtpgen: {mode_name}: setting up {} calls at {} calls/s",
        o.calls, o.cps
    );
    let t_setup = now_ns();
    let ramp = if o.cps > 0.0 {
        o.calls as f64 / o.cps
    } else {
        0.0
    };
    let deadline = t_setup + ((ramp + o.setup_timeout) * SEC as f64) as u64;
    sig.setup(&mut calls, deadline)?;
    let setup_seconds = (now_ns() - t_setup) as f64 / SEC as f64;
    let up: Vec<CallMedia> = calls.into_iter().filter(CallMedia::is_up).collect();
    let calls_up = up.len();
    let calls_failed = o.calls - calls_up;
    eprintln!("rtpgen: {calls_up} calls up, {calls_failed} failed, in {setup_seconds:.1} s");

    let mopts = MediaOpts {
        pps: o.pps,
        payload: o.payload,
        pt: o.pt,
        drop: o.drop,
        jitter_ms: o.jitter_ms,
        seed: o.seed,
        uas_stop_after: o.uas_stop_after,
    };
    let mut stats = WorkerStats::default();
    let mut rtp_seconds = 0.0;
    let mut cpu: Option<(sys::CpuSample, sys::CpuSample)> = None;
    let mut udp_errors: Option<[u64; 3]> = None;
    if calls_up > 0 {
        let start = now_ns() + 100 * MS;
        let dur = (o.duration.max(0.0) * SEC as f64) as u64;
        let jitter = (o.jitter_ms.max(0.0) * MS as f64) as u64;
        let sched = Schedule {
            start_ns: start,
            stop_send_ns: start + dur,
            end_ns: start + dur + o.drain_ms * MS + jitter,
            total_streams: 2 * calls_up as u64,
        };
        let nthreads = if groups.is_empty() {
            o.threads.min(calls_up)
        } else {
            o.threads.min(groups.len())
        };
        let mut parts: Vec<Vec<(usize, CallMedia)>> = (0..nthreads).map(|_| Vec::new()).collect();
        for (rank, c) in up.into_iter().enumerate() {
            let w = c.group.unwrap_or(rank) % nthreads;
            parts[w].push((rank, c));
        }
        let mut group_parts: Vec<Vec<shared::Group>> = (0..nthreads).map(|_| Vec::new()).collect();
        for g in groups.iter_mut().filter_map(Option::take) {
            group_parts[g.id % nthreads].push(g);
        }
        let udp0 = sys::udp_errors();
        let tick_ns = o.tick_us.max(1) * 1000;
        eprintln!(
            "rtpgen: RTP for {:.1} s: {} streams x {} pps = {} pps on {nthreads} threads",
            o.duration,
            2 * calls_up,
            o.pps,
            2 * calls_up as u64 * u64::from(o.pps)
        );
        let handles: Vec<_> = parts
            .into_iter()
            .enumerate()
            .zip(group_parts)
            .map(|((wid, part), gs)| {
                let mo = mopts.clone();
                std::thread::Builder::new()
                    .name(format!("rtp-{wid}"))
                    .spawn(move || {
                        if gs.is_empty() {
                            media::run_worker(wid, part, sched, &mo)
                        } else {
                            shared::run_worker(wid, gs, part, calls_up, sched, &mo, tick_ns)
                        }
                    })
            })
            .collect::<std::io::Result<_>>()
            .context("spawn RTP worker")?;
        // Serve the control plane meanwhile; sample the relay's CPU over the send window.
        let sample_end = sched.stop_send_ns + 100 * MS;
        let mut s0 = None;
        let mut s1 = None;
        loop {
            let now = now_ns();
            if s0.is_none() && now >= start {
                s0 = Some(sys::sample(o.cpu_pid));
            }
            if s1.is_none() && now >= sample_end {
                s1 = Some(sys::sample(o.cpu_pid));
            }
            if now >= sched.end_ns && handles.iter().all(|h| h.is_finished()) {
                break;
            }
            let next = if s0.is_none() {
                start
            } else if s1.is_none() {
                sample_end
            } else {
                sched.end_ns
            };
            let wait = (next.saturating_sub(now) / MS).clamp(1, 10) as u16;
            sig.service(wait)?;
        }
        for h in handles {
            match h.join() {
                Ok(Ok(s)) => stats.merge(&s),
                Ok(Err(e)) => eprintln!("rtpgen: worker failed: {e:#}"),
                Err(_) => eprintln!("rtpgen: worker panicked"),
            }
        }
        rtp_seconds = dur as f64 / SEC as f64;
        if let (Some(a), Some(b)) = (udp0, sys::udp_errors()) {
            udp_errors = Some([
                b[0] - a[0].min(b[0]),
                b[1] - a[1].min(b[1]),
                b[2] - a[2].min(b[2]),
            ]);
        }
        if let (Some(a), Some(b)) = (s0, s1) {
            cpu = Some((a, b));
        }
        if !o.hold_open {
            let bye_cps = sig_opts.bye_cps;
            let ramp = if bye_cps > 0.0 {
                calls_up as f64 / bye_cps
            } else {
                0.0
            };
            let deadline = now_ns() + ((ramp + o.teardown_timeout) * SEC as f64) as u64;
            sig.teardown(deadline)?;
        } else {
            // Keep answering the control plane briefly so late messages are not lost.
            for _ in 0..10 {
                sig.service(10)?;
            }
        }
    }

    // Report.
    let sent = stats.dir[0].sent + stats.dir[1].sent;
    let received = stats.dir[0].received + stats.dir[1].received;
    let lost = sent as i64 - received as i64;
    let ratio = |lost: i64, sent: u64| {
        if sent == 0 {
            0.0
        } else {
            lost as f64 / sent as f64
        }
    };
    let dir = |d: usize| {
        let s = &stats.dir[d];
        let l = s.sent as i64 - s.received as i64;
        json!({"sent": s.sent, "received": s.received, "lost": l, "loss_ratio": ratio(l, s.sent)})
    };
    let (host_us_per_packet, host_cpu_percent, relay_fds) = match &cpu {
        Some((a, b)) => {
            let wall_us = (b.at_ns.saturating_sub(a.at_ns) / 1000).max(1) as f64;
            let host = match (a.host_us, b.host_us) {
                (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64),
                _ => None,
            };
            (
                host.map(|h| {
                    if received > 0 {
                        h / received as f64
                    } else {
                        0.0
                    }
                }),
                host.map(|h| h * 100.0 / wall_us),
                b.relay_fds,
            )
        }
        None => (None, None, None),
    };
    let (cpu_us_per_packet, relay_cpu_percent, tool_cpu_percent, relay_threads) = match &cpu {
        Some((a, b)) => {
            let wall_us = (b.at_ns.saturating_sub(a.at_ns) / 1000).max(1) as f64;
            let relay = match (a.relay_us, b.relay_us) {
                (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64),
                _ => None,
            };
            let tool = match (a.self_us, b.self_us) {
                (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 * 100.0 / wall_us),
                _ => None,
            };
            let threads: Vec<serde_json::Value> = b
                .relay_threads
                .iter()
                .filter_map(|(tid, name, us)| {
                    let before = a
                        .relay_threads
                        .iter()
                        .find(|t| t.0 == *tid)
                        .map_or(0, |t| t.2);
                    let pct = us.saturating_sub(before) as f64 * 100.0 / wall_us;
                    (pct >= 1.0)
                        .then(|| json!({"tid": tid, "name": name, "cpu_percent": round(pct, 1)}))
                })
                .collect();
            (
                relay.map(|r| {
                    if received > 0 {
                        r / received as f64
                    } else {
                        0.0
                    }
                }),
                relay.map(|r| r * 100.0 / wall_us),
                tool,
                threads,
            )
        }
        None => (None, None, None, Vec::new()),
    };
    let lat = &stats.latency_us;
    let report = json!({
        "mode": mode_name,
        "relay": o.label.clone().unwrap_or_else(|| mode_name.to_string()),
        "calls": o.calls,
        "calls_failed": calls_failed,
        "streams": 2 * calls_up,
        "pps": if rtp_seconds > 0.0 { (sent as f64 / rtp_seconds).round() } else { 0.0 },
        "target_pps": 2 * calls_up as u64 * u64::from(o.pps),
        "sent": sent,
        "received": received,
        "lost": lost,
        "loss_ratio": ratio(lost, sent),
        "latency_us": {
            "p50": lat.quantile(0.5),
            "p90": lat.quantile(0.9),
            "p99": lat.quantile(0.99),
            "p999": lat.quantile(0.999),
            "max": lat.max(),
            "mean": round(lat.mean(), 1),
            "samples": lat.count(),
        },
        "rtp_seconds": rtp_seconds,
        "cpu_us_per_packet": cpu_us_per_packet.map(|v| round(v, 3)),
        "relay_cpu_percent": relay_cpu_percent.map(|v| round(v, 1)),
        "relay_threads": relay_threads,
        "tool_cpu_percent": tool_cpu_percent.map(|v| round(v, 1)),
        "host_cpu_us_per_packet": host_us_per_packet.map(|v| round(v, 3)),
        "host_cpu_percent": host_cpu_percent.map(|v| round(v, 1)),
        "relay_fds": relay_fds,
        "directions": {"uac_to_uas": dir(0), "uas_to_uac": dir(1)},
        "send_lag_us": {"p50": stats.send_lag_us.quantile(0.5), "p99": stats.send_lag_us.quantile(0.99), "max": stats.send_lag_us.max()},
        "send_errors": stats.send_errors,
        "udp_errors": udp_errors.map(|e| json!({"in": e[0], "rcvbuf": e[1], "sndbuf": e[2]})),
        "shared_sockets": o.shared_sockets,
        "recv_errors": stats.recv_errors,
        "foreign": stats.foreign,
        "reordered": stats.reordered,
        "impairment": {
            "drop": o.drop, "jitter_ms": o.jitter_ms, "seed": o.seed,
            "dropped": stats.fwd_dropped, "delayed": stats.fwd_delayed,
            "order_kept": false,
        },
        "setup_seconds": round(setup_seconds, 3),
        "signaling": sig.report(),
        "nofile_limit": nofile,
    });
    eprintln!(
        "rtpgen: {mode_name}: {calls_up}/{} calls, {} streams, sent {sent}, received {received}, lost {lost} ({:.4}%), latency p50/p90/p99/max {}/{}/{}/{} µs",
        o.calls,
        2 * calls_up,
        ratio(lost, sent) * 100.0,
        lat.quantile(0.5),
        lat.quantile(0.9),
        lat.quantile(0.99),
        lat.max()
    );
    eprintln!(
        "rtpgen: directions UAC→UAS {}, UAS→UAC {}",
        report["directions"]["uac_to_uas"], report["directions"]["uas_to_uac"]
    );
    match (cpu_us_per_packet, relay_cpu_percent) {
        (Some(p), Some(c)) => eprintln!(
            "rtpgen: relay CPU {c:.1}% = {p:.2} µs per relayed packet; tool CPU {:.1}%; send lag p99 {} µs",
            tool_cpu_percent.unwrap_or(0.0),
            stats.send_lag_us.quantile(0.99)
        ),
        _ => eprintln!(
            "rtpgen: tool CPU {:.1}%; send lag p99 {} µs",
            tool_cpu_percent.unwrap_or(0.0),
            stats.send_lag_us.quantile(0.99)
        ),
    }
    eprintln!("rtpgen: signaling {}", sig.report());
    if o.json {
        println!("{report}");
    }
    Ok(if calls_up == 0 { 2 } else { 0 })
}

/// The benchmark table from JSON report lines (lines that do not parse are skipped).
///
/// "host µs/packet" is all CPUs' busy time over the send window per relayed packet;
/// "net µs/packet" subtracts the same figure of the tool alone ("direct" rows, same number
/// of calls) — what the relay adds, wherever it runs (a process, softirq, the kernel).
fn table(files: &[std::path::PathBuf]) -> Result<i32> {
    let mut rows = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                rows.push(v);
            }
        }
    }
    // Hold points ("…-hold" rows) are compared with "direct-hold", the rest with "direct".
    let direct = |v: &serde_json::Value| {
        let hold = v["relay"].as_str().is_some_and(|r| r.ends_with("-hold"));
        let label = if hold { "direct-hold" } else { "direct" };
        rows.iter()
            .find(|r| r["relay"] == label && r["calls"] == v["calls"])
            .and_then(|r| r["host_cpu_us_per_packet"].as_f64())
    };
    println!(
        "| relay | calls | pps | relay process µs/packet | host µs/packet | net µs/packet | loss | p50 µs | p99 µs | max µs | failed calls | relay fds | tool CPU % |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for v in &rows {
        let num = |x: &serde_json::Value, digits: usize| match x.as_f64() {
            Some(n) => format!("{n:.digits$}"),
            None => "–".to_string(),
        };
        let host = v["host_cpu_us_per_packet"].as_f64();
        let is_direct = v["relay"].as_str().is_some_and(|r| r.starts_with("direct"));
        let net = match (host, direct(v)) {
            (Some(h), Some(d)) if !is_direct => format!("{:.2}", h - d),
            _ => "–".to_string(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            v["relay"].as_str().unwrap_or("?"),
            v["calls"],
            num(&v["pps"], 0),
            num(&v["cpu_us_per_packet"], 2),
            num(&v["host_cpu_us_per_packet"], 2),
            net,
            match v["loss_ratio"].as_f64() {
                Some(r) => format!("{:.4}%", r * 100.0),
                None => "–".to_string(),
            },
            v["latency_us"]["p50"],
            v["latency_us"]["p99"],
            v["latency_us"]["max"],
            v["calls_failed"],
            v["relay_fds"]
                .as_u64()
                .map_or("–".to_string(), |n| n.to_string()),
            num(&v["tool_cpu_percent"], 1),
        );
    }
    Ok(0)
}

fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}
