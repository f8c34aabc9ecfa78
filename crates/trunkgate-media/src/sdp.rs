//! SDP bodies (RFC 8866, offer/answer RFC 3264, `a=rtcp` RFC 3605): what the relay needs
//! to know about each media stream, and the rewrite that anchors a body on Trunkgate.
//!
//! [`parse`] reads the media streams (kind, port, transport, connection address, RTCP port,
//! direction, clock rate) and remembers where every address and port sits in the body;
//! [`rewrite`] copies the body with those spans replaced and every other byte untouched
//! (codecs, `a=crypto`, `a=fingerprint`, ICE lines, unknown lines, line endings).
//!
//! Bodies are hostile input: parsing is one pass over at most [`MAX_BODY`] bytes and at
//! most [`MAX_STREAMS`] `m=` lines, and never panics.

use smallvec::SmallVec;
use std::io::Write as _;
use std::net::IpAddr;

/// Largest body accepted, in bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Most `m=` lines accepted.
pub const MAX_STREAMS: usize = 16;

/// A parsed SDP body: its media streams, in `m=` order, and the spans [`rewrite`] edits.
#[derive(Debug, Clone)]
pub struct Sdp {
    pub media: SmallVec<[Media; 4]>,
    /// Spans to replace, in body order.
    edits: Vec<Edit>,
}

/// Stream direction (RFC 3264 §5.1, RFC 8866 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// The `<media>` field of an `m=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
    Image,
    Application,
    Text,
    Message,
    Other,
}

/// One media stream (`m=` section).
#[derive(Debug, Clone)]
pub struct Media {
    pub kind: MediaKind,
    /// The `m=` port (0 = rejected/disabled stream).
    pub port: u16,
    /// The transport contains "RTP" (RTP/AVP, RTP/SAVP, UDP/TLS/RTP/SAVPF …). False for e.g.
    /// `udptl` (T.38): relayed as opaque UDP, no RTP statistics.
    pub rtp: bool,
    /// Effective connection address: the media-level `c=`, else the session-level one.
    pub conn: Option<IpAddr>,
    /// From `a=rtcp:PORT [IN IP4 addr]` (RFC 3605); `None` when absent.
    pub rtcp_port: Option<u16>,
    /// `a=rtcp-mux` (RFC 5761).
    pub rtcp_mux: bool,
    /// The media-level direction attribute, else the session-level one, else sendrecv.
    pub direction: Direction,
    /// RTP clock rate of the first payload format of the `m=` line: from its `a=rtpmap`,
    /// else the RFC 3551 static table, else 8000.
    pub clock_rate: u32,
}

impl Media {
    /// A stream on hold: not sendrecv, or a hold connection address (0.0.0.0 / ::).
    pub fn on_hold(&self) -> bool {
        self.direction != Direction::SendRecv || self.conn.is_some_and(|a| a.is_unspecified())
    }
}

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("body does not start with a v= line")]
    NotSdp,
    #[error("malformed SDP line (not <type>=<value>)")]
    BadLine,
    #[error("malformed c= line (want IN IP4|IP6 <address>)")]
    BadConnection,
    #[error("multicast c= address (not relayed)")]
    Multicast,
    #[error("malformed m= line (want <media> <port> <proto> <fmt>...)")]
    BadMedia,
    #[error("more than 16 m= lines")]
    TooManyStreams,
    #[error("SDP body larger than 64 KiB")]
    TooLarge,
}

impl SdpError {
    /// Short static text, for [`crate::MediaError::BadSdp`].
    pub fn as_str(&self) -> &'static str {
        match self {
            SdpError::NotSdp => "body does not start with a v= line",
            SdpError::BadLine => "malformed SDP line (not <type>=<value>)",
            SdpError::BadConnection => "malformed c= line (want IN IP4|IP6 <address>)",
            SdpError::Multicast => "multicast c= address (not relayed)",
            SdpError::BadMedia => "malformed m= line (want <media> <port> <proto> <fmt>...)",
            SdpError::TooManyStreams => "more than 16 m= lines",
            SdpError::TooLarge => "SDP body larger than 64 KiB",
        }
    }
}

/// A span of the body that [`rewrite`] replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Edit {
    start: usize,
    end: usize,
    what: EditKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EditKind {
    /// `IP4`/`IP6` of an `o=` or non-hold `c=` line.
    AddrType,
    /// The unicast address of an `o=` or non-hold `c=` line.
    Addr,
    /// The `m=` port (with any `/<count>`) of stream `i`.
    MediaPort(u8),
    /// The `a=rtcp:` port of stream `i`.
    RtcpPort(u8),
    /// The address type of an `a=rtcp:` line of stream `i`.
    RtcpAddrType(u8),
    /// The address of an `a=rtcp:` line of stream `i`.
    RtcpAddr(u8),
}

