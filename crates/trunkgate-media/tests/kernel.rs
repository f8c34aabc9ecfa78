//! The kernel fast path really engages: after the first datagram latches a stream, the BPF
//! program at tc ingress of `lo` forwards the rest — the relay thread's socket receives none
//! of them (the leg's userspace count stays where latching left it), the kernel's counters
//! move, and the peer gets every packet from the relay's other leg, DSCP EF, payload intact.
//! Then the relay's figures (packets, bytes, loss, jitter) match what was sent, a new SSRC
//! goes back through userspace, and a deleted call leaves no entry forwarding.
//!
//! Needs root (BPF + TCX) on Linux ≥ 6.6: it fails, never skips, without them. Addresses
//! 127.0.170.x, ports 31000–31019: the program only touches those exact entries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, setsockopt, sockopt};
use trunkgate_media::fastpath::{FastPath, FastPathMode};
use trunkgate_media::{CallInfo, Latch, MediaConfig, Relay, SdpKind, Side};

const RELAY: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 170, 1));
const PEER_A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 170, 2));
const PEER_B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 170, 3));

fn config() -> MediaConfig {
    MediaConfig {
        bind: RELAY,
        advertised: RELAY,
        alternate: None,
        port_min: 31000,
        port_max: 31019,
        dscp: 46,
        latch: Latch::Any,
        timeout: Duration::from_secs(60),
        hold_timeout: Duration::from_secs(3600),
        threads: 1,
        quarantine: Duration::from_secs(30),
        nice: 0,
        max_sockets: usize::MAX,
        quality: trunkgate_media::QualityConfig::default(),
        fastpath: FastPath::Kernel,
    }
}

fn call(id: u64) -> CallInfo<'static> {
    CallInfo {
        id,
        call_id: b"kernel@test",
        trunk: Some(0),
        inbound: false,
        peers: [None, None],
    }
}

fn sdp(ip: IpAddr, port: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    )
    .into_bytes()
}

fn m_port(body: &[u8]) -> u16 {
    let s = std::str::from_utf8(body).unwrap();
    let line = s.lines().find(|l| l.starts_with("m=")).unwrap();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0u8; 172];
    p[0] = 0x80;
    p[1] = 8;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p[12..16].copy_from_slice(&u32::from(seq).to_be_bytes());
    p
}

/// One datagram with its source and TOS byte.
fn recv_tos(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr, Option<u8>)> {
    let mut buf = [0u8; 2048];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(u8);
    let msg =
        recvmsg::<SockaddrIn>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()).ok()?;
    let tos = msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::Ipv4Tos(t) => Some(t),
        _ => None,
    });
    let from = SocketAddr::from(std::net::SocketAddrV4::from(msg.address?));
    let n = msg.bytes;
    Some((buf[..n].to_vec(), from, tos))
}

/// The tests of this file one at a time: the descriptor count below is the process's, and
/// `cargo test` runs a binary's tests on parallel threads.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

