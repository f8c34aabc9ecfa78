//! Shared-socket workers (`--shared-sockets K`): each side of the tool uses K sockets for all
//! calls (call i on pair i % K), so sending is one `sendmmsg` per socket per wakeup and
//! receiving one `recvmmsg` of up to 64 datagrams. The relay still receives every call on its
//! own ports and sends each call's stream to one of K addresses; only the tool's own cost
//! changes (per-call sockets cost two system calls per packet, too much at 350,000 packets/s
//! on two cores shared with the relay). No lossy forwarder in this mode.

use std::io::{IoSlice, IoSliceMut};
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};

use anyhow::{Context, Result};
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg,
    sendmmsg, setsockopt, sockopt,
};

use crate::clock::{SEC, now_ns};
use crate::media::{CallMedia, MediaOpts, RTP_HEADER, Rng, STAMP, Schedule, WorkerStats};

const BATCH: usize = 64;

/// One shared socket pair: `a` for the UAC side, `b` for the UAS side.
pub struct Group {
    pub id: usize,
    pub a: UdpSocket,
    pub b: UdpSocket,
}

/// Large kernel buffers (a shared socket carries thousands of streams): SO_RCVBUFFORCE /
/// SO_SNDBUFFORCE when allowed (root), else whatever SO_RCVBUF/SO_SNDBUF grant.
pub fn enlarge(sock: &UdpSocket, bytes: usize) {
    if setsockopt(sock, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = setsockopt(sock, sockopt::RcvBuf, &bytes);
    }
    if setsockopt(sock, sockopt::SndBufForce, &bytes).is_err() {
        let _ = setsockopt(sock, sockopt::SndBuf, &bytes);
    }
}

struct Stream {
    sock: usize,
    dest: SockaddrStorage,
    dir: usize,
    id: u32,
    ssrc: u32,
    seq: u16,
    ts: u32,
    pkt: u32,
    offset: u64,
}

struct Batch {
    bufs: Vec<Vec<u8>>,
    dests: Vec<Option<SockaddrStorage>>,
}

