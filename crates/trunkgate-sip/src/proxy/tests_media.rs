//! Media anchoring in the core, over SimNet with a fake relay: which bodies are offered and
//! answered from which side, what is forwarded, refusals, and BYE on media timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::simnet::*;
use crate::media::{MediaCall, MediaFailure, MediaRelay, MediaSide};
use crate::message::{Method, SipMessage};
use crate::routing::{Party, Routing, Target};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records every call; rewrites a body to name the relay and the side it came from.
#[derive(Default)]
struct FakeMedia {
    log: Mutex<Vec<String>>,
    fail: Mutex<Option<MediaFailure>>,
    /// What `idle` answers (default: silent for an hour).
    idle: Mutex<Option<Duration>>,
}

impl FakeMedia {
    fn log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
    fn handle(
        &self,
        what: &str,
        call: &MediaCall<'_>,
        from: MediaSide,
        sdp: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), MediaFailure> {
        if let Some(failure) = *self.fail.lock().unwrap() {
            return Err(failure);
        }
        let from = match from {
            MediaSide::Pbx => "pbx",
            MediaSide::Trunk => "trunk",
        };
        let first = String::from_utf8_lossy(sdp)
            .lines()
            .nth(1)
            .unwrap_or("")
            .to_owned();
        self.log
            .lock()
            .unwrap()
            .push(format!("{what} {} {from} {first}", call.dialog));
        out.extend_from_slice(
            format!("v=0\r\nc=IN IP4 192.0.2.99\r\nm=audio 4000 RTP/AVP 8 ; for {from}\r\n")
                .as_bytes(),
        );
        Ok(())
    }
}

impl MediaRelay for FakeMedia {
    fn offer(
        &self,
        call: &MediaCall<'_>,
        from: MediaSide,
        sdp: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), MediaFailure> {
        self.handle("offer", call, from, sdp, out)
    }
    fn answer(
        &self,
        call: &MediaCall<'_>,
        from: MediaSide,
        sdp: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), MediaFailure> {
        self.handle("answer", call, from, sdp, out)
    }
    fn delete(&self, dialog: u64) {
        self.log.lock().unwrap().push(format!("delete {dialog}"));
    }
    fn idle(&self, _dialog: u64) -> Option<Duration> {
        Some(
            self.idle
                .lock()
                .unwrap()
                .unwrap_or(Duration::from_secs(3600)),
        )
    }
}

const DEAD: Duration = Duration::from_secs(60);

fn anchored_net() -> (SimNet, Arc<FakeMedia>) {
    let mut net = SimNet::new();
    let media = Arc::new(FakeMedia::default());
    net.proxy.set_media(media.clone());
    (net, media)
}

/// `text` with its (LF) body replaced by an SDP naming `who`.
fn with_sdp(text: &str, who: &str) -> String {
    let sdp =
        format!("v=0\r\no=- 1 1 IN IP4 {who}\r\nc=IN IP4 {who}\r\nm=audio 6000 RTP/AVP 8\r\n");
    let head = text.split("\r\n\r\n").next().unwrap_or(text);
    let mut out = String::new();
    for line in head.split("\r\n") {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("content-length") || lower.starts_with("content-type") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    out
}

fn body(msg: &SipMessage) -> String {
    String::from_utf8_lossy(msg.body()).into_owned()
}

/// An anchored outbound call, established; the relay's log so far is cleared.
fn established(id: &str) -> (SimNet, Arc<FakeMedia>, Call) {
    let (mut net, media) = anchored_net();
    let mut call = Call::new(id, PBX, TRUNK);
    establish_anchored(&mut net, &mut call);
    media.log();
    (net, media, call)
}

/// INVITE with SDP from the PBX, 200 with SDP from the trunk, ACK: returns the dialog's
/// INVITE as the trunk saw it.
fn establish_anchored(net: &mut SimNet, call: &mut Call) -> SipMessage {
    let (invite, _) = call.invite();
    net.send(PBX, &with_sdp(&crlf(&invite), "10.0.0.5"));
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    let ok = with_sdp(
        &reply(&at_trunk, 200, "OK", "callee1", TRUNK),
        "198.51.100.7",
    );
    net.send(TRUNK, &ok);
    net.settle();
    let ok = net.take_one(PBX);
    assert_eq!(ok.status(), Some(200));
    assert!(
        body(&ok).contains("for trunk"),
        "answer not anchored: {}",
        body(&ok)
    );
    call.to_tag = Some("callee1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    assert_eq!(net.take_one(TRUNK).method(), Some(Method::Ack));
    at_trunk
}

#[test]
fn offer_and_answer_are_anchored_from_their_sides() {
    let (mut net, media) = anchored_net();
    let mut call = Call::new("anchor", PBX, TRUNK);
    let at_trunk = establish_anchored(&mut net, &mut call);
    assert!(body(&at_trunk).contains("192.0.2.99"));
    assert!(body(&at_trunk).contains("for pbx"));
    assert_eq!(
        at_trunk.content_length(),
        Some(at_trunk.body().len()),
        "Content-Length follows the new body"
    );
    let log = media.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[0].starts_with("offer ") && log[0].contains(" pbx o=- 1 1 IN IP4 10.0.0.5"));
    assert!(log[1].starts_with("answer ") && log[1].contains(" trunk o=- 1 1 IN IP4 198.51.100.7"));

    // Hang up: the media session goes with the dialog.
    net.send(PBX, &call.caller_request("BYE"));
    net.settle();
    let bye = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&bye, 200, "OK", "", ""));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(200));
    let log = media.log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].starts_with("delete "));
    assert_eq!(net.proxy.active_dialogs(), 0);
}