#[test]
fn latched_rtp_is_forwarded_in_the_kernel_and_counted() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let relay = Relay::start(config(), vec!["carrier-a".into()], Box::new(|_| {}))
        .expect("kernel fast path (root, Linux >= 6.6, clang-built BPF object)");
    assert_eq!(relay.fastpath(), FastPathMode::Kernel);
    assert_eq!(relay.fastpath_interfaces(), vec!["lo".to_string()]);
    assert_eq!(relay.metrics().fastpath(), FastPathMode::Kernel);

    let a = UdpSocket::bind((PEER_A, 0)).unwrap();
    let b = UdpSocket::bind((PEER_B, 0)).unwrap();
    b.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    setsockopt(&b, sockopt::IpRecvTos, &true).unwrap();
    // Room for the whole burst (the kernel path forwards faster than this test reads).
    setsockopt(&b, sockopt::RcvBufForce, &(4 << 20)).unwrap();
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let mut out = Vec::new();
    relay
        .update(
            &call(1),
            Side::A,
            SdpKind::Offer,
            &sdp(PEER_A, pa),
            &mut out,
        )
        .unwrap();
    let relay_b = m_port(&out); // where B's peer sends; A's packets leave from here
    out.clear();
    relay
        .update(
            &call(1),
            Side::B,
            SdpKind::Answer,
            &sdp(PEER_B, pb),
            &mut out,
        )
        .unwrap();
    let relay_a = m_port(&out); // where A's peer sends

    // 1. The first datagram goes through userspace and latches A.
    let ssrc = 0x5eed;
    a.send_to(&rtp(100, 0, ssrc), (RELAY, relay_a)).unwrap();
    let (_, from, tos) = recv_tos(&b).expect("latching packet relayed");
    assert_eq!(from, SocketAddr::new(RELAY, relay_b));
    assert_eq!(tos, Some(0xb8));
    assert!(
        wait_until(Duration::from_secs(2), || relay.calls()[0].streams[0]
            .a
            .in_kernel),
        "leg A moved into the kernel after latching"
    );
    let before = relay.calls()[0].streams[0].a.clone();
    assert_eq!((before.rx_packets, before.kernel_packets), (1, 0));

    // 2. 500 more, 20 ms of RTP time apart, sent at about that pace in bursts; seq 300 is
    //    never sent (one lost).
    let mut sent = 0u64;
    for seq in 101..=601u16 {
        if seq == 300 {
            continue;
        }
        a.send_to(
            &rtp(seq, u32::from(seq - 100) * 160, ssrc),
            (RELAY, relay_a),
        )
        .unwrap();
        sent += 1;
        if seq % 25 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let mut got = 0u64;
    while let Some((pkt, from, tos)) = recv_tos(&b) {
        assert_eq!(
            from,
            SocketAddr::new(RELAY, relay_b),
            "source rewritten to the other leg"
        );
        assert_eq!(tos, Some(0xb8), "DSCP EF set by the kernel path");
        assert_eq!(pkt.len(), 172);
        assert_eq!(&pkt[..2], &[0x80, 8]);
        got += 1;
        if got == sent {
            break;
        }
    }
    assert_eq!(
        got,
        sent,
        "every packet forwarded: {:?} {:?}",
        relay.metrics().kernel_outcomes(),
        relay.calls()[0].streams[0].a
    );

    // 3. The kernel forwarded them all: the socket saw none (the leg's figures are folded
    //    in by the relay thread; a delete folds at once, /calls within a tick).
    assert!(
        wait_until(Duration::from_secs(3), || relay.calls()[0].streams[0]
            .a
            .kernel_packets
            == sent),
        "kernel counters folded in: {:?}",
        relay.calls()[0].streams[0].a
    );
    let leg = relay.calls()[0].streams[0].a.clone();
    assert_eq!(
        leg.rx_packets - leg.kernel_packets,
        1,
        "userspace got only the latching packet"
    );
    assert_eq!(leg.rx_packets, 1 + sent);
    assert_eq!(leg.rx_bytes, (1 + sent) * 172);
    assert_eq!(leg.lost, 1, "seq 300 missing");
    assert!(leg.jitter_ms < 20.0, "jitter {} ms", leg.jitter_ms);
    let b_leg = relay.calls()[0].streams[0].b.clone();
    assert_eq!(b_leg.tx_packets, 1 + sent, "sent toward B, kernel included");
    let outcomes = relay.metrics().kernel_outcomes().unwrap();
    assert!(outcomes.iter().any(|&(o, n)| o == "forwarded" && n >= sent));

    // 4. A new SSRC is the relay's to judge: it goes through userspace (and is relayed), the
    //    leg leaves the kernel for a while.
    a.send_to(&rtp(7, 0, ssrc + 1), (RELAY, relay_a)).unwrap();
    let (pkt, _, _) = recv_tos(&b).expect("new SSRC relayed by userspace");
    assert_eq!(&pkt[8..12], &(ssrc + 1).to_be_bytes());
    assert!(wait_until(Duration::from_secs(2), || {
        let l = relay.calls()[0].streams[0].a.clone();
        l.rx_packets - l.kernel_packets == 2
    }));

    // 5. After the back-off the next datagram re-installs the entry for the new SSRC; the
    //    call record taken right after 50 kernel-forwarded packets has every one of them
    //    (the delete folds the kernel's counters in first); then nothing forwards any more.
    std::thread::sleep(Duration::from_millis(1100));
    a.send_to(&rtp(8, 160, ssrc + 1), (RELAY, relay_a)).unwrap();
    assert!(recv_tos(&b).is_some());
    assert!(
        wait_until(Duration::from_secs(2), || relay.calls()[0].streams[0]
            .a
            .in_kernel),
        "re-installed for the new SSRC: {:?} {:?}",
        relay.calls()[0].streams[0].a,
        relay.metrics().kernel_outcomes()
    );
    let kernel_before = relay.calls()[0].streams[0].a.kernel_packets;
    for seq in 9..59u16 {
        a.send_to(&rtp(seq, u32::from(seq) * 160, ssrc + 1), (RELAY, relay_a))
            .unwrap();
    }
    for _ in 9..59 {
        assert!(
            recv_tos(&b).is_some(),
            "kernel-forwarded packet of the new SSRC"
        );
    }
    let summary = relay.delete_with_summary(1).unwrap();
    let a_sum = &summary[0].legs[0];
    assert_eq!(a_sum.rx_packets, 3 + sent + 50, "{summary:?}");
    assert_eq!(a_sum.lost, 1, "{summary:?}");
    assert_eq!(kernel_before, sent);
    std::thread::sleep(Duration::from_millis(50));
    a.send_to(&rtp(59, 0, ssrc + 1), (RELAY, relay_a)).unwrap();
    assert!(
        recv_tos(&b).is_none(),
        "no stale entry forwarding after delete"
    );
}

