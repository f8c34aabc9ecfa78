//! The `trunkgate` binary as a child process: start on a policy file (or the embedded
//! default), wait for `/health`, scrape `/metrics`, stop with SIGTERM. Killed on drop; its
//! log tail is printed when the test is failing.

use super::{http_get, poll, tail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of the binary under test, built by Cargo for this integration test.
pub const BIN: &str = env!("CARGO_BIN_EXE_trunkgate");

pub struct Trunkgate {
    child: Option<Child>,
    _watchdog: Option<super::Watchdog>,
    admin: SocketAddr,
    log: PathBuf,
}

impl Trunkgate {
    /// `trunkgate check --config FILE` must accept the policy.
    pub fn check(policy: &Path) {
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(policy)
            .stdin(Stdio::null())
            .output()
            .expect("run trunkgate check");
        assert!(
            out.status.success(),
            "trunkgate check --config {} failed ({}):\n{}{}",
            policy.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start `trunkgate run [--config policy]` with logs in `dir`, and wait until `/health`
    /// on `admin` answers 200.
    pub fn start(dir: &Path, policy: Option<&Path>, admin: SocketAddr) -> Trunkgate {
        let log = dir.join("trunkgate.log");
        let log_file = std::fs::File::create(&log).expect("create trunkgate.log");
        let mut cmd = Command::new(BIN);
        cmd.arg("run");
        if let Some(policy) = policy {
            cmd.arg("--config").arg(policy);
        }
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        let mut tg = Trunkgate {
            _watchdog: super::Watchdog::guard(child.id()),
            child: Some(child),
            admin,
            log,
        };
        tg.wait_healthy(Duration::from_secs(15));
        tg
    }

    fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("trunkgate child present until stop")
    }

    pub fn pid(&mut self) -> u32 {
        self.child().id()
    }

    /// Poll `/health` until 200; fail if the process exits or the deadline passes.
    pub fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                panic!(
                    "trunkgate exited during start-up ({status}); log:\n{}",
                    tail(&self.log, 4000)
                );
            }
            if let Ok((200, _)) = http_get(self.admin, "/health") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "trunkgate /health on {} not 200 within {timeout:?}; log:\n{}",
                self.admin,
                tail(&self.log, 4000)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn is_alive(&mut self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }

    /// The `/health` status code, if the admin API answers at all.
    pub fn health(&self) -> Option<u16> {
        http_get(self.admin, "/health").ok().map(|(s, _)| s)
    }

    /// The `/metrics` exposition (must answer 200).
    pub fn metrics(&self) -> String {
        match http_get(self.admin, "/metrics") {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("GET /metrics: {status}\n{body}"),
            Err(e) => panic!("GET /metrics on {}: {e}", self.admin),
        }
    }

    /// Every `trunkgate_dialogs_active` sample reaches 0 within `timeout`. The metric must be
    /// exported with at least one sample.
    pub fn assert_dialogs_drain(&self, timeout: Duration) {
        let mut last = String::new();
        let drained = poll(timeout, || {
            last = self.metrics();
            let s = super::samples(&last, "trunkgate_dialogs_active");
            (!s.is_empty() && s.iter().all(|s| s.value == 0.0)).then_some(())
        });
        if drained.is_none() {
            let lines: Vec<&str> = last
                .lines()
                .filter(|l| l.starts_with("trunkgate_dialogs_active"))
                .collect();
            panic!(
                "trunkgate_dialogs_active not 0 for every label after {timeout:?} \
                 (no samples means the metric is not exported):\n{}",
                lines.join("\n")
            );
        }
    }

    /// SIGTERM, then the process must exit with status 0 within `grace`.
    pub fn stop(mut self, grace: Duration) -> ExitStatus {
        let pid = self.pid();
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                self.child = None;
                assert!(
                    status.success(),
                    "trunkgate exited with {status} after SIGTERM; log:\n{}",
                    tail(&self.log, 4000)
                );
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "trunkgate still running {grace:?} after SIGTERM; log:\n{}",
                tail(&self.log, 4000)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, 4000)
    }
}

impl Drop for Trunkgate {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "---- trunkgate log tail ({}) ----\n{}",
                    self.log.display(),
                    tail(&self.log, 4000)
                );
            }
        }
    }
}

/// `trunkgate ctl --config POLICY ARGS`, bounded to 30 s.
pub fn ctl(policy: &Path, args: &[&str]) -> Output {
    ctl_env(policy, args, &[])
}

pub fn ctl_env(policy: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("ctl")
        .arg("--config")
        .arg(policy)
        .args(args)
        .env_remove("TRUNKGATE_ADMIN_TOKEN")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctl");
    let _watchdog = super::Watchdog::guard(child.id());
    child.wait_with_output().expect("ctl output")
}
