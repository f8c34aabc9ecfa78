//! Headless Chromium (Debian's `chromium`, installed by `scripts/test.sh`) for tests of the
//! HTML the admin listener serves: `--dump-dom` for the DOM after rendering, `--screenshot`
//! for a PNG, and a PNG decoder to look for colours in it. Each run is bounded in time, uses
//! its own profile directory, and is killed by its PID if it overstays. A missing Chromium
//! fails the test; it never skips it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest one Chromium run may take (start-up, load, render, write).
const RUN_FOR: Duration = Duration::from_secs(90);

/// `$CHROMIUM`, else `chromium` on `PATH`.
pub fn chromium_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium not found on PATH: the status page is rendered with it (Debian package \
                 `chromium`); run scripts/test.sh, which installs it"
            )
        })
}

/// Run Chromium headless on `url` with `args`; its stdout. Panics (with its stderr tail)
/// if it fails or runs past [`RUN_FOR`].
fn run(dir: &Path, url: &str, args: &[String]) -> String {
    let profile = dir.join("chromium-profile");
    std::fs::create_dir_all(&profile).expect("create chromium profile dir");
    let stderr_path = dir.join("chromium.stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("create chromium.stderr");
    let stdout_path = dir.join("chromium.stdout");
    let stdout = std::fs::File::create(&stdout_path).expect("create chromium.stdout");
    let mut child = Command::new(chromium_bin())
        .args([
            "--headless",
            // Tests run as root in CI, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn chromium: {e}"));
    let _watchdog = super::Watchdog::guard(child.id());
    let deadline = Instant::now() + RUN_FOR;
    let status = loop {
        match child.try_wait().expect("try_wait chromium") {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chromium {args:?} {url} still running after {RUN_FOR:?}; stderr:\n{}",
                    super::tail(&stderr_path, 3000)
                );
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert!(
        status.success(),
        "chromium {args:?} {url} failed ({status}); stderr:\n{}",
        super::tail(&stderr_path, 3000)
    );
    let mut out = String::new();
    std::fs::File::open(&stdout_path)
        .and_then(|mut f| f.read_to_string(&mut out))
        .expect("read chromium stdout");
    out
}

/// The DOM of `url` after Chromium has loaded and rendered it.
pub fn dump_dom(dir: &Path, url: &str) -> String {
    run(dir, url, &["--dump-dom".to_owned()])
}

/// A screenshot of `url` in a `width` × `height` window, written to `png`.
pub fn screenshot(dir: &Path, url: &str, png: &Path, width: u32, height: u32) {
    let _ = std::fs::remove_file(png);
    run(
        dir,
        url,
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={width},{height}"),
        ],
    );
    assert!(
        png.is_file(),
        "chromium wrote no screenshot {}",
        png.display()
    );
}

/// A decoded image: width, height and one RGB triple per pixel (row by row).
#[derive(Debug)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<[u8; 3]>,
}

impl Image {
    /// Pixels within `tolerance` of `rgb` in every channel.
    pub fn count_near(&self, rgb: [u8; 3], tolerance: u8) -> usize {
        self.pixels
            .iter()
            .filter(|p| p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= tolerance))
            .count()
    }

    /// Distinct colours (a blank or one-colour image has 1).
    pub fn colours(&self) -> usize {
        let mut seen: Vec<[u8; 3]> = self.pixels.clone();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }
}

/// Decode a PNG (any colour type and depth) to RGB.
pub fn decode_png(path: &Path) -> Image {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .unwrap_or_else(|e| panic!("{} is not a PNG: {e}", path.display()));
    let mut buf = vec![0; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut buf).expect("decode PNG frame");
    let bytes = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    let pixels = bytes
        .chunks_exact(channels)
        .map(|p| match channels {
            1 | 2 => [p[0], p[0], p[0]],
            _ => [p[0], p[1], p[2]],
        })
        .collect();
    Image {
        width: info.width,
        height: info.height,
        pixels,
    }
}