#[test]
fn early_media_183_and_reinvite_from_the_callee() {
    let (mut net, media) = anchored_net();
    let mut call = Call::new("early", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &with_sdp(&crlf(&invite), "10.0.0.5"));
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    net.send(
        TRUNK,
        &with_sdp(
            &reply(&at_trunk, 183, "Session Progress", "callee1", TRUNK),
            "198.51.100.7",
        ),
    );
    net.settle();
    let progress = net.take_one(PBX);
    assert_eq!(progress.status(), Some(183));
    assert!(body(&progress).contains("for trunk"));
    net.send(
        TRUNK,
        &with_sdp(
            &reply(&at_trunk, 200, "OK", "callee1", TRUNK),
            "198.51.100.7",
        ),
    );
    net.settle();
    assert!(body(&net.take_one(PBX)).contains("for trunk"));
    call.to_tag = Some("callee1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    net.take_one(TRUNK);
    let log = media.log();
    assert_eq!(log.len(), 3, "{log:?}");

    // The callee puts the call on hold with a re-INVITE: an offer from the trunk's side.
    let route = "<sip:127.0.0.1:5060;lr>";
    let reinvite = with_sdp(
        &crlf(&call.callee_request("INVITE", route, 7)),
        "198.51.100.8",
    );
    net.send(TRUNK, &reinvite);
    net.settle();
    let at_pbx = net.take_one(PBX);
    assert_eq!(at_pbx.method(), Some(Method::Invite));
    assert!(body(&at_pbx).contains("for trunk"));
    net.send(
        PBX,
        &with_sdp(&reply(&at_pbx, 200, "OK", "", ""), "10.0.0.6"),
    );
    net.settle();
    let ok = net.take_one(TRUNK);
    assert!(body(&ok).contains("for pbx"), "{}", body(&ok));
    let log = media.log();
    assert!(
        log[0].starts_with("offer ") && log[0].contains(" trunk "),
        "{log:?}"
    );
    assert!(
        log[1].starts_with("answer ") && log[1].contains(" pbx "),
        "{log:?}"
    );
}

#[test]
fn late_offer_in_200_and_answer_in_ack() {
    let (mut net, media) = anchored_net();
    let mut call = Call::new("late", PBX, TRUNK);
    let (invite, _) = call.invite();
    // No body at all: the offer comes in the 200.
    let invite = crlf(&invite)
        .replace("Content-Type: application/sdp\r\n", "")
        .replace(
            "Content-Length: 5\r\n\r\nv=0\r\n",
            "Content-Length: 0\r\n\r\n",
        );
    net.send(PBX, &invite);
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    assert!(at_trunk.body().is_empty());
    net.send(
        TRUNK,
        &with_sdp(
            &reply(&at_trunk, 200, "OK", "callee1", TRUNK),
            "198.51.100.7",
        ),
    );
    net.settle();
    assert!(body(&net.take_one(PBX)).contains("for trunk"));
    call.to_tag = Some("callee1".into());
    net.send(
        PBX,
        &with_sdp(&crlf(&call.caller_request("ACK")), "10.0.0.5"),
    );
    net.settle();
    let ack = net.take_one(TRUNK);
    assert!(
        body(&ack).contains("for pbx"),
        "ACK's answer anchored: {}",
        body(&ack)
    );
    let log = media.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[0].contains(" trunk ") && log[1].contains(" pbx "));
}

