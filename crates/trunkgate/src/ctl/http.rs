//! A tiny blocking HTTP/1.1 client for the admin API (one request per connection, JSON
//! bodies): all `trunkgate ctl` needs, on std's `TcpStream`, bounded by timeouts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A reload may resolve names and rebuild tables: give it time.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Answers larger than this are refused (a `GET /calls` of 1,000 calls is well below).
const MAX_ANSWER: u64 = 64 << 20;

/// The daemon could not be reached (exit code 2).
#[derive(Debug)]
pub struct Unreachable {
    pub address: String,
    pub why: String,
}

/// An admin API endpoint: `host:port` and the token to send, if any.
#[derive(Debug, Clone)]
pub struct Client {
    /// As given (`127.0.0.1:9091`), for messages.
    pub address: String,
    token: Option<String>,
}

impl Client {
    /// `url`: `http://HOST:PORT` or `HOST:PORT`.
    pub fn new(url: &str, token: Option<String>) -> Client {
        let address = url
            .trim()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        Client { address, token }
    }

    fn connect(&self) -> Result<TcpStream, Unreachable> {
        let unreachable = |why: String| Unreachable {
            address: self.address.clone(),
            why,
        };
        let addrs: Vec<SocketAddr> = self
            .address
            .to_socket_addrs()
            .map_err(|e| unreachable(e.to_string()))?
            .collect();
        let mut last = String::from("no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e.to_string(),
            }
        }
        Err(unreachable(last))
    }

    /// Send `method path` with an optional JSON body; the status and the JSON answer
    /// (`Null` when the body is not JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), Unreachable> {
        let unreachable = |why: String| Unreachable {
            address: self.address.clone(),
            why,
        };
        let mut stream = self.connect()?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| unreachable(e.to_string()))?;
        let body = body.map(serde_json::Value::to_string).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            self.address
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if method != "GET" {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.as_bytes()))
            .map_err(|e| unreachable(e.to_string()))?;
        let mut raw = Vec::new();
        stream
            .take(MAX_ANSWER)
            .read_to_end(&mut raw)
            .map_err(|e| unreachable(e.to_string()))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| unreachable(format!("not an HTTP answer: {head:?}")))?;
        let chunked = head.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("transfer-encoding:") && l.contains("chunked")
        });
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        Ok((status, json))
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size_line, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(rest.get(..size).unwrap_or_default());
        let rest = rest.get(size..).unwrap_or_default();
        body = rest.strip_prefix("\r\n").unwrap_or(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_chunks() {
        assert_eq!(
            Client::new("http://127.0.0.1:9091/", None).address,
            "127.0.0.1:9091"
        );
        assert_eq!(
            Client::new("127.0.0.1:9091", None).address,
            "127.0.0.1:9091"
        );
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let err = Client::new(&address, None)
            .call("GET", "/status", None)
            .unwrap_err();
        assert_eq!(err.address, address);
    }
}
