//! Framing of a SIP byte stream (TCP and TLS alike): RFC 3261 §18.3 (messages cut by
//! Content-Length) and RFC 5626 keepalives (`\r\n\r\n` pings, `\r\n` pongs). Pure: a
//! buffer in, one step out; the connection tasks in [`super::tcp`] drive it.

use bytes::{Buf, Bytes, BytesMut};
use trunkgate_sip::message::{Limits, ParseError};
use trunkgate_sip::message::{frame_len, skip_keepalive};

#[derive(Debug, PartialEq, Eq)]
pub enum FrameStep {
    /// One whole message, cut off the front of the buffer.
    Frame(Bytes),
    /// A `\r\n\r\n` keepalive ping was consumed: answer `\r\n`.
    Ping,
    /// Nothing complete yet.
    NeedMore,
}

/// Take the next step off a connection's receive buffer (RFC 3261 §18.3 framing, RFC 5626
/// keepalives). An error means the stream cannot be framed and the connection must close.
pub fn next_frame(buf: &mut BytesMut, limits: &Limits) -> Result<FrameStep, ParseError> {
    loop {
        if buf.is_empty() {
            return Ok(FrameStep::NeedMore);
        }
        let crlf = skip_keepalive(buf);
        if crlf >= 4 {
            buf.advance(crlf);
            return Ok(FrameStep::Ping);
        }
        if crlf > 0 {
            if crlf == buf.len() {
                return Ok(FrameStep::NeedMore); // perhaps the first half of a ping
            }
            buf.advance(crlf); // a pong, or stray line ends before a message
            continue;
        }
        return match frame_len(buf, limits)? {
            Some(n) if n > 0 && n <= buf.len() => Ok(FrameStep::Frame(buf.split_to(n).freeze())),
            Some(_) => Err(ParseError::BadContentLength),
            // A message still incomplete past the limit can only be too large.
            None if buf.len() > limits.max_message_size => Err(ParseError::TooLarge(buf.len())),
            None => Ok(FrameStep::NeedMore),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/TCP 127.0.0.2:5060;branch=z9hG4bK1\r\n\
From: <sip:b@127.0.0.2>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 4\r\n\r\nbody";

    fn steps(input: &[u8]) -> Vec<FrameStep> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            let step = next_frame(&mut buf, &Limits::default()).unwrap();
            if step == FrameStep::NeedMore {
                return out;
            }
            out.push(step);
        }
    }

    #[test]
    fn cuts_back_to_back_messages_and_answers_pings() {
        let mut input = b"\r\n\r\n".to_vec();
        input.extend_from_slice(OPTIONS);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(OPTIONS);
        input.extend_from_slice(&OPTIONS[..20]);
        let got = steps(&input);
        assert_eq!(
            got,
            vec![
                FrameStep::Ping,
                FrameStep::Frame(Bytes::from_static(OPTIONS)),
                FrameStep::Frame(Bytes::from_static(OPTIONS)),
            ]
        );
    }

    #[test]
    fn waits_for_the_rest_of_a_split_ping() {
        let mut buf = BytesMut::from(&b"\r\n\r"[..]);
        assert_eq!(
            next_frame(&mut buf, &Limits::default()).unwrap(),
            FrameStep::NeedMore
        );
        buf.extend_from_slice(b"\n");
        assert_eq!(
            next_frame(&mut buf, &Limits::default()).unwrap(),
            FrameStep::Ping
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_a_message_over_the_limit() {
        let limits = Limits {
            max_message_size: 64,
            ..Limits::default()
        };
        let mut buf = BytesMut::from(OPTIONS);
        assert!(next_frame(&mut buf, &limits).is_err());
    }
}
