//! Micro-benchmarks of the zero-copy SIP message view: parse a realistic 1.1 KB INVITE with
//! SDP, and parse + forward (push our Via, Max-Forwards − 1).
//!
//! `cargo bench -p trunkgate-sip --bench parse`

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use trunkgate_sip::message::rewrite::{Edits, rewrite};
use trunkgate_sip::message::{HeaderName, Limits, SipMessage, frame_len};

const INVITE: &[u8] = b"INVITE sip:+15551234567@carrier-a.example:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-524287-1---77ba0c2b4d9d1a8f;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:1001@10.0.0.5:5060;transport=udp>\r\n\
To: <sip:+15551234567@carrier-a.example>\r\n\
From: \"Alice 1001\" <sip:1001@pbx.example>;tag=8c4b1e2f\r\n\
Call-ID: 7f3e9a1c-2b4d-4e8f-9a0b-1c2d3e4f5a6b@10.0.0.5\r\n\
CSeq: 2 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Content-Type: application/sdp\r\n\
Supported: replaces, timer\r\n\
User-Agent: ExamplePBX 16.4.1\r\n\
Allow-Events: talk, hold, conference\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Record-Route: <sip:10.0.0.2;lr;ftag=8c4b1e2f>\r\n\
P-Asserted-Identity: \"Alice 1001\" <sip:+15550001001@pbx.example>\r\n\
Accept: application/sdp, application/dtmf-relay\r\n\
Content-Length: 304\r\n\
\r\n\
v=0\r\n\
o=- 3920181736 3920181736 IN IP4 10.0.0.5\r\n\
s=ExamplePBX\r\n\
c=IN IP4 10.0.0.5\r\n\
t=0 0\r\n\
m=audio 16384 RTP/AVP 0 8 9 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n\
a=rtcp:16385\r\n\
a=label:1\r\n";

fn benches(c: &mut Criterion) {
    let limits = Limits::default();
    let buf = Bytes::from_static(INVITE);
    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Elements(1));

    g.bench_function("parse_invite_1k", |b| {
        b.iter(|| {
            let m = SipMessage::parse(black_box(buf.clone()), &limits);
            black_box(m.is_ok())
        })
    });

    g.bench_function("parse_invite_1k_plus_accessors", |b| {
        b.iter(|| {
            let Ok(m) = SipMessage::parse(black_box(buf.clone()), &limits) else {
                return 0;
            };
            let v = m.top_via();
            black_box((v.branch(), m.call_id(), m.from_tag(), m.to_tag(), m.cseq()));
            m.values(HeaderName::RecordRoute).count()
        })
    });

    let via: &[u8] =
        b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-sbc-0123456789abcdef;rport";
    let prepend = [via];
    let mut out = BytesMut::with_capacity(4096);
    g.bench_function("parse_rewrite_invite_1k", |b| {
        b.iter(|| {
            let Ok(m) = SipMessage::parse(black_box(buf.clone()), &limits) else {
                return 0;
            };
            let mf = m.max_forwards().unwrap_or(70).saturating_sub(1);
            out.clear();
            rewrite(
                &m,
                &Edits {
                    prepend: &prepend,
                    max_forwards: Some(mf),
                    ..Edits::default()
                },
                &mut out,
            );
            black_box(out.len())
        })
    });

    g.bench_function("frame_len_invite_1k", |b| {
        b.iter(|| black_box(frame_len(black_box(INVITE), &limits)))
    });
    g.finish();
}

criterion_group!(sip, benches);
criterion_main!(sip);
