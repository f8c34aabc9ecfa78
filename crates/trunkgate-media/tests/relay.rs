//! Relay integration tests on real loopback UDP sockets. Each test uses its own port range.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{ErrorKind, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trunkgate_media::{CallInfo, Event, Latch, MediaConfig, MediaError, Relay, SdpKind, Side};

const ADV: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn config(first: u16, last: u16, latch: Latch) -> MediaConfig {
    MediaConfig {
        bind: LO,
        advertised: ADV,
        alternate: None,
        port_min: first,
        port_max: last,
        dscp: 46,
        latch,
        timeout: Duration::from_secs(60),
        hold_timeout: Duration::from_secs(3600),
        threads: 2,
        quarantine: Duration::from_secs(30),
        nice: 0,
        max_sockets: usize::MAX,
        quality: trunkgate_media::QualityConfig::default(),
        fastpath: trunkgate_media::fastpath::FastPath::from_test_env(),
    }
}

type Log = Arc<Mutex<Vec<(Instant, Event)>>>;

fn start(cfg: MediaConfig) -> (Relay, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    let relay = Relay::start(
        cfg,
        vec!["carrier-a".into()],
        Box::new(move |e| l.lock().unwrap().push((Instant::now(), e))),
    )
    .unwrap();
    (relay, log)
}

fn call(id: u64) -> CallInfo<'static> {
    CallInfo {
        id,
        call_id: b"abc@host",
        trunk: Some(0),
        inbound: false,
        peers: [None, None],
    }
}

fn sdp(ip: IpAddr, port: u16, extra: &str) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{extra}"
    )
    .into_bytes()
}

/// The first m= port of a rewritten body.
fn m_port(body: &[u8]) -> u16 {
    let s = std::str::from_utf8(body).unwrap();
    let line = s.lines().find(|l| l.starts_with("m=")).unwrap();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

fn peer(ip: IpAddr) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0u8; 172];
    p[0] = 0x80;
    p[1] = 0;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// An RTCP receiver report with one block (fraction 64/256, cumulative 7, jitter 80).
fn rtcp_rr() -> Vec<u8> {
    let mut p = vec![0u8; 32];
    p[0] = 0x81;
    p[1] = 201;
    p[2..4].copy_from_slice(&7u16.to_be_bytes());
    p[4..8].copy_from_slice(&0x1111u32.to_be_bytes());
    p[8..12].copy_from_slice(&0x2222u32.to_be_bytes());
    p[12] = 64;
    p[13..16].copy_from_slice(&[0, 0, 7]);
    p[20..24].copy_from_slice(&80u32.to_be_bytes());
    p
}

fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => Some((buf[..n].to_vec(), from)),
        Err(_) => None,
    }
}

fn lo(port: u16) -> SocketAddr {
    SocketAddr::new(LO, port)
}

