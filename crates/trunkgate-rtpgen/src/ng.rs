//! Mode `ng`: sets calls up on rtpengine through its "ng" control protocol (bencode over
//! UDP: `COOKIE SPACE DICT`). offer(UAC SDP) → where the UAS side sends; answer(UAS SDP) →
//! where the UAC side sends; delete at the end.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde_json::json;

use crate::bencode::Value;
use crate::clock::{MS, now_ns};
use crate::hist::Histogram;
use crate::media::CallMedia;
use crate::sdp;
use crate::{Pacer, SignalOpts, Signaling};

const RETX: u64 = 500 * MS;
const TX_MAX: u32 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Idle,
    Offer,
    Answer,
    Up,
    Failed,
    Delete,
    Done,
}

struct NgCall {
    step: Step,
    cookie: String,
    msg: Vec<u8>,
    next_tx: u64,
    tx: u32,
    started_ns: u64,
    a_remote: Option<SocketAddr>,
    b_remote: Option<SocketAddr>,
}

#[derive(Default)]
struct Counters {
    commands: u64,
    retransmits: u64,
    errors: u64,
    timeouts: u64,
    deleted: u64,
    delete_failed: u64,
    unmatched: u64,
    last_error: Option<String>,
}

pub struct NgClient {
    o: SignalOpts,
    ng: SocketAddr,
    sock: UdpSocket,
    calls: Vec<NgCall>,
    by_cookie: HashMap<String, usize>,
    a_sdp: Vec<SocketAddr>,
    b_sdp: Vec<SocketAddr>,
    c: Counters,
    setup_us: Histogram,
    last_scan: u64,
}

impl NgClient {
    pub fn new(o: SignalOpts, ng: SocketAddr, local_ip: std::net::IpAddr) -> Result<Self> {
        let sock = UdpSocket::bind(SocketAddr::new(local_ip, 0)).context("bind ng socket")?;
        sock.set_nonblocking(true)?;
        let calls = (0..o.calls)
            .map(|_| NgCall {
                step: Step::Idle,
                cookie: String::new(),
                msg: Vec::new(),
                next_tx: 0,
                tx: 0,
                started_ns: 0,
                a_remote: None,
                b_remote: None,
            })
            .collect();
        Ok(Self {
            o,
            ng,
            sock,
            calls,
            by_cookie: HashMap::new(),
            a_sdp: Vec::new(),
            b_sdp: Vec::new(),
            c: Counters::default(),
            setup_us: Histogram::new(),
            last_scan: 0,
        })
    }

    fn call_id(&self, idx: usize) -> String {
        format!("rtpgen-{}-{}", self.o.run_id, idx)
    }

    fn command(&mut self, idx: usize, step: Step) {
        let cmd = match step {
            Step::Offer => "offer",
            Step::Answer => "answer",
            _ => "delete",
        };
        let from_tag = format!("f{}x{}", self.o.run_id, idx);
        let to_tag = format!("t{}x{}", self.o.run_id, idx);
        let mut items = vec![
            ("command", Value::str(cmd)),
            ("call-id", Value::str(&self.call_id(idx))),
            ("from-tag", Value::str(&from_tag)),
        ];
        match step {
            Step::Offer => {
                let a = self.a_sdp[idx];
                items.push((
                    "sdp",
                    Value::str(&sdp::build(a.ip(), a.port(), idx as u64 + 1, 8)),
                ));
            }
            Step::Answer => {
                let b = self.b_sdp[idx];
                items.push(("to-tag", Value::str(&to_tag)));
                items.push((
                    "sdp",
                    Value::str(&sdp::build(b.ip(), b.port(), idx as u64 + 1_000_000, 8)),
                ));
            }
            _ => {}
        }
        let cookie = format!("{}_{}_{}", self.o.run_id, idx, cmd);
        let mut msg = Vec::with_capacity(600);
        msg.extend_from_slice(cookie.as_bytes());
        msg.push(b' ');
        Value::dict(items).encode(&mut msg);
        let now = now_ns();
        let _ = self.sock.send_to(&msg, self.ng);
        self.c.commands += 1;
        let old = std::mem::replace(&mut self.calls[idx].cookie, cookie.clone());
        self.by_cookie.remove(&old);
        self.by_cookie.insert(cookie, idx);
        let c = &mut self.calls[idx];
        if step == Step::Offer {
            c.started_ns = now;
        }
        c.step = step;
        c.msg = msg;
        c.tx = 1;
        c.next_tx = now + RETX;
    }

