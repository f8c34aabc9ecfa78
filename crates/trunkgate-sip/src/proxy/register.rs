//! Outbound registration: one sans-IO state machine per trunk that registers Trunkgate's
//! Contact with the trunk's registrar (RFC 3261 §10). REGISTERs go out as client
//! transactions of our own (`Owner::Register`); every step takes `now` and arms a
//! `Timer::Register`.
//!
//! - Digest (RFC 3261 §22, MD5 or SHA-256, `qop=auth`): a 401/407 is answered once per
//!   attempt; the nonce is kept and reused with a counting `nc` on every refresh until the
//!   registrar says `stale=true` (answered once more) or sends a new challenge.
//! - Refresh: at 50–80 % of the granted expiry, the point drawn per trunk and per refresh
//!   so that many trunks do not refresh in the same second.
//! - Failure (refused credentials, any other final, Timer F, a transport error): the
//!   registration is down and the next attempt waits 10 s, doubling per consecutive failure
//!   up to 10 min (+0–25 % jitter, at least the registrar's `Retry-After`): never a tight
//!   loop against a provider.
//! - [`Proxy::deregister_all`] sends `Expires: 0` (shutdown).
//!
//! Results come out of `poll_event()` as [`Event::Registration`]; `changed` marks a change
//! of up/down, so the shell can log one line per state change.

use super::Proxy;
use super::event::{Event, RegistrationResult};
use super::originate::OwnRequest;
use super::state::{Owner, Sub};
use super::timer::Timer;
use crate::digest::{Challenge, Credentials};
use crate::message::{Method, SipMessage};
use crate::routing::{Party, Target, TrunkId};
use std::time::{Duration, Instant};

/// First retry after a failure; doubles per consecutive failure.
pub const RETRY_BASE: Duration = Duration::from_secs(10);
/// The longest wait between attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(600);

/// What to register for one trunk.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// The registrar (the trunk's address) and the host written in the Request-URI and
    /// the address-of-record.
    pub registrar: Target,
    /// Digest credentials; `user` is also the address-of-record's user part.
    pub credentials: Credentials,
    /// Requested expiry (the registrar may grant less).
    pub expires: Duration,
    /// User part of the Contact Trunkgate registers (inbound calls arrive addressed to it).
    pub contact_user: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the next attempt or refresh (`Timer::Register`).
    Waiting,
    /// A REGISTER is in flight.
    Registering,
    /// `Expires: 0` in flight; the registration ends with its final.
    Deregistering,
}

#[derive(Debug)]
pub(crate) struct Registration {
    config: RegistrationConfig,
    call_id: String,
    from_tag: String,
    cseq: u32,
    phase: Phase,
    up: bool,
    failures: u32,
    /// The REGISTER in flight.
    client: Option<u64>,
    /// The registrar's last challenge (nonce reuse), 401 (`false`) or 407 (`true`), and the
    /// last nonce count used with it.
    challenge: Option<(Challenge, bool, u32)>,
    /// In this attempt: a fresh challenge was answered already / a stale one.
    answered_fresh: bool,
    answered_stale: bool,
    /// When the next `Timer::Register` is due (stale timers are ignored).
    due: Option<Instant>,
}

impl Proxy {
    /// Register for trunk `trunk` per `config` (the first REGISTER goes out now), or stop
    /// (`None`: forgotten without deregistering; use [`Proxy::deregister_all`] for that).
    pub fn set_registration(
        &mut self,
        now: Instant,
        trunk: TrunkId,
        config: Option<RegistrationConfig>,
    ) {
        let Some(config) = config else {
            self.registrations.remove(&trunk);
            return;
        };
        let salt = self.salt;
        let reg = Registration {
            config,
            call_id: format!("tgreg-{:x}-{trunk:x}", salt & 0xffff_ffff),
            from_tag: format!("tgr{:x}", salt.rotate_left(23) ^ u64::from(trunk)),
            cseq: 0,
            phase: Phase::Waiting,
            up: false,
            failures: 0,
            client: None,
            challenge: None,
            answered_fresh: false,
            answered_stale: false,
            due: None,
        };
        self.registrations.insert(trunk, reg);
        self.send_register(now, trunk, false, false);
    }