fn flush(
    fd: RawFd,
    hdrs: &mut MultiHeaders<SockaddrStorage>,
    b: &mut Batch,
    dir: usize,
    st: &mut WorkerStats,
) {
    let n = b.dests.len();
    if n == 0 {
        return;
    }
    let sent = {
        let iovs: Vec<[IoSlice<'_>; 1]> = b.bufs[..n].iter().map(|p| [IoSlice::new(p)]).collect();
        let cmsgs: [ControlMessage<'_>; 0] = [];
        match sendmmsg(fd, hdrs, &iovs, &b.dests, cmsgs, MsgFlags::MSG_DONTWAIT) {
            Ok(r) => r.count(),
            Err(_) => 0,
        }
    };
    st.dir[dir].sent += sent as u64;
    st.send_errors += (n - sent) as u64;
    b.dests.clear();
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC now (ns): converts kernel receive timestamps
/// (SO_TIMESTAMPNS, realtime) to the monotonic clock the send stamps use.
fn realtime_offset() -> i128 {
    let real = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME)
        .map(|t| i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec()))
        .unwrap_or(0);
    real - i128::from(now_ns())
}

/// `calls` are (rank among established calls, media); `groups` the socket pairs they use.
///
/// The loop runs on a tick (`tick_ns`): send every packet that is due (one `sendmmsg` per
/// socket), drain every socket (`recvmmsg` until empty), sleep until the next send is due but
/// at least one tick. Sends leave at most a tick late (their stamp is the real send time);
/// the receive time of each packet is the kernel's (SO_TIMESTAMPNS), so the latency figure
/// does not include the time a packet waited in the tool's socket.
pub fn run_worker(
    wid: usize,
    groups: Vec<Group>,
    calls: Vec<(usize, CallMedia)>,
    total_calls: usize,
    sched: Schedule,
    opts: &MediaOpts,
    tick_ns: u64,
) -> Result<WorkerStats> {
    let mut st = WorkerStats::default();
    let period = SEC / u64::from(opts.pps.max(1));
    let samples = 8000 / opts.pps.max(1);
    let mut rng = Rng::new(opts.seed ^ (wid as u64).wrapping_mul(0x1234_5678_9ABC_DEF1));

    // Local socket k: group k/2, A side when k is even.
    let mut socks: Vec<&UdpSocket> = Vec::with_capacity(groups.len() * 2);
    for g in &groups {
        socks.push(&g.a);
        socks.push(&g.b);
    }
    for s in &socks {
        setsockopt(*s, sockopt::ReceiveTimestampns, &true).context("SO_TIMESTAMPNS")?;
    }
    let fds: Vec<RawFd> = socks.iter().map(|s| s.as_raw_fd()).collect();

    let mut streams = Vec::with_capacity(calls.len() * 2);
    for (rank, c) in &calls {
        let Some(gi) = groups.iter().position(|g| Some(g.id) == c.group) else {
            continue;
        };
        for (dir, dest) in [(0usize, c.a_remote), (1, c.b_remote)] {
            let Some(dest) = dest else { continue };
            let id = (*rank * 2 + dir) as u32;
            streams.push(Stream {
                sock: gi * 2 + dir,
                dest: SockaddrStorage::from(dest),
                dir,
                id,
                ssrc: rng.next_u64() as u32,
                seq: rng.next_u64() as u16,
                ts: rng.next_u64() as u32,
                pkt: 0,
                offset: u64::from(id) * period / sched.total_streams.max(1),
            });
        }
    }
    streams.sort_by_key(|s| s.offset);

    let pkt_len = RTP_HEADER + opts.payload.max(STAMP);
    let mut batches: Vec<Batch> = (0..socks.len())
        .map(|_| Batch {
            bufs: vec![vec![0xD5u8; pkt_len]; BATCH],
            dests: Vec::with_capacity(BATCH),
        })
        .collect();
    let mut shdrs = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut rhdrs = MultiHeaders::<SockaddrStorage>::preallocate(
        BATCH,
        Some(nix::cmsg_space!(nix::sys::time::TimeSpec)),
    );
    let mut rbufs = vec![[0u8; 2048]; BATCH];
    let mut meta = [(0usize, 0u64); BATCH];
    let mut last_seq: Vec<[Option<u16>; 2]> = vec![[None, None]; total_calls];
    let rt_off = realtime_offset();

    let mut cursor = 0usize;
    let mut cycle = 0u64;
    let due = |cursor: usize, cycle: u64, streams: &[Stream]| -> u64 {
        sched.start_ns + cycle * period + streams.get(cursor).map_or(0, |s| s.offset)
    };

    loop {
        let now = now_ns();
        if now >= sched.end_ns {
            break;
        }
        // 1. Everything due.
        if now < sched.stop_send_ns && !streams.is_empty() {
            loop {
                let d = due(cursor, cycle, &streams);
                if d > now {
                    break;
                }
                let s = &mut streams[cursor];
                let b = &mut batches[s.sock];
                let buf = &mut b.bufs[b.dests.len()];
                buf[0] = 0x80;
                buf[1] = (opts.pt & 0x7f) | if s.pkt == 0 { 0x80 } else { 0 };
                buf[2..4].copy_from_slice(&s.seq.to_be_bytes());
                buf[4..8].copy_from_slice(&s.ts.to_be_bytes());
                buf[8..12].copy_from_slice(&s.ssrc.to_be_bytes());
                buf[12..20].copy_from_slice(&now_ns().to_be_bytes());
                buf[20..24].copy_from_slice(&s.id.to_be_bytes());
                buf[24..28].copy_from_slice(&s.pkt.to_be_bytes());
                b.dests.push(Some(s.dest));
                st.send_lag_us.record(now.saturating_sub(d) / 1000);
                s.seq = s.seq.wrapping_add(1);
                s.ts = s.ts.wrapping_add(samples);
                s.pkt = s.pkt.wrapping_add(1);
                let (sock, dir) = (s.sock, s.dir);
                if batches[sock].dests.len() == BATCH {
                    flush(fds[sock], &mut shdrs, &mut batches[sock], dir, &mut st);
                }
                cursor += 1;
                if cursor == streams.len() {
                    cursor = 0;
                    cycle += 1;
                }
            }
            for (k, b) in batches.iter_mut().enumerate() {
                flush(fds[k], &mut shdrs, b, k % 2, &mut st);
            }
        }
        // 2. Drain every socket.
        for (k, &fd) in fds.iter().enumerate() {
            // The A side (even k) receives direction 1 (UAS→UAC), the B side direction 0.
            let dir = if k % 2 == 0 { 1 } else { 0 };
            loop {
                let got = {
                    let mut iovs: Vec<[IoSliceMut<'_>; 1]> = rbufs
                        .iter_mut()
                        .map(|b| [IoSliceMut::new(&mut b[..])])
                        .collect();
                    match recvmmsg(
                        fd,
                        &mut rhdrs,
                        iovs.iter_mut(),
                        MsgFlags::MSG_DONTWAIT,
                        None,
                    ) {
                        Ok(msgs) => {
                            let mut got = 0;
                            for m in msgs {
                                let mut rx = 0u64;
                                if let Ok(cm) = m.cmsgs() {
                                    for c in cm {
                                        if let ControlMessageOwned::ScmTimestampns(t) = c {
                                            let real = i128::from(t.tv_sec()) * 1_000_000_000
                                                + i128::from(t.tv_nsec());
                                            rx = u64::try_from(real - rt_off).unwrap_or(0);
                                        }
                                    }
                                }
                                meta[got] = (m.bytes, rx);
                                got += 1;
                            }
                            got
                        }
                        Err(nix::errno::Errno::EAGAIN) => 0,
                        Err(_) => {
                            st.recv_errors += 1;
                            0
                        }
                    }
                };
                let t_user = now_ns();
                for i in 0..got {
                    let (p, (len, rx)) = (&rbufs[i], meta[i]);
                    if len < RTP_HEADER + STAMP || p[0] >> 6 != 2 {
                        st.foreign += 1;
                        continue;
                    }
                    let id = u32::from_be_bytes([p[20], p[21], p[22], p[23]]) as usize;
                    let (rank, d) = (id / 2, id % 2);
                    if d != dir || rank >= total_calls {
                        st.foreign += 1;
                        continue;
                    }
                    let mut ts = [0u8; 8];
                    ts.copy_from_slice(&p[12..20]);
                    let sent = u64::from_be_bytes(ts);
                    let t = if rx == 0 { t_user } else { rx };
                    st.dir[dir].received += 1;
                    st.latency_us.record(t.saturating_sub(sent) / 1000);
                    let seq = u16::from_be_bytes([p[2], p[3]]);
                    let last = &mut last_seq[rank][dir];
                    match *last {
                        Some(l) if seq.wrapping_sub(l) >= 0x8000 || seq == l => st.reordered += 1,
                        _ => *last = Some(seq),
                    }
                }
                if got < BATCH {
                    break;
                }
            }
        }
        // 3. Sleep until the next send, at least one tick.
        let now = now_ns();
        let mut next = (now + tick_ns).min(sched.end_ns);
        if now < sched.stop_send_ns && !streams.is_empty() {
            next = next.max(due(cursor, cycle, &streams).min(sched.end_ns));
        }
        if next > now {
            std::thread::sleep(std::time::Duration::from_nanos(next - now));
        }
    }
    Ok(st)
}
