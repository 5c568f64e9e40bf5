//! Debian's Alertmanager (`prometheus-alertmanager`), started by a test
//! (`scripts/test.sh` installs the package when missing).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::prometheus::free_port;

/// A real Alertmanager on 127.0.0.1 posting every alert to one webhook,
/// grouped per alert, without waiting (`group_wait` and `group_interval`
/// 1 s), resolved notifications included. Killed and its data removed when
/// dropped.
#[derive(Debug)]
pub struct Alertmanager {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Alertmanager {
    /// Posts to `webhook` (`http://127.0.0.1:9099/alerts`).
    ///
    /// # Panics
    /// When `prometheus-alertmanager` cannot be started.
    pub fn start(webhook: &str) -> Self {
        Self::with_config(&format!(
            "route:\n  receiver: retro\n  group_by: ['alertname', 'slo']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: retro\n    webhook_configs:\n      - url: '{webhook}'\n        send_resolved: true\n"
        ))
    }

    /// Runs with a configuration of the caller's (deploy/'s own, say).
    ///
    /// # Panics
    /// When `prometheus-alertmanager` cannot be started.
    pub fn with_config(config_text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "looptel-alertmanager-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("alertmanager.yml");
        std::fs::write(&config, config_text).expect("config");
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            // No cluster: nothing else listens, nothing to gossip with.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager (Debian package; scripts/test.sh installs it)");
        Self { child, addr, dir }
    }

    /// Where it listens (what Prometheus sends alerts to).
    pub fn addr(&self) -> &str {
        &self.addr
    }
}
