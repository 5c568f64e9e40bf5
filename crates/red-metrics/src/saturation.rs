//! Saturation (USE): the process and the Tokio runtime, read at each scrape.

use crate::collectors::{Collected, Collector};

/// `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds` and `process_start_time_seconds`, read from
/// `/proc/self` (Linux; elsewhere nothing) — the names and meanings of
/// Prometheus' own client libraries, so a restart is seen as a new start
/// time.
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

/// The process' start, Unix seconds: its start in ticks after boot
/// (`/proc/self/stat` field 22) plus the boot time (`/proc/stat` `btime`).
fn start_time_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: f64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime + ticks / TICKS_PER_SECOND)
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
        if let Some(v) = start_time_seconds() {
            out.push(Collected::gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_this_process_start() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        let start = start_time_seconds().expect("read from /proc");
        // A test process started at most minutes ago, never in the future
        // (ticks are 10 ms).
        assert!(
            start <= now + 0.02 && now - start < 3600.0,
            "{start} vs {now}"
        );
        let mut out = Vec::new();
        ProcessCollector.collect(&mut out);
        assert!(
            out.iter()
                .any(|c| c.name == "process_start_time_seconds" && !c.counter)
        );
    }
}
