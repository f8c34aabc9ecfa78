//! Conformance (issue 11) through the core, on the shared table of cases
//! (`tests/common/conformance.rs`, also sent to the real binary by `tests/e2e_conformance.rs`):
//! from the PBX (an allowed peer) every case gets its exact answer, is forwarded, or gets
//! nothing; from a source in no allow list every case gets silence under
//! `unknown_source = "drop"`, and under `"reject"` only well-formed requests get their `403`;
//! a trunk's malformed responses are dropped and counted, never relayed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../../tests/common/conformance.rs"]
mod cases;

use super::simnet::{Call, PBX, PROXY, STRANGER, SimNet, TRUNK, TRUNK_B, TestAdmission, reply};
use crate::admission::{RejectReason, UnknownSource};
use crate::message::{Limits, Method, SipMessage};
use bytes::Bytes;
use cases::{CASES, Case, Expect, Vars, render, status};
use std::sync::Arc;
use std::sync::atomic::Ordering;

fn vars(i: usize, src: &str) -> Vars {
    Vars {
        id: format!("case{i}x"),
        tg: PROXY.into(),
        src: src.into(),
        ip: src.split(':').next().unwrap_or_default().into(),
        transport: "UDP",
        user: "77001".into(),
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Final answers (1xx left out) the sender got, and whether either trunk got the request.
fn outcome(net: &mut SimNet, sender: &str, id: &str) -> (Vec<Vec<u8>>, bool) {
    let answers = net
        .take_raw(sender)
        .iter()
        .filter(|a| status(a).is_none_or(|(code, _)| code >= 200))
        .map(|a| a.to_vec())
        .collect();
    let forwarded = [TRUNK, TRUNK_B]
        .iter()
        .any(|t| net.take_raw(t).iter().any(|m| contains(m, id)));
    (answers, forwarded)
}

fn parse_errors(net: &SimNet) -> u64 {
    net.metrics.parse_errors.load(Ordering::Relaxed)
}

fn rejects(net: &SimNet, reason: RejectReason) -> u64 {
    net.metrics.peers[0].rejects[reason.index()].load(Ordering::Relaxed)
}

#[test]
fn every_case_from_an_allowed_peer_gets_its_exact_answer() {
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let mut net = SimNet::new();
        let v = vars(i, PBX);
        net.send_bytes(PBX, &render(case, &v));
        net.settle();
        let (answers, forwarded) = outcome(&mut net, PBX, &v.id);
        if let Err(e) = cases::check(case, case.expect(false), &answers, forwarded) {
            failures.push(e);
            continue;
        }
        // Refusals are counted: a parse error (and a `malformed`/`too_large` reject) for
        // what did not parse, an `unsupported` reject for 416 and 420.
        let errors = parse_errors(&net);
        let counted = match case.expect(false) {
            Expect::Answer(416, _) | Expect::BadExtension(_) => {
                rejects(&net, RejectReason::Unsupported) == 1 && errors == 0
            }
            Expect::Answer(400 | 505 | 513, _) if case.rule != cases::MISSING || errors > 0 => {
                errors == 1 && rejects(&net, RejectReason::Malformed) == 1
            }
            Expect::Silent if case.rule == cases::GARBAGE => errors == 1,
            Expect::Forwarded => errors == 0,
            _ => true,
        };
        if !counted {
            failures.push(format!(
                "{}: not counted as expected (parse errors {errors}, malformed {}, unsupported {})",
                case.name,
                rejects(&net, RejectReason::Malformed),
                rejects(&net, RejectReason::Unsupported)
            ));
        }
        assert_eq!(
            net.proxy.active_dialogs() > 0,
            case.expect(false) == Expect::Forwarded && render(case, &v).starts_with(b"INVITE"),
            "{}: dialogs",
            case.name
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn every_case_from_an_unknown_source_gets_silence() {
    // Default policy: dropped before parsing.
    for (i, case) in CASES.iter().enumerate() {
        let mut net = SimNet::new();
        let v = vars(i, STRANGER);
        net.send_bytes(STRANGER, &render(case, &v));
        net.settle();
        let (answers, forwarded) = outcome(&mut net, STRANGER, &v.id);
        assert!(
            answers.is_empty() && !forwarded,
            "{}: a stranger got {} answers (forwarded: {forwarded})",
            case.name,
            answers.len()
        );
        assert_eq!(
            parse_errors(&net),
            0,
            "{}: parsed for a stranger",
            case.name
        );
    }
}

#[test]
fn under_reject_only_well_formed_requests_from_strangers_get_403() {
    for (i, case) in CASES.iter().enumerate() {
        let admission = TestAdmission {
            unknown: UnknownSource::Reject,
            ..Default::default()
        };
        let mut net = SimNet::with_admission(Some(Arc::new(admission)));
        let v = vars(i, STRANGER);
        let data = render(case, &v);
        let parsed = SipMessage::parse(Bytes::from(data.clone()), &Limits::default());
        let expect_403 = parsed.is_ok_and(|m| m.is_request() && m.method() != Some(Method::Ack));
        net.send_bytes(STRANGER, &data);
        net.settle();
        let (answers, forwarded) = outcome(&mut net, STRANGER, &v.id);
        assert!(!forwarded, "{}: forwarded for a stranger", case.name);
        let codes: Vec<_> = answers.iter().filter_map(|a| status(a)).collect();
        if expect_403 {
            assert_eq!(codes, vec![(403, "Forbidden".to_owned())], "{}", case.name);
        } else {
            assert!(codes.is_empty(), "{}: a stranger got {codes:?}", case.name);
        }
    }
}

/// The answer to a malformed request is written from what could be read: every Via line as
/// received, the first From, To (tag added), Call-ID and CSeq, `Content-Length: 0`.
#[test]
fn answers_to_malformed_requests_copy_what_the_sender_needs() {
    let case = CASES
        .iter()
        .find(|c| c.name.starts_with("two Call-IDs, CSeqs and Tos"))
        .unwrap();
    let mut net = SimNet::new();
    let v = vars(0, PBX);
    net.send_bytes(PBX, &render(case, &v));
    net.settle();
    let (answers, _) = outcome(&mut net, PBX, &v.id);
    assert_eq!(answers.len(), 1);
    let text = String::from_utf8_lossy(&answers[0]).into_owned();
    let answer = SipMessage::parse(Bytes::from(answers[0].clone()), &Limits::default()).unwrap();
    assert_eq!(answer.status(), Some(400));
    assert_eq!(answer.call_id(), format!("{}@conformance", v.id).as_bytes());
    assert_eq!(answer.cseq(), (1, Method::Invite));
    assert!(
        answer.to_tag().is_some_and(|t| t.starts_with(b"tg")),
        "{text}"
    );
    assert_eq!(
        answer.top_via().branch(),
        Some(format!("z9hG4bK-{}", v.id).as_bytes())
    );
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
    // The same request again gets the same answer (stateless, same tag).
    net.send_bytes(PBX, &render(case, &v));
    net.settle();
    let (again, _) = outcome(&mut net, PBX, &v.id);
    assert_eq!(again, answers);
}

/// Responses from a trunk that do not parse are dropped and counted; the call goes on and a
/// well-formed final is relayed.
#[test]
fn malformed_responses_from_a_trunk_are_dropped_and_counted() {
    let mut net = SimNet::new();
    let mut call = Call::new("mr", PBX, TRUNK);
    let (invite, _) = call.invite();
    net.send(PBX, &invite);
    net.settle();
    let sent = net.take_one(TRUNK);
    let good = reply(&sent, 180, "Ringing", "t1", TRUNK);
    let corrupt: [(&str, String); 6] = [
        (
            "two Call-IDs",
            good.replacen("Call-ID:", "Call-ID: other\r\nCall-ID:", 1),
        ),
        ("stray ; in Via", good.replacen(";branch=", ";;branch=", 1)),
        ("unterminated To", good.replacen("To: <", "To: \"open <", 1)),
        (
            "CSeq over 2^32",
            good.replacen("CSeq: 1", "CSeq: 9292394834772304023312", 1),
        ),
        (
            "status code over 699",
            good.replacen("SIP/2.0 180", "SIP/2.0 4294967301", 1),
        ),
        (
            "Content-Length past the datagram",
            good.replacen("Content-Length: 0", "Content-Length: 99", 1),
        ),
    ];
    for (i, (what, bad)) in corrupt.iter().enumerate() {
        assert_ne!(bad, &good, "{what}: the edit did not apply");
        net.send(TRUNK, bad);
        net.settle();
        assert!(net.take_raw(PBX).is_empty(), "{what}: relayed to the PBX");
        assert!(net.take_raw(TRUNK).is_empty(), "{what}: answered");
        assert_eq!(parse_errors(&net), i as u64 + 1, "{what}: not counted");
    }
    net.send(TRUNK, &reply(&sent, 486, "Busy Here", "t1", ""));
    net.settle();
    assert_eq!(net.take_one(PBX).status(), Some(486));
}

/// The rules one by one at the parse level, for the cases whose answer comes from parse.
#[test]
fn parse_errors_name_the_problem() {
    for (i, case) in CASES.iter().enumerate() {
        let data = render(case, &vars(i, PBX));
        let Err(error) = SipMessage::parse(Bytes::from(data), &Limits::default()) else {
            continue;
        };
        if let Expect::Answer(code, reason) = case.expect(false) {
            if case.rule == cases::HOPS && code != 400 {
                continue;
            }
            assert_eq!(
                error.response(),
                Some((code, reason.to_owned())),
                "{}: {error}",
                case.name
            );
        }
    }
}

/// Every rule of issue 11 point 1 has several cases, and every case is in one rule.
#[test]
fn the_table_covers_every_rule() {
    for rule in [
        cases::START,
        cases::URI,
        cases::VIA,
        cases::DUP,
        cases::CSEQ,
        cases::NUM,
        cases::QUOTE,
        cases::LENGTH,
        cases::MISSING,
        cases::SCHEME,
        cases::EXT,
        cases::VERSION,
        cases::HOPS,
        cases::ACKS,
        cases::GARBAGE,
        cases::VALID,
    ] {
        let n = CASES.iter().filter(|c: &&Case| c.rule == rule).count();
        assert!(n >= 2, "rule {rule:?} has {n} cases");
    }
}
