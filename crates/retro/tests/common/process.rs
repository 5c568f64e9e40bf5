//! The real `looptel-retro` binary, started and stopped as an operator
//! would.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use serde_json::Value;

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/order-service/slo.yaml"
);

/// A running `looptel-retro`; killed if still running when dropped.
#[derive(Debug)]
pub struct Retro {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
    lines: Receiver<Value>,
    /// Every log line read so far.
    pub seen: Vec<Value>,
}

impl Retro {
    /// Starts it on a free port with `args` (and the SLO spec of
    /// order-service), and waits until it listens.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// As [`start`](Self::start), with these variables set as well.
    pub fn start_with_env(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_looptel-retro"))
            .env_clear()
            .env("OTEL_TRACES_EXPORTER", "none")
            .envs(envs.iter().copied())
            .args(["--addr", "127.0.0.1:0", "--spec", SPEC])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn looptel-retro");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel::<Value>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // A line that is not JSON is kept as text: nothing it
                // writes goes unread.
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut retro = Self {
            child,
            base: String::new(),
            lines,
            seen: Vec::new(),
        };
        let listening = retro.wait_for("looptel-retro listening");
        retro.base = format!(
            "http://{}",
            listening["http.addr"].as_str().expect("address")
        );
        retro
    }

    /// Waits for a log line with this message; panics with every line seen
    /// if the process ends or goes quiet first.
    pub fn wait_for(&mut self, message: &str) -> Value {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l["message"] == message {
                        return l;
                    }
                }
                Err(e) => panic!("no {message:?} line ({e}); seen: {:#?}", self.seen),
            }
        }
    }

    /// A line already read with this message.
    pub fn logged(&self, message: &str) -> &Value {
        self.seen
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line; seen: {:#?}", self.seen))
    }

    /// SIGTERM, as a deploy stops it; waits for the clean stop and returns
    /// every line it wrote, the last one saying how many claims it gave
    /// back (`released`).
    pub fn terminate(mut self) -> Vec<Value> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        self.wait_for("looptel-retro stopped");
        let exit = self.child.wait().expect("wait");
        assert!(exit.success(), "a clean exit: {exit:?}");
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Retro {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