/// Parses an SDP body. Tolerates CRLF or bare LF, trailing whitespace, blank lines, a
/// missing final newline and unknown line types; refuses multicast connection addresses.
pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
    if body.len() > MAX_BODY {
        return Err(SdpError::TooLarge);
    }
    let mut sdp = Sdp {
        media: SmallVec::new(),
        edits: Vec::new(),
    };
    let mut session_conn: Option<IpAddr> = None;
    let mut session_dir: Option<Direction> = None;
    // Per-stream state that is resolved at the end.
    let mut streams: SmallVec<[StreamState; 4]> = SmallVec::new();
    let mut seen_version = false;

    for (start, line) in lines(body) {
        if !seen_version {
            if !line.starts_with(b"v=") {
                return Err(SdpError::NotSdp);
            }
            seen_version = true;
            continue;
        }
        let [kind, b'=', ..] = *line else {
            return Err(SdpError::BadLine);
        };
        if !kind.is_ascii_alphabetic() {
            return Err(SdpError::BadLine);
        }
        let value_at = start + 2;
        let value = &line[2..];
        match kind {
            b'o' if streams.is_empty() => origin(value, value_at, &mut sdp.edits),
            b'c' => {
                let addr = connection(value, value_at, &mut sdp.edits)?;
                match streams.last_mut() {
                    Some(s) => {
                        s.conn.get_or_insert(addr);
                    }
                    None => {
                        session_conn.get_or_insert(addr);
                    }
                }
            }
            b'm' => {
                if streams.len() >= MAX_STREAMS {
                    return Err(SdpError::TooManyStreams);
                }
                let i = streams.len() as u8;
                streams.push(media_line(value, value_at, i, &mut sdp.edits)?);
            }
            b'a' => match streams.last_mut() {
                Some(s) => s.attribute(value, value_at, &mut sdp.edits),
                None => {
                    if let Some(d) = direction(value) {
                        session_dir = Some(d);
                    }
                }
            },
            _ => {}
        }
    }
    if !seen_version {
        return Err(SdpError::NotSdp);
    }
    sdp.media = streams
        .into_iter()
        .map(|s| Media {
            kind: s.kind,
            port: s.port,
            rtp: s.rtp,
            conn: s.conn.or(session_conn),
            rtcp_port: s.rtcp_port,
            rtcp_mux: s.rtcp_mux,
            direction: s.direction.or(session_dir).unwrap_or(Direction::SendRecv),
            clock_rate: if s.rtp {
                s.rtpmap_rate
                    .or_else(|| s.first_pt.and_then(static_clock_rate))
                    .unwrap_or(8000)
            } else {
                8000
            },
        })
        .collect();
    Ok(sdp)
}

/// Writes `body` to `out` with every address that names a media endpoint replaced by
/// `addr`: the `o=` line's unicast address (and its IP4/IP6 address type), every `c=` line
/// (session and media level) except a hold address 0.0.0.0 / :: which stays as it is, and
/// for media section `i` where `ports[i] == Some(p)`: the `m=` port becomes `p` (a
/// `/<count>` suffix is dropped: one pair is relayed) and an `a=rtcp:` line's port becomes
/// `p + 1` (its address, if present, becomes `addr`). `ports[i] == None` (or `i >=
/// ports.len()`): that `m=` line and its `a=rtcp` stay untouched. Every other byte is copied
/// as is, so each line keeps its own line ending. `sdp` is what `parse(body)` returned; spans
/// that do not fit `body` are not applied.
pub fn rewrite(body: &[u8], sdp: &Sdp, addr: IpAddr, ports: &[Option<u16>], out: &mut Vec<u8>) {
    out.reserve(body.len() + 64);
    let addrtype: &[u8] = if addr.is_ipv4() { b"IP4" } else { b"IP6" };
    let port_of = |i: u8| ports.get(usize::from(i)).copied().flatten();
    let mut at = 0;
    for e in &sdp.edits {
        let Some(before) = body.get(at..e.start) else {
            break;
        };
        if e.end > body.len() || e.end < e.start {
            break;
        }
        // Edits whose stream keeps its port are copied as they are.
        let replace = match e.what {
            EditKind::AddrType | EditKind::Addr => true,
            EditKind::MediaPort(i)
            | EditKind::RtcpPort(i)
            | EditKind::RtcpAddrType(i)
            | EditKind::RtcpAddr(i) => port_of(i).is_some(),
        };
        if !replace {
            continue;
        }
        out.extend_from_slice(before);
        match e.what {
            EditKind::AddrType | EditKind::RtcpAddrType(_) => out.extend_from_slice(addrtype),
            EditKind::Addr | EditKind::RtcpAddr(_) => {
                let _ = write!(out, "{addr}");
            }
            EditKind::MediaPort(i) => {
                let _ = write!(out, "{}", port_of(i).unwrap_or(0));
            }
            EditKind::RtcpPort(i) => {
                let _ = write!(out, "{}", port_of(i).unwrap_or(0).wrapping_add(1));
            }
        }
        at = e.end;
    }
    out.extend_from_slice(body.get(at..).unwrap_or_default());
}

