//! Outbound registration over [`super::simnet::SimNet`] with a fake clock: digest, nonce
//! reuse with a counting `nc`, refresh with jitter, bounded backoff, deregistration.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::event::{Event, RegistrationResult};
use super::register::RegistrationConfig;
use super::simnet::*;
use crate::digest::{Credentials, Secret};
use crate::message::{Method, SipMessage};
use crate::routing::{Party, Target};
use std::time::Duration;

fn config(expires: u64) -> RegistrationConfig {
    RegistrationConfig {
        registrar: Target {
            party: Party::Trunk(0),
            address: addr(TRUNK),
            transport: None,
            uri_host: "127.0.0.3:5060".into(),
            local_answer: None,
        },
        credentials: Credentials {
            user: "acct-a".into(),
            password: Secret::new("reg-pw"),
            realm: None,
        },
        expires: Duration::from_secs(expires),
        contact_user: "tg-a".into(),
    }
}

fn challenge(req: &SipMessage, nonce: &str, stale: bool) -> String {
    let text = reply(req, 401, "Unauthorized", "r", "");
    let stale = if stale { ", stale=true" } else { "" };
    let line = format!(
        "WWW-Authenticate: Digest realm=\"carrier-a\", nonce=\"{nonce}\", qop=\"auth\"{stale}\r\n"
    );
    text.replacen("Content-Length: 0", &format!("{line}Content-Length: 0"), 1)
}

fn ok(req: &SipMessage, granted: u64) -> String {
    let text = reply(req, 200, "OK", "r", "");
    let line = format!("Contact: <sip:tg-a@127.0.0.1:5060>;expires={granted}\r\n");
    text.replacen("Content-Length: 0", &format!("{line}Content-Length: 0"), 1)
}

/// The one REGISTER sent since the last look (its UDP retransmissions aside).
fn take_register(net: &mut SimNet) -> SipMessage {
    let got = net.take(TRUNK);
    assert!(!got.is_empty(), "no REGISTER");
    let first = got[0].clone();
    for again in &got[1..] {
        assert_eq!(
            again.as_bytes(),
            first.as_bytes(),
            "only retransmissions follow"
        );
    }
    first
}

/// Advance the clock in 10 ms steps until a REGISTER reaches the registrar, at most
/// `within`: answering at once, as a registrar does, so that no retransmission (Timer E,
/// 500 ms) is still in flight when the answer goes back.
fn await_register(net: &mut SimNet, within: Duration) -> SipMessage {
    let mut waited = Duration::ZERO;
    while waited < within {
        net.run_for(Duration::from_millis(10));
        waited += Duration::from_millis(10);
        if !net.has_arrived(TRUNK) {
            continue;
        }
        return take_register(net);
    }
    panic!("no REGISTER within {within:?}");
}

fn auth(req: &SipMessage) -> Option<String> {
    req.first_named(b"Authorization")
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
}

fn registrations(events: &[Event]) -> Vec<(RegistrationResult, bool, bool, u16)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Registration {
                result,
                up,
                changed,
                code,
                ..
            } => Some((*result, *up, *changed, *code)),
            _ => None,
        })
        .collect()
}

/// Start the registration and answer its challenge; returns the authenticated REGISTER.
fn register_with_challenge(net: &mut SimNet, expires: u64) -> SipMessage {
    net.register(0, config(expires));
    net.settle();
    let first = net.take_one(TRUNK);
    assert_eq!(first.method(), Some(Method::Register));
    assert!(auth(&first).is_none());
    let text = String::from_utf8_lossy(first.as_bytes()).into_owned();
    assert!(text.contains(&format!("Expires: {expires}")), "{text}");
    assert!(
        text.contains("Contact: <sip:tg-a@127.0.0.1:5060>"),
        "{text}"
    );
    assert!(
        text.contains("From: <sip:acct-a@127.0.0.3:5060>;tag="),
        "{text}"
    );
    net.send(TRUNK, &challenge(&first, "n1", false));
    net.settle();
    let second = net.take_one(TRUNK);
    assert_eq!(second.cseq().0, first.cseq().0 + 1);
    assert_eq!(second.call_id(), first.call_id());
    let a = auth(&second).unwrap();
    assert!(
        a.contains("nonce=\"n1\"") && a.contains("nc=00000001"),
        "{a}"
    );
    assert!(a.contains("uri=\"sip:127.0.0.3:5060\""), "{a}");
    assert!(!a.contains("reg-pw"));
    second
}

