//! The real order-service binary, started by a test: port 0, its JSON log
//! lines read as they come.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// A running order-service; killed when dropped.
pub(crate) struct Service {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Service {
    /// Starts the binary with only `envs` (and port 0 for both listeners).
    #[allow(dead_code)] // not every test binary starts it this way
    pub(crate) fn start(envs: &[(&str, String)]) -> Self {
        Self::start_logging(envs, None)
    }

    /// As [`start`](Self::start), also appending every log line to `log`
    /// as it comes (what a log shipper would read).
    pub(crate) fn start_logging(envs: &[(&str, String)], log: Option<&std::path::Path>) -> Self {
        let mut log = log.map(|p| std::fs::File::create(p).expect("log file"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_order-service"));
        cmd.env_clear()
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("GRPC_ADDR", "127.0.0.1:0")
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn order-service");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(f) = &mut log {
                    use std::io::Write as _;
                    let _ = writeln!(f, "{line}");
                }
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not one JSON object per line: {line:?}: {e}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line with `message`.
    pub(crate) fn line(&mut self, message: &str) -> Value {
        if let Some(l) = self.seen.iter().find(|l| l["message"] == message) {
            return l.clone();
        }
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no line {message:?}; saw {:#?}", self.seen));
            self.seen.push(l.clone());
            if l["message"] == message {
                return l;
            }
        }
    }

    /// Every line written so far, without waiting.
    #[allow(dead_code)] // not every test binary reads them all
    pub(crate) fn drain(&mut self) -> &[Value] {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        &self.seen
    }

    /// How many lines so far have `message`.
    #[allow(dead_code)] // not every test binary counts lines
    pub(crate) fn count(&mut self, message: &str) -> usize {
        self.drain()
            .iter()
            .filter(|l| l["message"] == message)
            .count()
    }

    /// Whether the process still runs.
    #[allow(dead_code)] // not every test binary asks
    pub(crate) fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// Sends SIGTERM and waits for the exit, keeping the last lines.
    #[allow(dead_code)] // not every test binary stops it this way
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        self.terminate_within(Duration::from_secs(600))
            .expect("the service exits after SIGTERM")
    }

    /// Sends SIGTERM and waits at most `limit` for the exit (`None`: it
    /// was still running, and is killed), keeping the last lines.
    #[allow(dead_code)] // not every test binary stops it this way
    pub(crate) fn terminate_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = std::time::Instant::now() + limit;
        let exit = loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                break exit;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Drain what was written before exit.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        Some(exit)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// Where the HTTP API listens, from the start-up log line.
    pub(crate) fn http_addr(&mut self) -> String {
        let listening = self.line("order-service listening");
        let addr = listening["http.addr"]
            .as_str()
            .expect("bound address logged")
            .to_owned();
        assert!(!addr.ends_with(":0"), "port 0 resolved: {addr}");
        addr
    }
}

/// Orders, 20 a second, from a task while not paused; stopped when dropped.
#[allow(dead_code)] // not every test binary sends traffic
pub(crate) struct Traffic {
    flowing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

#[allow(dead_code)] // not every test binary sends traffic
impl Traffic {
    /// Starts sending `POST /orders` (tenant `acme`) to `addr`.
    pub(crate) fn start(addr: &str) -> Self {
        use std::sync::atomic::Ordering;
        let flowing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let task = tokio::spawn({
            let (flowing, url) = (flowing.clone(), format!("http://{addr}/orders"));
            async move {
                let client = reqwest::Client::new();
                loop {
                    if flowing.load(Ordering::Relaxed) {
                        let _ = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("x-tenant-id", "acme")
                            .body(r#"{"customer_id":"c-1","items":[{"sku":"pen","quantity":1}]}"#)
                            .send()
                            .await;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Self { flowing, task }
    }

    /// Stops sending (the task stays, idle).
    pub(crate) fn pause(&self) {
        self.flowing
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Deletes the exchanges and queues a service declared for payments
/// named `name` (`PAYMENTS_EXCHANGE` and `PAYMENTS_QUEUE`): a test leaves
/// nothing behind on the shared RabbitMQ.
#[allow(dead_code)] // not every test binary talks to RabbitMQ
pub(crate) async fn delete_payments(amqp_url: &str, name: &str) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let Ok(connection) =
        lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        for q in [name.to_owned(), format!("{name}.dead")] {
            let _ = channel
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for e in [name.to_owned(), format!("{name}.dlx")] {
            let _ = channel
                .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = connection.close(200, "done".into()).await;
}

/// RabbitMQ for the tests: `AMQP_URL`, or the one `scripts/test.sh` starts.
#[allow(dead_code)] // not every test binary talks to RabbitMQ
pub(crate) fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// The server's address in a URL (`amqp://user:pass@host:port/vhost`).
#[allow(dead_code)] // not every test binary puts a proxy in front
pub(crate) fn server_of(url: &str) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs as _;
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/')
        .next()
        .unwrap_or(rest)
        .to_socket_addrs()
        .expect("resolvable server")
        .next()
        .expect("an address")
}

/// `url` with its host and port replaced by `addr` (a proxy's).
#[allow(dead_code)] // not every test binary puts a proxy in front
pub(crate) fn through(url: &str, addr: std::net::SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let (creds, rest) = rest.rsplit_once('@').map_or(("", rest), |(c, r)| (c, r));
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let at = if creds.is_empty() { "" } else { "@" };
    format!("{scheme}://{creds}{at}{addr}{path}")
}

/// The fault switch (`--enable-faults`): `PUT /admin/faults` with `body`,
/// or `DELETE` it for `None`; the status it answered.
#[allow(dead_code)] // not every test binary injects faults
pub(crate) async fn faults(addr: &str, body: Option<&str>) -> reqwest::StatusCode {
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/admin/faults");
    match body {
        Some(b) => client
            .put(url)
            .header("content-type", "application/json")
            .body(b.to_owned()),
        None => client.delete(url),
    }
    .send()
    .await
    .expect("the fault switch")
    .status()
}

/// `slo`'s recorded 5-minute error ratio (scaled windows: 5 s) as
/// Prometheus answers it now.
#[allow(dead_code)] // not every test binary reads the rules' output
pub(crate) async fn recorded_ratio(
    prometheus: &looptel_tests::Prometheus,
    slo: &str,
) -> Option<String> {
    let body = prometheus
        .api(&format!(
            "query?query=slo:error_ratio:rate5m{{slo=%22{slo}%22}}"
        ))
        .await;
    body["data"]["result"][0]["value"][1]
        .as_str()
        .map(str::to_owned)
}
