//! Test calls: synthetic calls Trunkgate places itself, with real audio, so that a change
//! (a reload, a new trunk, a drill) is proven by calls rather than by looking at a table.
//!
//! The agent ([`TestCalls`]) lives in the core loop beside the proxy. Its requests enter
//! the core with [`Proxy::handle_internal`] as if the PBX (outbound) or a trunk (inbound)
//! had sent them, so they take the path a real call takes: routing and failover, drills,
//! header rules, media anchoring in the relay. What the core sends back to it comes out as
//! transmits over the internal flow, which the shell hands to [`TestCalls::on_message`].
//! Test calls are marked in the core: they take no session or call-rate token unless
//! `count_limits`, and make no call record (so no busy-hour statistics).
//!
//! Each call has its own RTP endpoint ([`media`]): a keyed 1004 Hz tone out, the far end's
//! audio in, analysed at the end (loss, jitter, MOS, one-way audio, our pattern echoed and
//! its round trip). Runs ([`Run`]) group test calls: an ad-hoc `ctl testcall`, a suite
//! (`ctl validate`), a scheduled check, the suite after a reload. [`Hub`] keeps the last
//! runs for the admin API and the metrics.

pub mod audio;
pub mod media;
pub mod runs;
pub mod ua;

use bytes::Bytes;
pub use runs::{Hub, RunRequest, Spec, TestResult};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trunkgate_config::{TestDirection, TestExpect};
use trunkgate_sip::message::{Limits, Method, SipMessage};
use trunkgate_sip::{Event, InternalOrigin, Party, Proxy, TrunkId};

/// Bounds for parsing what the core sends the agent (its own output).
const LIMITS: Limits = Limits {
    max_message_size: 1 << 20,
    max_headers: 4096,
    max_via: 4096,
};
/// A CANCEL or BYE unanswered for this long ends the call anyway.
const GIVE_UP: Duration = Duration::from_secs(5);
/// How often a call waiting for its media report looks again.
const MEDIA_POLL: Duration = Duration::from_millis(50);
/// A media report not in after this long: the call is reported without it.
const MEDIA_WAIT: Duration = Duration::from_secs(3);
/// Test calls in progress at once, all runs together.
pub const MAX_ACTIVE: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// INVITE sent, no final response.
    Calling,
    /// CANCEL sent (the setup timeout).
    Cancelling,
    /// Answered: holding for the duration.
    Up,
    /// Our BYE sent.
    Hanging,
    /// Signalling done; waiting for the media thread's report.
    Media,
}

struct Active {
    run: u64,
    index: usize,
    spec: Spec,
    names: Arc<HashMap<TrunkId, String>>,
    origin: InternalOrigin,
    id: ua::Identity,
    branch: String,
    state: State,
    sent: Instant,
    first_provisional: Option<Instant>,
    answered: Option<Instant>,
    ended: Option<Instant>,
    deadline: Instant,
    dialog: Option<ua::Dialog>,
    code: Option<u16>,
    reason: Option<String>,
    ended_by: Option<&'static str>,
    endpoint: Option<media::Endpoint>,
    running: Option<media::Running>,
    media_error: Option<String>,
    carried_by: Option<TrunkId>,
    attempts: u8,
    core_dialog: Option<u64>,
    refusal: Option<String>,
    setup_timeout: Duration,
    offer: String,
    media_report: Option<media::MediaReport>,
    done: bool,
}

/// The agent: queued test calls, the ones in progress, their results.
pub struct TestCalls {
    hub: Arc<Hub>,
    /// `host:port` of Trunkgate's first UDP listener as advertised.
    host: String,
    /// Where test calls' RTP endpoints are bound (the relay's address).
    media_ip: IpAddr,
    queue: VecDeque<(RunRequest, usize)>,
    active: HashMap<String, Active>,
    by_dialog: HashMap<u64, String>,
    next_start: Instant,
    salt: u64,
    counter: u64,
}

impl TestCalls {
    pub fn new(hub: Arc<Hub>, host: String, media_ip: IpAddr) -> TestCalls {
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        TestCalls {
            hub,
            host,
            media_ip,
            queue: VecDeque::new(),
            active: HashMap::new(),
            by_dialog: HashMap::new(),
            next_start: Instant::now(),
            salt,
            counter: 0,
        }
    }

