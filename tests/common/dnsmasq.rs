//! dnsmasq (Debian's `dnsmasq-base`) as a provider's authoritative DNS on loopback for the
//! end-to-end tests: SRV and A records given on its command line (`--srv-host`,
//! `--host-record`), TTL `--local-ttl`, no upstream, no system files; in the foreground,
//! stopped by its PID. A missing dnsmasq fails the test: `scripts/test.sh` installs it.

use super::poll;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One SRV record: `_sip._udp.{domain}` → `target:port` with `priority`.
pub struct Srv<'a> {
    pub priority: u16,
    pub weight: u16,
    pub target: &'a str,
    pub port: u16,
}

pub struct Dnsmasq {
    child: Option<Child>,
    _watchdog: Option<super::Watchdog>,
    pub log: PathBuf,
}

impl Dnsmasq {
    /// Serve `domain` (authoritatively: unknown names are NXDOMAIN) on `listen` with
    /// `srv` for `_sip._udp.{domain}`, `hosts` as A records, every TTL `ttl` seconds.
    /// Waits until it answers.
    pub fn start(
        dir: &Path,
        name: &str,
        listen: SocketAddr,
        domain: &str,
        srv: &[Srv<'_>],
        hosts: &[(&str, std::net::IpAddr)],
        ttl: u32,
    ) -> Dnsmasq {
        let bin = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!("dnsmasq not found: install Debian's dnsmasq-base (scripts/test.sh does)")
            });
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(bin);
        cmd.args([
            "-k",
            "-C",
            "/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
        ])
        .arg(format!("--listen-address={}", listen.ip()))
        .arg("--bind-interfaces")
        .arg(format!("--port={}", listen.port()))
        .arg(format!("--local=/{domain}/"))
        .arg(format!("--local-ttl={ttl}"))
        .arg("--pid-file=")
        .arg("--user=root")
        .arg("--log-queries")
        .arg(format!("--log-facility={}", log.display()));
        for s in srv {
            cmd.arg(format!(
                "--srv-host=_sip._udp.{domain},{},{},{},{}",
                s.target, s.port, s.priority, s.weight
            ));
        }
        for (host, ip) in hosts {
            cmd.arg(format!("--host-record={host},{ip}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dnsmasq");
        let mut d = Dnsmasq {
            _watchdog: super::Watchdog::guard(child.id()),
            child: Some(child),
            log,
        };
        let probe = format!("_sip._udp.{domain}");
        let up = poll(Duration::from_secs(10), || {
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("dnsmasq exited at start ({status}):\n{}", d.log_tail());
            }
            answers(listen, &probe).then_some(())
        });
        assert!(
            up.is_some(),
            "dnsmasq not answering on {listen}:\n{}",
            d.log_tail()
        );
        d
    }

    pub fn log_tail(&self) -> String {
        super::tail(&self.log, 3000)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Does `server` answer an SRV query for `name` (any answer, even NXDOMAIN)?
fn answers(server: SocketAddr, name: &str) -> bool {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(300)));
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap_or(0));
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 33, 0, 1]);
    let mut buf = [0u8; 512];
    sock.send_to(&q, server).is_ok() && sock.recv(&mut buf).is_ok_and(|n| n >= 12)
}