/// Offer from A, answer from B; returns (port A's peer sends to, port B's peer sends to).
fn establish(relay: &Relay, id: u64, a: &[u8], b: &[u8]) -> (u16, u16) {
    let mut out = Vec::new();
    relay
        .update(&call(id), Side::A, SdpKind::Offer, a, &mut out)
        .unwrap();
    let to_b = m_port(&out);
    out.clear();
    relay
        .update(&call(id), Side::B, SdpKind::Answer, b, &mut out)
        .unwrap();
    (m_port(&out), to_b)
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

#[test]
fn relays_rtp_and_rtcp_both_ways() {
    let (relay, _) = start(config(30000, 30039, Latch::Any));
    let (a, a_rtcp, b, b_rtcp) = (peer(LO), peer(LO), peer(LO), peer(LO));
    let pa = a.local_addr().unwrap().port();
    let pb = b.local_addr().unwrap().port();
    let ra = a_rtcp.local_addr().unwrap().port();
    let rb = b_rtcp.local_addr().unwrap().port();
    let (to_a, to_b) = establish(
        &relay,
        1,
        &sdp(LO, pa, &format!("a=rtcp:{ra}\r\n")),
        &sdp(LO, pb, &format!("a=rtcp:{rb}\r\n")),
    );
    for i in 0..5u16 {
        a.send_to(&rtp(i, u32::from(i) * 160, 1), lo(to_a)).unwrap();
        let (got, from) = recv(&b).expect("A→B RTP");
        assert_eq!(got, rtp(i, u32::from(i) * 160, 1), "payload untouched");
        assert_eq!(from.port(), to_b, "sent from B leg's RTP socket");
    }
    for i in 0..3u16 {
        b.send_to(&rtp(i, 0, 2), lo(to_b)).unwrap();
        let (_, from) = recv(&a).expect("B→A RTP");
        assert_eq!(from.port(), to_a);
    }
    a_rtcp.send_to(&rtcp_rr(), lo(to_a + 1)).unwrap();
    let (got, from) = recv(&b_rtcp).expect("A→B RTCP");
    assert_eq!(got, rtcp_rr());
    assert_eq!(from.port(), to_b + 1);
    b_rtcp.send_to(&rtcp_rr(), lo(to_b + 1)).unwrap();
    assert_eq!(recv(&a_rtcp).expect("B→A RTCP").1.port(), to_a + 1);

    // The relay counts tx after send_to returns: let it catch up with what we received.
    assert!(wait_until(Duration::from_secs(1), || {
        let st = &relay.calls()[0].streams[0];
        st.a.tx_packets == 4 && st.b.tx_packets == 6
    }));
    let calls = relay.calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.trunk.as_deref(), Some("carrier-a"));
    assert_eq!(c.direction, "outbound");
    let st = &c.streams[0];
    assert_eq!(st.media, "audio");
    assert_eq!(st.a.local, SocketAddr::new(ADV, to_a));
    assert_eq!(st.a.local_rtcp, SocketAddr::new(ADV, to_a + 1));
    assert_eq!(st.a.sdp_peer, Some(lo(pa)));
    assert_eq!(st.a.latched_peer, Some(lo(pa)));
    assert_eq!(
        (st.a.rx_packets, st.a.rtcp_rx_packets, st.a.tx_packets),
        (6, 1, 4)
    );
    assert_eq!(
        (st.b.rx_packets, st.b.rtcp_rx_packets, st.b.tx_packets),
        (4, 1, 6)
    );
    assert_eq!(st.a.rx_bytes, 5 * 172 + 32);
    let r = st.b.rtcp.as_ref().expect("RTCP report from B");
    assert_eq!(r.cumulative_lost, 7);
    assert!((r.fraction_lost - 0.25).abs() < 1e-9);
    assert!(
        (r.jitter_ms - 10.0).abs() < 1e-9,
        "80 ticks at 8 kHz = 10 ms"
    );

    let json = serde_json::to_value(&calls).unwrap();
    let leg = &json[0]["streams"][0]["a"];
    for k in [
        "local",
        "local_rtcp",
        "sdp_peer",
        "latched_peer",
        "rx_packets",
        "rx_bytes",
        "lost",
        "jitter_ms",
        "rtcp_rx_packets",
        "tx_packets",
        "tx_bytes",
        "dropped",
        "rtcp",
    ] {
        assert!(leg.get(k).is_some(), "missing {k}");
    }
    for k in [
        "id",
        "call_id",
        "trunk",
        "direction",
        "age_secs",
        "idle_secs",
        "on_hold",
        "streams",
    ] {
        assert!(json[0].get(k).is_some(), "missing {k}");
    }
    assert_eq!(json[0]["streams"][0]["index"], 0);
    assert_eq!(leg["local"], format!("192.0.2.1:{to_a}"));

    // Metrics: live figures are visible before delete, and survive it.
    let m = relay.metrics().snapshot();
    assert_eq!(m.trunks[1].packets, [6, 4]);
    relay.delete(1);
    let m = relay.metrics().snapshot();
    assert_eq!(m.trunks[1].trunk.as_deref(), Some("carrier-a"));
    assert_eq!(m.trunks[1].packets, [6, 4]);
    assert_eq!(m.trunks[1].bytes[0], 5 * 172 + 32);
    assert_eq!(m.trunks[1].jitter.count, 2, "one observation per direction");
    assert_eq!(m.trunks[1].loss_ratio.count, 2);
    assert_eq!((m.sessions, m.streams, m.port_pairs_in_use), (0, 0, 0));
}