/// UDP sockets of this host bound to `ip` (from /proc/net/udp: "local_address" is the
/// address as a little-endian hex word, then the port).
fn udp_sockets_on(ip: Ipv4Addr) -> usize {
    let want = format!("{:08X}:", u32::from_le_bytes(ip.octets()));
    std::fs::read_to_string("/proc/net/udp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.starts_with(&want))
        })
        .count()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// sk_lookup: anchored legs hold no socket of their own — 100 anchored calls add no UDP
/// socket on the media address (the relay threads' one socket each is all there is) — and
/// media still flows both ways, RTP and RTCP, from the anchored ports: the first datagrams
/// through the steered socket and the raw sender, the rest in the kernel.
/// Addresses 127.0.171.x, ports 31100–31499.
#[test]
fn anchored_calls_hold_no_socket_of_their_own() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let relay_ip = Ipv4Addr::new(127, 0, 171, 1);
    let (peer_a, peer_b) = (
        IpAddr::V4(Ipv4Addr::new(127, 0, 171, 2)),
        IpAddr::V4(Ipv4Addr::new(127, 0, 171, 3)),
    );
    let mut cfg = config();
    cfg.bind = IpAddr::V4(relay_ip);
    cfg.advertised = IpAddr::V4(relay_ip);
    cfg.port_min = 31100;
    cfg.port_max = 31499;
    cfg.threads = 2;
    let relay = Relay::start(cfg, vec!["carrier-a".into()], Box::new(|_| {}))
        .expect("kernel fast path (root, Linux >= 6.6, clang-built BPF object)");
    assert_eq!(relay.fastpath(), FastPathMode::Kernel);
    let base_sockets = udp_sockets_on(relay_ip);
    assert!(
        base_sockets <= 2,
        "one socket per relay thread: {base_sockets}"
    );
    let base_fds = open_fds();

    // Peer sockets: RTP on an even port, RTCP on the next.
    let pair = |ip: IpAddr, p: u16| {
        let rtp = UdpSocket::bind((ip, p)).unwrap();
        let rtcp = UdpSocket::bind((ip, p + 1)).unwrap();
        for s in [&rtp, &rtcp] {
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
        }
        (rtp, rtcp)
    };
    let (a_rtp, a_rtcp) = pair(peer_a, 32010);
    let (b_rtp, b_rtcp) = pair(peer_b, 32020);
    let mut ports = Vec::new();
    for id in 1..=100u64 {
        let mut out = Vec::new();
        relay
            .update(
                &call(id),
                Side::A,
                SdpKind::Offer,
                &sdp(peer_a, 32010),
                &mut out,
            )
            .unwrap();
        let toward_b = m_port(&out);
        out.clear();
        relay
            .update(
                &call(id),
                Side::B,
                SdpKind::Answer,
                &sdp(peer_b, 32020),
                &mut out,
            )
            .unwrap();
        ports.push((m_port(&out), toward_b));
    }
    assert_eq!(
        udp_sockets_on(relay_ip),
        base_sockets,
        "100 anchored calls, no socket bound on the media address"
    );
    let fds = open_fds();
    assert!(
        fds <= base_fds + 4,
        "descriptors independent of the number of calls: {base_fds} before, {fds} after 100 calls"
    );

    // Media of call 50 both ways.
    let (relay_a, relay_b) = ports[49];
    let relay_at = |p: u16| SocketAddr::new(IpAddr::V4(relay_ip), p);
    for seq in 0..20u16 {
        a_rtp
            .send_to(&rtp(seq, u32::from(seq) * 160, 0xa), relay_at(relay_a))
            .unwrap();
        let (pkt, from, _) = recv_tos(&b_rtp).expect("A→B RTP relayed");
        assert_eq!(from, relay_at(relay_b), "sent from B's anchored port");
        assert_eq!(&pkt[8..12], &0xau32.to_be_bytes());
        b_rtp
            .send_to(&rtp(seq, u32::from(seq) * 160, 0xb), relay_at(relay_b))
            .unwrap();
        let (pkt, from, _) = recv_tos(&a_rtp).expect("B→A RTP relayed");
        assert_eq!(from, relay_at(relay_a), "sent from A's anchored port");
        assert_eq!(&pkt[8..12], &0xbu32.to_be_bytes());
    }
    // RTCP (a receiver report) from A's RTCP port to the relay's, out of B's RTCP port.
    let rr = [
        0x81u8, 201, 0, 7, 0, 0, 0, 0xa, 0, 0, 0, 0xb, 0, 0, 0, 0, 0, 0, 0, 19, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0,
    ];
    a_rtcp.send_to(&rr, relay_at(relay_a + 1)).unwrap();
    let mut buf = [0u8; 256];
    let (n, from) = b_rtcp.recv_from(&mut buf).expect("RTCP relayed");
    assert_eq!(&buf[..n], &rr);
    assert_eq!(from, relay_at(relay_b + 1));
    let calls = relay.calls();
    let c = calls
        .iter()
        .find(|c| c.call_id == "kernel@test" && c.streams[0].a.rx_packets > 0);
    let leg = &c.expect("call 50 in /calls").streams[0].a;
    assert_eq!(leg.rx_packets, 21, "20 RTP and the RTCP report");
    let outcomes = relay.metrics().kernel_outcomes().unwrap();
    let steered = outcomes.iter().find(|(o, _)| *o == "steered").map(|x| x.1);
    assert!(steered.is_some_and(|n| n >= 3), "{outcomes:?}");
    for id in 1..=100u64 {
        relay.delete(id);
    }
    assert_eq!(udp_sockets_on(relay_ip), base_sockets);
}