    /// Is trunk `trunk` registered (`None`: it does not register)?
    pub fn registration_up(&self, trunk: TrunkId) -> Option<bool> {
        self.registrations.get(&trunk).map(|r| r.up)
    }

    /// Send `Expires: 0` for every registration (shutdown). Each ends with its final, a
    /// timeout or a transport error; [`Proxy::deregistering`] says whether any is left.
    pub fn deregister_all(&mut self, now: Instant) {
        let trunks: Vec<TrunkId> = self.registrations.keys().copied().collect();
        for trunk in trunks {
            self.send_register(now, trunk, true, false);
        }
    }

    /// Registrations still waiting for their deregistration's answer.
    pub fn deregistering(&self) -> usize {
        self.registrations
            .values()
            .filter(|r| r.phase == Phase::Deregistering)
            .count()
    }

    /// Send a REGISTER for `trunk` (`remove`: `Expires: 0`), with credentials when a
    /// challenge is known.
    /// `answer`: this REGISTER answers a challenge of the same attempt.
    fn send_register(&mut self, now: Instant, trunk: TrunkId, remove: bool, answer: bool) {
        let Some(reg) = self.registrations.get_mut(&trunk) else {
            return;
        };
        if remove && !reg.up && reg.phase != Phase::Registering {
            // Nothing registered (or nothing we know of): nothing to take back.
            self.registrations.remove(&trunk);
            return;
        }
        reg.cseq = reg.cseq.wrapping_add(1);
        reg.phase = if remove {
            Phase::Deregistering
        } else {
            Phase::Registering
        };
        if !answer {
            reg.answered_fresh = false;
            reg.answered_stale = false;
        }
        reg.due = None;
        let target = reg.config.registrar.clone();
        let transport = target.transport.unwrap_or(crate::transport::Transport::Udp);
        let Some(flow) = self.listener_for(transport, target.address) else {
            // Retried with the backoff like any failure (a policy without a listener of
            // the registrar's transport is refused before this; belt and braces).
            let result = RegistrationResult::Unreachable;
            self.register_failed(
                now,
                trunk,
                result,
                503,
                "no listener for the registrar",
                None,
            );
            return;
        };
        let contact_host = self.sent_by(&flow);
        let Some(reg) = self.registrations.get_mut(&trunk) else {
            return;
        };
        let uri = format!("sip:{}", target.uri_host);
        let aor = format!("<sip:{}@{}>", reg.config.credentials.user, target.uri_host);
        let from = format!("{aor};tag={}", reg.from_tag);
        let expires = if remove {
            0
        } else {
            reg.config.expires.as_secs().max(1)
        };
        let transport_param = flow.transport.uri_param();
        let contact = format!(
            "Contact: <sip:{}@{contact_host}{transport_param}>;expires={expires}",
            reg.config.contact_user
        );
        let expires_line = format!("Expires: {expires}");
        let auth = reg.challenge.as_mut().map(|(challenge, proxy, nc)| {
            *nc = nc.wrapping_add(1);
            let cnonce = format!("{:016x}", self.salt.rotate_left(31) ^ u64::from(reg.cseq));
            let value = challenge.answer(
                &reg.config.credentials,
                "REGISTER",
                uri.as_bytes(),
                *nc,
                &cnonce,
            );
            let name = if *proxy {
                "Proxy-Authorization"
            } else {
                "Authorization"
            };
            format!("{name}: {value}")
        });
        let mut extra: Vec<&[u8]> = vec![contact.as_bytes(), expires_line.as_bytes()];
        if let Some(auth) = &auth {
            extra.push(auth.as_bytes());
        }
        let (call_id, cseq) = (reg.call_id.clone(), reg.cseq);
        let req = OwnRequest {
            method: Method::Register,
            uri: uri.as_bytes(),
            route: b"",
            from: from.as_bytes(),
            to: aor.as_bytes(),
            call_id: call_id.as_bytes(),
            cseq,
            extra: &extra,
        };
        let old = self.registrations.get(&trunk).and_then(|r| r.client);
        if let Some(old) = old {
            // A refresh or deregistration overtakes the REGISTER in flight.
            self.remove_client(old, Sub::Main);
        }
        let id = self.send_own(
            now,
            &req,
            flow,
            target.address,
            Party::Trunk(trunk),
            Owner::Register { trunk },
        );
        if let Some(reg) = self.registrations.get_mut(&trunk) {
            reg.client = Some(id);
        }
    }

