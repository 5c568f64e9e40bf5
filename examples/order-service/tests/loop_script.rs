//! `scripts/loop.sh`, the loop in one command, run as users run it (with
//! the binaries this test build made, or builds them): it must end with a
//! verified card, saying where the card is and what it holds.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding order-service, looptel-retro, looptel-slo and
/// looptel-doctor:
/// this build's, when the workspace's tests built them all (as
/// `scripts/test.sh` does); otherwise a build of the two missing ones of
/// its own (a separate target directory: a running `cargo test` holds the
/// lock on its own).
fn binaries() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_order-service"))
        .parent()
        .expect("target dir")
        .to_owned();
    if ["looptel-retro", "looptel-slo", "looptel-doctor"]
        .iter()
        .all(|b| bin.join(b).exists())
    {
        return bin;
    }
    let target = bin.join("loop-script-binaries");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--locked",
            "-p",
            "looptel-retro",
            "-p",
            "looptel-slo",
            "-p",
            "looptel-doctor",
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo");
    assert!(
        status.success(),
        "building looptel-retro, looptel-slo and looptel-doctor"
    );
    let built = target.join("debug");
    std::fs::copy(
        env!("CARGO_BIN_EXE_order-service"),
        built.join("order-service"),
    )
    .expect("order-service beside them");
    built
}

#[test]
fn the_loop_script_ends_with_a_verified_card() {
    let bin = binaries();
    let bin = bin.as_path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("scripts/loop.sh"))
        .env("LOOP_BIN_DIR", bin)
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loop.sh failed:\n{stdout}\n{stderr}");
    // The page, its card and what it holds.
    let paged = stdout
        .lines()
        .find(|l| l.contains("paged after"))
        .unwrap_or_else(|| panic!("no page:\n{stdout}"));
    assert!(paged.contains("/incidents/"), "{paged}");
    assert!(stdout.contains("ErrorBudgetBurn"), "{stdout}");
    assert!(stdout.contains("error in POST /orders"), "{stdout}");
    let traces = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("traces: "))
        .unwrap_or_else(|| panic!("no traces:\n{stdout}"));
    assert!(
        traces
            .split(", ")
            .all(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())),
        "{traces}"
    );
    assert!(
        stdout.contains("dependencies that moved: inventory.v1.StockService/ReserveItem"),
        "{stdout}"
    );
    assert!(
        stdout.contains("most likely: inventory.v1.StockService/ReserveItem fails: errors"),
        "{stdout}"
    );
    // The doctor looked first, and found nothing failing.
    assert!(stdout.contains("looptel-doctor: 0 fail, "), "{stdout}");
    assert!(
        stdout.contains("fault_switch inventory_error_rate=0.5"),
        "{stdout}"
    );
    // The recovery, verified with traffic.
    assert!(
        stdout.contains("verified — recovered: burn rate"),
        "{stdout}"
    );
    // Alertmanager reached retro with its token (the card above), and an
    // action needs the write token.
    assert!(
        stdout.contains(
            "action added with the write token (without it: 401): Alert on the inventory's own SLO"
        ),
        "{stdout}"
    );
    // And nothing left behind: no working directory, no process serving.
    let work = stdout
        .lines()
        .find_map(|l| l.strip_prefix("==> working in "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no working directory named:\n{stdout}"));
    assert!(!Path::new(work).exists(), "{work} removed");
    let service = stdout
        .lines()
        .find_map(|l| l.strip_prefix("==> order-service on http://"))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no service address:\n{stdout}"));
    assert!(
        std::net::TcpStream::connect(service).is_err(),
        "order-service at {service} was stopped"
    );
}
