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
    /// The first payload type of the `m=` line (RTP only).
    pub payload_type: Option<u8>,
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
            payload_type: if s.rtp { s.first_pt } else { None },
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
        mark_address(edits, value_at, (ty_at, ty.len()), (a_at, a.len()));
    }
}

/// Mark an `IN <addrtype> <address>` pair (offsets and lengths within a line's value) for
/// rewriting.
fn mark_address(edits: &mut Vec<Edit>, value_at: usize, ty: (usize, usize), addr: (usize, usize)) {
    edits.push(Edit {
        start: value_at + ty.0,
        end: value_at + ty.0 + ty.1,
        what: EditKind::AddrType,
    });
    edits.push(Edit {
        start: value_at + addr.0,
        end: value_at + addr.0 + addr.1,
        what: EditKind::Addr,
    });
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
        mark_address(edits, value_at, (ty_at, ty.len()), (a_at, a.len()));
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
mod tests;