#[test]
fn registers_with_digest_refreshes_with_the_same_nonce_and_deregisters() {
    let mut net = SimNet::new();
    let second = register_with_challenge(&mut net, 10);
    net.send(TRUNK, &ok(&second, 10));
    net.settle();
    assert_eq!(net.proxy.registration_up(0), Some(true));
    let events = net.events();
    assert_eq!(
        registrations(&events),
        vec![(RegistrationResult::Registered, true, true, 200)]
    );

    // Refreshes: within 5–8 s of each 10 s grant, the cached nonce with nc counting.
    let mut last = second;
    for refresh in 2..=4u32 {
        net.run_for(Duration::from_millis(4_900));
        assert!(net.take(TRUNK).is_empty(), "not before half the grant");
        let again = await_register(&mut net, Duration::from_millis(3_200));
        assert_eq!(again.cseq().0, last.cseq().0 + 1);
        let a = auth(&again).unwrap();
        assert!(a.contains("nonce=\"n1\""), "nonce reused: {a}");
        assert!(a.contains(&format!("nc={refresh:08x}")), "nc counts: {a}");
        net.send(TRUNK, &ok(&again, 10));
        net.settle();
        last = again;
    }
    let events = net.events();
    assert_eq!(
        registrations(&events),
        vec![(RegistrationResult::Registered, true, false, 200); 3],
        "refreshes are no state change"
    );

    // The registrar's nonce went stale: answered once with the new nonce, nc from 1.
    let refresh = await_register(&mut net, Duration::from_secs(8));
    net.send(TRUNK, &challenge(&refresh, "n2", true));
    net.settle();
    let fresh = net.take_one(TRUNK);
    let a = auth(&fresh).unwrap();
    assert!(
        a.contains("nonce=\"n2\"") && a.contains("nc=00000001"),
        "{a}"
    );
    net.send(TRUNK, &ok(&fresh, 10));
    net.settle();
    assert_eq!(net.proxy.registration_up(0), Some(true));

    // Shutdown: Expires 0, and the registration is gone with its answer.
    net.deregister_all();
    assert_eq!(net.proxy.deregistering(), 1);
    net.settle();
    let remove = net.take_one(TRUNK);
    let text = String::from_utf8_lossy(remove.as_bytes()).into_owned();
    assert!(
        text.contains("Expires: 0") && text.contains(";expires=0"),
        "{text}"
    );
    assert!(auth(&remove).unwrap().contains("nonce=\"n2\""));
    net.send(TRUNK, &reply(&remove, 200, "OK", "r", ""));
    net.settle();
    assert_eq!(net.proxy.deregistering(), 0);
    assert_eq!(net.proxy.registration_up(0), None);
    let events = net.events();
    assert!(registrations(&events).contains(&(RegistrationResult::Deregistered, false, true, 200)));
    net.run_for(Duration::from_secs(120));
    assert!(net.take(TRUNK).is_empty(), "nothing after deregistration");
    assert_eq!(net.proxy.active_transactions(), 0);
}