    /// A new run: its calls are placed within its bounds from the next poll on.
    pub fn enqueue(&mut self, run: RunRequest) {
        for index in 0..run.specs.len() {
            self.queue.push_back((run.clone(), index));
        }
    }

    /// The next time [`TestCalls::poll`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let queued = (!self.queue.is_empty()).then_some(self.next_start);
        let active = self.active.values().map(|a| a.deadline).min();
        match (queued, active) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Start queued calls that fit their bounds, act on due deadlines.
    pub fn poll(&mut self, now: Instant, proxy: &mut Proxy) {
        self.start_queued(now, proxy);
        let due: Vec<String> = self
            .active
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for call_id in due {
            self.on_deadline(now, proxy, &call_id);
        }
    }

    fn start_queued(&mut self, now: Instant, proxy: &mut Proxy) {
        while let Some((run, index)) = self.queue.front() {
            if now < self.next_start || self.active.len() >= MAX_ACTIVE {
                return;
            }
            let in_run = self.active.values().filter(|a| a.run == run.id).count();
            if in_run >= run.concurrency.max(1) {
                return;
            }
            let (run, index) = (run.clone(), *index);
            self.queue.pop_front();
            self.next_start = now + run.start_interval;
            self.start(now, proxy, &run, index);
        }
    }

