//! Debian's Prometheus, started by a test (`scripts/test.sh` installs the
//! package when missing).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A real Prometheus on 127.0.0.1 scraping one target every second, with
/// exemplar storage on, evaluating its rule files every second. Killed and
/// its data removed when dropped.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    addr: String,
    dir: PathBuf,
    client: reqwest::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

impl Prometheus {
    /// Scrapes `target`'s `/metrics` as job `job`, with `rules` — (file
    /// name, contents) — loaded.
    ///
    /// # Panics
    /// When `prometheus` cannot be started.
    pub fn start(job: &str, target: SocketAddr, rules: &[(String, String)]) -> Self {
        Self::launch(job, target, rules, None, false)
    }

    /// As [`start`](Self::start) with native histograms on
    /// (`--enable-feature=native-histograms`: Prometheus asks for the
    /// protobuf format first and stores a histogram with native buckets as
    /// one series), sending its alerts to `alertmanager` when given.
    ///
    /// # Panics
    /// When `prometheus` cannot be started.
    pub fn start_native(
        job: &str,
        target: SocketAddr,
        rules: &[(String, String)],
        alertmanager: Option<&str>,
    ) -> Self {
        Self::launch(job, target, rules, alertmanager, true)
    }

    /// As [`start`](Self::start), sending its alerts to the Alertmanager
    /// at `alertmanager` (`127.0.0.1:9093`), resent every second.
    ///
    /// # Panics
    /// When `prometheus` cannot be started.
    pub fn start_alerting(
        job: &str,
        target: SocketAddr,
        rules: &[(String, String)],
        alertmanager: &str,
    ) -> Self {
        Self::launch(job, target, rules, Some(alertmanager), false)
    }

    fn launch(
        job: &str,
        target: SocketAddr,
        rules: &[(String, String)],
        alertmanager: Option<&str>,
        native: bool,
    ) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "looptel-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut rule_files = String::new();
        for (name, contents) in rules {
            std::fs::write(dir.join(name), contents).expect("rule file");
            rule_files.push_str(&format!("  - {}\n", dir.join(name).display()));
        }
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{rule_files}scrape_configs:\n  - job_name: {job}\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{target}']\n{}",
                alertmanager.map_or_else(String::new, |am| format!(
                    "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n"
                ))
            ),
        )
        .expect("config");
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg(if native {
                "--enable-feature=exemplar-storage,native-histograms"
            } else {
                "--enable-feature=exemplar-storage"
            })
            .arg("--rules.alert.resend-delay=1s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package; scripts/test.sh installs it)");
        Self {
            child,
            addr,
            dir,
            client: reqwest::Client::new(),
        }
    }

    /// Where its HTTP API listens.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The trace ids of the exemplars stored for `query` (a selector,
    /// URL-encoded) over the last ten minutes; empty while there are none.
    pub async fn exemplar_trace_ids(&self, query: &str) -> Vec<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let body = self
            .api(&format!(
                "query_exemplars?query={query}&start={}&end={}",
                now.saturating_sub(600),
                now + 60
            ))
            .await;
        body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|series| series["exemplars"].as_array().into_iter().flatten())
            .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
            .collect()
    }

    /// `GET /api/v1/{path}`, its JSON; `Null` while Prometheus is not up
    /// yet or answers something else.
    pub async fn api(&self, path: &str) -> serde_json::Value {
        let url = format!("http://{}/api/v1/{path}", self.addr);
        match self.client.get(&url).send().await {
            Ok(res) => {
                serde_json::from_str(&res.text().await.unwrap_or_default()).unwrap_or_default()
            }
            Err(_) => serde_json::Value::Null,
        }
    }
}
