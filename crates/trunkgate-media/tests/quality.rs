//! Call quality through a real `Relay` on loopback UDP: the one-way flag with its direction,
//! the live MOS and the per-trunk figures, and a round trip from RTCP sender/receiver
//! reports. Port range 31000–31099 (tests/relay.rs keeps below 30400).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use trunkgate_media::{
    CallInfo, Latch, MediaConfig, QualityConfig, Relay, SdpKind, Side, TrunkMedia,
};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn start(first: u16, last: u16) -> Relay {
    start_with(first, last, &["carrier-a"])
}

fn start_with(first: u16, last: u16, trunks: &[&str]) -> Relay {
    let cfg = MediaConfig {
        bind: LO,
        advertised: LO,
        alternate: None,
        port_min: first,
        port_max: last,
        dscp: 46,
        latch: Latch::Any,
        timeout: Duration::from_secs(60),
        hold_timeout: Duration::from_secs(3600),
        threads: 1,
        quarantine: Duration::from_secs(30),
        nice: 0,
        max_sockets: usize::MAX,
        quality: QualityConfig {
            one_way_after: Duration::from_secs(1),
            interval: Duration::from_secs(1),
            assumed_delay: Duration::from_millis(40),
        },
        fastpath: trunkgate_media::fastpath::FastPath::from_test_env(),
    };
    let names = trunks.iter().map(|t| (*t).to_owned()).collect();
    Relay::start(cfg, names, Box::new(|_| {})).unwrap()
}

fn call(id: u64) -> CallInfo<'static> {
    CallInfo {
        id,
        call_id: b"quality@test",
        trunk: Some(0),
        inbound: false,
        peers: [None, None],
    }
}

fn sdp(port: u16, extra: &str) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n{extra}"
    )
    .into_bytes()
}

