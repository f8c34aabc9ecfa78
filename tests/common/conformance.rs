//! The conformance table (issue 11): malformed and unusual requests written as data, each
//! with the exact answer Trunkgate gives an allowed peer. One table, two harnesses: the
//! SimNet test in the sip crate (`crates/trunkgate-sip/src/proxy/tests_conformance.rs`
//! includes this file by path) and `tests/e2e_conformance.rs` (the real binary, UDP and
//! TCP). Plain `std`, no dependencies, so both can compile it.
//!
//! A message is a template: a base request with edits (`find` → `replace`, first match), or
//! a whole raw text. Placeholders: `{id}` a token unique to the case and run (in the branch,
//! tags and Call-ID, so every answer can be told apart), `{tg}` Trunkgate's `ip:port`,
//! `{src}` the sender's `ip:port`, `{ip}` the sender's IP, `{T}` the transport (`UDP`/`TCP`),
//! `{user}` a Request-URI user that routes to the test trunk, `{len}` the body length
//! (computed after rendering), and the bulk makers `{VIAS70}` (70 more Via lines), `{VIAS140}`,
//! `{HDRS600}` (600 extension header lines) and `{BIG6K}` (one 6 kB header). Lines end in LF
//! here and CRLF on the wire.

#![allow(dead_code)]