#[test]
fn rtcp_mux_relayed_on_rtp_port() {
    let (relay, _) = start(config(30040, 30079, Latch::Any));
    let (a, b) = (peer(LO), peer(LO));
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let (to_a, _) = establish(
        &relay,
        2,
        &sdp(LO, pa, "a=rtcp-mux\r\n"),
        &sdp(LO, pb, "a=rtcp-mux\r\n"),
    );
    a.send_to(&rtp(1, 160, 1), lo(to_a)).unwrap();
    assert!(recv(&b).is_some());
    a.send_to(&rtcp_rr(), lo(to_a)).unwrap();
    assert_eq!(recv(&b).expect("muxed RTCP").0, rtcp_rr());
    let st = &relay.calls()[0].streams[0];
    assert_eq!((st.a.rx_packets, st.a.rtcp_rx_packets), (2, 1));
    assert!(st.a.rtcp.is_some());
}

#[test]
fn sdp_rewrite_reinvite_and_disabled_stream() {
    let (relay, _) = start(config(30080, 30119, Latch::Any));
    let (a, b, b2) = (peer(LO), peer(LO), peer(LO));
    let (pa, pb, pb2) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
        b2.local_addr().unwrap().port(),
    );
    let video_off = "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
    let offer = sdp(LO, pa, video_off);
    let mut out = Vec::new();
    relay
        .update(&call(3), Side::A, SdpKind::Offer, &offer, &mut out)
        .unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.contains("c=IN IP4 192.0.2.1\r\n"), "{text}");
    assert!(text.contains("o=- 1 1 IN IP4 192.0.2.1\r\n"), "{text}");
    assert!(
        text.contains("m=video 0 RTP/AVP 96\r\n"),
        "disabled stream untouched: {text}"
    );
    assert!(text.contains("a=rtpmap:0 PCMU/8000\r\n"));
    let to_b = m_port(&out);
    out.clear();
    relay
        .update(
            &call(3),
            Side::B,
            SdpKind::Answer,
            &sdp(LO, pb, video_off),
            &mut out,
        )
        .unwrap();
    let to_a = m_port(&out);
    assert_ne!(to_a, to_b);
    let c = &relay.calls()[0];
    assert_eq!(c.streams.len(), 1, "no sockets for the port-0 stream");
    assert_eq!(
        c.streams[0].b.local.port(),
        to_b,
        "offer names B leg's port"
    );
    assert_eq!(
        c.streams[0].a.local.port(),
        to_a,
        "answer names A leg's port"
    );

    a.send_to(&rtp(1, 0, 1), lo(to_a)).unwrap();
    assert!(recv(&b).is_some());
    // re-INVITE from B with a new port: traffic follows, and the ports stay the same.
    out.clear();
    relay
        .update(
            &call(3),
            Side::B,
            SdpKind::Offer,
            &sdp(LO, pb2, video_off),
            &mut out,
        )
        .unwrap();
    assert_eq!(m_port(&out), to_a, "same anchor port on re-INVITE");
    // The relay thread applies the update as a command queued behind its socket reads, so
    // a packet sent in the same microsecond may still reach the old port (as one in flight
    // on the wire would): traffic must follow within a few packets, and then only there.
    b2.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seq = 2u16;
    loop {
        a.send_to(&rtp(seq, 160 * u32::from(seq), 1), lo(to_a))
            .unwrap();
        if recv(&b2).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "redirected to B's new port");
        seq += 1;
    }
    b.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while recv(&b).is_some() {}
    b2.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    a.send_to(&rtp(seq + 1, 160 * u32::from(seq + 1), 1), lo(to_a))
        .unwrap();
    assert!(recv(&b2).is_some(), "redirected to B's new port");
    assert!(recv(&b).is_none());
    // B's replies from its new port are accepted (the latch was reset).
    b2.send_to(&rtp(1, 0, 9), lo(to_b)).unwrap();
    assert!(recv(&a).is_some());
}

