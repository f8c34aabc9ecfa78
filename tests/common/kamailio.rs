//! Kamailio (Debian's `kamailio` 5.6) as a child process for the end-to-end tests: a config
//! from `tests/kamailio/` with its placeholders filled in, started in the foreground
//! (`-DD -E`), readiness polled over its ctl socket (`kamcmd`), stopped by its PID. A
//! missing Kamailio fails the test: `scripts/test.sh` installs it.

use super::{poll, tail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Kamailio {
    child: Option<Child>,
    _watchdog: Option<super::Watchdog>,
    ctl: PathBuf,
    pub log: PathBuf,
}

fn bin(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found: install Debian's kamailio (scripts/test.sh does)");
}

impl Kamailio {
    /// Start Kamailio on `tests/kamailio/{config}` with `vars` (`@NAME@` → value) in `dir`.
    pub fn start(dir: &Path, config: &str, vars: &[(&str, &str)]) -> Kamailio {
        let template_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/kamailio")
            .join(config);
        let mut text = std::fs::read_to_string(&template_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", template_path.display()));
        let ctl = dir.join("kamailio_ctl");
        let ctl_text = ctl.display().to_string();
        for (name, value) in vars
            .iter()
            .chain(std::iter::once(&("CTL", ctl_text.as_str())))
        {
            text = text.replace(&format!("@{name}@"), value);
        }
        assert!(
            !text.contains("@LISTEN@"),
            "unfilled placeholder in {config}"
        );
        let cfg = dir.join(config);
        std::fs::write(&cfg, text).expect("write kamailio config");
        let log = dir.join(format!("{config}.log"));
        let log_file = std::fs::File::create(&log).expect("create kamailio log");
        let runtime = dir.join("kamailio-run");
        std::fs::create_dir_all(&runtime).expect("kamailio runtime dir");
        let child = Command::new(bin("kamailio"))
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
            .arg(&runtime)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn kamailio: {e}"));
        let mut k = Kamailio {
            _watchdog: super::Watchdog::guard(child.id()),
            child: Some(child),
            ctl,
            log,
        };
        let ready = poll(Duration::from_secs(15), || {
            if let Some(Some(status)) = k.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "kamailio exited at start ({status}):\n{}",
                    tail(&k.log, 4000)
                );
            }
            k.rpc(&["core.version"])
                .filter(|v| v.contains("kamailio"))
                .map(|_| ())
        });
        assert!(
            ready.is_some(),
            "kamailio not ready in 15 s:\n{}",
            tail(&k.log, 4000)
        );
        k
    }

    /// `kamcmd CMD...` over the ctl socket; `None` when it fails.
    pub fn rpc(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(bin("kamcmd"))
            .arg("-s")
            .arg(format!("unix:{}", self.ctl.display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The location table (`ul.dump`).
    pub fn location(&self) -> String {
        self.rpc(&["ul.dump"]).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, 6000)
    }

    /// Stop by PID (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let gone = poll(Duration::from_secs(5), || child.try_wait().ok().flatten());
        if gone.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}
