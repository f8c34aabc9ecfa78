//! Mode `sip`: the tool is the PBX (UAC, sends INVITE/ACK/BYE to the SBC) and the trunk
//! (UAS, answers the INVITEs the SBC forwards, and BYEs).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde_json::json;
use socket2::{Domain, Protocol, Socket, Type};

use crate::clock::{MS, now_ns};
use crate::hist::Histogram;
use crate::media::CallMedia;
use crate::sdp;
use crate::sipmsg::{Msg, tag_of, uri_of, user_of};
use crate::{Pacer, SignalOpts, Signaling};

const T1: u64 = 500 * MS;
const T2: u64 = 4000 * MS;
/// INVITE transmissions at most (the first and 6 retransmissions: 0.5+1+2+4+8+16 s).
const INVITE_TX_MAX: u32 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UacState {
    Idle,
    Calling,
    Proceeding,
    Up,
    Failed,
    ByeSent,
    Done,
}

struct Uac {
    state: UacState,
    invite: String,
    started_ns: u64,
    next_tx: u64,
    interval: u64,
    tx: u32,
    to: String,
    contact: String,
    routes: Vec<String>,
    ack: String,
    bye: String,
    remote: Option<SocketAddr>,
}

struct Uas {
    /// The 200 for the INVITE, kept for retransmissions until the ACK.
    ok: Option<String>,
    dest: Option<SocketAddr>,
    acked: bool,
    next_tx: u64,
    interval: u64,
    give_up: u64,
    remote: Option<SocketAddr>,
}

#[derive(Default)]
struct Counters {
    invites: u64,
    invite_retransmits: u64,
    provisional: u64,
    ok: u64,
    failed_by_code: BTreeMap<u16, u64>,
    setup_timeouts: u64,
    no_sdp: u64,
    uas_invites: u64,
    uas_invite_retransmits: u64,
    uas_ok_retransmits: u64,
    uas_acks: u64,
    byes_sent: u64,
    bye_retransmits: u64,
    bye_ok: u64,
    bye_failed: u64,
    bye_timeouts: u64,
    byes_received_uac: u64,
    byes_received_uas: u64,
    other_requests: u64,
    unparsable: u64,
    unmatched: u64,
}

pub struct SipUa {
    o: SignalOpts,
    sbc: SocketAddr,
    pbx_addr: SocketAddr,
    trunk_addr: SocketAddr,
    pbx: UdpSocket,
    trunk: UdpSocket,
    uac: Vec<Uac>,
    uas: Vec<Uas>,
    uas_sdp: Vec<SocketAddr>,
    c: Counters,
    setup_us: Histogram,
    last_scan: u64,
}

fn sip_socket(addr: SocketAddr) -> Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
    s.bind(&addr.into())
        .with_context(|| format!("bind SIP {addr}"))?;
    Ok(s.into())
}

impl SipUa {
    pub fn new(o: SignalOpts, sbc: SocketAddr, pbx: SocketAddr, trunk: SocketAddr) -> Result<Self> {
        let n = o.calls;
        let uac = (0..n)
            .map(|_| Uac {
                state: UacState::Idle,
                invite: String::new(),
                started_ns: 0,
                next_tx: 0,
                interval: T1,
                tx: 0,
                to: String::new(),
                contact: String::new(),
                routes: Vec::new(),
                ack: String::new(),
                bye: String::new(),
                remote: None,
            })
            .collect();
        let uas = (0..n)
            .map(|_| Uas {
                ok: None,
                dest: None,
                acked: false,
                next_tx: 0,
                interval: T1,
                give_up: 0,
                remote: None,
            })
            .collect();
        Ok(Self {
            pbx: sip_socket(pbx)?,
            trunk: sip_socket(trunk)?,
            o,
            sbc,
            pbx_addr: pbx,
            trunk_addr: trunk,
            uac,
            uas,
            uas_sdp: Vec::new(),
            c: Counters::default(),
            setup_us: Histogram::new(),
            last_scan: 0,
        })
    }

    fn number(&self, idx: usize) -> String {
        format!("{}{:06}", self.o.number_prefix, idx)
    }

    fn call_id(&self, idx: usize) -> String {
        format!("rtpgen-{}-{}@{}", self.o.run_id, idx, self.pbx_addr.ip())
    }

