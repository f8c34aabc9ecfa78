//! Dual-stack media on real loopback sockets: an IPv4 side and an IPv6 side of one call each
//! get a leg (socket) and an SDP of their own family, and RTP crosses between the families.
//! Ports 42000–42099 on 127.0.140.1 and ::1 (own range, see the other relay tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use trunkgate_media::{CallInfo, Latch, MediaAddress, MediaConfig, Relay, SdpKind, Side};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 140, 1));
const V4_PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 140, 2));
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

fn config(first: u16, last: u16, alternate: bool) -> MediaConfig {
    MediaConfig {
        bind: V4,
        advertised: V4,
        alternate: alternate.then_some(MediaAddress {
            bind: V6,
            advertised: V6,
        }),
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
        quality: trunkgate_media::QualityConfig::default(),
        fastpath: trunkgate_media::fastpath::FastPath::from_test_env(),
    }
}

fn sdp(ip: IpAddr, port: u16) -> Vec<u8> {
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=- 1 1 IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    .into_bytes()
}

/// (c= address, o= address type, first m= port) of a rewritten body.
fn summary(body: &[u8]) -> (IpAddr, String, u16) {
    let s = std::str::from_utf8(body).unwrap();
    let c = s.lines().find_map(|l| l.strip_prefix("c=IN ")).unwrap();
    let o = s.lines().find_map(|l| l.strip_prefix("o=")).unwrap();
    let m = s.lines().find_map(|l| l.strip_prefix("m=audio ")).unwrap();
    let c_ip: IpAddr = c.split(' ').nth(1).unwrap().parse().unwrap();
    let o_type = o.split(' ').nth(4).unwrap().to_owned();
    assert_eq!(
        c.split(' ').next().unwrap(),
        if c_ip.is_ipv4() { "IP4" } else { "IP6" },
        "c= address type matches its address: {s}"
    );
    (c_ip, o_type, m.split(' ').next().unwrap().parse().unwrap())
}

fn peer(ip: IpAddr) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&0x1234u32.to_be_bytes());
    p
}

fn call(id: u64, pbx: IpAddr, trunk: IpAddr) -> CallInfo<'static> {
    CallInfo {
        id,
        call_id: b"dual@stack",
        trunk: Some(0),
        inbound: false,
        peers: [Some(pbx), Some(trunk)],
    }
}

fn start(cfg: MediaConfig) -> Relay {
    Relay::start(cfg, vec!["carrier-a".into()], Box::new(|_| {})).unwrap()
}

/// Send `n` packets from `from` to the relay at `local:port` and expect each at `to`.
fn crosses(relay: &Relay, from: &UdpSocket, to: &UdpSocket, local: IpAddr, port: u16, n: u16) {
    for seq in 0..n {
        from.send_to(&rtp(seq), SocketAddr::new(local, port))
            .unwrap();
        let mut buf = [0u8; 2048];
        let (len, _) = to.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!(
                "packet {seq} to {local}:{port} not relayed: {e}\n{:#?}",
                relay.calls()
            )
        });
        assert_eq!(&buf[..len], &rtp(seq)[..]);
    }
}

