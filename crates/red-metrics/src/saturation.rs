//! Saturation (USE): the process and the Tokio runtime, read at each scrape.

use crate::collectors::{Collected, Collector};

/// `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds`, read from `/proc/self` (Linux; elsewhere nothing).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessCollector;

/// `USER_HZ`: the unit of CPU times in `/proc`, fixed at 100 by the Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

fn resident_bytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

fn open_fds() -> Option<f64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as f64)
}

impl Collector for ProcessCollector {
    fn collect(&self, out: &mut Vec<Collected>) {
        if let Some(v) = cpu_seconds() {
            out.push(Collected::counter(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                v,
            ));
        }
        if let Some(v) = resident_bytes() {
            out.push(Collected::gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                v,
            ));
        }
        if let Some(v) = open_fds() {
            out.push(Collected::gauge(
                "process_open_fds",
                "Number of open file descriptors.",
                v,
            ));
        }
    }
}

/// `tokio_workers`, `tokio_alive_tasks`, `tokio_global_queue_depth` of one
/// runtime.
#[derive(Clone, Debug)]
pub struct TokioCollector {
    handle: tokio::runtime::Handle,
}

impl TokioCollector {
    /// Reads the runtime of `handle`.
    pub fn new(handle: tokio::runtime::Handle) -> Self {
        Self { handle }
    }

    /// Reads the current runtime; `None` outside one.
    pub fn current() -> Option<Self> {
        tokio::runtime::Handle::try_current().ok().map(Self::new)
    }
}

impl Collector for TokioCollector {
    fn collect(&self, out: &mut Vec<Collected>) {
        let m = self.handle.metrics();
        out.push(Collected::gauge(
            "tokio_workers",
            "Worker threads of the Tokio runtime.",
            m.num_workers() as f64,
        ));
        out.push(Collected::gauge(
            "tokio_alive_tasks",
            "Tasks alive in the Tokio runtime.",
            m.num_alive_tasks() as f64,
        ));
        out.push(Collected::gauge(
            "tokio_global_queue_depth",
            "Tasks waiting in the Tokio runtime's global queue.",
            m.global_queue_depth() as f64,
        ));
    }
}