/// What is known about a stream while its section is read.
struct StreamState {
    kind: MediaKind,
    port: u16,
    rtp: bool,
    index: u8,
    first_pt: Option<u8>,
    rtpmap_rate: Option<u32>,
    conn: Option<IpAddr>,
    rtcp_port: Option<u16>,
    rtcp_mux: bool,
    direction: Option<Direction>,
}

impl StreamState {
    /// A media-level `a=` line (`value` after `a=`, at `value_at` in the body).
    fn attribute(&mut self, value: &[u8], value_at: usize, edits: &mut Vec<Edit>) {
        if let Some(d) = direction(value) {
            self.direction = Some(d);
        } else if value == b"rtcp-mux" {
            self.rtcp_mux = true;
        } else if let Some(rest) = value.strip_prefix(b"rtcp:") {
            self.rtcp(rest, value_at + 5, edits);
        } else if let Some(rest) = value.strip_prefix(b"rtpmap:") {
            // a=rtpmap:<payload type> <encoding name>/<clock rate>[/<parameters>]
            let mut t = tokens(rest);
            let (Some((_, pt)), Some((_, enc))) = (t.next(), t.next()) else {
                return;
            };
            if number::<u8>(pt).is_none() || number::<u8>(pt) != self.first_pt {
                return;
            }
            let rate = enc.split(|&b| b == b'/').nth(1).and_then(number::<u32>);
            if let Some(rate) = rate.filter(|&r| r > 0) {
                self.rtpmap_rate.get_or_insert(rate);
            }
        }
    }

