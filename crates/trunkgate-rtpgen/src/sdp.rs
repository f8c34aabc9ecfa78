//! The SDP the tool offers and answers, and the two lines it reads back (c= and m=audio).

use std::net::{IpAddr, SocketAddr};

/// G.711 A-law, 20 ms, one audio stream at `ip:port`.
pub fn build(ip: IpAddr, port: u16, session_id: u64, pt: u8) -> String {
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\n\
         o=rtpgen {session_id} 1 IN {fam} {ip}\r\n\
         s=rtpgen\r\n\
         c=IN {fam} {ip}\r\n\
         t=0 0\r\n\
         m=audio {port} RTP/AVP {pt}\r\n\
         a=rtpmap:{pt} PCMA/8000\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    )
}

/// The media address of the first audio stream: the media-level c= if present, else the
/// session-level one, and the m=audio port.
pub fn media_addr(sdp: &str) -> Option<SocketAddr> {
    let mut session_ip: Option<IpAddr> = None;
    let mut media_ip: Option<IpAddr> = None;
    let mut port: Option<u16> = None;
    let mut in_audio = false;
    let mut seen_media = false;
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("m=") {
            if seen_media && in_audio {
                break; // only the first audio stream
            }
            seen_media = true;
            let mut it = rest.split_whitespace();
            in_audio = it.next() == Some("audio") && port.is_none();
            if in_audio {
                port = it.next().and_then(|p| p.parse().ok());
            }
        } else if let Some(rest) = line.strip_prefix("c=") {
            let ip = rest.split_whitespace().nth(2).and_then(|a| {
                // c=IN IP4 224.2.1.1/127 (multicast TTL) → strip the suffix.
                a.split('/').next().and_then(|a| a.parse().ok())
            });
            if !seen_media {
                session_ip = ip;
            } else if in_audio {
                media_ip = ip;
            }
        }
    }
    let ip = media_ip.or(session_ip)?;
    Some(SocketAddr::new(ip, port?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_builds() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let s = build(ip, 40002, 7, 8);
        assert_eq!(media_addr(&s), Some(SocketAddr::new(ip, 40002)));
        let s = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 1000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\nm=video 2000 RTP/AVP 96\r\nc=IN IP4 10.0.0.3\r\n";
        assert_eq!(media_addr(s), "10.0.0.2:1000".parse().ok());
        assert_eq!(media_addr("v=0\r\n"), None);
    }
}
