//! Builds the kernel fast path's BPF program (`bpf/fastpath.bpf.c`) with clang into
//! `$OUT_DIR/fastpath.bpf.o`, which the relay embeds (`src/fastpath/mod.rs`).
//!
//! Why a build script and not a step at run time: the object is compiled once, on the build
//! machine, and travels inside the binary, so a host that runs Trunkgate needs neither clang
//! nor kernel headers; and a program the verifier would reject is found by the test suite,
//! not on a production host at start. Why C: Rust-written BPF programs need nightly
//! `rust-src`, which our build machines do not have; clang (Debian `clang`) with the headers
//! of Debian `libbpf-dev` (bpf_helpers.h) and `linux-libc-dev` (linux/bpf.h) builds it.
//!
//! Without clang the build still succeeds — with a warning and an empty object, so the relay
//! reports the kernel path unavailable and `media.fastpath = "auto"` runs the userspace
//! relay — unless `TRUNKGATE_REQUIRE_BPF=1` (scripts/test.sh sets it), which makes a missing
//! or failing clang a build error.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/fastpath.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=TRUNKGATE_REQUIRE_BPF");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("fastpath.bpf.o");
    let required = env::var("TRUNKGATE_REQUIRE_BPF").is_ok_and(|v| v == "1");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    // linux/bpf.h includes <asm/types.h>, which Debian keeps under the multiarch directory.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        other => other,
    };
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c", src])
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg("-o")
        .arg(&out)
        .status();
    let failure = match status {
        Ok(s) if s.success() => return,
        Ok(s) => format!("{clang} failed on {src} ({s})"),
        Err(e) => format!(
            "{clang} not found ({e}): install Debian's clang and libbpf-dev to build the kernel media fast path"
        ),
    };
    if required {
        eprintln!("{failure}");
        std::process::exit(1);
    }
    println!(
        "cargo:warning={failure}; the kernel fast path is not built (media.fastpath = \"auto\" runs the userspace relay)"
    );
    if let Err(e) = std::fs::write(&out, []) {
        eprintln!("cannot write {}: {e}", out.display());
        std::process::exit(1);
    }
}
