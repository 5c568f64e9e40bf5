//! The non-blocking line writer: lines go to a thread through a queue that
//! grows with use and is bounded by a count, not by memory set aside.
//!
//! `tracing-appender`'s non-blocking writer (what this replaces) queues on a
//! bounded channel whose slots are all allocated at start: 16,384 lines kept
//! 512 KB resident in an idle service (`scripts/bench.sh`, idle memory).
//! Here the queue is std's unbounded channel — blocks of 31 lines, allocated
//! as lines arrive and freed as they are written — and the bound is a
//! counter: a line that would exceed it is dropped and counted, never
//! waited for. It also takes the line by value (no copy into the queue),
//! and a burst of lines costs one write call, not one a line.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};

enum Message {
    Line(Vec<u8>),
    /// Write what came before, then stop.
    Stop,
}

/// What the writer and its users share.
#[derive(Debug, Default)]
struct Counts {
    /// Lines sent and not yet written.
    queued: AtomicUsize,
    /// Lines dropped: the queue was full, or the writer had stopped.
    dropped: AtomicU64,
}

/// Sends lines to the writer thread. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct LineWriter {
    tx: Sender<Message>,
    counts: Arc<Counts>,
    limit: usize,
}

/// The writer thread; [`Worker::stop`] writes what is queued and ends it.
#[derive(Debug)]
pub(crate) struct Worker {
    tx: Sender<Message>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Lines dropped, as an operator reads them.
#[derive(Clone, Debug)]
pub(crate) struct Dropped(Arc<Counts>);

impl Dropped {
    pub(crate) fn get(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// Starts the writer thread on `output`, at most `limit` lines queued.
pub(crate) fn spawn(
    output: Box<dyn Write + Send>,
    limit: usize,
    name: &str,
) -> std::io::Result<(LineWriter, Worker, Dropped)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let counts = Arc::new(Counts::default());
    let thread = std::thread::Builder::new().name(name.to_owned()).spawn({
        let counts = counts.clone();
        move || run(&rx, output, &counts)
    })?;
    Ok((
        LineWriter {
            tx: tx.clone(),
            counts: counts.clone(),
            limit: limit.max(1),
        },
        Worker {
            tx,
            thread: Some(thread),
        },
        Dropped(counts),
    ))
}

impl LineWriter {
    /// Queues `line` (a whole line, its newline included), or drops and
    /// counts it when `limit` lines are already waiting.
    pub(crate) fn send(&self, line: Vec<u8>) {
        let counts = &self.counts;
        if counts.queued.fetch_add(1, Ordering::Relaxed) >= self.limit {
            counts.queued.fetch_sub(1, Ordering::Relaxed);
            counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.tx.send(Message::Line(line)).is_err() {
            // The writer has stopped.
            counts.queued.fetch_sub(1, Ordering::Relaxed);
            counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Worker {
    /// Asks the thread to write what is queued and stop, and waits for it.
    pub(crate) fn stop(mut self) {
        let _ = self.tx.send(Message::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes lines as they come: gathered while more are queued (up to
/// [`BATCH_BYTES`]), written in one call when the queue runs empty. A line
/// counts as queued until the call that writes it has returned, so the
/// bound holds however slow the output is.
fn run(rx: &Receiver<Message>, mut output: Box<dyn Write + Send>, counts: &Counts) {
    let mut batch: Vec<u8> = Vec::new();
    let mut lines = 0;
    let mut write = |batch: &mut Vec<u8>, lines: &mut usize| {
        // An output that fails (a closed pipe) loses the batch; the
        // writer goes on with the next.
        let _ = output.write_all(batch).and_then(|()| output.flush());
        counts.queued.fetch_sub(*lines, Ordering::Relaxed);
        batch.clear();
        *lines = 0;
    };
    'lines: while let Ok(message) = rx.recv() {
        let mut next = Ok(message);
        loop {
            match next {
                Ok(Message::Line(line)) => {
                    batch.extend_from_slice(&line);
                    lines += 1;
                    if batch.len() >= BATCH_BYTES {
                        write(&mut batch, &mut lines);
                    }
                }
                Ok(Message::Stop) | Err(TryRecvError::Disconnected) => break 'lines,
                Err(TryRecvError::Empty) => {
                    write(&mut batch, &mut lines);
                    continue 'lines;
                }
            }
            next = rx.try_recv();
        }
    }
    write(&mut batch, &mut lines);
    // Lines sent after the stop: not written, counted.
    let late = rx
        .try_iter()
        .filter(|m| matches!(m, Message::Line(_)))
        .count();
    counts.queued.fetch_sub(late, Ordering::Relaxed);
    counts.dropped.fetch_add(late as u64, Ordering::Relaxed);
}

/// The most a batch gathers before it is written.
const BATCH_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// An output that blocks until told to go on.
    struct Stalled(Arc<(Mutex<bool>, std::sync::Condvar)>, Shared);

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, cvar) = &*self.0;
            let mut go = lock.lock().expect("lock");
            while !*go {
                go = cvar.wait(go).expect("wait");
            }
            self.1.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_order_and_all_of_them_at_stop() {
        let out = Shared::default();
        let (writer, worker, dropped) = spawn(Box::new(out.clone()), 100, "t").expect("spawn");
        for i in 0..50 {
            writer.send(format!("{i}\n").into_bytes());
        }
        worker.stop();
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf8");
        let expected: String = (0..50).map(|i| format!("{i}\n")).collect();
        assert_eq!(text, expected);
        assert_eq!(dropped.get(), 0);
        // After the stop, a line is dropped and counted, not lost silently.
        writer.send(b"late\n".to_vec());
        assert_eq!(dropped.get(), 1);
    }

    #[test]
    fn a_line_sent_after_the_stop_is_counted_not_lost_silently() {
        let out = Shared::default();
        let (writer, worker, dropped) = spawn(Box::new(out.clone()), 100, "t").expect("spawn");
        writer.send(b"before\n".to_vec());
        let _ = worker.tx.send(Message::Stop);
        // Behind the stop in the queue, or after the writer is gone.
        writer.send(b"after\n".to_vec());
        worker.stop();
        assert_eq!(&*out.0.lock().expect("lock"), b"before\n");
        assert_eq!(dropped.get(), 1);
    }

    #[test]
    fn a_stalled_output_drops_and_counts_past_the_limit_without_blocking() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let out = Shared::default();
        let stalled = Stalled(gate.clone(), out.clone());
        let (writer, worker, dropped) = spawn(Box::new(stalled), 3, "t").expect("spawn");
        let line = |i: usize| format!("{i}\n").into_bytes();
        for i in 0..10 {
            writer.send(line(i)); // never blocks
        }
        // Queued counts the line in the writer's hand until it is written:
        // three are taken, whatever the thread has received so far.
        assert_eq!(dropped.get(), 7);
        *gate.0.lock().expect("lock") = true;
        gate.1.notify_all();
        worker.stop();
        let written = out
            .0
            .lock()
            .expect("lock")
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        assert_eq!(written, 3);
    }
}