    fn our_from(&self, idx: usize) -> String {
        format!(
            "<sip:pbx@{}>;tag=f{}x{}",
            self.pbx_addr.ip(),
            self.o.run_id,
            idx
        )
    }

    /// The call index from our Call-ID, else from the Request-URI user.
    fn index_of(&self, m: &Msg<'_>) -> Option<usize> {
        let prefix = format!("rtpgen-{}-", self.o.run_id);
        let from_cid = m
            .header("call-id")
            .and_then(|c| c.strip_prefix(prefix.as_str()))
            .and_then(|r| r.split('@').next())
            .and_then(|n| n.parse::<usize>().ok());
        let idx = from_cid.or_else(|| {
            let user = m.ruri().and_then(user_of)?;
            user.strip_prefix(self.o.number_prefix.as_str())?
                .parse()
                .ok()
        })?;
        (idx < self.uac.len()).then_some(idx)
    }

    fn send(&self, from_trunk: bool, msg: &str, to: SocketAddr) {
        let sock = if from_trunk { &self.trunk } else { &self.pbx };
        let _ = sock.send_to(msg.as_bytes(), to);
    }

    fn launch(&mut self, idx: usize, a_sdp: SocketAddr) {
        let body = sdp::build(a_sdp.ip(), a_sdp.port(), idx as u64 + 1, 8);
        let num = self.number(idx);
        let mut m = String::with_capacity(800 + body.len());
        let _ = write!(
            m,
            "INVITE sip:{num}@{sbc} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {pbx};branch=z9hG4bK{run}i{idx};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: <sip:{num}@{sbc}>\r\n\
             Call-ID: {cid}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:pbx@{pbx}>\r\n\
             Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n\
             User-Agent: trunkgate-rtpgen\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{body}",
            sbc = self.sbc,
            pbx = self.pbx_addr,
            run = self.o.run_id,
            from = self.our_from(idx),
            cid = self.call_id(idx),
            len = body.len(),
        );
        let now = now_ns();
        self.send(false, &m, self.sbc);
        self.c.invites += 1;
        let u = &mut self.uac[idx];
        u.invite = m;
        u.state = UacState::Calling;
        u.started_ns = now;
        u.tx = 1;
        u.interval = T1;
        u.next_tx = now + T1;
    }

