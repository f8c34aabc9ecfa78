//! The `trunkgate` binary end to end: `check` on good and broken policies, `--version`, and
//! `run` serving `/health` and `/metrics` and draining on SIGTERM. Real sockets on 127.0.0.1,
//! ports chosen by the kernel (never 5060/9091, which the e2e suite uses).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_trunkgate");

fn trunkgate(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("TRUNKGATE_ADMIN__LISTEN")
        .output()
        .unwrap()
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("trunkgate-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn version_prints_the_crate_version() {
    let out = trunkgate(&["--version"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("trunkgate {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_accepts_the_embedded_default() {
    let out = trunkgate(&["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("policy OK: 2 trunks, 1 routes, listening on udp:127.0.0.1:5060"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1);
}

#[test]
fn check_accepts_the_shipped_policy_file() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/trunkgate.toml");
    let out = trunkgate(&["check", "--config", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_reports_a_missing_file() {
    let out = trunkgate(&["check", "--config", "/nonexistent/trunkgate.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/trunkgate.toml"), "{stderr}");
}

/// Every file in `trunkgate-config/tests/broken/` starts with `# expect: LINE:COL text`;
/// `check` must exit 1 and name `FILE:LINE:COL` and the text on stderr.
#[test]
fn check_rejects_every_broken_policy_with_its_position() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../trunkgate-config/tests/broken");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no broken policies in {}", dir.display());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| {
                panic!(
                    "{}: first line must be `# expect: LINE:COL text`",
                    file.display()
                )
            });
        let (position, needle) = expect.split_once(' ').unwrap();
        let path = file.to_str().unwrap();
        let out = trunkgate(&["check", "--config", path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let located = format!("{path}:{position}: error:");
        if out.status.code() != Some(1) || !stderr.contains(&located) || !stderr.contains(needle) {
            failures.push(format!(
                "{}: exit {:?}, want `{located}` and `{needle}` in stderr:\n{stderr}",
                file.display(),
                out.status.code()
            ));
        }
        assert!(
            out.stdout.is_empty(),
            "{}: nothing on stdout when invalid",
            file.display()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn run_refuses_an_invalid_policy() {
    let file = temp_file("invalid.toml", "[listen]\nsip = [\"udp:127.0.0.1\"]\n");
    let out = trunkgate(&["run", "--config", file.to_str().unwrap()]);
    std::fs::remove_file(&file).ok();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2:", file.display())),
        "{stderr}"
    );
}

fn policy(sip_port: u16, admin_port: u16, pbx_port: u16, trunk_port: u16) -> String {
    format!(
        r#"[listen]
sip = ["udp:127.0.0.1:{sip_port}", "tcp:127.0.0.1:{sip_port}"]

[sip]
shutdown_grace = "30s"

[admin]
listen = "127.0.0.1:{admin_port}"

[pbx]
address = "127.0.0.2:{pbx_port}"
allow = ["127.0.0.2/32"]

[[trunk]]
name = "carrier-a"
address = "127.0.0.3:{trunk_port}"
allow = ["127.0.0.3/32"]

[[route]]
name = "default"
match = {{ to_prefix = [""] }}
trunks = ["carrier-a"]
strategy = "priority"
"#
    )
}

/// A port free for UDP and TCP on 127.0.0.1 right now (kernel-chosen, so not 5060).
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: trunkgate\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

struct Running {
    child: Child,
    sip: SocketAddr,
    admin: SocketAddr,
    config: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_file(&self.config).ok();
    }
}

/// Start `trunkgate run` on fresh ports, retrying when a port was taken in between. The PBX
/// is 127.0.0.2:`pbx_port`, the one trunk (`carrier-a`) 127.0.0.3:`trunk_port`.
fn start(pbx_port: u16, trunk_port: u16) -> Running {
    for attempt in 0..5 {
        let (sip_port, admin_port) = (free_port(), free_port());
        let config = temp_file(
            &format!("run-{attempt}-{sip_port}.toml"),
            &policy(sip_port, admin_port, pbx_port, trunk_port),
        );
        let child = Command::new(BIN)
            .args(["run", "--config", config.to_str().unwrap()])
            // The call records' default file lands in the working directory: not the tree.
            .current_dir(config.parent().unwrap_or(std::path::Path::new("/tmp")))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut running = Running {
            child,
            sip: SocketAddr::from(([127, 0, 0, 1], sip_port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if running.child.try_wait().unwrap().is_some() {
                break; // exited: most likely a port race; try other ports
            }
            if http_get(running.admin, "/health").is_some_and(|(s, _)| s == 200) {
                return running;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("trunkgate run did not come up");
}

fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.parse().ok())
}

#[test]
fn run_serves_health_and_metrics_and_drains_on_sigterm() {
    let mut running = start(5060, 5060);

    let (status, body) = http_get(running.admin, "/health").unwrap();
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["dialogs"], 0);
    assert_eq!(health["transactions"], 0);
    assert_eq!(health["shutting_down"], false);

    // Garbage on the SIP port must not hurt; a TCP connection from the PBX that opens and
    // closes is counted; one from a source in no allow list (127.0.0.1) is refused at
    // accept and counted as such, not as a connection.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"\x00\x01 not sip", running.sip).unwrap();
    drop(TcpStream::connect(running.sip).unwrap());
    let pbx = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    pbx.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
        .unwrap();
    pbx.connect(&running.sip.into()).unwrap();
    drop(pbx);

    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let (status, text) = http_get(running.admin, "/metrics").unwrap();
        assert_eq!(status, 200);
        let closed = metric_value(&text, "trunkgate_tcp_connections_active") == Some(0.0)
            && metric_value(
                &text,
                "trunkgate_tcp_connections_closed_total{reason=\"unknown_source\"}",
            ) == Some(1.0);
        if (metric_value(&text, "trunkgate_tcp_connections_total") == Some(1.0) && closed)
            || Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        metric_value(&text, "trunkgate_tcp_connections_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "trunkgate_tcp_connections_active"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "trunkgate_tcp_connections_closed_total{reason=\"unknown_source\"}"
        ),
        Some(1.0),
        "{text}"
    );
    for series in [
        "trunkgate_sip_requests_total{method=\"INVITE\"}",
        "trunkgate_sip_responses_total{peer=\"trunkgate\",class=\"5xx\"}",
        "trunkgate_sip_responses_total{peer=\"carrier-a\",class=\"2xx\"}",
        "trunkgate_dialogs_active{trunk=\"carrier-a\",direction=\"outbound\"}",
        "trunkgate_sip_transactions_active",
        "trunkgate_sip_parse_errors_total",
        "trunkgate_sip_unknown_source_total",
        "trunkgate_sip_retransmissions_total",
        "trunkgate_sip_timeouts_total",
        "trunkgate_sip_loops_total",
        "trunkgate_sip_too_many_hops_total",
        "trunkgate_sip_no_route_total",
        "trunkgate_sip_shutdown_rejects_total",
        "trunkgate_udp_send_drops_total",
        "trunkgate_tcp_framing_errors_total",
    ] {
        assert!(
            metric_value(&text, series).is_some(),
            "{series} missing from:\n{text}"
        );
    }
    assert!(text.contains(&format!(
        "trunkgate_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));

    let pid = Pid::from_raw(i32::try_from(running.child.id()).unwrap());
    let signalled = Instant::now();
    kill(pid, Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "still running 2 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "exit status {status}");
}

fn options(transport: &str, call_id: &str) -> String {
    format!(
        "OPTIONS sip:+15551234567@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/{transport} 127.0.0.2:5060;branch=z9hG4bK-{call_id}\r\n\
Max-Forwards: 70\r\nFrom: <sip:100@127.0.0.2>;tag=a1\r\nTo: <sip:+15551234567@127.0.0.1>\r\n\
Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The 200 OK a peer answers `request` with (its Via lines copied).
fn ok_for(request: &str) -> String {
    let mut response = "SIP/2.0 200 OK\r\n".to_owned();
    for line in request.split("\r\n").filter(|l| {
        ["Via:", "From:", "Call-ID:", "CSeq:"]
            .iter()
            .any(|h| l.starts_with(h))
    }) {
        response.push_str(line);
        response.push_str("\r\n");
    }
    response.push_str("To: <sip:+15551234567@127.0.0.1>;tag=b2\r\nContent-Length: 0\r\n\r\n");
    response
}

/// Read one whole message (no body) from a stream.
fn read_message(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") || got.iter().all(|&b| b == b'\r' || b == b'\n') {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "connection closed");
        got.push(byte[0]);
    }
    String::from_utf8(got).unwrap().trim_start().to_owned()
}

#[test]
fn relays_a_request_and_its_response_over_udp() {
    let pbx = UdpSocket::bind("127.0.0.2:0").unwrap();
    let trunk = UdpSocket::bind("127.0.0.3:0").unwrap();
    for s in [&pbx, &trunk] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let running = start(
        pbx.local_addr().unwrap().port(),
        trunk.local_addr().unwrap().port(),
    );

    pbx.send_to(options("UDP", "udp-relay-1").as_bytes(), running.sip)
        .unwrap();
    let mut buf = vec![0u8; 65_536];
    let (n, from) = trunk.recv_from(&mut buf).unwrap();
    assert_eq!(from, running.sip, "forwarded from the SIP socket");
    let forwarded = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        forwarded.starts_with("OPTIONS sip:+15551234567@127.0.0.3:"),
        "{forwarded}"
    );
    assert!(
        forwarded.contains("Call-ID: udp-relay-1\r\n"),
        "{forwarded}"
    );

    trunk
        .send_to(ok_for(&forwarded).as_bytes(), running.sip)
        .unwrap();
    let (n, from) = pbx.recv_from(&mut buf).unwrap();
    assert_eq!(from, running.sip);
    let response = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(response.starts_with("SIP/2.0 200 OK\r\n"), "{response}");
    assert!(response.contains("Call-ID: udp-relay-1\r\n"), "{response}");
}

#[test]
fn relays_over_tcp_answers_keepalives_and_opens_connections_to_peers() {
    let trunk_listener = TcpListener::bind("127.0.0.3:0").unwrap();
    let trunk_port = trunk_listener.local_addr().unwrap().port();
    let running = start(5060, trunk_port);

    let pbx = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    pbx.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
        .unwrap();
    pbx.connect(&running.sip.into()).unwrap();
    let mut pbx: TcpStream = pbx.into();
    pbx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    pbx.write_all(b"\r\n\r\n").unwrap();
    let mut pong = [0u8; 2];
    pbx.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n", "RFC 5626 pong");

    pbx.write_all(options("TCP", "tcp-relay-1").as_bytes())
        .unwrap();
    let (mut trunk, from) = trunk_listener.accept().unwrap();
    assert_eq!(
        from.ip(),
        running.sip.ip(),
        "connects from the listener's address"
    );
    trunk
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let forwarded = read_message(&mut trunk);
    assert!(
        forwarded.starts_with("OPTIONS sip:+15551234567@127.0.0.3:"),
        "{forwarded}"
    );
    assert!(forwarded.contains("Via: SIP/2.0/TCP "), "{forwarded}");

    trunk.write_all(ok_for(&forwarded).as_bytes()).unwrap();
    let response = read_message(&mut pbx);
    assert!(response.starts_with("SIP/2.0 200 OK\r\n"), "{response}");
    assert!(response.contains("Call-ID: tcp-relay-1\r\n"), "{response}");

    let (_, text) = http_get(running.admin, "/metrics").unwrap();
    assert_eq!(
        metric_value(&text, "trunkgate_tcp_connections_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "trunkgate_tcp_connections_active"),
        Some(2.0),
        "{text}"
    );
}

/// A request as the PBX sends it, with `extra` header lines (the To header).
fn pbx_request(method: &str, call_id: &str, cseq: u32, extra: &str) -> String {
    format!(
        "{method} sip:+15551234567@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-{call_id}-{cseq}-{method}\r\n\
Max-Forwards: 70\r\nFrom: <sip:100@127.0.0.2>;tag=a1\r\n{extra}\
Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:100@127.0.0.2>\r\n\
Content-Length: 0\r\n\r\n"
    )
}

fn recv_final(socket: &UdpSocket) -> String {
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = socket.recv(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            return text;
        }
    }
}

/// The trunk's answer to `request`, with `Record-Route` copied and its own Contact.
fn answer(request: &str, status: &str) -> String {
    let mut response = format!("SIP/2.0 {status}\r\n");
    for line in request.split("\r\n").filter(|l| {
        ["Via:", "From:", "Call-ID:", "CSeq:", "Record-Route:"]
            .iter()
            .any(|h| l.starts_with(h))
    }) {
        response.push_str(line);
        response.push_str("\r\n");
    }
    response.push_str(
        "To: <sip:+15551234567@127.0.0.1>;tag=b2\r\nContact: <sip:t@127.0.0.3>\r\nContent-Length: 0\r\n\r\n",
    );
    response
}

#[test]
fn drains_dialogs_on_sigterm_refusing_new_invites() {
    let pbx = UdpSocket::bind("127.0.0.2:0").unwrap();
    let trunk = UdpSocket::bind("127.0.0.3:0").unwrap();
    for s in [&pbx, &trunk] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let mut running = start(
        pbx.local_addr().unwrap().port(),
        trunk.local_addr().unwrap().port(),
    );
    let to = "To: <sip:+15551234567@127.0.0.1>\r\n";
    let to_tagged = "To: <sip:+15551234567@127.0.0.1>;tag=b2\r\n";

    // One established call.
    pbx.send_to(
        pbx_request("INVITE", "drain-1", 1, to).as_bytes(),
        running.sip,
    )
    .unwrap();
    let invite = recv_final(&trunk);
    assert!(invite.starts_with("INVITE "), "{invite}");
    trunk
        .send_to(answer(&invite, "200 OK").as_bytes(), running.sip)
        .unwrap();
    assert!(recv_final(&pbx).starts_with("SIP/2.0 200 OK"));
    pbx.send_to(
        pbx_request("ACK", "drain-1", 1, to_tagged).as_bytes(),
        running.sip,
    )
    .unwrap();
    assert!(recv_final(&trunk).starts_with("ACK "));

    let pid = Pid::from_raw(i32::try_from(running.child.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = http_get(running.admin, "/health").unwrap();
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        if health["shutting_down"] == true {
            assert_eq!(health["dialogs"], 1, "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "never started draining: {body}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        running.child.try_wait().unwrap().is_none(),
        "exited with a dialog up"
    );

    // New calls are refused while the old one goes on.
    pbx.send_to(
        pbx_request("INVITE", "drain-2", 1, to).as_bytes(),
        running.sip,
    )
    .unwrap();
    let refused = recv_final(&pbx);
    assert!(refused.starts_with("SIP/2.0 503 "), "{refused}");

    // The last BYE ends the drain.
    pbx.send_to(
        pbx_request("BYE", "drain-1", 2, to_tagged).as_bytes(),
        running.sip,
    )
    .unwrap();
    let bye = recv_final(&trunk);
    assert!(bye.starts_with("BYE "), "{bye}");
    trunk
        .send_to(answer(&bye, "200 OK").as_bytes(), running.sip)
        .unwrap();
    assert!(recv_final(&pbx).starts_with("SIP/2.0 200 OK"));
    let ended = Instant::now();
    let status = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            ended.elapsed() < Duration::from_secs(2),
            "still running after the last dialog"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "exit status {status}");
}