#[test]
fn offers_the_relay_refuses_are_answered_488_or_503() {
    for (failure, code) in [
        (MediaFailure::BadSdp("no m= line"), 488),
        (MediaFailure::Unavailable, 503),
    ] {
        let (mut net, media) = anchored_net();
        *media.fail.lock().unwrap() = Some(failure);
        let mut call = Call::new("refused", PBX, TRUNK);
        let (invite, _) = call.invite();
        net.send(PBX, &with_sdp(&crlf(&invite), "10.0.0.5"));
        net.settle();
        assert!(net.take(TRUNK).is_empty(), "nothing forwarded");
        let answer = net.take_one(PBX);
        assert_eq!(answer.status(), Some(code));
        assert_eq!(net.proxy.active_dialogs(), 0);
        assert_eq!(net.metrics.dialogs_total.load(Ordering::Relaxed), 0);
        assert_eq!(net.metrics.media_failures.load(Ordering::Relaxed), 1);
        net.send(PBX, &call.caller_request("ACK"));
        net.run_for(Duration::from_secs(40));
        assert_eq!(net.proxy.active_transactions(), 0);
    }
}

#[test]
fn media_timeout_sends_bye_to_both_sides_and_frees_everything() {
    let (mut net, media, call) = established("dead");
    let dialog = net.proxy.dialogs.keys().copied().next().unwrap();
    assert!(net.media_timeout(dialog, DEAD));
    net.settle();
    let to_trunk = net.take_one(TRUNK);
    let to_pbx = net.take_one(PBX);
    for bye in [&to_trunk, &to_pbx] {
        assert_eq!(bye.method(), Some(Method::Bye));
        assert_eq!(bye.call_id(), call.call_id.as_bytes());
    }
    // Toward the callee: the caller's From and the callee's To; CSeq above the caller's.
    assert_eq!(to_trunk.from_tag(), Some(&b"ft-dead"[..]));
    assert_eq!(to_trunk.to_tag(), Some(&b"callee1"[..]));
    assert_eq!(to_trunk.cseq().0, call.cseq + 1);
    assert_eq!(
        to_trunk.request_uri(),
        Some(format!("sip:{TRUNK}").as_bytes())
    );
    // Toward the caller: the other way round, to its Contact.
    assert_eq!(to_pbx.from_tag(), Some(&b"callee1"[..]));
    assert_eq!(to_pbx.to_tag(), Some(&b"ft-dead"[..]));
    assert_eq!(
        to_pbx.request_uri(),
        Some(format!("sip:alice@{PBX}").as_bytes())
    );
    assert!(String::from_utf8_lossy(to_pbx.as_bytes()).contains("Reason: Q.850;cause=102"));
    assert_eq!(net.proxy.active_dialogs(), 0);
    assert_eq!(net.metrics.media_timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(media.log(), vec![format!("delete {dialog}")]);
    // Both sides answer; nothing is forwarded anywhere, everything drains.
    net.send(TRUNK, &reply(&to_trunk, 200, "OK", "", ""));
    net.send(PBX, &reply(&to_pbx, 200, "OK", "", ""));
    net.settle();
    assert!(net.take(PBX).is_empty() && net.take(TRUNK).is_empty());
    net.run_for(Duration::from_secs(40));
    assert_eq!(net.proxy.active_transactions(), 0);
    assert_eq!(net.metrics.dialogs_total.load(Ordering::Relaxed), 0);
    // A second report for the same dialog changes nothing.
    assert!(!net.media_timeout(dialog, DEAD));
}

#[test]
fn media_timeout_of_an_early_dialog_is_left_to_timer_c() {
    let (mut net, _media) = anchored_net();
    let mut call = Call::new("ringing", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &with_sdp(&crlf(&invite), "10.0.0.5"));
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&at_trunk, 180, "Ringing", "callee1", TRUNK));
    net.settle();
    net.take(PBX);
    let dialog = net.proxy.dialogs.keys().copied().next().unwrap();
    assert!(!net.media_timeout(dialog, DEAD));
    net.settle();
    assert!(net.take(PBX).is_empty() && net.take(TRUNK).is_empty());
    assert_eq!(net.proxy.active_dialogs(), 1);
}