/// What an allowed peer gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Exactly one response from Trunkgate itself, with this status code and reason phrase.
    Answer(u16, &'static str),
    /// `420 Bad Extension` with exactly this `Unsupported` value.
    BadExtension(&'static str),
    /// Accepted: forwarded to the trunk, no answer of Trunkgate's own.
    Forwarded,
    /// Nothing at all: no answer, nothing forwarded (ACKs, garbage without a usable Via).
    Silent,
    /// Over a stream: the connection is closed, nothing answered (a Content-Length that
    /// cannot frame the stream, RFC 3261 §18.3).
    Closed,
    /// Only meaningful on datagrams: over a stream the Content-Length *is* the framing (a
    /// larger one waits for more bytes); stream framing has its own tests
    /// (`message/frame.rs`, `e2e_sipp::tcp_garbage_closes_connection`).
    DatagramOnly,
}

/// The message of a case.
#[derive(Debug, Clone, Copy)]
pub enum Msg {
    /// A base request with `(find, replace)` edits, each applied to the first match.
    Edit(&'static str, &'static [(&'static str, &'static str)]),
    /// The whole message.
    Raw(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    /// The rule of issue 11 point 1 the case belongs to.
    pub rule: &'static str,
    pub msg: Msg,
    /// The answer over UDP.
    pub udp: Expect,
    /// The answer over TCP when it differs (`None`: the same as over UDP).
    pub tcp: Option<Expect>,
}

impl Case {
    pub fn expect(&self, stream: bool) -> Expect {
        match (stream, self.tcp) {
            (true, Some(e)) => e,
            _ => self.udp,
        }
    }
}

/// The reason phrase of the test trunk's own answers (`200`, or `486` to an INVITE), so a
/// relayed answer is never mistaken for one of Trunkgate's.
pub const CARRIER_REASON: &str = "Test Carrier";

/// Values of the placeholders for one sending.
#[derive(Debug, Clone)]
pub struct Vars {
    pub id: String,
    pub tg: String,
    pub src: String,
    pub ip: String,
    pub transport: &'static str,
    pub user: String,
}

pub const INVITE: &str = "INVITE sip:{user}@{tg} SIP/2.0
Via: SIP/2.0/{T} {src};branch=z9hG4bK-{id}
Max-Forwards: 70
From: \"Alice\" <sip:alice@{src}>;tag=f{id}
To: <sip:{user}@{tg}>
Call-ID: {id}@conformance
CSeq: 1 INVITE
Contact: <sip:alice@{src}>
Content-Type: application/sdp
Content-Length: {len}

v=0
o=- 1 1 IN IP4 {ip}
s=-
c=IN IP4 {ip}
t=0 0
m=audio 40000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
";

pub const OPTIONS: &str = "OPTIONS sip:{user}@{tg} SIP/2.0
Via: SIP/2.0/{T} {src};branch=z9hG4bK-{id}
Max-Forwards: 70
From: <sip:alice@{src}>;tag=f{id}
To: <sip:{user}@{tg}>
Call-ID: {id}@conformance
CSeq: 7 OPTIONS
Accept: application/sdp
Content-Length: 0

";

pub const ACK: &str = "ACK sip:{user}@{tg} SIP/2.0
Via: SIP/2.0/{T} {src};branch=z9hG4bK-{id}
Max-Forwards: 70
From: <sip:alice@{src}>;tag=f{id}
To: <sip:{user}@{tg}>;tag=never-seen
Call-ID: {id}@conformance
CSeq: 1 ACK
Content-Length: 0

";

const fn c(name: &'static str, rule: &'static str, msg: Msg, udp: Expect) -> Case {
    Case {
        name,
        rule,
        msg,
        udp,
        tcp: None,
    }
}

const fn ct(name: &'static str, rule: &'static str, msg: Msg, udp: Expect, tcp: Expect) -> Case {
    Case {
        name,
        rule,
        msg,
        udp,
        tcp: Some(tcp),
    }
}

use Expect::{Answer, BadExtension, Closed, DatagramOnly, Forwarded, Silent};
use Msg::{Edit, Raw};

pub const START: &str = "malformed start line";
pub const URI: &str = "malformed Request-URI";
pub const VIA: &str = "bad Via";
pub const DUP: &str = "more than one value in a single-value header";
pub const CSEQ: &str = "CSeq method differs from the request method";
pub const NUM: &str = "unparseable CSeq / Max-Forwards / Content-Length number";
pub const QUOTE: &str = "unbalanced quotes or angle brackets, malformed name-addr";
pub const LENGTH: &str = "Content-Length against the datagram";
pub const MISSING: &str = "missing mandatory header, malformed header line";
pub const SCHEME: &str = "416 Request-URI scheme";
pub const EXT: &str = "420 Proxy-Require";
pub const VERSION: &str = "505 SIP version";
pub const HOPS: &str = "483 / 482 / bounds, as before";
pub const ACKS: &str = "never an answer to ACK";
pub const GARBAGE: &str = "garbage without an answerable Via";
pub const VALID: &str = "well-formed, unusual or long: forwarded";

#[rustfmt::skip]
pub const CASES: &[Case] = &[
    // ---- 400: malformed start line ----
    c("two spaces after the method", START, Edit(INVITE, &[("INVITE sip:", "INVITE  sip:")]), Answer(400, "Malformed Request-Line")),
    ct("spaces at the end of the request line (RFC 4475 trws)", START, Edit(OPTIONS, &[(" SIP/2.0\n", " SIP/2.0  \n")]), Answer(400, "Malformed Request-Line"), Closed),
    ct("a fourth element", START, Edit(INVITE, &[(" SIP/2.0\n", " SIP/2.0 extra\n")]), Answer(400, "Malformed Request-Line"), Closed),
    c("method with a non-token character", START, Edit(OPTIONS, &[("OPTIONS sip:", "OPT(IONS sip:"), ("CSeq: 7 OPTIONS", "CSeq: 7 OPT(IONS")]), Answer(400, "Malformed Request-Line")),
    ct("no version", START, Edit(OPTIONS, &[(" SIP/2.0\n", "\n")]), Answer(400, "Malformed Request-Line"), Closed),
    // ---- 400: malformed Request-URI ----
    c("Request-URI in angle brackets (RFC 4475 ltgtruri)", URI, Edit(INVITE, &[("INVITE sip:{user}@{tg} ", "INVITE <sip:{user}@{tg}> ")]), Answer(400, "Malformed Request-URI")),
    c("space inside the Request-URI (RFC 4475 lwsruri)", URI, Edit(INVITE, &[("INVITE sip:{user}@{tg} ", "INVITE sip:{user}@{tg}; lr ")]), Answer(400, "Malformed Request-URI")),
    c("escaped headers in the Request-URI (RFC 4475 escruri)", URI, Edit(INVITE, &[("INVITE sip:{user}@{tg} ", "INVITE sip:{user}@{tg}?Route=%3Csip:example.com%3E ")]), Answer(400, "Malformed Request-URI")),
    c("IPv6 host without brackets (RFC 5118 4.4)", URI, Edit(OPTIONS, &[("OPTIONS sip:{user}@{tg} ", "OPTIONS sip:{user}@2001:db8::10 ")]), Answer(400, "Malformed Request-URI")),
    c("IPv6 host with an unclosed bracket (RFC 5118 4.5)", URI, Edit(OPTIONS, &[("OPTIONS sip:{user}@{tg} ", "OPTIONS sip:{user}@[2001:db8::10 ")]), Answer(400, "Malformed Request-URI")),
    c("port out of range", URI, Edit(INVITE, &[("INVITE sip:{user}@{tg} ", "INVITE sip:{user}@192.0.2.1:99999 ")]), Answer(400, "Malformed Request-URI")),
    c("sip URI with an empty user", URI, Edit(INVITE, &[("INVITE sip:{user}@{tg} ", "INVITE sip:@{tg} ")]), Answer(400, "Malformed Request-URI")),
    // ---- 400: bad Via ----
    c("stray ; and , in Via and Contact (RFC 4475 badinv01)", VIA, Edit(INVITE, &[(";branch=z9hG4bK-{id}\n", ";branch=z9hG4bK-{id};;,;,,\n"), ("Contact: <sip:alice@{src}>", "Contact: \"Joe\" <sip:alice@{src}>;;;;")]), Answer(400, "Malformed Via")),
    c("empty Via parameter", VIA, Edit(INVITE, &[(";branch=z9hG4bK-{id}", ";;branch=z9hG4bK-{id}")]), Answer(400, "Malformed Via")),
    c("trailing ; in Via", VIA, Edit(OPTIONS, &[(";branch=z9hG4bK-{id}\n", ";branch=z9hG4bK-{id};\n")]), Answer(400, "Malformed Via")),
    c("Via parameter without a value after =", VIA, Edit(OPTIONS, &[(";branch=z9hG4bK-{id}", ";rport=;branch=z9hG4bK-{id}")]), Answer(400, "Malformed Via")),
    c("Via sent-by with a space in the host", VIA, Edit(INVITE, &[("Via: SIP/2.0/{T} {src};", "Via: SIP/2.0/{T} bad host.example;")]), Answer(400, "Malformed Via")),
    c("Via sent-by port out of range", VIA, Edit(INVITE, &[("Via: SIP/2.0/{T} {src};", "Via: SIP/2.0/{T} 192.0.2.1:70000;")]), Answer(400, "Malformed Via")),
    c("Via IPv6 sent-by with an unclosed bracket", VIA, Edit(OPTIONS, &[("Via: SIP/2.0/{T} {src};", "Via: SIP/2.0/{T} [2001:db8::9:1;")]), Answer(400, "Malformed Via")),
    c("IPv6 Via with an empty parameter", VIA, Edit(INVITE, &[("Via: SIP/2.0/{T} {src};branch=z9hG4bK-{id}", "Via: SIP/2.0/{T} [2001:db8::9:1]:5060;branch=z9hG4bK-{id};;rport")]), Answer(400, "Malformed Via")),
    c("empty Via element between commas", VIA, Edit(INVITE, &[(";branch=z9hG4bK-{id}\n", ";branch=z9hG4bK-{id},, SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK-x\n")]), Answer(400, "Malformed Via")),
    c("second Via value malformed", VIA, Edit(INVITE, &[("Max-Forwards: 70\n", "Via: SIP/2.0/UDP\nMax-Forwards: 70\n")]), Answer(400, "Malformed Via")),
    // ---- 400: more than one value in a header that allows one ----
    c("two Call-IDs, CSeqs and Tos (RFC 4475 multi01)", DUP, Edit(INVITE, &[("Call-ID: {id}@conformance\n", "Call-ID: {id}@conformance\nCall-ID: {id}@other\n"), ("CSeq: 1 INVITE\n", "CSeq: 1 INVITE\nCSeq: 2 INVITE\n"), ("To: <sip:{user}@{tg}>\n", "To: <sip:{user}@{tg}>\nTo: <sip:other@{tg}>\n")]), Answer(400, "Duplicate To header")),
    c("two Call-IDs, full and compact name", DUP, Edit(INVITE, &[("Call-ID: {id}@conformance\n", "Call-ID: {id}@conformance\ni: {id}@other\n")]), Answer(400, "Duplicate Call-ID header")),
    c("two CSeqs", DUP, Edit(OPTIONS, &[("CSeq: 7 OPTIONS\n", "CSeq: 7 OPTIONS\nCSeq: 8 OPTIONS\n")]), Answer(400, "Duplicate CSeq header")),
    c("two Froms", DUP, Edit(INVITE, &[("Max-Forwards: 70\n", "Max-Forwards: 70\nf: <sip:mallory@{src}>;tag=m{id}\n")]), Answer(400, "Duplicate From header")),
    c("two Max-Forwards", DUP, Edit(INVITE, &[("Max-Forwards: 70\n", "Max-Forwards: 70\nMax-Forwards: 69\n")]), Answer(400, "Duplicate Max-Forwards header")),
    c("two equal Content-Lengths (RFC 4475 mcl01)", DUP, Edit(INVITE, &[("Content-Type: application/sdp\n", "l: {len}\nContent-Type: application/sdp\n")]), Answer(400, "Duplicate Content-Length header")),
    c("two Content-Types", DUP, Edit(INVITE, &[("Content-Type: application/sdp\n", "Content-Type: application/sdp\nc: text/plain\n")]), Answer(400, "Duplicate Content-Type header")),
    c("two Call-ID values on one line", DUP, Edit(INVITE, &[("Call-ID: {id}@conformance", "Call-ID: {id}@conformance, {id}@other")]), Answer(400, "Malformed Call-ID")),
    c("two To values on one line", DUP, Edit(INVITE, &[("To: <sip:{user}@{tg}>", "To: <sip:{user}@{tg}>, <sip:other@{tg}>")]), Answer(400, "Malformed To")),
    c("two Max-Forwards values on one line", DUP, Edit(OPTIONS, &[("Max-Forwards: 70", "Max-Forwards: 70, 69")]), Answer(400, "Malformed Max-Forwards")),
    c("two media types in Content-Type", DUP, Edit(INVITE, &[("Content-Type: application/sdp", "Content-Type: application/sdp, text/plain")]), Answer(400, "Malformed Content-Type")),
    c("unquoted display name with a comma (RFC 4475 baddn)", DUP, Edit(OPTIONS, &[("From: <sip:alice@{src}>", "From: Bell, Alexander <sip:alice@{src}>")]), Answer(400, "Malformed From")),
    // ---- 400: CSeq method ≠ request method ----
    c("OPTIONS with CSeq INVITE (RFC 4475 mismatch01)", CSEQ, Edit(OPTIONS, &[("CSeq: 7 OPTIONS", "CSeq: 7 INVITE")]), Answer(400, "CSeq method does not match request")),
    c("unknown method with another CSeq method (RFC 4475 mismatch02)", CSEQ, Edit(OPTIONS, &[("OPTIONS sip:", "NEWMETHOD sip:"), ("CSeq: 7 OPTIONS", "CSeq: 7 ECHO")]), Answer(400, "CSeq method does not match request")),
    c("method case differs", CSEQ, Edit(OPTIONS, &[("CSeq: 7 OPTIONS", "CSeq: 7 options")]), Answer(400, "CSeq method does not match request")),
    // ---- 400: unparseable numbers ----
    c("CSeq number over 2^32 (RFC 4475 scalar02)", NUM, Edit(OPTIONS, &[("CSeq: 7 OPTIONS", "CSeq: 36893488147419103232 OPTIONS")]), Answer(400, "Malformed CSeq")),
    c("CSeq without a number", NUM, Edit(INVITE, &[("CSeq: 1 INVITE", "CSeq: INVITE")]), Answer(400, "Malformed CSeq")),
    c("negative CSeq", NUM, Edit(INVITE, &[("CSeq: 1 INVITE", "CSeq: -1 INVITE")]), Answer(400, "Malformed CSeq")),
    c("Max-Forwards not a number", NUM, Edit(INVITE, &[("Max-Forwards: 70", "Max-Forwards: seventy")]), Answer(400, "Malformed Max-Forwards")),
    c("Max-Forwards over 255", NUM, Edit(OPTIONS, &[("Max-Forwards: 70", "Max-Forwards: 300")]), Answer(400, "Malformed Max-Forwards")),
    c("negative Max-Forwards", NUM, Edit(OPTIONS, &[("Max-Forwards: 70", "Max-Forwards: -1")]), Answer(400, "Malformed Max-Forwards")),
    ct("negative Content-Length (RFC 4475 ncl)", NUM, Edit(INVITE, &[("Content-Length: {len}", "Content-Length: -999")]), Answer(400, "Malformed Content-Length"), Closed),
    ct("Content-Length not a number", NUM, Edit(OPTIONS, &[("Content-Length: 0", "Content-Length: zero")]), Answer(400, "Malformed Content-Length"), Closed),
    ct("Content-Length over 2^64", NUM, Edit(OPTIONS, &[("Content-Length: 0", "Content-Length: 99999999999999999999999")]), Answer(400, "Malformed Content-Length"), Closed),
    // ---- 400: unbalanced quotes and angle brackets ----
    c("unterminated quoted display name (RFC 4475 quotbal)", QUOTE, Edit(INVITE, &[("To: <sip:{user}@{tg}>", "To: \"Mr. J. User <sip:{user}@{tg}>")]), Answer(400, "Malformed To")),
    c("From without its closing bracket", QUOTE, Edit(INVITE, &[("From: \"Alice\" <sip:alice@{src}>", "From: \"Alice\" <sip:alice@{src}")]), Answer(400, "Malformed From")),
    c("Contact without its closing bracket", QUOTE, Edit(INVITE, &[("Contact: <sip:alice@{src}>", "Contact: <sip:alice@{src}")]), Answer(400, "Malformed Contact")),
    c("Contact with a stray bracket", QUOTE, Edit(INVITE, &[("Contact: <sip:alice@{src}>", "Contact: <sip:alice@{src}>>")]), Answer(400, "Malformed Contact")),
    c("spaces inside the To brackets (RFC 4475 badaspec)", QUOTE, Edit(OPTIONS, &[("To: <sip:{user}@{tg}>", "To: \"Watson, Thomas\" < sip:{user}@{tg} >")]), Answer(400, "Malformed To")),
    c("bare Contact URI with ?headers (RFC 4475 regbadct)", QUOTE, Edit(INVITE, &[("Contact: <sip:alice@{src}>", "Contact: sip:alice@{src}?Route=%3Csip:sip.example.com%3E")]), Answer(400, "Malformed Contact")),
    c("empty Contact element", QUOTE, Edit(INVITE, &[("Contact: <sip:alice@{src}>", "Contact: <sip:alice@{src}>, ,<sip:bob@{src}>")]), Answer(400, "Malformed Contact")),
    c("From with an empty parameter", QUOTE, Edit(INVITE, &[(";tag=f{id}", ";;tag=f{id}")]), Answer(400, "Malformed From")),
    c("Route without its closing bracket", QUOTE, Edit(INVITE, &[("Max-Forwards: 70\n", "Max-Forwards: 70\nRoute: <sip:{tg};lr\n")]), Answer(400, "Malformed Route")),
    c("Record-Route with an unterminated quote", QUOTE, Edit(INVITE, &[("Max-Forwards: 70\n", "Max-Forwards: 70\nRecord-Route: <sip:192.0.2.1;lr;x=\"open>\n")]), Answer(400, "Malformed Record-Route")),
    c("P-Asserted-Identity with an unterminated quote", QUOTE, Edit(INVITE, &[("Max-Forwards: 70\n", "Max-Forwards: 70\nP-Asserted-Identity: \"Alice <sip:+15550001@{src}>\n")]), Answer(400, "Malformed P-Asserted-Identity")),
    c("IPv6 Contact with an unclosed bracket", QUOTE, Edit(INVITE, &[("Contact: <sip:alice@{src}>", "Contact: <sip:alice@[2001:db8::1>")]), Answer(400, "Malformed Contact")),
    // ---- 400: Content-Length against the datagram ----
    ct("Content-Length larger than the datagram (RFC 4475 clerr)", LENGTH, Edit(INVITE, &[("Content-Length: {len}", "Content-Length: 9999")]), Answer(400, "Content-Length larger than message"), DatagramOnly),
    ct("Content-Length smaller than the body: the surplus is discarded", LENGTH, Edit(INVITE, &[("Content-Length: {len}", "Content-Length: 4")]), Forwarded, DatagramOnly),
    // ---- 400: missing headers, malformed lines ----
    c("no From, To, Call-ID (RFC 4475 insuf)", MISSING, Edit(INVITE, &[("From: \"Alice\" <sip:alice@{src}>;tag=f{id}\n", ""), ("To: <sip:{user}@{tg}>\n", ""), ("Call-ID: {id}@conformance\n", "")]), Answer(400, "Missing From header")),
    c("no CSeq", MISSING, Edit(OPTIONS, &[("CSeq: 7 OPTIONS\n", "")]), Answer(400, "Missing CSeq header")),
    c("no Call-ID", MISSING, Edit(OPTIONS, &[("Call-ID: {id}@conformance\n", "")]), Answer(400, "Missing Call-ID header")),
    c("a header line without a colon", MISSING, Edit(INVITE, &[("Max-Forwards: 70\n", "Max-Forwards: 70\nThis line has no colon\n")]), Answer(400, "Malformed header line")),
    c("a NUL byte in a header", MISSING, Edit(INVITE, &[("Max-Forwards: 70\n", "Max-Forwards: 70\nX-Note: a\0b\n")]), Answer(400, "NUL byte in message")),
    c("INVITE without a From tag", MISSING, Edit(INVITE, &[(";tag=f{id}", "")]), Answer(400, "Missing From Tag")),
    // ---- 416 ----
    c("unknown scheme (RFC 4475 unkscm)", SCHEME, Edit(OPTIONS, &[("OPTIONS sip:{user}@{tg} ", "OPTIONS nobodyknowsthisscheme:totallyopaquecontent ")]), Answer(416, "Unsupported URI Scheme")),
    c("known but atypical scheme (RFC 4475 novelsc)", SCHEME, Edit(OPTIONS, &[("OPTIONS sip:{user}@{tg} ", "OPTIONS soap.beep://192.0.2.103:3002 ")]), Answer(416, "Unsupported URI Scheme")),
    c("INVITE to an http URI", SCHEME, Edit(INVITE, &[("INVITE sip:{user}@{tg} ", "INVITE http://www.example.com/ ")]), Answer(416, "Unsupported URI Scheme")),
    c("INVITE to an urn URI", SCHEME, Edit(INVITE, &[("INVITE sip:{user}@{tg} ", "INVITE urn:service:sos ")]), Answer(416, "Unsupported URI Scheme")),
    // ---- 420 ----
    c("two unknown Proxy-Require options (RFC 4475 bext01)", EXT, Edit(OPTIONS, &[("Accept: application/sdp\n", "Require: nothingSupportsThis\nProxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis\n")]), BadExtension("noProxiesSupportThis, norDoAnyProxiesSupportThis")),
    c("one unknown Proxy-Require option on an INVITE", EXT, Edit(INVITE, &[("Max-Forwards: 70\n", "Max-Forwards: 70\nProxy-Require: sec-agree\n")]), BadExtension("sec-agree")),
    c("Proxy-Require on two lines", EXT, Edit(INVITE, &[("Max-Forwards: 70\n", "Proxy-Require: foo\nMax-Forwards: 70\nProxy-Require: bar\n")]), BadExtension("foo, bar")),
    // ---- 505 ----
    c("SIP/7.0 in the request line and the Via (RFC 4475 badvers)", VERSION, Edit(OPTIONS, &[(" SIP/2.0\n", " SIP/7.0\n"), ("Via: SIP/2.0/", "Via: SIP/7.0/")]), Answer(505, "Version Not Supported")),
    c("SIP/3.0 INVITE", VERSION, Edit(INVITE, &[(" SIP/2.0\n", " SIP/3.0\n")]), Answer(505, "Version Not Supported")),
    // ---- 483, 482, bounds (as before) ----
    c("Max-Forwards 0 (RFC 4475 zeromf)", HOPS, Edit(OPTIONS, &[("Max-Forwards: 70", "Max-Forwards: 0")]), Answer(483, "Too Many Hops")),
    c("our own Via in the request", HOPS, Edit(INVITE, &[("Max-Forwards: 70\n", "Via: SIP/2.0/{T} {tg};branch=z9hG4bK-tg-1-1\nMax-Forwards: 70\n")]), Answer(482, "Loop Detected")),
    c("more Via values than max_via (140)", HOPS, Edit(OPTIONS, &[("Max-Forwards: 70\n", "{VIAS140}Max-Forwards: 70\n")]), Answer(400, "Too Many Via Headers")),
    c("more header lines than max_headers (600)", HOPS, Edit(OPTIONS, &[("Accept: application/sdp\n", "{HDRS600}")]), Answer(400, "Too Many Headers")),
    // ---- never an answer to an ACK ----
    c("ACK with two Call-IDs", ACKS, Edit(ACK, &[("Call-ID: {id}@conformance\n", "Call-ID: {id}@conformance\nCall-ID: x\n")]), Silent),
    c("ACK with a malformed Via", ACKS, Edit(ACK, &[(";branch=z9hG4bK-{id}", ";;branch=z9hG4bK-{id}")]), Silent),
    c("ACK with CSeq INVITE", ACKS, Edit(ACK, &[("CSeq: 1 ACK", "CSeq: 1 INVITE")]), Silent),
    c("ACK to an unknown scheme", ACKS, Edit(ACK, &[("ACK sip:{user}@{tg} ", "ACK urn:service:sos ")]), Silent),
    // ---- garbage: silence ----
    ct("not SIP at all", GARBAGE, Raw("THIS IS NOT SIP {id}\nno colon here\n\n"), Silent, Closed),
    c("no Via header", GARBAGE, Edit(INVITE, &[("Via: SIP/2.0/{T} {src};branch=z9hG4bK-{id}\n", "")]), Silent),
    c("a Via that is not a Via", GARBAGE, Edit(INVITE, &[("Via: SIP/2.0/{T} {src};branch=z9hG4bK-{id}", "Via: garbage-{id}")]), Silent),
    ct("an HTTP request", GARBAGE, Raw("GET /{id} HTTP/1.1\nHost: {tg}\n\n"), Silent, Closed),
    c("a malformed response", GARBAGE, Raw("SIP/2.0 2x0 OK\nVia: SIP/2.0/{T} {src};branch=z9hG4bK-{id}\nCall-ID: {id}\n\n"), Silent),
    // ---- well-formed, unusual or long: forwarded ----
    c("the base INVITE", VALID, Edit(INVITE, &[]), Forwarded),
    c("the base OPTIONS", VALID, Edit(OPTIONS, &[]), Forwarded),
    c("70 more Via values and a 6 kB header", VALID, Edit(INVITE, &[("Max-Forwards: 70\n", "{VIAS70}Max-Forwards: 70\n{BIG6K}")]), Forwarded),
    c("whitespace and folding everywhere (RFC 4475 wsinv)", VALID, Edit(INVITE, &[("Via: SIP/2.0/{T} {src};branch=z9hG4bK-{id}\n", "Via  : SIP  /   2.0\n /{T}\n    {src} ;\n  branch  =   z9hG4bK-{id}\n"), ("Max-Forwards: 70", "MaX-fOrWaRdS: 0068"), ("From: \"Alice\" <sip:alice@{src}>;tag=f{id}", "from   : \"J Rosenberg \\\\\\\"\"       <sip:alice@{src}>\n  ;\n  tag = f{id}"), ("CSeq: 1 INVITE", "cseq: 0001\n  INVITE"), ("Content-Type: application/sdp\n", "Content-Type: application/sdp\nUnknownHeaderWithUnusualValue: ;;,,;;,;\ns :\nNewFangledHeader:   newfangled value\n continued newfangled value\n")]), Forwarded),
    c("compact names and mixed case", VALID, Edit(INVITE, &[("Via:", "v:"), ("From:", "f:"), ("To:", "t:"), ("Call-ID:", "i:"), ("Contact:", "m:"), ("Content-Type:", "c:"), ("Content-Length:", "l:")]), Forwarded),
    c("unusual but legal characters (RFC 4475 intmeth, without its NUL)", VALID, Edit(OPTIONS, &[("OPTIONS sip:{user}@{tg} ", "OPTIONS sip:{user}~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@{tg} "), ("From: <sip:alice@{src}>;tag=f{id}", "From: token1~` token2'+_ token3*%!.- <sip:alice@{src}>;fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\";tag=f{id}"), ("Call-ID: {id}@conformance", "Call-ID: {id}.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"), ("Accept: application/sdp\n", "extensionHeader-!.%*+_`'~: \u{5927}\u{505c}\u{96fb}\n")]), Forwarded),
    c("escapes in URIs and headers (RFC 4475 esc01, escnull)", VALID, Edit(INVITE, &[("To: <sip:{user}@{tg}>", "To: sip:%75se%72@{tg}"), ("Contact: <sip:alice@{src}>", "Contact: <sip:cal%6Cer@{src};%6C%72;n%61me=v%61lue%25%34%31>, <sip:%00@{src}>")]), Forwarded),
    c("display name without space before < (RFC 4475 lwsdisp)", VALID, Edit(OPTIONS, &[("From: <sip:alice@{src}>", "From: caller<sip:alice@{src}>")]), Forwarded),
    c("semicolons in the user part (RFC 4475 semiuri)", VALID, Edit(OPTIONS, &[("OPTIONS sip:{user}@{tg} ", "OPTIONS sip:{user};par=u%40example.net@{tg} ")]), Forwarded),
    c("unknown transports in lower Vias (RFC 4475 transports)", VALID, Edit(OPTIONS, &[("Max-Forwards: 70\n", "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf\nVia: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj\nVia: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en\nMax-Forwards: 70\n")]), Forwarded),
    c("IPv6 everywhere (RFC 5118)", VALID, Edit(INVITE, &[("Max-Forwards: 70\n", "Via: SIP/2.0/UDP [2001:db8::9:1]:5060;branch=z9hG4bKas3-111;received=[2001:db8::9:255];rport=5061\nVia: SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbzz1;received=2001:db8::9:255\nMax-Forwards: 70\n"), ("Contact: <sip:alice@{src}>", "Contact: \"Caller\" <sip:caller@[2001:db8::1]:5060;transport=udp>"), ("To: <sip:{user}@{tg}>", "To: <sip:{user}@[2001:db8::10]:5070>")]), Forwarded),
    c("a bare z9hG4bK branch (RFC 4475 badbranch) and no Max-Forwards", VALID, Edit(OPTIONS, &[(";branch=z9hG4bK-{id}", ";branch=z9hG4bK;x={id}"), ("Max-Forwards: 70\n", "")]), Forwarded),
    c("unknown method with its CSeq", VALID, Edit(OPTIONS, &[("OPTIONS sip:", "NEWMETHOD sip:"), ("CSeq: 7 OPTIONS", "CSeq: 7 NEWMETHOD")]), Forwarded),
    c("unknown URI schemes in To and Contact (RFC 4475 unksm2)", VALID, Edit(OPTIONS, &[("To: <sip:{user}@{tg}>", "To: isbn:2983792873"), ("Accept: application/sdp\n", "Contact: <name:John_Smith>, <tel:+1-972-555-2222>\n")]), Forwarded),
    c("a known Require option and a Supported list", VALID, Edit(INVITE, &[("Max-Forwards: 70\n", "Max-Forwards: 70\nRequire: 100rel\nSupported: timer, replaces\n")]), Forwarded),
    c("multipart body with a boundary parameter (RFC 4475 mpart01)", VALID, Edit(INVITE, &[("Content-Type: application/sdp", "Content-Type: multipart/mixed;boundary=7a9cbec02ceef655")]), Forwarded),
    c("tel Request-URI", VALID, Edit(OPTIONS, &[("OPTIONS sip:{user}@{tg} ", "OPTIONS tel:{user};phone-context=example.com ")]), Forwarded),
    ct("two messages in one datagram (RFC 4475 dblreq)", VALID, Edit(OPTIONS, &[("\n\n", "\n\nINVITE sip:x@{tg} SIP/2.0\nVia: SIP/2.0/UDP {src};branch=z9hG4bK-second\n\n")]), Forwarded, DatagramOnly),
];

/// The `n`-th (from 0) Via line of a long chain, distinct per line.
fn via_line(n: usize) -> String {
    format!(
        "Via: SIP/2.0/UDP proxy{n}.example.net:5060;branch=z9hG4bK-chain-{n}-abcdef0123456789;received=192.0.2.{}\n",
        n % 250 + 1
    )
}

/// Render `case` with `vars`: the bytes to send (CRLF line ends).
pub fn render(case: &Case, vars: &Vars) -> Vec<u8> {
    let mut text = match case.msg {
        Msg::Raw(t) => t.to_owned(),
        Msg::Edit(base, edits) => {
            let mut t = base.to_owned();
            for (from, to) in edits {
                assert!(
                    t.contains(from),
                    "conformance case {:?}: edit target {from:?} not in its base message",
                    case.name
                );
                t = t.replacen(from, to, 1);
            }
            t
        }
    };
    let bulk = |n: usize, line: &dyn Fn(usize) -> String| (0..n).map(line).collect::<String>();
    for (key, value) in [
        ("{VIAS70}", bulk(70, &via_line)),
        ("{VIAS140}", bulk(140, &via_line)),
        ("{HDRS600}", bulk(600, &|n| format!("X-Filler-{n}: {n}\n"))),
        ("{BIG6K}", format!("X-Big: {}\n", "abcdefghij".repeat(600))),
    ] {
        text = text.replace(key, &value);
    }
    let text = text
        .replace("{id}", &vars.id)
        .replace("{tg}", &vars.tg)
        .replace("{src}", &vars.src)
        .replace("{ip}", &vars.ip)
        .replace("{T}", vars.transport)
        .replace("{user}", &vars.user)
        .replace('\n', "\r\n");
    let body_len = text
        .find("\r\n\r\n")
        .map_or(0, |head| text.len() - head - 4);
    text.replace("{len}", &body_len.to_string()).into_bytes()
}

/// Status code and reason phrase of a response (`None` for anything else).
pub fn status(message: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(message);
    let line = text.lines().next()?;
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((code.parse().ok()?, reason.to_owned()))
}

/// The value of the first header `name` (full name, case-insensitive) of a message.
pub fn header(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// Check one case's outcome. `answers`: what the sender received that carries the case's
/// id, 1xx left out; `forwarded`: whether the trunk received the request.
pub fn check(
    case: &Case,
    expect: Expect,
    answers: &[Vec<u8>],
    forwarded: bool,
) -> Result<(), String> {
    let got: Vec<String> = answers
        .iter()
        .map(|a| {
            String::from_utf8_lossy(a)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let fail = |what: String| {
        Err(format!(
            "{}: {what}; got {got:?}, forwarded: {forwarded}",
            case.name
        ))
    };
    match expect {
        Expect::Answer(code, reason) => {
            if forwarded {
                return fail(format!("expected {code} {reason}, but it was forwarded"));
            }
            match answers {
                [one] if status(one) == Some((code, reason.to_owned())) => Ok(()),
                _ => fail(format!("expected exactly one {code} {reason}")),
            }
        }
        Expect::BadExtension(unsupported) => match answers {
            [one]
                if status(one) == Some((420, "Bad Extension".to_owned()))
                    && header(one, "Unsupported").as_deref() == Some(unsupported)
                    && !forwarded =>
            {
                Ok(())
            }
            _ => fail(format!(
                "expected one 420 Bad Extension with Unsupported: {unsupported}"
            )),
        },
        Expect::Forwarded => {
            let own = answers
                .iter()
                .find(|a| status(a).is_none_or(|(_, reason)| reason != CARRIER_REASON));
            if !forwarded {
                return fail("expected it forwarded to the trunk".into());
            }
            match own.and_then(|a| status(a)) {
                Some((code, reason)) => {
                    fail(format!("forwarded, but Trunkgate answered {code} {reason}"))
                }
                None if own.is_some() => fail("forwarded, but something else came back".into()),
                None => Ok(()),
            }
        }
        Expect::Silent | Expect::Closed => {
            if answers.is_empty() && !forwarded {
                Ok(())
            } else {
                fail("expected no answer and nothing forwarded".into())
            }
        }
        Expect::DatagramOnly => Ok(()),
    }
}