#[test]
fn a_wrong_password_is_down_counted_and_backs_off_to_a_handful_per_minute() {
    let mut net = SimNet::new();
    let mut sent = 0;
    let mut challenged_answers = 0;
    let start = net.now;
    let second = register_with_challenge(&mut net, 10);
    sent += 2;
    // Our answer is challenged again: the password is wrong.
    net.send(TRUNK, &challenge(&second, "n2", false));
    net.settle();
    assert!(
        net.take(TRUNK).is_empty(),
        "no second answer in the same attempt"
    );
    assert_eq!(net.proxy.registration_up(0), Some(false));
    let events = net.events();
    assert_eq!(
        registrations(&events),
        vec![(RegistrationResult::AuthFailed, false, true, 401)]
    );
    // Keep refusing for ten minutes of fake time.
    while net.now.duration_since(start) < Duration::from_secs(600) {
        net.run_for(Duration::from_millis(500));
        for req in net.take(TRUNK) {
            sent += 1;
            if auth(&req).is_some() {
                challenged_answers += 1;
            }
            net.send(TRUNK, &challenge(&req, "n3", false));
            net.settle();
            for again in net.take(TRUNK) {
                sent += 1;
                net.send(TRUNK, &challenge(&again, "n4", false));
                net.settle();
            }
        }
        if net.now.duration_since(start) <= Duration::from_secs(60) {
            assert!(sent <= 8, "first minute: {sent} REGISTERs");
        }
    }
    // 10 s, 20 s, 40 s, 80 s, 160 s, 320 s (+ up to 25 %): six more attempts at most.
    assert!(sent <= 2 + 6 * 2, "ten minutes: {sent} REGISTERs");
    assert!(sent >= 2 + 4, "it keeps trying: {sent}");
    let _ = challenged_answers;
    let failures = registrations(&net.events());
    assert!(failures.iter().all(
        |(r, up, changed, code)| *r == RegistrationResult::AuthFailed
            && !up
            && !changed
            && *code == 401
    ));
    assert_eq!(net.proxy.registration_up(0), Some(false));
}

#[test]
fn a_registrar_that_never_answers_times_out_and_recovers_later() {
    let mut net = SimNet::new();
    net.register(0, config(60));
    net.settle();
    assert_eq!(net.take(TRUNK).len(), 1);
    // Timer F (32 s), retransmissions swallowed.
    net.run_for(Duration::from_secs(33));
    let retransmits = net.take(TRUNK);
    assert!(
        retransmits
            .iter()
            .all(|m| m.method() == Some(Method::Register))
    );
    assert_eq!(
        registrations(&net.events()),
        vec![(RegistrationResult::Timeout, false, true, 408)]
    );
    // The next attempt after 10–12.5 s; this time the registrar answers without a challenge.
    net.run_for(Duration::from_secs(13));
    let req = take_register(&mut net);
    net.send(TRUNK, &ok(&req, 30));
    net.settle();
    assert_eq!(net.proxy.registration_up(0), Some(true));
    assert_eq!(
        registrations(&net.events()),
        vec![(RegistrationResult::Registered, true, true, 200)]
    );
}

#[test]
fn a_refused_registration_honours_retry_after() {
    let mut net = SimNet::new();
    net.register(0, config(60));
    net.settle();
    let req = net.take_one(TRUNK);
    let busy = reply(&req, 503, "Service Unavailable", "r", "").replacen(
        "Content-Length: 0",
        "Retry-After: 120\r\nContent-Length: 0",
        1,
    );
    net.send(TRUNK, &busy);
    net.settle();
    assert_eq!(
        registrations(&net.events()),
        vec![(RegistrationResult::Refused, false, true, 503)]
    );
    net.run_for(Duration::from_secs(119));
    assert!(net.take(TRUNK).is_empty(), "Retry-After is honoured");
    net.run_for(Duration::from_secs(2));
    assert_eq!(take_register(&mut net).method(), Some(Method::Register));
}

#[test]
fn backoff_doubles_and_is_bounded() {
    use super::register::{RETRY_MAX, backoff};
    assert_eq!(backoff(1, 0.0), Duration::from_secs(10));
    assert_eq!(backoff(2, 0.0), Duration::from_secs(20));
    assert_eq!(backoff(4, 0.0), Duration::from_secs(80));
    assert_eq!(backoff(40, 0.0), RETRY_MAX);
    assert!(backoff(40, 0.999) <= RETRY_MAX.mul_f64(1.25));
}

#[test]
fn a_registrar_no_listener_can_reach_is_retried_with_the_backoff() {
    let mut net = SimNet::new();
    let mut cfg = config(60);
    cfg.registrar.transport = Some(crate::transport::Transport::Tcp);
    net.register(0, cfg);
    net.settle();
    assert!(net.take(TRUNK).is_empty());
    assert_eq!(
        registrations(&net.events()),
        vec![(RegistrationResult::Unreachable, false, true, 503)]
    );
    net.run_for(Duration::from_secs(13));
    assert_eq!(
        registrations(&net.events()),
        vec![(RegistrationResult::Unreachable, false, false, 503)],
        "one retry after 10-12.5 s, no tight loop"
    );
    assert_eq!(net.proxy.registration_up(0), Some(false));
}