    /// A final response to REGISTER `id` of trunk `trunk`.
    pub(super) fn register_response(
        &mut self,
        now: Instant,
        id: u64,
        trunk: TrunkId,
        msg: &SipMessage,
    ) {
        let Some(code) = msg.status() else { return };
        if code < 200 {
            return;
        }
        self.remove_client(id, Sub::Main);
        let Some(reg) = self.registrations.get_mut(&trunk) else {
            return;
        };
        if reg.client != Some(id) {
            return;
        }
        reg.client = None;
        let reason = String::from_utf8_lossy(msg.reason().unwrap_or_default()).into_owned();
        if reg.phase == Phase::Deregistering {
            let answered = matches!(code, 401 | 407) && self.take_challenge(trunk, msg);
            if answered {
                self.send_register(now, trunk, true, true);
                return;
            }
            self.registrations.remove(&trunk);
            self.events.push_back(Event::Registration {
                trunk,
                result: RegistrationResult::Deregistered,
                up: false,
                changed: true,
                code,
                reason: reason.into(),
                expires: None,
            });
            return;
        }
        match code {
            200..=299 => {
                let granted = granted_expires(msg, &reg.config).unwrap_or(reg.config.expires);
                let changed = !reg.up;
                reg.up = true;
                reg.failures = 0;
                reg.phase = Phase::Waiting;
                // 50–80 % of the granted time, drawn per trunk and refresh.
                let spread = jitter(self.salt, trunk, reg.cseq);
                let wait = granted
                    .mul_f64(0.5 + 0.3 * spread)
                    .max(Duration::from_millis(500));
                let due = now + wait;
                reg.due = Some(due);
                self.timers.arm(due, Timer::Register(trunk));
                self.events.push_back(Event::Registration {
                    trunk,
                    result: RegistrationResult::Registered,
                    up: true,
                    changed,
                    code,
                    reason: reason.into(),
                    expires: Some(granted),
                });
            }
            401 | 407 => {
                if self.take_challenge(trunk, msg) {
                    self.send_register(now, trunk, false, true);
                } else {
                    let retry = super::originate::retry_after(msg);
                    self.register_failed(
                        now,
                        trunk,
                        RegistrationResult::AuthFailed,
                        code,
                        &reason,
                        retry,
                    );
                }
            }
            _ => {
                let retry = super::originate::retry_after(msg);
                self.register_failed(
                    now,
                    trunk,
                    RegistrationResult::Refused,
                    code,
                    &reason,
                    retry,
                );
            }
        }
    }

    /// Keep the challenge of `msg` for trunk `trunk` if this attempt may answer it.
    fn take_challenge(&mut self, trunk: TrunkId, msg: &SipMessage) -> bool {
        let Some(reg) = self.registrations.get_mut(&trunk) else {
            return false;
        };
        let proxy = msg.status() == Some(407);
        let header: &[u8] = if proxy {
            b"Proxy-Authenticate"
        } else {
            b"WWW-Authenticate"
        };
        let realm = reg.config.credentials.realm.clone();
        let Some(challenge) = msg
            .all_named(header)
            .filter_map(Challenge::parse)
            .filter(|c| realm.as_deref().is_none_or(|r| r == c.realm))
            .max_by_key(|c| c.algorithm == crate::digest::Algorithm::Sha256)
        else {
            return false;
        };
        let may = if challenge.stale {
            !std::mem::replace(&mut reg.answered_stale, true)
        } else {
            !std::mem::replace(&mut reg.answered_fresh, true)
        };
        if may {
            reg.challenge = Some((challenge, proxy, 0));
        } else {
            // Refused: forget the nonce so the next attempt starts clean.
            reg.challenge = None;
        }
        may
    }