    /// `a=rtcp:<port> [IN IP4|IP6 <address>]`. A port that does not parse leaves the line
    /// alone (and `rtcp_port` `None`). A repeated `a=rtcp` is rewritten too; the first counts.
    fn rtcp(&mut self, rest: &[u8], rest_at: usize, edits: &mut Vec<Edit>) {
        let mut t = tokens(rest);
        let Some((p_at, p)) = t.next() else { return };
        let Some(port) = number::<u16>(p) else { return };
        self.rtcp_port.get_or_insert(port);
        let i = self.index;
        let span = |at: usize, tok: &[u8], what| Edit {
            start: rest_at + at,
            end: rest_at + at + tok.len(),
            what,
        };
        edits.push(span(p_at, p, EditKind::RtcpPort(i)));
        // The address is replaced even when it is a host name: it names the old endpoint.
        if let (Some((_, b"IN")), Some((ty_at, ty)), Some((a_at, a))) =
            (t.next(), t.next(), t.next())
        {
            edits.push(span(ty_at, ty, EditKind::RtcpAddrType(i)));
            edits.push(span(a_at, a, EditKind::RtcpAddr(i)));
        }
    }
}

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`: the
/// address type and address are rewritten. A malformed `o=` is left alone (it names no
/// media endpoint).
fn origin(value: &[u8], value_at: usize, edits: &mut Vec<Edit>) {
    let mut t = tokens(value).skip(3);
    if let (Some((_, b"IN")), Some((ty_at, ty)), Some((a_at, a)), None) =
        (t.next(), t.next(), t.next(), t.next())
    {
        edits.push(Edit {
            start: value_at + ty_at,
            end: value_at + ty_at + ty.len(),
            what: EditKind::AddrType,
        });
        edits.push(Edit {
            start: value_at + a_at,
            end: value_at + a_at + a.len(),
            what: EditKind::Addr,
        });
    }
}

/// `c=IN IP4|IP6 <address>[/<ttl>[/<count>]]`. A hold address (0.0.0.0 / ::) is returned
/// but not marked for rewriting.
fn connection(value: &[u8], value_at: usize, edits: &mut Vec<Edit>) -> Result<IpAddr, SdpError> {
    let mut t = tokens(value);
    let (Some((_, b"IN")), Some((ty_at, ty)), Some((a_at, a)), None) =
        (t.next(), t.next(), t.next(), t.next())
    else {
        return Err(SdpError::BadConnection);
    };
    if ty != b"IP4" && ty != b"IP6" {
        return Err(SdpError::BadConnection);
    }
    let host = a.split(|&b| b == b'/').next().unwrap_or_default();
    let addr = ip(host).ok_or(SdpError::BadConnection)?;
    if addr.is_multicast() {
        return Err(SdpError::Multicast);
    }
    if !addr.is_unspecified() {
        edits.push(Edit {
            start: value_at + ty_at,
            end: value_at + ty_at + ty.len(),
            what: EditKind::AddrType,
        });
        edits.push(Edit {
            start: value_at + a_at,
            end: value_at + a_at + a.len(),
            what: EditKind::Addr,
        });
    }
    Ok(addr)
}

/// `m=<media> <port>[/<count>] <proto> [<fmt> ...]`.
fn media_line(
    value: &[u8],
    value_at: usize,
    index: u8,
    edits: &mut Vec<Edit>,
) -> Result<StreamState, SdpError> {
    let mut t = tokens(value);
    let (Some((_, kind)), Some((p_at, p)), Some((_, proto))) = (t.next(), t.next(), t.next())
    else {
        return Err(SdpError::BadMedia);
    };
    let port_digits = p.split(|&b| b == b'/').next().unwrap_or_default();
    let port = number::<u16>(port_digits).ok_or(SdpError::BadMedia)?;
    edits.push(Edit {
        start: value_at + p_at,
        end: value_at + p_at + p.len(),
        what: EditKind::MediaPort(index),
    });
    let rtp = proto.windows(3).any(|w| w.eq_ignore_ascii_case(b"RTP"));
    Ok(StreamState {
        kind: match kind {
            b"audio" => MediaKind::Audio,
            b"video" => MediaKind::Video,
            b"image" => MediaKind::Image,
            b"application" => MediaKind::Application,
            b"text" => MediaKind::Text,
            b"message" => MediaKind::Message,
            _ => MediaKind::Other,
        },
        port,
        rtp,
        index,
        first_pt: t
            .next()
            .and_then(|(_, f)| number::<u8>(f))
            .filter(|&pt| pt < 128),
        rtpmap_rate: None,
        conn: None,
        rtcp_port: None,
        rtcp_mux: false,
        direction: None,
    })
}

fn direction(value: &[u8]) -> Option<Direction> {
    match value {
        b"sendrecv" => Some(Direction::SendRecv),
        b"sendonly" => Some(Direction::SendOnly),
        b"recvonly" => Some(Direction::RecvOnly),
        b"inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

/// RFC 3551 §6 static payload types (table 4 and 5). PT 9 (G.722) is 8000 by the RFC's
/// note, although the codec samples at 16 kHz.
fn static_clock_rate(pt: u8) -> Option<u32> {
    Some(match pt {
        0 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 13 | 15 | 18 => 8000,
        6 => 16000,
        10 | 11 => 44100,
        16 => 11025,
        17 => 22050,
        14 | 25 | 26 | 28 | 31 | 32 | 33 | 34 => 90000,
        _ => return None,
    })
}

/// The non-blank lines of `body`: (offset of the line, line without its line ending and
/// trailing whitespace).
fn lines(body: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < body.len() {
            let start = at;
            let rest = &body[start..];
            let len = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            at = start + len + 1;
            let line = rest[..len].trim_ascii_end();
            if !line.is_empty() {
                return Some((start, line));
            }
        }
        None
    })
}

/// Space- or tab-separated tokens of `value`, with their offsets in it.
fn tokens(value: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = value.get(at..)?;
        let skip = rest.iter().position(|&b| b != b' ' && b != b'\t')?;
        let start = at + skip;
        let rest = &value[start..];
        let len = rest
            .iter()
            .position(|&b| b == b' ' || b == b'\t')
            .unwrap_or(rest.len());
        at = start + len;
        Some((start, &rest[..len]))
    })
}

fn number<T: std::str::FromStr>(digits: &[u8]) -> Option<T> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn ip(text: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SIPP: &[u8] = b"v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

    const ASTERISK: &[u8] = b"v=0\r\n\
o=- 1716379213 1716379213 IN IP4 192.168.10.5\r\n\
s=Asterisk\r\n\
c=IN IP4 192.168.10.5\r\n\
t=0 0\r\n\
m=audio 13054 RTP/SAVP 8 0 9 101\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";

    const FREESWITCH_AV: &[u8] = b"v=0\r\n\
o=FreeSWITCH 1716370000 1716370001 IN IP4 10.0.0.20\r\n\
s=FreeSWITCH\r\n\
c=IN IP4 10.0.0.20\r\n\
t=0 0\r\n\
a=msid-semantic: WMS abc\r\n\
m=audio 24560 RTP/AVP 111 9 0 8 101\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 useinbandfec=1; minptime=10\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=rtcp:24561 IN IP4 10.0.0.20\r\n\
a=ptime:20\r\n\
m=video 24562 RTP/AVP 96 34\r\n\
b=AS:1024\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
a=rtcp:24563\r\n\
a=rtcp-mux\r\n\
a=recvonly\r\n\
m=image 0 udptl t38\r\n";

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn rewritten(body: &[u8], addr: IpAddr, ports: &[Option<u16>]) -> Vec<u8> {
        let sdp = parse(body).unwrap();
        let mut out = Vec::new();
        rewrite(body, &sdp, addr, ports, &mut out);
        out
    }

    fn lines_of(b: &[u8]) -> Vec<&[u8]> {
        b.split_inclusive(|&c| c == b'\n').collect()
    }

    #[test]
    fn sipp_default() {
        let sdp = parse(SIPP).unwrap();
        assert_eq!(sdp.media.len(), 1);
        let m = &sdp.media[0];
        assert_eq!((m.kind, m.port, m.rtp), (MediaKind::Audio, 6000, true));
        assert_eq!(m.conn, Some(v4(127, 0, 0, 1)));
        assert_eq!((m.rtcp_port, m.rtcp_mux), (None, false));
        assert_eq!(
            (m.direction, m.clock_rate, m.on_hold()),
            (Direction::SendRecv, 8000, false)
        );
    }

    #[test]
    fn asterisk_offer_and_rewrite_keeps_other_lines() {
        let sdp = parse(ASTERISK).unwrap();
        let m = &sdp.media[0];
        assert_eq!((m.port, m.rtp, m.clock_rate), (13054, true, 8000));
        let out = rewritten(ASTERISK, v4(203, 0, 113, 7), &[Some(30000)]);
        let (before, after) = (lines_of(ASTERISK), lines_of(&out));
        assert_eq!(before.len(), after.len());
        let changed: Vec<(&[u8], &[u8])> = before
            .iter()
            .zip(&after)
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (*a, *b))
            .collect();
        assert_eq!(
            changed,
            [
                (
                    &b"o=- 1716379213 1716379213 IN IP4 192.168.10.5\r\n"[..],
                    &b"o=- 1716379213 1716379213 IN IP4 203.0.113.7\r\n"[..]
                ),
                (
                    &b"c=IN IP4 192.168.10.5\r\n"[..],
                    &b"c=IN IP4 203.0.113.7\r\n"[..]
                ),
                (
                    &b"m=audio 13054 RTP/SAVP 8 0 9 101\r\n"[..],
                    &b"m=audio 30000 RTP/SAVP 8 0 9 101\r\n"[..]
                ),
            ]
        );
        let again = parse(&out).unwrap();
        assert_eq!(again.media[0].conn, Some(v4(203, 0, 113, 7)));
        assert_eq!(again.media[0].port, 30000);
    }

    #[test]
    fn audio_video_image_with_rtcp_attributes() {
        let sdp = parse(FREESWITCH_AV).unwrap();
        let [a, v, i] = &sdp.media[..] else {
            panic!("{:?}", sdp.media)
        };
        assert_eq!(
            (a.kind, a.clock_rate, a.rtcp_port, a.rtcp_mux),
            (MediaKind::Audio, 48000, Some(24561), false)
        );
        assert_eq!(
            (v.kind, v.clock_rate, v.rtcp_port, v.rtcp_mux),
            (MediaKind::Video, 90000, Some(24563), true)
        );
        assert_eq!((v.direction, v.on_hold()), (Direction::RecvOnly, true));
        assert_eq!((i.kind, i.port, i.rtp), (MediaKind::Image, 0, false));
        assert!(sdp.media.iter().all(|m| m.conn == Some(v4(10, 0, 0, 20))));

        let out = rewritten(
            FREESWITCH_AV,
            v4(198, 51, 100, 1),
            &[Some(40000), Some(40002), None],
        );
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.contains("\r\nm=audio 40000 RTP/AVP 111 9 0 8 101\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\na=rtcp:40001 IN IP4 198.51.100.1\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nm=video 40002 RTP/AVP 96 34\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\na=rtcp:40003\r\n"), "{text}");
        assert!(text.ends_with("\r\nm=image 0 udptl t38\r\n"), "{text}");
        assert!(!text.contains("10.0.0.20"), "{text}");
        let again = parse(&out).unwrap();
        assert_eq!(again.media[1].rtcp_port, Some(40003));
        assert_eq!(again.media[2].port, 0);
    }

    #[test]
    fn static_payload_clock_rates() {
        for (pt, rate) in [
            (0, 8000),
            (9, 8000),
            (10, 44100),
            (18, 8000),
            (6, 16000),
            (31, 90000),
            (96, 8000),
        ] {
            let body = format!("v=0\nc=IN IP4 10.1.1.1\nm=audio 5000 RTP/AVP {pt}\n");
            assert_eq!(
                parse(body.as_bytes()).unwrap().media[0].clock_rate,
                rate,
                "pt {pt}"
            );
        }
        // An rtpmap for a later format does not count; the first format's does.
        let body = b"v=0\nc=IN IP4 10.1.1.1\nm=audio 5000 RTP/AVP 0 97\na=rtpmap:97 L16/16000\n";
        assert_eq!(parse(body).unwrap().media[0].clock_rate, 8000);
        let body = b"v=0\nc=IN IP4 10.1.1.1\nm=audio 5000 RTP/AVP 97 0\na=rtpmap:97 L16/16000/2\n";
        assert_eq!(parse(body).unwrap().media[0].clock_rate, 16000);
    }

    #[test]
    fn hold_by_direction_and_by_address() {
        let sendonly = b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=sendonly\r\nm=audio 5000 RTP/AVP 0\r\n";
        let m = &parse(sendonly).unwrap().media[0];
        assert_eq!((m.direction, m.on_hold()), (Direction::SendOnly, true));
        // Media-level direction wins over session level.
        let both = b"v=0\nc=IN IP4 10.0.0.1\na=inactive\nm=audio 5000 RTP/AVP 0\na=sendrecv\n";
        assert!(!parse(both).unwrap().media[0].on_hold());

        let zero = b"v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n";
        let m = &parse(zero).unwrap().media[0];
        assert_eq!((m.direction, m.on_hold()), (Direction::SendRecv, true));
        // The hold address survives the rewrite; o= and the port do not.
        let out = rewritten(zero, v4(1, 2, 3, 4), &[Some(7000)]);
        assert_eq!(
            out,
            b"v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n"
        );
        let v6hold = b"v=0\nc=IN IP6 ::\nm=audio 5000 RTP/AVP 0\n";
        assert!(parse(v6hold).unwrap().media[0].on_hold());
        assert_eq!(rewritten(v6hold, v4(1, 2, 3, 4), &[None]), v6hold);
    }

    #[test]
    fn rtcp_attribute_with_and_without_address() {
        let body = b"v=0\nc=IN IP4 10.0.0.1\nm=audio 5000 RTP/AVP 0\na=rtcp:5001\nm=audio 6000 RTP/AVP 0\na=rtcp:53020 IN IP6 2001:db8::4\n";
        let sdp = parse(body).unwrap();
        assert_eq!(sdp.media[0].rtcp_port, Some(5001));
        assert_eq!(sdp.media[1].rtcp_port, Some(53020));
        let out = rewritten(body, v4(192, 0, 2, 9), &[Some(8000), Some(8002)]);
        assert_eq!(
            out,
            &b"v=0\nc=IN IP4 192.0.2.9\nm=audio 8000 RTP/AVP 0\na=rtcp:8001\nm=audio 8002 RTP/AVP 0\na=rtcp:8003 IN IP4 192.0.2.9\n"[..]
        );
        // A stream left alone keeps its rtcp line too.
        let out = rewritten(body, v4(192, 0, 2, 9), &[Some(8000)]);
        assert!(out.ends_with(b"m=audio 6000 RTP/AVP 0\na=rtcp:53020 IN IP6 2001:db8::4\n"));
        // An unparseable port is left alone and not reported.
        let odd = b"v=0\nc=IN IP4 10.0.0.1\nm=audio 5000 RTP/AVP 0\na=rtcp:x\n";
        assert_eq!(parse(odd).unwrap().media[0].rtcp_port, None);
        assert!(rewritten(odd, v4(1, 1, 1, 1), &[Some(2)]).ends_with(b"a=rtcp:x\n"));
    }

    #[test]
    fn lf_only_trailing_whitespace_missing_final_newline() {
        let body = b"v=0\no=- 1 1 IN IP4 10.9.8.7 \nc=IN IP4 10.9.8.7\t\n\nt=0 0\nm=audio  5000  RTP/AVP 0";
        let sdp = parse(body).unwrap();
        assert_eq!(sdp.media[0].conn, Some(v4(10, 9, 8, 7)));
        assert_eq!(sdp.media[0].port, 5000);
        let out = rewritten(body, v4(1, 1, 1, 1), &[Some(9000)]);
        assert_eq!(
            out,
            &b"v=0\no=- 1 1 IN IP4 1.1.1.1 \nc=IN IP4 1.1.1.1\t\n\nt=0 0\nm=audio  9000  RTP/AVP 0"
                [..]
        );
        // Mixed line endings are kept line by line.
        let mixed = b"v=0\r\nc=IN IP4 10.0.0.1\nm=audio 5000 RTP/AVP 0\r\na=x\n";
        let out = rewritten(mixed, v4(1, 1, 1, 1), &[Some(6)]);
        assert_eq!(
            out,
            &b"v=0\r\nc=IN IP4 1.1.1.1\nm=audio 6 RTP/AVP 0\r\na=x\n"[..]
        );
    }

    #[test]
    fn ipv6_to_ipv4_fixes_the_addrtype_and_back() {
        let body = b"v=0\r\no=- 5 5 IN IP6 2001:db8::10\r\ns=-\r\nc=IN IP6 2001:db8::10\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
        let sdp = parse(body).unwrap();
        assert_eq!(
            sdp.media[0].conn,
            Some(IpAddr::V6("2001:db8::10".parse().unwrap()))
        );
        let out = rewritten(body, v4(203, 0, 113, 1), &[Some(10000)]);
        assert_eq!(
            out,
            &b"v=0\r\no=- 5 5 IN IP4 203.0.113.1\r\ns=-\r\nc=IN IP4 203.0.113.1\r\nt=0 0\r\nm=audio 10000 RTP/AVP 0\r\n"[..]
        );
        let back = rewritten(&out, IpAddr::V6(Ipv6Addr::LOCALHOST), &[Some(10002)]);
        assert_eq!(
            back,
            &b"v=0\r\no=- 5 5 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 10002 RTP/AVP 0\r\n"[..]
        );
    }

    #[test]
    fn multicast_ttl_and_media_level_connection() {
        let mc = b"v=0\nc=IN IP4 224.2.1.1/127\nm=audio 5000 RTP/AVP 0\n";
        assert_eq!(parse(mc).unwrap_err(), SdpError::Multicast);
        let ttl = b"v=0\nc=IN IP4 10.1.2.3/127\nm=audio 5000 RTP/AVP 0\n";
        assert_eq!(parse(ttl).unwrap().media[0].conn, Some(v4(10, 1, 2, 3)));
        // Media-level c= overrides session level; no c= at all leaves conn empty.
        let body = b"v=0\nc=IN IP4 10.0.0.1\nm=audio 5000 RTP/AVP 0\nc=IN IP4 10.0.0.2\nm=video 0 RTP/AVP 31\n";
        let sdp = parse(body).unwrap();
        assert_eq!(sdp.media[0].conn, Some(v4(10, 0, 0, 2)));
        assert_eq!(sdp.media[1].conn, Some(v4(10, 0, 0, 1)));
        assert_eq!(
            parse(b"v=0\nm=audio 0 RTP/AVP 0\n").unwrap().media[0].conn,
            None
        );
        // m= port with a count: the count goes with the rewrite.
        let n = b"v=0\nc=IN IP4 10.0.0.1\nm=video 5000/2 RTP/AVP 31\n";
        assert_eq!(parse(n).unwrap().media[0].port, 5000);
        assert!(
            rewritten(n, v4(1, 1, 1, 1), &[Some(7000)]).ends_with(b"m=video 7000 RTP/AVP 31\n")
        );
    }

    #[test]
    fn errors() {
        assert_eq!(parse(b"").unwrap_err(), SdpError::NotSdp);
        assert_eq!(parse(b"hello world").unwrap_err(), SdpError::NotSdp);
        assert_eq!(
            parse(b"o=- 1 1 IN IP4 1.1.1.1\nv=0\n").unwrap_err(),
            SdpError::NotSdp
        );
        assert_eq!(parse(b"v=0\nnonsense\n").unwrap_err(), SdpError::BadLine);
        assert_eq!(
            parse(b"v=0\nc=IN IP4 example.com\n").unwrap_err(),
            SdpError::BadConnection
        );
        assert_eq!(
            parse(b"v=0\nc=IN IP4\n").unwrap_err(),
            SdpError::BadConnection
        );
        assert_eq!(
            parse(b"v=0\nc=ATM NSAP 1\n").unwrap_err(),
            SdpError::BadConnection
        );
        assert_eq!(
            parse(b"v=0\nm=audio x RTP/AVP 0\n").unwrap_err(),
            SdpError::BadMedia
        );
        assert_eq!(
            parse(b"v=0\nm=audio 70000 RTP/AVP 0\n").unwrap_err(),
            SdpError::BadMedia
        );
        assert_eq!(parse(b"v=0\nm=audio\n").unwrap_err(), SdpError::BadMedia);
        let many = format!("v=0\n{}", "m=audio 0 RTP/AVP 0\n".repeat(17));
        assert_eq!(
            parse(many.as_bytes()).unwrap_err(),
            SdpError::TooManyStreams
        );
        assert!(parse(format!("v=0\n{}", "m=audio 0 RTP/AVP 0\n".repeat(16)).as_bytes()).is_ok());
        let big = format!("v=0\n{}", "a=x\n".repeat(16 * 1024 + 1));
        assert_eq!(parse(big.as_bytes()).unwrap_err(), SdpError::TooLarge);
        assert_eq!(SdpError::TooLarge.as_str(), SdpError::TooLarge.to_string());
        // Unknown line types and a malformed o= are tolerated.
        let odd =
            b"v=0\no=broken\nz=whatever\nk=clear:x\nc=IN IP4 10.0.0.1\nm=audio 5000 RTP/AVP 0\n";
        assert_eq!(parse(odd).unwrap().media.len(), 1);
    }

    /// Re-parses a rewrite and checks each stream's address and port.
    fn check_rewrite(
        body: &[u8],
        addr: IpAddr,
        ports: &[Option<u16>],
    ) -> Result<(), TestCaseError> {
        let Ok(sdp) = parse(body) else { return Ok(()) };
        let mut out = Vec::new();
        rewrite(body, &sdp, addr, ports, &mut out);
        let again = parse(&out).map_err(|e| {
            TestCaseError::fail(format!("{e}: {:?}", String::from_utf8_lossy(&out)))
        })?;
        prop_assert_eq!(again.media.len(), sdp.media.len());
        for (i, (old, new)) in sdp.media.iter().zip(&again.media).enumerate() {
            let want_conn = match old.conn {
                Some(a) if a.is_unspecified() => Some(a),
                Some(_) => Some(addr),
                None => None,
            };
            prop_assert_eq!(new.conn, want_conn);
            let port = ports.get(i).copied().flatten();
            prop_assert_eq!(new.port, port.unwrap_or(old.port));
            let rtcp = match port {
                Some(p) => old.rtcp_port.map(|_| p.wrapping_add(1)),
                None => old.rtcp_port,
            };
            prop_assert_eq!(new.rtcp_port, rtcp);
            prop_assert_eq!(
                (new.kind, new.rtp, new.direction, new.clock_rate),
                (old.kind, old.rtp, old.direction, old.clock_rate)
            );
        }
        Ok(())
    }

    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let seeds = prop_oneof![Just(SIPP), Just(ASTERISK), Just(FREESWITCH_AV)];
        (
            seeds,
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 0..8),
        )
            .prop_map(|(seed, muts)| {
                let mut b = seed.to_vec();
                for (at, byte, how) in muts {
                    if b.is_empty() {
                        break;
                    }
                    let i = at.index(b.len());
                    match how {
                        0 => b[i] = byte,
                        1 => b.insert(i, byte),
                        2 => {
                            b.remove(i);
                        }
                        _ => {
                            b[i] = b" \r\n=/:0123456789."
                                .get(usize::from(byte) % 17)
                                .copied()
                                .unwrap_or(b' ')
                        }
                    }
                }
                b
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = parse(&body);
        }

        #[test]
        fn mutated_sdp_parses_or_errs_and_rewrites_cleanly(
            body in mutated(),
            ports in proptest::collection::vec(proptest::option::of(any::<u16>()), 0..4),
            v6 in any::<bool>(),
        ) {
            let addr = if v6 { IpAddr::V6("2001:db8::77".parse().unwrap()) } else { v4(192, 0, 2, 77) };
            check_rewrite(&body, addr, &ports)?;
        }

        #[test]
        fn rewrite_with_a_foreign_body_does_not_panic(a in mutated(), b in mutated()) {
            if let Ok(sdp) = parse(&a) {
                let mut out = Vec::new();
                rewrite(&b, &sdp, v4(1, 1, 1, 1), &[Some(2), Some(4), Some(6)], &mut out);
            }
        }
    }
}