/// Routing whose trunks all have `media.anchor = false`.
struct NoAnchor;

impl Routing for NoAnchor {
    fn classify(&self, source: std::net::IpAddr) -> Party {
        TestRouting::default().classify(source)
    }
    fn candidates(
        &self,
        now: std::time::Instant,
        from: Party,
        user: Option<&[u8]>,
        load: &dyn crate::routing::TrunkLoad,
        out: &mut Vec<Target>,
    ) -> crate::routing::RouteChoice {
        TestRouting::default().candidates(now, from, user, load, out)
    }
    fn anchor_media(&self, _trunk: u16) -> bool {
        false
    }
}

#[test]
fn trunks_without_anchoring_pass_sdp_untouched() {
    let (mut net, media) = anchored_net();
    net.proxy.set_routing(Arc::new(NoAnchor));
    let mut call = Call::new("direct", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &with_sdp(&crlf(&invite), "10.0.0.5"));
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    assert!(body(&at_trunk).contains("c=IN IP4 10.0.0.5"));
    net.send(
        TRUNK,
        &with_sdp(
            &reply(&at_trunk, 200, "OK", "callee1", TRUNK),
            "198.51.100.7",
        ),
    );
    net.settle();
    assert!(body(&net.take_one(PBX)).contains("c=IN IP4 198.51.100.7"));
    assert!(media.log().is_empty());
}

#[test]
fn media_timeout_overtaken_by_media_is_ignored() {
    let (mut net, media, _call) = established("stale");
    let dialog = net.proxy.dialogs.keys().copied().next().unwrap();
    // A packet arrived after the relay queued its report.
    *media.idle.lock().unwrap() = Some(Duration::from_millis(20));
    assert!(!net.media_timeout(dialog, DEAD));
    net.settle();
    assert!(net.take(PBX).is_empty() && net.take(TRUNK).is_empty());
    assert_eq!(net.proxy.active_dialogs(), 1);
}

#[test]
fn media_timeout_bye_follows_the_route_sets() {
    let (mut net, _media) = anchored_net();
    let mut call = Call::new("routed", PBX, TRUNK);
    let (invite, _) = call.invite();
    // A proxy in front of the PBX recorded its route.
    let invite = crlf(&invite).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRecord-Route: <sip:10.0.0.1;lr>\r\n",
    );
    net.send(PBX, &with_sdp(&invite, "10.0.0.5"));
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    // The carrier's SBC records its route above ours.
    let ok = with_sdp(
        &reply(&at_trunk, 200, "OK", "callee1", TRUNK),
        "198.51.100.7",
    )
    .replacen(
        "Record-Route:",
        "Record-Route: <sip:198.51.100.1;lr>\r\nRecord-Route:",
        1,
    );
    net.send(TRUNK, &ok);
    net.settle();
    net.take_one(PBX);
    call.to_tag = Some("callee1".into());
    net.send(PBX, &call.caller_request("ACK"));
    net.settle();
    net.take_one(TRUNK);
    let dialog = net.proxy.dialogs.keys().copied().next().unwrap();
    assert!(net.media_timeout(dialog, DEAD));
    net.settle();
    let to_trunk = net.take_one(TRUNK);
    let to_pbx = net.take_one(PBX);
    let routes = |m: &SipMessage| {
        m.values(crate::message::HeaderName::Route)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(routes(&to_trunk), vec!["<sip:198.51.100.1;lr>"]);
    assert_eq!(routes(&to_pbx), vec!["<sip:10.0.0.1;lr>"]);
}