#[test]
fn latch_any_learns_real_source() {
    let (relay, _) = start(config(30120, 30159, Latch::Any));
    let (a_sdp, a_real, b) = (peer(LO), peer(LO), peer(LO));
    let pa = a_sdp.local_addr().unwrap().port();
    let pb = b.local_addr().unwrap().port();
    let (to_a, to_b) = establish(&relay, 4, &sdp(LO, pa, ""), &sdp(LO, pb, ""));
    a_real.send_to(&rtp(1, 0, 1), lo(to_a)).unwrap();
    assert!(recv(&b).is_some());
    b.send_to(&rtp(1, 0, 2), lo(to_b)).unwrap();
    assert!(
        recv(&a_real).is_some(),
        "reply goes to the latched (NAT) address"
    );
    let st = &relay.calls()[0].streams[0];
    assert_eq!(st.a.latched_peer, Some(a_real.local_addr().unwrap()));
    assert_eq!(st.a.sdp_peer, Some(lo(pa)));
    // After latching, another source is dropped and counted.
    let spoof = peer(LO);
    spoof.send_to(&rtp(2, 160, 1), lo(to_a)).unwrap();
    b.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(recv(&b).is_none());
    assert!(wait_until(Duration::from_secs(1), || relay.calls()[0]
        .streams[0]
        .a
        .dropped
        == 1));
    assert_eq!(relay.metrics().snapshot().trunks[1].dropped, 1);
}

#[test]
fn latch_sdp_ip_drops_other_ips() {
    let (relay, _) = start(config(30160, 30199, Latch::SdpIp));
    let ip2: IpAddr = "127.0.0.2".parse().unwrap();
    let ip3: IpAddr = "127.0.0.3".parse().unwrap();
    let (a, other, b) = (peer(ip2), peer(ip3), peer(LO));
    let pa = a.local_addr().unwrap().port();
    let pb = b.local_addr().unwrap().port();
    let (to_a, _) = establish(&relay, 5, &sdp(ip2, pa, ""), &sdp(LO, pb, ""));
    other.send_to(&rtp(1, 0, 1), lo(to_a)).unwrap();
    b.set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    assert!(recv(&b).is_none(), "not the SDP IP");
    // Right IP, other port than the SDP's: accepted and latched.
    let a2 = peer(ip2);
    a2.send_to(&rtp(2, 160, 1), lo(to_a)).unwrap();
    assert!(recv(&b).is_some());
    let st = &relay.calls()[0].streams[0];
    assert_eq!(st.a.dropped, 1);
    assert_eq!(st.a.latched_peer, Some(a2.local_addr().unwrap()));
}

#[test]
fn no_peer_yet_is_dropped() {
    let (relay, _) = start(config(30200, 30239, Latch::Any));
    let a = peer(LO);
    let mut out = Vec::new();
    relay
        .update(
            &call(6),
            Side::A,
            SdpKind::Offer,
            &sdp(LO, a.local_addr().unwrap().port(), ""),
            &mut out,
        )
        .unwrap();
    let to_b = m_port(&out);
    // B's peer (whose SDP we have not seen) sends early: A is known, so it is relayed…
    let b = peer(LO);
    b.send_to(&rtp(1, 0, 1), lo(to_b)).unwrap();
    assert!(recv(&a).is_some());
    // …but nothing can go to B yet.
    let a_leg = relay.calls()[0].streams[0].a.local.port();
    a.send_to(&rtp(1, 0, 2), lo(a_leg)).unwrap();
    assert!(wait_until(Duration::from_secs(1), || relay.calls()[0]
        .streams[0]
        .a
        .dropped
        == 1));
}

