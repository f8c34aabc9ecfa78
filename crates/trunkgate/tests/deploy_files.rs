//! The deployment files in `deploy/` say what docs/deploy.md promises: the systemd unit
//! (own user, only the capabilities the binary uses, restart on failure, reload by SIGHUP,
//! the state directory that holds the call records) passes `systemd-analyze verify`
//! (Debian's `systemd`, installed by scripts/test.sh; missing, the test fails), and the
//! Containerfile is a multi-stage build onto a small runtime image whose sources exist.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Values of `key=` in a unit file (every occurrence, comments left out).
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .collect()
}

fn one<'a>(unit: &'a str, key: &str) -> &'a str {
    match unit_values(unit, key).as_slice() {
        [v] => v,
        other => panic!("{key}= should be set once in the unit, found {other:?}"),
    }
}

#[test]
fn systemd_unit_runs_unprivileged_and_reloads_with_sighup() {
    let unit = read("deploy/systemd/trunkgate.service");
    assert_eq!(one(&unit, "User"), "trunkgate");
    assert_eq!(one(&unit, "Group"), "trunkgate");
    assert_eq!(one(&unit, "Restart"), "on-failure");
    assert_eq!(one(&unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one(&unit, "StateDirectory"), "trunkgate");
    assert_eq!(one(&unit, "WorkingDirectory"), "/var/lib/trunkgate");
    assert_eq!(one(&unit, "NoNewPrivileges"), "yes");
    assert!(one(&unit, "ExecStart").ends_with("run --config /etc/trunkgate/trunkgate.toml"));
    assert!(one(&unit, "ExecStartPre").contains(" check --config "));
    // Only what the binary uses: media.nice and sip.nice (CAP_SYS_NICE), the kernel fast path
    // of media.fastpath = "auto" (CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW); never SYS_ADMIN.
    let ambient: Vec<&str> = one(&unit, "AmbientCapabilities")
        .split_whitespace()
        .collect();
    let bounding: Vec<&str> = one(&unit, "CapabilityBoundingSet")
        .split_whitespace()
        .collect();
    assert_eq!(
        ambient,
        ["CAP_SYS_NICE", "CAP_BPF", "CAP_NET_ADMIN", "CAP_NET_RAW"]
    );
    assert_eq!(bounding, ambient, "the bounding set is the ambient set");
    let docs = read("docs/deploy.md");
    assert!(docs.contains("/var/lib/trunkgate/records.sqlite"));
    assert!(docs.contains("deploy/systemd/trunkgate.service"));
}

/// `systemd-analyze verify` on a copy of the unit whose commands point at the binary under
/// test (the installed path does not exist on a build machine).
#[test]
fn systemd_unit_verifies() {
    let unit = read("deploy/systemd/trunkgate.service")
        .replace("/usr/local/bin/trunkgate", env!("CARGO_BIN_EXE_trunkgate"));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("deploy_files");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trunkgate.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "systemd-analyze: {e}; it checks deploy/systemd/trunkgate.service (Debian \
                 package `systemd`); run scripts/test.sh, which installs it"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{text}"
    );
    assert!(
        !text.contains("trunkgate.service:"),
        "systemd-analyze has remarks on the unit:\n{text}"
    );
}

#[test]
fn containerfile_is_multi_stage_onto_a_slim_runtime() {
    let file = read("deploy/container/Containerfile");
    let lines: Vec<&str> = file
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].ends_with(" AS build"), "{froms:?}");
    assert!(
        froms[1].contains("-slim") || froms[1].contains("distroless"),
        "the runtime stage is a small image: {}",
        froms[1]
    );
    for copy in lines.iter().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = copy.split_whitespace().collect();
        if words.get(1).is_some_and(|w| w.starts_with("--from=")) || words.get(1) == Some(&".") {
            continue;
        }
        let source = words.get(1).expect("COPY source");
        assert!(
            repo().join(source).exists(),
            "COPY {source}: not in the repository"
        );
    }
    assert!(
        lines.contains(&"USER trunkgate"),
        "the image runs as its own user"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("VOLUME") && l.contains("/var/lib/trunkgate"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("CMD") && l.contains("\"run\", \"--config\""))
    );
    assert!(
        read(".dockerignore").contains("target/"),
        "the build context leaves target/ out"
    );
}

/// The binary links no shared library a fresh Debian lacks: only the C library's
/// (`libc6`) and `libgcc-s1` (which `libc6` depends on). The test binary is the debug
/// build; its shared libraries are the release build's (profiles change no linking).
#[test]
fn binary_needs_only_libc_level_libraries() {
    let out = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_trunkgate"))
        .output()
        .expect("run ldd (Debian package libc-bin)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ldd failed: {text}");
    let allowed = |lib: &str| {
        lib.starts_with("linux-vdso.so")
            || lib.starts_with("ld-linux")
            || lib.contains("/ld-linux")
            || ["libc.so.6", "libm.so.6", "libgcc_s.so.1"].contains(&lib)
    };
    let libs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(libs.contains(&"libc.so.6"), "{text}");
    let extra: Vec<&&str> = libs.iter().filter(|l| !allowed(l)).collect();
    assert!(
        extra.is_empty(),
        "trunkgate needs shared libraries a fresh Debian does not have: {extra:?}\n{text}"
    );
}