fn m_port(body: &[u8]) -> u16 {
    let s = std::str::from_utf8(body).unwrap();
    let line = s.lines().find(|l| l.starts_with("m=")).unwrap();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

fn peer() -> UdpSocket {
    let s = UdpSocket::bind((LO, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// Offer from A, answer from B; (where A's peer sends, where B's peer sends).
fn establish(relay: &Relay, id: u64, a: &[u8], b: &[u8]) -> (SocketAddr, SocketAddr) {
    let mut out = Vec::new();
    relay
        .update(&call(id), Side::A, SdpKind::Offer, a, &mut out)
        .unwrap();
    let to_b = m_port(&out);
    out.clear();
    relay
        .update(&call(id), Side::B, SdpKind::Answer, b, &mut out)
        .unwrap();
    (SocketAddr::new(LO, m_port(&out)), SocketAddr::new(LO, to_b))
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0xd5u8; 172];
    p[0] = 0x80;
    p[1] = 8;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

fn trunk(relay: &Relay) -> TrunkMedia {
    relay.metrics().snapshot().trunks[1].clone()
}

#[test]
fn trunk_silent_after_answer_is_flagged_with_its_direction_and_scored() {
    let relay = start(31000, 31039);
    let (a, b) = (peer(), peer());
    let (to_a, to_b) = establish(
        &relay,
        1,
        &sdp(a.local_addr().unwrap().port(), ""),
        &sdp(b.local_addr().unwrap().port(), ""),
    );
    relay.answered(1);
    // 3 s of 50 pps from the PBX; the trunk sends only the first 0.6 s.
    let t0 = Instant::now();
    let mut b_stopped = None;
    let mut flagged = None;
    for i in 0..150u16 {
        let due = t0 + Duration::from_millis(u64::from(i) * 20);
        while Instant::now() < due {
            std::thread::sleep(Duration::from_millis(1));
        }
        a.send_to(&rtp(i, 0xa), to_a).unwrap();
        if i < 30 {
            b.send_to(&rtp(i, 0xb), to_b).unwrap();
        } else if b_stopped.is_none() {
            b_stopped = Some(Instant::now());
        }
        if i % 5 == 0 && flagged.is_none() {
            let calls = relay.calls();
            if let Some(one_way) = calls[0].quality.one_way.clone() {
                flagged = Some((Instant::now(), one_way));
            }
        }
    }
    let (at, one_way) = flagged.expect("flagged within the 3 s");
    let latency = at.duration_since(b_stopped.unwrap());
    assert_eq!(
        (one_way.reason, one_way.missing),
        ("one_way", "trunk_to_pbx")
    );
    assert!(
        latency >= Duration::from_millis(900) && latency <= Duration::from_millis(1600),
        "flagged {latency:?} after the trunk stopped (one_way_after 1 s, sweep 250 ms)"
    );
    let c = &relay.calls()[0];
    let mos_a = c.streams[0].a.mos.expect("live MOS of the PBX's audio");
    assert!((mos_a - 4.37).abs() < 0.02, "no loss, no jitter: {mos_a}");
    assert!(c.streams[0].a.rtt_ms.is_none(), "no RTCP was sent");
    let t = trunk(&relay);
    assert_eq!(t.one_way, [0, 1, 0]);
    assert_eq!(t.answered, 1);
    assert!(
        t.mos.count >= 2,
        "one estimate per direction per 1 s interval: {t:?}"
    );
    relay.delete(1);
}

#[test]
fn an_unanswered_call_is_not_flagged() {
    let relay = start(31040, 31059);
    let (a, b) = (peer(), peer());
    let (_, to_b) = establish(
        &relay,
        2,
        &sdp(a.local_addr().unwrap().port(), ""),
        &sdp(b.local_addr().unwrap().port(), ""),
    );
    // Early media: the trunk plays ringback for 2 s, the PBX sends nothing.
    let t0 = Instant::now();
    for i in 0..100u16 {
        let due = t0 + Duration::from_millis(u64::from(i) * 20);
        while Instant::now() < due {
            std::thread::sleep(Duration::from_millis(1));
        }
        b.send_to(&rtp(i, 0xb), to_b).unwrap();
    }
    assert!(relay.calls()[0].quality.one_way.is_none());
    assert_eq!(trunk(&relay).one_way, [0, 0, 0]);
}

/// An RTCP sender report: SSRC, NTP timestamp (seconds, fraction), no report blocks.
fn sender_report(ssrc: u32, ntp: [u8; 8]) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x80;
    p[1] = 200;
    p[2..4].copy_from_slice(&6u16.to_be_bytes());
    p[4..8].copy_from_slice(&ssrc.to_be_bytes());
    p[8..16].copy_from_slice(&ntp);
    p
}

/// An RTCP receiver report with one block on `ssrc` echoing `lsr` after `dlsr`.
fn receiver_report(ssrc: u32, lsr: u32, dlsr: u32) -> Vec<u8> {
    let mut p = vec![0u8; 32];
    p[0] = 0x81;
    p[1] = 201;
    p[2..4].copy_from_slice(&7u16.to_be_bytes());
    p[4..8].copy_from_slice(&0xbbu32.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p[24..28].copy_from_slice(&lsr.to_be_bytes());
    p[28..32].copy_from_slice(&dlsr.to_be_bytes());
    p
}

#[test]
fn rtcp_round_trip_of_the_answering_leg() {
    let relay = start(31060, 31079);
    let (a, b) = (peer(), peer());
    let mux = "a=rtcp-mux\r\n";
    let (to_a, to_b) = establish(
        &relay,
        3,
        &sdp(a.local_addr().unwrap().port(), mux),
        &sdp(b.local_addr().unwrap().port(), mux),
    );
    // A's SR reaches B through the relay; B answers at once but says it held the SR for
    // 0.2 s (13107/65536): the relay takes that off what it measured.
    let sr = sender_report(0xaa, [0, 0, 0x12, 0x34, 0x56, 0x78, 0, 0]);
    let sent = Instant::now();
    a.send_to(&sr, to_a).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = b.recv_from(&mut buf).expect("SR relayed to B");
    assert_eq!(&buf[..n], &sr[..]);
    std::thread::sleep(Duration::from_millis(200));
    b.send_to(&receiver_report(0xaa, 0x1234_5678, 13_107), to_b)
        .unwrap();
    let (n, _) = a.recv_from(&mut buf).expect("RR relayed to A");
    let elapsed = sent.elapsed();
    assert_eq!(n, 32);
    let deadline = Instant::now() + Duration::from_secs(2);
    let rtt = loop {
        if let Some(rtt) = relay.calls()[0].streams[0].b.rtt_ms {
            break rtt;
        }
        assert!(Instant::now() < deadline, "no round trip on leg b");
        std::thread::sleep(Duration::from_millis(10));
    };
    let measured_ms = elapsed.as_secs_f64() * 1000.0 - 200.0;
    assert!(
        rtt >= 0.0 && rtt < measured_ms + 5.0,
        "leg b round trip {rtt} ms, the test saw {measured_ms:.2} ms beyond the 0.2 s hold"
    );
    assert!(relay.calls()[0].streams[0].a.rtt_ms.is_none());
}

#[test]
fn a_call_moved_by_failover_is_charged_to_its_new_trunk() {
    let relay = start_with(31080, 31099, &["carrier-a", "carrier-b"]);
    let (a, b) = (peer(), peer());
    let (to_a, _) = establish(
        &relay,
        4,
        &sdp(a.local_addr().unwrap().port(), ""),
        &sdp(b.local_addr().unwrap().port(), ""),
    );
    relay.moved(4, Some(1));
    relay.answered(4);
    for i in 0..10u16 {
        a.send_to(&rtp(i, 0xa), to_a).unwrap();
    }
    let mut buf = [0u8; 2048];
    for _ in 0..10 {
        b.recv_from(&mut buf).expect("relayed to B");
    }
    // The worker counts a packet after its send returns, so B can hold the tenth before the
    // relay has counted it: wait for the count before the call is deleted and folded in.
    let deadline = Instant::now() + Duration::from_secs(2);
    while relay.calls()[0].streams[0].b.tx_packets < 10 {
        assert!(
            Instant::now() < deadline,
            "the relay never counted 10 packets to B"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(relay.calls()[0].trunk.as_deref(), Some("carrier-b"));
    relay.delete(4);
    let t = relay.metrics().snapshot().trunks;
    assert_eq!(
        (t[1].answered, t[1].packets),
        (0, [0, 0]),
        "carrier-a: {:?}",
        t[1]
    );
    assert_eq!(
        (t[2].answered, t[2].packets),
        (1, [10, 0]),
        "carrier-b: {:?}",
        t[2]
    );
}