    fn pump(&mut self, wait_ms: u16) -> Result<()> {
        {
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(wait_ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
        }
        let mut buf = vec![0u8; 65536];
        for _ in 0..4096 {
            let len = match self.sock.recv_from(&mut buf) {
                Ok((len, _)) => len,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break, // e.g. ECONNREFUSED from an ICMP error: nobody listening
            };
            self.on_reply(&buf[..len]);
        }
        let now = now_ns();
        if now >= self.last_scan + 20 * MS {
            self.last_scan = now;
            for c in &mut self.calls {
                if matches!(c.step, Step::Offer | Step::Answer | Step::Delete)
                    && c.next_tx != 0
                    && now >= c.next_tx
                {
                    if c.tx >= TX_MAX {
                        c.step = if c.step == Step::Delete {
                            self.c.delete_failed += 1;
                            Step::Done
                        } else {
                            Step::Failed
                        };
                        self.c.timeouts += 1;
                        c.next_tx = 0;
                    } else {
                        c.tx += 1;
                        c.next_tx = now + RETX * (1 << (c.tx - 1).min(3));
                        let _ = self.sock.send_to(&c.msg, self.ng);
                        self.c.retransmits += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn on_reply(&mut self, buf: &[u8]) {
        let Some(sp) = buf.iter().position(|&b| b == b' ') else {
            self.c.unmatched += 1;
            return;
        };
        let cookie = String::from_utf8_lossy(&buf[..sp]).into_owned();
        let Some(&idx) = self.by_cookie.get(&cookie) else {
            self.c.unmatched += 1; // a late duplicate
            return;
        };
        let Some((v, _)) = Value::decode(&buf[sp + 1..]) else {
            self.c.unmatched += 1;
            return;
        };
        self.by_cookie.remove(&cookie);
        let step = self.calls[idx].step;
        let ok = v.get("result").and_then(Value::as_str) == Some("ok");
        if !ok {
            self.c.errors += 1;
            self.c.last_error = Some(
                v.get("error-reason")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string(),
            );
        }
        let addr = v
            .get("sdp")
            .and_then(Value::as_str)
            .and_then(sdp::media_addr);
        let c = &mut self.calls[idx];
        c.next_tx = 0;
        match step {
            Step::Offer => {
                if ok && addr.is_some() {
                    c.b_remote = addr;
                    self.command(idx, Step::Answer);
                } else {
                    c.step = Step::Failed;
                }
            }
            Step::Answer => {
                if ok && addr.is_some() {
                    c.a_remote = addr;
                    c.step = Step::Up;
                    self.setup_us
                        .record(now_ns().saturating_sub(c.started_ns) / 1000);
                } else {
                    c.step = Step::Failed;
                }
            }
            Step::Delete => {
                c.step = Step::Done;
                if ok {
                    self.c.deleted += 1;
                } else {
                    self.c.delete_failed += 1;
                }
            }
            _ => {}
        }
    }
}

impl Signaling for NgClient {
    fn setup(&mut self, media: &mut [CallMedia], deadline_ns: u64) -> Result<()> {
        self.a_sdp = media.iter().map(|m| m.a_sdp_addr()).collect();
        self.b_sdp = media.iter().map(|m| m.b_local).collect();
        let mut pacer = Pacer::new(self.o.cps, media.len());
        loop {
            let now = now_ns();
            while let Some(i) = pacer.next_due(now) {
                self.command(i, Step::Offer);
            }
            self.pump(1)?;
            let pending = self
                .calls
                .iter()
                .any(|c| matches!(c.step, Step::Idle | Step::Offer | Step::Answer));
            if !pending {
                break;
            }
            if now >= deadline_ns {
                for c in &mut self.calls {
                    if matches!(c.step, Step::Idle | Step::Offer | Step::Answer) {
                        c.step = Step::Failed;
                        self.c.timeouts += 1;
                    }
                }
                break;
            }
        }
        for (i, m) in media.iter_mut().enumerate() {
            if self.calls[i].step == Step::Up {
                m.a_remote = self.calls[i].a_remote;
                m.b_remote = self.calls[i].b_remote;
            }
        }
        Ok(())
    }

    fn service(&mut self, wait_ms: u16) -> Result<()> {
        self.pump(wait_ms)
    }

    fn teardown(&mut self, deadline_ns: u64) -> Result<()> {
        let up: Vec<usize> = (0..self.calls.len())
            .filter(|&i| self.calls[i].step == Step::Up)
            .collect();
        let mut pacer = Pacer::new(self.o.bye_cps, up.len());
        loop {
            let now = now_ns();
            while let Some(k) = pacer.next_due(now) {
                self.command(up[k], Step::Delete);
            }
            self.pump(2)?;
            if pacer.remaining() == 0 && !self.calls.iter().any(|c| c.step == Step::Delete) {
                break;
            }
            if now >= deadline_ns {
                for c in &mut self.calls {
                    if c.step == Step::Delete {
                        c.step = Step::Done;
                        self.c.delete_failed += 1;
                    }
                }
                break;
            }
        }
        Ok(())
    }

    fn report(&self) -> serde_json::Value {
        let c = &self.c;
        json!({
            "commands": c.commands,
            "retransmits": c.retransmits,
            "errors": c.errors,
            "last_error": c.last_error,
            "timeouts": c.timeouts,
            "deleted": c.deleted,
            "delete_failed": c.delete_failed,
            "unmatched": c.unmatched,
            "setup_ms": {
                "p50": self.setup_us.quantile(0.5) as f64 / 1000.0,
                "p99": self.setup_us.quantile(0.99) as f64 / 1000.0,
                "max": self.setup_us.max() as f64 / 1000.0,
            },
        })
    }
}