    /// The REGISTER of `trunk` failed: down, and the next attempt after the backoff.
    fn register_failed(
        &mut self,
        now: Instant,
        trunk: TrunkId,
        result: RegistrationResult,
        code: u16,
        reason: &str,
        retry_after: Option<u32>,
    ) {
        let salt = self.salt;
        let Some(reg) = self.registrations.get_mut(&trunk) else {
            return;
        };
        if reg.phase == Phase::Deregistering {
            self.registrations.remove(&trunk);
            self.events.push_back(Event::Registration {
                trunk,
                result: RegistrationResult::Deregistered,
                up: false,
                changed: true,
                code,
                reason: reason.into(),
                expires: None,
            });
            return;
        }
        reg.client = None;
        let changed = reg.up || reg.failures == 0;
        reg.up = false;
        reg.failures = reg.failures.saturating_add(1);
        reg.phase = Phase::Waiting;
        let wait = backoff(reg.failures, jitter(salt, trunk, reg.cseq))
            .max(Duration::from_secs(u64::from(retry_after.unwrap_or(0))));
        let due = now + wait;
        reg.due = Some(due);
        self.timers.arm(due, Timer::Register(trunk));
        self.events.push_back(Event::Registration {
            trunk,
            result,
            up: false,
            changed,
            code,
            reason: reason.into(),
            expires: None,
        });
    }

    /// REGISTER `id` got no final (Timer F) or its connection failed.
    pub(super) fn register_timeout(
        &mut self,
        now: Instant,
        id: u64,
        trunk: TrunkId,
        transport: bool,
    ) {
        let ours = self
            .registrations
            .get(&trunk)
            .is_some_and(|r| r.client == Some(id));
        if !ours {
            return;
        }
        let (result, code, reason) = if transport {
            (RegistrationResult::Unreachable, 503, "connection failed")
        } else {
            (RegistrationResult::Timeout, 408, "no response (Timer F)")
        };
        self.register_failed(now, trunk, result, code, reason, None);
    }

    /// `Timer::Register`: refresh, or the next attempt after a failure.
    pub(super) fn register_due(&mut self, now: Instant, trunk: TrunkId) {
        let due = self
            .registrations
            .get(&trunk)
            .is_some_and(|r| r.phase == Phase::Waiting && r.due.is_some_and(|d| d <= now));
        if due {
            self.send_register(now, trunk, false, false);
        }
    }
}

/// The expiry the registrar granted: our Contact's `expires` parameter in the 2xx, else
/// its `Expires` header.
fn granted_expires(msg: &SipMessage, config: &RegistrationConfig) -> Option<Duration> {
    let mine = format!("sip:{}@", config.contact_user);
    let from_contact = msg
        .values(crate::message::HeaderName::Contact)
        .filter(|c| {
            c.windows(mine.len())
                .any(|w| w.eq_ignore_ascii_case(mine.as_bytes()))
        })
        .find_map(|c| {
            let text = std::str::from_utf8(c).ok()?;
            let at = text.to_ascii_lowercase().find(";expires=")?;
            let digits: String = text[at + 9..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<u64>().ok()
        });
    let seconds = from_contact.or_else(|| {
        let v = msg.first_named(b"Expires")?;
        std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok()
    })?;
    Some(Duration::from_secs(seconds))
}

/// 10 s, 20 s, 40 s … up to 10 min, plus 0–25 % (`spread` in [0, 1)).
pub(crate) fn backoff(failures: u32, spread: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let base = RETRY_BASE.saturating_mul(1 << doublings).min(RETRY_MAX);
    base.mul_f64(1.0 + 0.25 * spread)
}

/// A number in [0, 1) from the process salt, the trunk and the attempt.
fn jitter(salt: u64, trunk: TrunkId, cseq: u32) -> f64 {
    let mut h = super::Fnv::new(salt);
    h.write(&trunk.to_be_bytes());
    h.write(&cseq.to_be_bytes());
    (h.finish() % 10_000) as f64 / 10_000.0
}