#[test]
fn dscp_ef_on_relayed_rtp() {
    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, setsockopt, sockopt,
    };
    let (relay, _) = start(config(30240, 30279, Latch::Any));
    let (a, b) = (peer(LO), peer(LO));
    setsockopt(&b, sockopt::IpRecvTos, &true).unwrap();
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let (to_a, _) = establish(&relay, 7, &sdp(LO, pa, ""), &sdp(LO, pb, ""));
    a.send_to(&rtp(1, 0, 1), lo(to_a)).unwrap();
    let mut buf = [0u8; 2048];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(u8);
    let msg =
        recvmsg::<SockaddrIn>(b.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()).unwrap();
    let tos: Vec<u8> = msg
        .cmsgs()
        .unwrap()
        .filter_map(|c| match c {
            ControlMessageOwned::Ipv4Tos(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(tos, vec![0xb8], "DSCP EF (46 << 2)");
}

#[test]
fn loss_from_sequence_gaps() {
    let (relay, _) = start(config(30280, 30319, Latch::Any));
    let (a, b) = (peer(LO), peer(LO));
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let (to_a, _) = establish(&relay, 8, &sdp(LO, pa, ""), &sdp(LO, pb, ""));
    let mut sent = 0;
    for seq in 0..2000u16 {
        if seq % 20 == 19 {
            continue;
        }
        a.send_to(&rtp(seq, u32::from(seq) * 160, 7), lo(to_a))
            .unwrap();
        sent += 1;
        if sent % 50 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert!(wait_until(Duration::from_secs(3), || relay.calls()[0]
        .streams[0]
        .a
        .rx_packets
        == 1900));
    let st = &relay.calls()[0].streams[0];
    let ratio = st.a.lost as f64 / 2000.0;
    assert!(
        (0.049..=0.051).contains(&ratio),
        "lost {} of 2000",
        st.a.lost
    );
    relay.delete(8);
    let m = relay.metrics().snapshot();
    // The last skipped number (1999) is past the highest received one: 99 gaps counted.
    assert_eq!(m.trunks[1].lost[0], 99);
    // loss 5 % falls in the 0.05 bucket, not the 0.02 one
    let le = |v: f64| {
        m.trunks[1]
            .loss_ratio
            .buckets
            .iter()
            .find(|b| b.0 == v)
            .unwrap()
            .1
    };
    assert_eq!((le(0.02), le(0.05)), (0, 1));
}

#[test]
fn jitter_paced_vs_delayed() {
    let (relay, _) = start(config(30320, 30359, Latch::Any));
    let (a, b) = (peer(LO), peer(LO));
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let (to_a, to_b) = establish(&relay, 9, &sdp(LO, pa, ""), &sdp(LO, pb, ""));
    // RFC 3550 §6.4.1 over the instants the test really sent at (8 kHz clock): what the
    // relay must find, give or take its own scheduling on a busy machine.
    let expected = |sent: &[Instant]| {
        let mut j = 0.0f64;
        for w in sent.windows(2) {
            let transit = w[1].duration_since(w[0]).as_secs_f64() * 1000.0 - 20.0;
            j += (transit.abs() - j) / 16.0;
        }
        j
    };
    let t0 = Instant::now();
    let mut sent_a = Vec::with_capacity(50);
    let mut rng_state = 0x1234_5678u32;
    for i in 0..50u32 {
        // A: paced every 20 ms. B: same timestamps, sent 0–30 ms late at random.
        let due = t0 + Duration::from_millis(u64::from(i) * 20);
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        a.send_to(&rtp(i as u16, i * 160, 1), lo(to_a)).unwrap();
        sent_a.push(Instant::now());
    }
    let t1 = Instant::now();
    let mut sent_b = Vec::with_capacity(50);
    for i in 0..50u32 {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 17;
        rng_state ^= rng_state << 5;
        let due = t1 + Duration::from_millis(u64::from(i) * 20 + u64::from(rng_state % 30));
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        b.send_to(&rtp(i as u16, i * 160, 2), lo(to_b)).unwrap();
        sent_b.push(Instant::now());
    }
    assert!(wait_until(Duration::from_secs(1), || relay.calls()[0]
        .streams[0]
        .b
        .rx_packets
        == 50));
    let st = &relay.calls()[0].streams[0];
    let (want_a, want_b) = (expected(&sent_a), expected(&sent_b));
    // The relay stamps arrivals on its own thread: on a loaded 2-core machine that adds
    // a few ms of its own scheduling, never the tens of ms B's delays add.
    let slack = 4.0;
    assert!(
        (st.a.jitter_ms - want_a).abs() < slack,
        "paced: relay {} ms, sender-side {want_a:.2} ms",
        st.a.jitter_ms
    );
    assert!(
        (st.b.jitter_ms - want_b).abs() < slack,
        "delayed: relay {} ms, sender-side {want_b:.2} ms",
        st.b.jitter_ms
    );
    assert!(
        want_b > want_a + 5.0,
        "the test's own delays: {want_a:.2} vs {want_b:.2} ms"
    );
    assert!(
        st.b.jitter_ms > st.a.jitter_ms,
        "{} vs {}",
        st.b.jitter_ms,
        st.a.jitter_ms
    );
}

#[test]
fn timeout_and_delete_release_everything() {
    let mut cfg = config(30360, 30399, Latch::Any);
    cfg.timeout = Duration::from_secs(1);
    let (relay, log) = start(cfg);
    let (a, b) = (peer(LO), peer(LO));
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let (to_a, to_b) = establish(&relay, 10, &sdp(LO, pa, ""), &sdp(LO, pb, ""));
    // 2.5 s of traffic: no timeout.
    let t0 = Instant::now();
    let mut seq = 0u16;
    while t0.elapsed() < Duration::from_millis(2500) {
        a.send_to(&rtp(seq, u32::from(seq) * 160, 1), lo(to_a))
            .unwrap();
        seq += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        log.lock().unwrap().is_empty(),
        "no timeout while traffic flows"
    );
    let stopped = Instant::now();
    assert!(wait_until(Duration::from_secs(3), || !log
        .lock()
        .unwrap()
        .is_empty()));
    let (at, ev) = log.lock().unwrap()[0].clone();
    let Event::Timeout {
        call,
        idle,
        on_hold,
    } = ev;
    assert_eq!((call, on_hold), (10, false));
    assert!(idle >= Duration::from_secs(1));
    assert!(
        at.duration_since(stopped) < Duration::from_millis(2000),
        "{:?}",
        at.duration_since(stopped)
    );
    assert_eq!(relay.metrics().snapshot().trunks[1].timeouts, 1);
    // Reported again after another period, counted once.
    assert!(wait_until(Duration::from_secs(3), || log
        .lock()
        .unwrap()
        .len()
        >= 2));
    assert_eq!(relay.metrics().snapshot().trunks[1].timeouts, 1);

    let m = relay.metrics().snapshot();
    assert_eq!((m.sessions, m.streams, m.port_pairs_in_use), (1, 1, 2));
    relay.delete(10);
    relay.delete(10); // unknown id: no-op
    let m = relay.metrics().snapshot();
    assert_eq!((m.sessions, m.streams, m.port_pairs_in_use), (0, 0, 0));
    // Only the leg that received media is quarantined; the silent side's pair is free at
    // once (nothing late can follow a pair that never saw a datagram).
    assert_eq!(m.port_pairs_quarantined, 1);
    assert_eq!(m.port_pairs_capacity, 20);
    assert!(relay.calls().is_empty());
    // The sockets are closed: a connected sender gets ECONNREFUSED (ICMP port unreachable).
    for port in [to_a, to_a + 1, to_b, to_b + 1] {
        let probe = UdpSocket::bind((LO, 0)).unwrap();
        probe.connect(lo(port)).unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let closed = wait_until(Duration::from_secs(1), || {
            let _ = probe.send(b"x");
            let mut buf = [0u8; 8];
            matches!(probe.recv(&mut buf), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
        });
        assert!(closed, "port {port} still open");
    }
}

#[test]
fn hold_uses_hold_timeout() {
    let mut cfg = config(30400, 30439, Latch::Any);
    cfg.timeout = Duration::from_millis(300);
    cfg.hold_timeout = Duration::from_secs(30);
    let (relay, log) = start(cfg);
    let hold = sdp(LO, 4000, "a=sendonly\r\n");
    establish(&relay, 11, &hold, &sdp(LO, 4002, "a=recvonly\r\n"));
    std::thread::sleep(Duration::from_millis(900));
    assert!(
        log.lock().unwrap().is_empty(),
        "on hold: the long timeout applies"
    );
    assert!(relay.calls()[0].on_hold);
    let mut out = Vec::new();
    relay
        .update(
            &call(11),
            Side::A,
            SdpKind::Offer,
            &sdp(LO, 4000, ""),
            &mut out,
        )
        .unwrap();
    relay
        .update(
            &call(11),
            Side::B,
            SdpKind::Answer,
            &sdp(LO, 4002, ""),
            &mut out,
        )
        .unwrap();
    assert!(!relay.calls()[0].on_hold);
    assert!(wait_until(Duration::from_secs(2), || !log
        .lock()
        .unwrap()
        .is_empty()));
}

#[test]
fn ports_exhausted_and_bad_sdp() {
    // 4 ports = 2 pairs = one stream (two legs).
    let (relay, _) = start(config(30440, 30443, Latch::Any));
    let mut out = Vec::new();
    relay
        .update(
            &call(12),
            Side::A,
            SdpKind::Offer,
            &sdp(LO, 4000, ""),
            &mut out,
        )
        .unwrap();
    out.clear();
    let err = relay
        .update(
            &call(13),
            Side::A,
            SdpKind::Offer,
            &sdp(LO, 4000, ""),
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(err, MediaError::PortsExhausted), "{err}");
    assert!(out.is_empty());
    assert_eq!(
        relay.calls().len(),
        1,
        "the failed call left nothing behind"
    );
    let m = relay.metrics().snapshot();
    assert_eq!(m.port_pairs_in_use, 2);
    let err = relay
        .update(
            &call(14),
            Side::A,
            SdpKind::Offer,
            b"\x00garbage\xff",
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(err, MediaError::BadSdp(_)), "{err}");
    assert_eq!(relay.calls().len(), 1);
}

#[test]
fn descriptor_budget_refuses_new_streams_and_frees_on_delete() {
    // 8 sockets = two audio calls; the range itself would hold five.
    let mut cfg = config(30460, 30479, Latch::Any);
    cfg.max_sockets = 8;
    let (relay, _) = start(cfg);
    let mut out = Vec::new();
    for id in [20, 21] {
        relay
            .update(
                &call(id),
                Side::A,
                SdpKind::Offer,
                &sdp(LO, 4000, ""),
                &mut out,
            )
            .unwrap();
        out.clear();
    }
    if relay.steered() {
        // Kernel fast path with sk_lookup: legs hold no socket, no budget to run out of.
        assert_eq!(relay.sockets_in_use(), 0);
        relay
            .update(
                &call(22),
                Side::A,
                SdpKind::Offer,
                &sdp(LO, 4000, ""),
                &mut out,
            )
            .unwrap();
        return;
    }
    assert_eq!(relay.sockets_in_use(), 8);
    let err = relay
        .update(
            &call(22),
            Side::A,
            SdpKind::Offer,
            &sdp(LO, 4000, ""),
            &mut out,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            MediaError::BudgetExhausted {
                in_use: 8,
                limit: 8
            }
        ),
        "{err}"
    );
    assert!(out.is_empty());
    // An answer for a call that already has its sockets needs none.
    relay
        .update(
            &call(21),
            Side::B,
            SdpKind::Answer,
            &sdp(LO, 4002, ""),
            &mut out,
        )
        .unwrap();
    relay.delete(20);
    assert_eq!(relay.sockets_in_use(), 4);
    relay
        .update(
            &call(22),
            Side::A,
            SdpKind::Offer,
            &sdp(LO, 4000, ""),
            &mut out,
        )
        .unwrap();
}

#[test]
fn fd_limit_raised() {
    let (soft, hard) = trunkgate_media::raise_fd_limit().unwrap();
    assert_eq!(soft, hard);
}