    fn start(&mut self, now: Instant, proxy: &mut Proxy, run: &RunRequest, index: usize) {
        let Some(spec) = run.specs.get(index).cloned() else {
            return;
        };
        self.counter += 1;
        let n = self.counter;
        let tag = format!(
            "{:x}",
            (self.salt ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 8
        );
        let call_id = format!("tgtest-{:x}-{n}@{}", self.salt & 0xffff_ffff, self.host);
        let (party, prefer) = match (spec.direction, spec.trunk.as_ref()) {
            (TestDirection::Outbound, trunk) => (Party::Pbx, trunk.map(|(id, _)| *id)),
            (TestDirection::Inbound, Some((id, _))) => (Party::Trunk(*id), None),
            (TestDirection::Inbound, None) => {
                self.finish_early(run, index, spec, "an inbound test call needs a trunk");
                return;
            }
        };
        let origin = InternalOrigin {
            party,
            counted: spec.counted,
            prefer,
        };
        let host = &self.host;
        let id = ua::Identity {
            host: host.clone(),
            call_id: call_id.clone(),
            from: format!(
                "\"Trunkgate test\" <sip:{}@{host}>;tag={tag}",
                spec.from.as_deref().unwrap_or("trunkgate-test")
            ),
            request_uri: format!("sip:{}@{host}", spec.to),
            to: format!("<sip:{}@{host}>", spec.to),
            user_agent: format!("Trunkgate test call ({})", spec.name),
        };
        let endpoint = match media::Endpoint::bind(self.media_ip) {
            Ok(e) => e,
            Err(error) => {
                let why = format!("no RTP socket on {}: {error}", self.media_ip);
                self.finish_early(run, index, spec, &why);
                return;
            }
        };
        let codec = spec.codec;
        let offer = ua::offer(endpoint.local, codec.payload_type(), codec.name(), n);
        let branch = format!("{}{:x}-{n}", ua::BRANCH_PREFIX, self.salt & 0xffff);
        let invite = ua::invite(&id, &branch, &offer);
        tracing::info!(
            test = %spec.name,
            direction = ?spec.direction,
            trunk = spec.trunk.as_ref().map(|(_, n)| n.as_str()),
            to = %spec.to,
            call_id = %call_id,
            "test call placed"
        );
        let active = Active {
            run: run.id,
            index,
            names: run.names.clone(),
            origin,
            id,
            branch,
            state: State::Calling,
            sent: now,
            first_provisional: None,
            answered: None,
            ended: None,
            deadline: now + run.setup_timeout,
            dialog: None,
            code: None,
            reason: None,
            ended_by: None,
            endpoint: Some(endpoint),
            running: None,
            media_error: None,
            carried_by: None,
            attempts: 0,
            core_dialog: None,
            refusal: None,
            setup_timeout: run.setup_timeout,
            offer,
            media_report: None,
            done: false,
            spec,
        };
        self.active.insert(call_id, active);
        proxy.handle_internal(now, origin, Bytes::from(invite));
    }

    /// A spec that could not even be placed: its result, at once.
    fn finish_early(&mut self, run: &RunRequest, index: usize, spec: Spec, why: &str) {
        tracing::warn!(test = %spec.name, why, "test call not placed");
        let result = TestResult::not_placed(&spec, why);
        self.hub.finished(run.id, index, result);
    }

    /// What the core sent the agent.
    pub fn on_message(&mut self, now: Instant, proxy: &mut Proxy, data: Bytes) {
        let Ok(msg) = SipMessage::parse(data, &LIMITS) else {
            return;
        };
        let call_id = String::from_utf8_lossy(msg.call_id()).into_owned();
        let Some(call) = self.active.get_mut(&call_id) else {
            if msg.is_request() && msg.method() != Some(Method::Ack) {
                // A request for a test call that is over.
                let reply = ua::respond(&msg, 481, "Call/Transaction Does Not Exist", None);
                let origin = InternalOrigin {
                    party: Party::Pbx,
                    counted: false,
                    prefer: None,
                };
                proxy.handle_internal(now, origin, Bytes::from(reply));
            }
            return;
        };
        let origin = call.origin;
        let mut send: Vec<Vec<u8>> = Vec::new();
        if msg.is_request() {
            call.on_request(now, &msg, &mut send);
        } else {
            call.on_response(now, &msg, &mut send);
        }
        for m in send {
            proxy.handle_internal(now, origin, Bytes::from(m));
        }
        self.reap(now);
    }

    /// Events of the core: which trunk each test call went to, and why one was refused.
    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::CallAttempt {
                dialog,
                call_id,
                test: true,
                ..
            } => {
                let call_id = String::from_utf8_lossy(call_id).into_owned();
                if let Some(a) = self.active.get_mut(&call_id) {
                    a.core_dialog = Some(*dialog);
                    self.by_dialog.insert(*dialog, call_id);
                }
            }
            Event::CallRejected {
                call_id,
                test: true,
                refusal,
                ..
            } => {
                let call_id = String::from_utf8_lossy(call_id).into_owned();
                if let Some(a) = self.active.get_mut(&call_id) {
                    a.refusal = Some(refusal.as_str().to_owned());
                }
            }
            Event::BranchStarted {
                dialog: Some(dialog),
                to,
                attempt,
                ..
            } => {
                if let Some(a) = self
                    .by_dialog
                    .get(dialog)
                    .and_then(|c| self.active.get_mut(c))
                {
                    if let Party::Trunk(t) = to {
                        a.carried_by = Some(*t);
                    }
                    a.attempts = *attempt;
                }
            }
            _ => {}
        }
    }

    fn on_deadline(&mut self, now: Instant, proxy: &mut Proxy, call_id: &str) {
        let Some(call) = self.active.get_mut(call_id) else {
            return;
        };
        let origin = call.origin;
        let mut send = Vec::new();
        match call.state {
            State::Calling => {
                call.reason = Some(format!(
                    "no answer within {:?}: cancelled",
                    call.setup_timeout
                ));
                call.state = State::Cancelling;
                call.deadline = now + GIVE_UP;
                send.push(ua::cancel(&call.id, &call.branch));
            }
            State::Up => {
                let branch = format!("{}{:x}-bye", ua::BRANCH_PREFIX, now.elapsed().as_nanos());
                if let Some(d) = &call.dialog {
                    send.push(d.request(&call.id, "BYE", &branch, 2));
                }
                if let Some(r) = &call.running {
                    r.stop();
                }
                call.ended_by = Some("trunkgate");
                call.ended = Some(now);
                call.state = State::Hanging;
                call.deadline = now + GIVE_UP;
            }
            State::Cancelling | State::Hanging => {
                if call.state == State::Cancelling && call.code.is_none() {
                    call.reason = Some("CANCEL unanswered".into());
                }
                call.await_media(now);
            }
            State::Media => {
                if let Some(report) = call.running.as_ref().and_then(media::Running::try_report) {
                    call.media_report = Some(report);
                    call.done = true;
                } else if call.running.is_none()
                    || call
                        .ended
                        .is_some_and(|e| now.duration_since(e) > MEDIA_WAIT)
                {
                    call.done = true;
                } else {
                    call.deadline = now + MEDIA_POLL;
                }
            }
        }
        for m in send {
            proxy.handle_internal(now, origin, Bytes::from(m));
        }
        self.reap(now);
    }

    /// Report the calls that are done.
    fn reap(&mut self, _now: Instant) {
        let done: Vec<String> = self
            .active
            .iter()
            .filter(|(_, a)| a.done)
            .map(|(k, _)| k.clone())
            .collect();
        for call_id in done {
            let Some(call) = self.active.remove(&call_id) else {
                continue;
            };
            if let Some(d) = call.core_dialog {
                self.by_dialog.remove(&d);
            }
            let result = call.result();
            tracing::info!(
                test = %result.name,
                passed = result.passed,
                outcome = %result.outcome,
                code = result.code,
                carried_by = result.carried_by.as_deref(),
                failures = %result.failures.join("; "),
                "test call done"
            );
            self.hub.finished(call.run, call.index, result);
        }
    }
}