#[test]
fn a_2xx_from_another_fork_does_not_move_the_media() {
    let (mut net, media) = anchored_net();
    let mut call = Call::new("fork", PBX, TRUNK);
    let at_trunk = establish_anchored(&mut net, &mut call);
    media.log();
    // Same 2xx retransmitted: anchored again (same ports).
    net.send(
        TRUNK,
        &with_sdp(
            &reply(&at_trunk, 200, "OK", "callee1", TRUNK),
            "198.51.100.7",
        ),
    );
    net.settle();
    assert!(body(&net.take_one(PBX)).contains("for trunk"));
    assert_eq!(media.log().len(), 1);
    // Another fork answers: relayed, but the relay is not told.
    net.send(
        TRUNK,
        &with_sdp(
            &reply(&at_trunk, 200, "OK", "callee2", TRUNK),
            "203.0.113.9",
        ),
    );
    net.settle();
    assert_eq!(net.take_one(PBX).to_tag(), Some(&b"callee2"[..]));
    assert!(media.log().is_empty());
}

#[test]
fn a_refused_reinvite_is_answered_and_its_ack_absorbed() {
    let (mut net, media, mut call) = established("reinv");
    *media.fail.lock().unwrap() = Some(MediaFailure::BadSdp("bad"));
    net.send(
        PBX,
        &with_sdp(&crlf(&call.caller_request("INVITE")), "10.0.0.5"),
    );
    net.settle();
    assert!(net.take(TRUNK).is_empty());
    let answer = net.take_one(PBX);
    assert_eq!(answer.status(), Some(488));
    // The ACK for our 488 stays here.
    // (An ACK for a non-2xx reuses the INVITE's branch.)
    let invite_branch = call.branch_seq;
    let ack = call.caller_request("ACK");
    let id = call.call_id.replace('@', ".");
    let ack = ack.replace(
        &format!("{id}-{}", call.branch_seq),
        &format!("{id}-{invite_branch}"),
    );
    net.send(PBX, &ack);
    net.settle();
    assert!(net.take(TRUNK).is_empty(), "ACK for a local 488 forwarded");
    // The call itself is still up.
    assert_eq!(net.proxy.active_dialogs(), 1);
    net.run_for(Duration::from_secs(40));
    assert!(net.take(PBX).is_empty(), "488 retransmitted after its ACK");
}

#[test]
fn an_anchored_call_with_flowing_media_outlives_dialog_timeout() {
    let (mut net, media, _call) = established("long");
    *media.idle.lock().unwrap() = Some(Duration::from_millis(20));
    net.run_for(Duration::from_secs(13 * 3600));
    assert_eq!(
        net.proxy.active_dialogs(),
        1,
        "a talking call was forgotten"
    );
    // Once its media is gone too, the call is forgotten at the next check.
    *media.idle.lock().unwrap() = Some(Duration::from_secs(13 * 3600));
    net.run_for(Duration::from_secs(13 * 3600));
    assert_eq!(net.proxy.active_dialogs(), 0);
}

#[test]
fn a_refused_reoffer_puts_the_previous_sdp_back() {
    let (mut net, media, mut call) = established("glare");
    // The PBX moves its media (new address); the trunk refuses the re-INVITE (491).
    net.send(
        PBX,
        &with_sdp(&crlf(&call.caller_request("INVITE")), "10.0.0.99"),
    );
    net.settle();
    let at_trunk = net.take_one(TRUNK);
    net.send(TRUNK, &reply(&at_trunk, 491, "Request Pending", "", ""));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(491));
    let log = media.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[0].starts_with("offer ") && log[0].contains("pbx o=- 1 1 IN IP4 10.0.0.99"));
    assert!(
        log[1].starts_with("offer ") && log[1].contains("pbx o=- 1 1 IN IP4 10.0.0.5"),
        "the accepted SDP is restored: {log:?}"
    );
    // An accepted re-offer is not rolled back.
    net.send(
        PBX,
        &with_sdp(&crlf(&call.caller_request("INVITE")), "10.0.0.77"),
    );
    net.settle();
    // (The trunk also got our ACK for its 491.)
    let at_trunk = net
        .take(TRUNK)
        .into_iter()
        .find(|m| m.method() == Some(Method::Invite))
        .unwrap();
    net.send(
        TRUNK,
        &with_sdp(&reply(&at_trunk, 200, "OK", "", ""), "198.51.100.7"),
    );
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(200));
    let log = media.log();
    assert_eq!(log.len(), 2, "offer and answer only: {log:?}");
}