    /// Reads every datagram waiting on both sockets (waiting up to `wait_ms` for the first).
    fn pump(&mut self, wait_ms: u16) -> Result<()> {
        {
            let mut fds = [
                PollFd::new(self.pbx.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.trunk.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::from(wait_ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
        }
        let mut buf = vec![0u8; 65536];
        for from_trunk in [false, true] {
            for _ in 0..4096 {
                let sock = if from_trunk { &self.trunk } else { &self.pbx };
                let (len, src) = match sock.recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                };
                self.handle(from_trunk, &buf[..len], src);
            }
        }
        let now = now_ns();
        if now >= self.last_scan + 20 * MS {
            self.last_scan = now;
            self.timers(now);
        }
        Ok(())
    }

    fn handle(&mut self, at_trunk: bool, buf: &[u8], src: SocketAddr) {
        let Some(m) = Msg::parse(buf) else {
            self.c.unparsable += 1;
            return;
        };
        if m.is_response() {
            if !at_trunk {
                self.on_response(&m);
            } else {
                self.c.unmatched += 1;
            }
        } else {
            self.on_request(at_trunk, &m, src);
        }
    }

    fn on_response(&mut self, m: &Msg<'_>) {
        let (Some(code), Some(idx), Some((_, method))) = (m.status(), self.index_of(m), m.cseq())
        else {
            self.c.unmatched += 1;
            return;
        };
        let now = now_ns();
        match method {
            "INVITE" => {
                let state = self.uac[idx].state;
                if code < 200 {
                    if state == UacState::Calling {
                        self.uac[idx].state = UacState::Proceeding;
                        self.c.provisional += 1;
                    }
                } else if code < 300 {
                    match state {
                        UacState::Calling | UacState::Proceeding => self.on_ok(idx, m, now),
                        // A retransmitted 200: ACK again.
                        _ if !self.uac[idx].ack.is_empty() => {
                            let ack = self.uac[idx].ack.clone();
                            self.send(false, &ack, self.sbc);
                        }
                        _ => {}
                    }
                } else {
                    // ACK for a non-2xx final: hop by hop, same branch as the INVITE.
                    let to = m.header("to").unwrap_or("");
                    let u = &self.uac[idx];
                    let via = m.all("via").first().copied().unwrap_or("");
                    let ack = format!(
                        "ACK sip:{num}@{sbc} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                        num = self.number(idx),
                        sbc = self.sbc,
                        from = self.our_from(idx),
                        cid = self.call_id(idx),
                    );
                    if matches!(u.state, UacState::Calling | UacState::Proceeding) {
                        *self.c.failed_by_code.entry(code).or_default() += 1;
                        self.uac[idx].state = UacState::Failed;
                    }
                    self.send(false, &ack, self.sbc);
                }
            }
            "BYE" if code >= 200 && self.uac[idx].state == UacState::ByeSent => {
                self.uac[idx].state = UacState::Done;
                if code < 300 {
                    self.c.bye_ok += 1;
                } else {
                    self.c.bye_failed += 1;
                }
            }
            _ => {}
        }
    }

    fn on_ok(&mut self, idx: usize, m: &Msg<'_>, now: u64) {
        self.c.ok += 1;
        let to = m.header("to").unwrap_or("").to_string();
        let contact = m
            .header("contact")
            .map(|c| uri_of(c).to_string())
            .unwrap_or_else(|| format!("sip:{}@{}", self.number(idx), self.sbc));
        // Route set: the 200's Record-Route, reversed (RFC 3261 §12.1.2).
        let routes: Vec<String> = m
            .all("record-route")
            .iter()
            .rev()
            .map(|r| r.to_string())
            .collect();
        let remote = sdp::media_addr(m.body);
        let mut route_hdr = String::new();
        for r in &routes {
            let _ = write!(route_hdr, "Route: {r}\r\n");
        }
        let ack = format!(
            "ACK {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {pbx};branch=z9hG4bK{run}a{idx};rport\r\n{route_hdr}Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            pbx = self.pbx_addr,
            run = self.o.run_id,
            from = self.our_from(idx),
            cid = self.call_id(idx),
        );
        let bye = format!(
            "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {pbx};branch=z9hG4bK{run}b{idx};rport\r\n{route_hdr}Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: 2 BYE\r\nUser-Agent: trunkgate-rtpgen\r\nContent-Length: 0\r\n\r\n",
            pbx = self.pbx_addr,
            run = self.o.run_id,
            from = self.our_from(idx),
            cid = self.call_id(idx),
        );
        self.send(false, &ack, self.sbc);
        let u = &mut self.uac[idx];
        self.setup_us
            .record(now.saturating_sub(u.started_ns) / 1000);
        u.to = to;
        u.contact = contact;
        u.routes = routes;
        u.ack = ack;
        u.bye = bye;
        u.next_tx = 0;
        if remote.is_none() {
            self.c.no_sdp += 1;
            u.state = UacState::Failed;
        } else {
            u.remote = remote;
            u.state = UacState::Up;
        }
    }

    fn respond(&self, at_trunk: bool, m: &Msg<'_>, src: SocketAddr, status: &str) -> String {
        let mut r = format!("SIP/2.0 {status}\r\n");
        for v in m.all("via") {
            let _ = write!(r, "Via: {v}\r\n");
        }
        for h in ["from", "to", "call-id", "cseq"] {
            let name = match h {
                "from" => "From",
                "to" => "To",
                "call-id" => "Call-ID",
                _ => "CSeq",
            };
            let _ = write!(r, "{name}: {}\r\n", m.header(h).unwrap_or(""));
        }
        r.push_str("Content-Length: 0\r\n\r\n");
        self.send(at_trunk, &r, src);
        r
    }

    fn on_request(&mut self, at_trunk: bool, m: &Msg<'_>, src: SocketAddr) {
        let method = m.method().unwrap_or("");
        match method {
            "INVITE" if at_trunk => self.on_uas_invite(m, src),
            "ACK" => {
                if at_trunk {
                    if let Some(idx) = self.index_of(m) {
                        if !self.uas[idx].acked {
                            self.uas[idx].acked = true;
                            self.c.uas_acks += 1;
                        }
                    }
                }
            }
            "BYE" => {
                self.respond(at_trunk, m, src, "200 OK");
                if at_trunk {
                    self.c.byes_received_uas += 1;
                } else {
                    self.c.byes_received_uac += 1;
                    // The SBC ended the call towards the PBX: nothing left for us to end.
                    if let Some(idx) = self.index_of(m) {
                        if matches!(self.uac[idx].state, UacState::Up | UacState::ByeSent) {
                            self.uac[idx].state = UacState::Done;
                        }
                    }
                }
            }
            "OPTIONS" | "CANCEL" | "INFO" | "NOTIFY" | "UPDATE" => {
                self.respond(at_trunk, m, src, "200 OK");
                self.c.other_requests += 1;
            }
            _ => {
                self.respond(at_trunk, m, src, "501 Not Implemented");
                self.c.other_requests += 1;
            }
        }
    }

    fn on_uas_invite(&mut self, m: &Msg<'_>, src: SocketAddr) {
        let Some(idx) = self.index_of(m) else {
            self.respond(true, m, src, "404 Not Found");
            self.c.unmatched += 1;
            return;
        };
        if let Some(ok) = &self.uas[idx].ok {
            // A retransmission (or a re-INVITE): the same answer again.
            self.send(true, ok, src);
            self.c.uas_invite_retransmits += 1;
            return;
        }
        self.c.uas_invites += 1;
        let Some(b_sdp) = self.uas_sdp.get(idx).copied() else {
            return;
        };
        let remote = sdp::media_addr(m.body);
        let body = sdp::build(b_sdp.ip(), b_sdp.port(), idx as u64 + 1_000_000, 8);
        let mut r = String::from("SIP/2.0 200 OK\r\n");
        for v in m.all("via") {
            let _ = write!(r, "Via: {v}\r\n");
        }
        for v in m.all("record-route") {
            let _ = write!(r, "Record-Route: {v}\r\n");
        }
        let to = m.header("to").unwrap_or("");
        let to = if tag_of(to).is_some() {
            to.to_string()
        } else {
            format!("{to};tag=t{}x{}", self.o.run_id, idx)
        };
        let _ = write!(
            r,
            "From: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\nContact: <sip:trunk@{trunk}>\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\nUser-Agent: trunkgate-rtpgen\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
            from = m.header("from").unwrap_or(""),
            cid = m.header("call-id").unwrap_or(""),
            cseq = m.header("cseq").unwrap_or(""),
            trunk = self.trunk_addr,
            len = body.len(),
        );
        self.send(true, &r, src);
        let now = now_ns();
        let u = &mut self.uas[idx];
        u.ok = Some(r);
        u.dest = Some(src);
        u.remote = remote;
        u.interval = T1;
        u.next_tx = now + T1;
        u.give_up = now + 64 * T1;
        if remote.is_none() {
            self.c.no_sdp += 1;
        }
    }

    /// Retransmissions: INVITE (Timer A/B), BYE (Timer E/F), the UAS 200 (Timer G/H).
    fn timers(&mut self, now: u64) {
        for idx in 0..self.uac.len() {
            let u = &mut self.uac[idx];
            match u.state {
                UacState::Calling if u.next_tx != 0 && now >= u.next_tx => {
                    if u.tx >= INVITE_TX_MAX {
                        if now >= u.started_ns + 64 * T1 {
                            u.state = UacState::Failed;
                            self.c.setup_timeouts += 1;
                        }
                    } else {
                        u.tx += 1;
                        u.interval *= 2;
                        u.next_tx = now + u.interval;
                        let _ = self.pbx.send_to(u.invite.as_bytes(), self.sbc);
                        self.c.invite_retransmits += 1;
                    }
                }
                UacState::ByeSent if u.next_tx != 0 && now >= u.next_tx => {
                    u.interval = (u.interval * 2).min(T2);
                    u.next_tx = now + u.interval;
                    let _ = self.pbx.send_to(u.bye.as_bytes(), self.sbc);
                    self.c.bye_retransmits += 1;
                }
                _ => {}
            }
            let s = &mut self.uas[idx];
            if !s.acked && s.next_tx != 0 && now >= s.next_tx {
                if now >= s.give_up {
                    s.next_tx = 0;
                } else if let (Some(ok), Some(dest)) = (&s.ok, s.dest) {
                    let _ = self.trunk.send_to(ok.as_bytes(), dest);
                    s.interval = (s.interval * 2).min(T2);
                    s.next_tx = now + s.interval;
                    self.c.uas_ok_retransmits += 1;
                }
            }
        }
    }
}

impl Signaling for SipUa {
    fn setup(&mut self, media: &mut [CallMedia], deadline_ns: u64) -> Result<()> {
        self.uas_sdp = media.iter().map(|m| m.b_local).collect();
        let mut pacer = Pacer::new(self.o.cps, media.len());
        loop {
            let now = now_ns();
            while let Some(i) = pacer.next_due(now) {
                let a = media[i].a_sdp_addr();
                self.launch(i, a);
            }
            self.pump(1)?;
            let pending = self.uac.iter().zip(self.uas.iter()).any(|(u, s)| {
                matches!(
                    u.state,
                    UacState::Idle | UacState::Calling | UacState::Proceeding
                ) || (u.state == UacState::Up && s.ok.is_none())
            });
            if !pending {
                break;
            }
            if now >= deadline_ns {
                for u in &mut self.uac {
                    if matches!(
                        u.state,
                        UacState::Idle | UacState::Calling | UacState::Proceeding
                    ) {
                        u.state = UacState::Failed;
                        self.c.setup_timeouts += 1;
                    }
                }
                break;
            }
        }
        for (i, m) in media.iter_mut().enumerate() {
            if self.uac[i].state == UacState::Up {
                m.a_remote = self.uac[i].remote;
                m.b_remote = self.uas[i].remote;
            }
        }
        Ok(())
    }

    fn service(&mut self, wait_ms: u16) -> Result<()> {
        self.pump(wait_ms)
    }

    fn teardown(&mut self, deadline_ns: u64) -> Result<()> {
        let up: Vec<usize> = (0..self.uac.len())
            .filter(|&i| self.uac[i].state == UacState::Up)
            .collect();
        let mut pacer = Pacer::new(self.o.bye_cps, up.len());
        loop {
            let now = now_ns();
            while let Some(k) = pacer.next_due(now) {
                let idx = up[k];
                let u = &mut self.uac[idx];
                if u.state != UacState::Up {
                    continue; // the SBC ended it meanwhile
                }
                u.state = UacState::ByeSent;
                u.interval = T1;
                u.next_tx = now + T1;
                let _ = self.pbx.send_to(u.bye.as_bytes(), self.sbc);
                self.c.byes_sent += 1;
            }
            self.pump(2)?;
            let pending =
                pacer.remaining() > 0 || self.uac.iter().any(|u| u.state == UacState::ByeSent);
            if !pending {
                break;
            }
            if now >= deadline_ns {
                for u in &mut self.uac {
                    if u.state == UacState::ByeSent {
                        u.state = UacState::Done;
                        self.c.bye_timeouts += 1;
                    }
                }
                break;
            }
        }
        // Let the last 200s for BYE towards the trunk side go out.
        self.pump(10)?;
        Ok(())
    }

    fn report(&self) -> serde_json::Value {
        let c = &self.c;
        json!({
            "invites": c.invites,
            "invite_retransmits": c.invite_retransmits,
            "provisional": c.provisional,
            "ok": c.ok,
            "failed_by_code": c.failed_by_code,
            "setup_timeouts": c.setup_timeouts,
            "no_sdp": c.no_sdp,
            "uas_invites": c.uas_invites,
            "uas_invite_retransmits": c.uas_invite_retransmits,
            "uas_ok_retransmits": c.uas_ok_retransmits,
            "uas_acks": c.uas_acks,
            "byes_sent": c.byes_sent,
            "bye_retransmits": c.bye_retransmits,
            "bye_ok": c.bye_ok,
            "bye_failed": c.bye_failed,
            "bye_timeouts": c.bye_timeouts,
            "byes_received_uac": c.byes_received_uac,
            "byes_received_uas": c.byes_received_uas,
            "other_requests": c.other_requests,
            "unparsable": c.unparsable,
            "unmatched": c.unmatched,
            "setup_ms": {
                "p50": self.setup_us.quantile(0.5) as f64 / 1000.0,
                "p99": self.setup_us.quantile(0.99) as f64 / 1000.0,
                "max": self.setup_us.max() as f64 / 1000.0,
            },
        })
    }
}