impl Active {
    fn on_response(&mut self, now: Instant, msg: &SipMessage, send: &mut Vec<Vec<u8>>) {
        let Some(code) = msg.status() else { return };
        let (_, method) = msg.cseq();
        if method != Method::Invite {
            // 200 to our BYE or CANCEL (481/408 alike end it).
            if method == Method::Bye && self.state == State::Hanging && code >= 200 {
                self.await_media(now);
            }
            return;
        }
        match code {
            100 => {}
            101..=199 => {
                if self.first_provisional.is_none() && matches!(code, 180 | 183) {
                    self.first_provisional = Some(now);
                }
            }
            200..=299 => {
                if self.answered.is_none() {
                    let dialog = ua::Dialog::from_2xx(msg, &self.id.request_uri);
                    self.answered = Some(now);
                    self.code = Some(code);
                    self.start_media(msg.body());
                    send.push(dialog.request(&self.id, "ACK", &self.ack_branch(), 1));
                    self.dialog = Some(dialog);
                    if self.state == State::Cancelling {
                        // Answered as we cancelled: hang up at once.
                        self.state = State::Up;
                        self.deadline = now;
                    } else {
                        self.state = State::Up;
                        self.deadline = now + self.spec.duration;
                    }
                } else if let Some(d) = &self.dialog {
                    // A retransmitted 2xx: our ACK was lost on the far side.
                    send.push(d.request(&self.id, "ACK", &self.ack_branch(), 1));
                }
            }
            _ => {
                if self.answered.is_some() {
                    return;
                }
                let to = String::from_utf8_lossy(msg.to_value()).into_owned();
                send.push(ua::ack_failure(&self.id, &self.branch, &to));
                self.code = Some(code);
                if self.reason.is_none() || self.state != State::Cancelling {
                    self.reason = msg
                        .reason()
                        .map(|r| String::from_utf8_lossy(r).into_owned());
                }
                self.ended = Some(now);
                self.await_media(now);
            }
        }
    }

    fn ack_branch(&self) -> String {
        format!("{}-ack", self.branch)
    }

    fn on_request(&mut self, now: Instant, msg: &SipMessage, send: &mut Vec<Vec<u8>>) {
        match msg.method() {
            Some(Method::Ack) => {}
            Some(Method::Bye) => {
                send.push(ua::respond(msg, 200, "OK", None));
                if let Some(r) = &self.running {
                    r.stop();
                }
                if self.ended_by.is_none() {
                    self.ended_by = Some("far-end");
                    self.ended = Some(now);
                }
                self.await_media(now);
            }
            Some(Method::Invite) => {
                // A re-INVITE (refresh, hold, transfer): keep our stream as offered.
                send.push(ua::respond(msg, 200, "OK", Some(&self.offer)));
            }
            Some(Method::Cancel) => {}
            _ => send.push(ua::respond(msg, 200, "OK", None)),
        }
    }

    /// Start the RTP thread toward the answer's audio address.
    fn start_media(&mut self, body: &[u8]) {
        let Some(endpoint) = self.endpoint.take() else {
            return;
        };
        let remote = trunkgate_media::sdp::parse(body).ok().and_then(|sdp| {
            sdp.media
                .iter()
                .find(|m| m.kind == trunkgate_media::sdp::MediaKind::Audio && m.port != 0)
                .and_then(|m| m.conn.map(|ip| SocketAddr::new(ip, m.port)))
        });
        match remote {
            Some(remote) => {
                let seed = (self
                    .id
                    .call_id
                    .bytes()
                    .fold(7u32, |h, b| h.wrapping_mul(31) ^ u32::from(b))
                    & 0x7fff) as u16;
                self.running =
                    Some(endpoint.start(remote, self.spec.codec, self.spec.duration, seed));
            }
            None => self.media_error = Some("the answer has no audio stream".into()),
        }
    }

