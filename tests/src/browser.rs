//! Debian's Chromium, headless, for pages that must be seen in a browser
//! (`scripts/test.sh` installs the package when missing).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs headless Chromium on `url` with `args` (`--dump-dom`,
/// `--screenshot=…`) and returns what it printed; at most 90 seconds.
///
/// # Panics
/// When `chromium` cannot be started, fails, or takes longer.
pub fn chromium(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium (Debian package; scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            assert!(status.success(), "chromium failed: {status}");
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium took more than 90 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The DOM Chromium built from the page at `url`, serialised.
pub fn dom(url: &str) -> String {
    chromium(url, &["--dump-dom"])
}

/// A screenshot of the page at `url`, `width`×`height`, written to `png`.
pub fn screenshot(url: &str, png: &Path, width: u32, height: u32) {
    chromium(
        url,
        &[
            &format!("--screenshot={}", png.display()),
            &format!("--window-size={width},{height}"),
            "--hide-scrollbars",
        ],
    );
    assert!(png.exists(), "no screenshot at {}", png.display());
}
