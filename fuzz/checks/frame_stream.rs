//! Treat the input as bytes received on one TCP/TLS connection: skip keepalives, cut frames
//! with `frame_len`, parse each frame, until more bytes would be needed or an error.

use bytes::Bytes;
use trunkgate_sip::message::{Limits, SipMessage, frame_len, skip_keepalive};

/// The check, on one input: panics on a violated invariant.
pub fn check(data: &[u8]) {
    // Small limit too, so the TooLarge paths are reached with short inputs.
    for limits in [
        Limits::default(),
        Limits {
            max_message_size: 300,
            ..Limits::default()
        },
    ] {
        let mut rest = data;
        loop {
            let k = skip_keepalive(rest);
            assert!(k <= rest.len());
            rest = &rest[k..];
            match frame_len(rest, &limits) {
                Ok(Some(n)) => {
                    assert!(n > 0 && n <= rest.len() && n <= limits.max_message_size);
                    let _ = SipMessage::parse(Bytes::copy_from_slice(&rest[..n]), &limits);
                    rest = &rest[n..];
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
}