    /// The call's result, judged against its expectation.
    fn result(&self) -> TestResult {
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        let name = |t: TrunkId| {
            self.names
                .get(&t)
                .cloned()
                .unwrap_or_else(|| format!("#{t}"))
        };
        let answered = self.answered.is_some();
        let pdd = self
            .first_provisional
            .or(self.answered)
            .map(|t| t.duration_since(self.sent));
        let outcome = match (answered, self.code) {
            (true, _) => "answered",
            (false, Some(_)) => "refused",
            (false, None) => "no-answer",
        };
        let media = self.media_report.clone();
        let mut failures = Vec::new();
        match self.spec.expect {
            TestExpect::Answer => {
                if !answered {
                    failures.push(match (self.code, &self.reason) {
                        (Some(code), Some(r)) => format!("expected an answer, got {code} {r}"),
                        (Some(code), None) => format!("expected an answer, got {code}"),
                        (None, Some(r)) => format!("expected an answer: {r}"),
                        (None, None) => "expected an answer, got none".to_owned(),
                    });
                } else {
                    match &media {
                        None => failures.push(
                            self.media_error
                                .clone()
                                .unwrap_or_else(|| "no media report".to_owned()),
                        ),
                        Some(m) if m.one_way_audio => {
                            failures.push("one-way audio: nothing received from the far end".into())
                        }
                        Some(m) => {
                            let recognised = m.echo.as_ref().is_some_and(|e| e.recognised);
                            if self.spec.echo && !recognised {
                                failures.push("the far end did not echo our audio".into());
                            }
                            if let (Some(min), Some(mos)) = (self.spec.min_mos, m.mos) {
                                if mos < min {
                                    failures.push(format!("MOS {mos:.2} below {min:.2}"));
                                }
                            }
                        }
                    }
                }
            }
            TestExpect::Code(code) => {
                if self.code != Some(code) || answered {
                    let got = self
                        .code
                        .map_or_else(|| "none".to_owned(), |c| c.to_string());
                    failures.push(format!("expected {code}, got {got}"));
                }
            }
        }
        if let (Some(max), Some(pdd)) = (self.spec.max_pdd, pdd) {
            if pdd > max && answered {
                failures.push(format!(
                    "post-dial delay {:.0} ms over {:.0} ms",
                    ms(pdd),
                    ms(max)
                ));
            }
        }
        TestResult {
            name: self.spec.name.clone(),
            direction: match self.spec.direction {
                TestDirection::Outbound => "outbound",
                TestDirection::Inbound => "inbound",
            },
            trunk: self.spec.trunk.as_ref().map(|(_, n)| n.clone()),
            to: self.spec.to.clone(),
            call_id: self.id.call_id.clone(),
            carried_by: match self.spec.direction {
                TestDirection::Outbound => self.carried_by.map(name),
                TestDirection::Inbound => Some("pbx".to_owned()),
            },
            rerouted: match (self.spec.direction, &self.spec.trunk, self.carried_by) {
                (TestDirection::Outbound, Some((asked, _)), Some(carried)) => *asked != carried,
                _ => false,
            },
            attempts: self.attempts,
            outcome,
            code: self.code,
            reason: self.reason.clone().or_else(|| self.refusal.clone()),
            pdd_ms: pdd.map(ms),
            answer_ms: self.answered.map(|a| ms(a.duration_since(self.sent))),
            held_ms: match (self.answered, self.ended) {
                (Some(a), Some(e)) => Some(ms(e.saturating_duration_since(a))),
                _ => None,
            },
            ended_by: self.ended_by,
            media,
            counted: self.spec.counted,
            passed: failures.is_empty(),
            failures,
        }
    }

    /// Signalling is over: wait for the media report.
    fn await_media(&mut self, now: Instant) {
        if let Some(r) = &self.running {
            r.stop();
        }
        self.ended.get_or_insert(now);
        self.state = State::Media;
        self.deadline = now;
    }
}