#[test]
fn ipv4_pbx_and_ipv6_trunk_each_get_their_own_family() {
    let relay = start(config(42000, 42019, true));
    let (pbx, trunk) = (peer(V4_PEER), peer(V6));
    let pbx_port = pbx.local_addr().unwrap().port();
    let trunk_port = trunk.local_addr().unwrap().port();
    let info = call(1, V4_PEER, V6);

    // The PBX's IPv4 offer goes to the IPv6 trunk: IN IP6 ::1.
    let mut to_trunk = Vec::new();
    relay
        .update(
            &info,
            Side::A,
            SdpKind::Offer,
            &sdp(V4_PEER, pbx_port),
            &mut to_trunk,
        )
        .unwrap();
    let (c, o, port_b) = summary(&to_trunk);
    assert_eq!((c, o.as_str()), (V6, "IP6"));
    // The trunk's IPv6 answer goes to the IPv4 PBX: IN IP4 127.0.140.1.
    let mut to_pbx = Vec::new();
    relay
        .update(
            &info,
            Side::B,
            SdpKind::Answer,
            &sdp(V6, trunk_port),
            &mut to_pbx,
        )
        .unwrap();
    let (c, o, port_a) = summary(&to_pbx);
    assert_eq!((c, o.as_str()), (V4, "IP4"));

    // /calls names each leg at its own family's address.
    let calls = relay.calls();
    let leg = &calls[0].streams[0];
    assert_eq!(leg.a.local, SocketAddr::new(V4, port_a));
    assert_eq!(leg.b.local, SocketAddr::new(V6, port_b));

    // RTP crosses the families both ways.
    crosses(&relay, &pbx, &trunk, V4, port_a, 5);
    crosses(&relay, &trunk, &pbx, V6, port_b, 5);
    // The relay thread counts a packet after its send returns: poll briefly.
    let counts = || {
        let calls = relay.calls();
        let s = &calls[0].streams[0];
        [
            s.a.rx_packets,
            s.b.rx_packets,
            s.a.tx_packets,
            s.b.tx_packets,
        ]
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while counts() != [5; 4] && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(counts(), [5; 4], "rx A, rx B, tx A, tx B");
    // Each side latched its real source address (not one cut short, see worker.rs `Io`).
    let calls = relay.calls();
    assert_eq!(
        calls[0].streams[0].a.latched_peer,
        Some(pbx.local_addr().unwrap())
    );
    assert_eq!(
        calls[0].streams[0].b.latched_peer,
        Some(trunk.local_addr().unwrap())
    );
    relay.delete(1);
}

#[test]
fn the_offering_side_follows_its_sdp_and_the_other_its_signaling() {
    let relay = start(config(42020, 42039, true));
    // Inbound-style: the trunk (side B) offers over IPv6 while it signals over IPv4 — its
    // SDP decides; the PBX (side A) is known by its IPv6 signaling address.
    let info = call(2, V6, V4_PEER);
    let mut to_pbx = Vec::new();
    relay
        .update(&info, Side::B, SdpKind::Offer, &sdp(V6, 43000), &mut to_pbx)
        .unwrap();
    assert_eq!(summary(&to_pbx).0, V6);
    let mut to_trunk = Vec::new();
    relay
        .update(
            &info,
            Side::A,
            SdpKind::Answer,
            &sdp(V6, 43002),
            &mut to_trunk,
        )
        .unwrap();
    assert_eq!(summary(&to_trunk).0, V6);
    let calls = relay.calls();
    assert!(calls[0].streams[0].a.local.is_ipv6());
    assert!(calls[0].streams[0].b.local.is_ipv6());
    relay.delete(2);
}

#[test]
fn single_family_config_writes_its_one_address_everywhere() {
    // No alternate: as before dual-stack, every leg binds and advertises the one address
    // (an IPv6 SDP is rewritten to IN IP4).
    let relay = start(config(42040, 42059, false));
    let info = call(3, V4_PEER, V6);
    let mut out = Vec::new();
    relay
        .update(&info, Side::A, SdpKind::Offer, &sdp(V6, 43004), &mut out)
        .unwrap();
    let (c, o, _) = summary(&out);
    assert_eq!((c, o.as_str()), (V4, "IP4"));
    // Unknown peers (no signaling address): the primary address too.
    let unknown = CallInfo {
        peers: [None, None],
        ..call(4, V4_PEER, V6)
    };
    out.clear();
    let relay2 = start(config(42060, 42079, true));
    relay2
        .update(
            &unknown,
            Side::A,
            SdpKind::Offer,
            &sdp(V4_PEER, 43006),
            &mut out,
        )
        .unwrap();
    assert_eq!(summary(&out).0, V4);
    relay.delete(3);
    relay2.delete(4);
}
