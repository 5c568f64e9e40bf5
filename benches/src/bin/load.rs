//! `load <addr> <warm-up s> <seconds> <connections>`: the load generator of
//! the throughput figures. Keeps `connections` HTTP/1.1 keep-alive
//! connections busy (one request in flight on each, no pipelining) with a
//! gateway's mix: 90 % `GET /orders/{id}`, 10 % `GET
//! /health`, every request with `x-tenant-id`, half with a `traceparent`
//! (a fresh random trace), 10 % of those sampled. Raw sockets and
//! preformatted requests on one thread, so that the generator stays far
//! cheaper per request than the server it loads. Prints the requests
//! completed in the measured window and its length in seconds.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// xorshift64*: fast, and good enough to spread trace ids.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn hex(out: &mut Vec<u8>, v: u64) {
    for i in (0..16).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize]);
    }
}

/// Writes the next request of the mix into `out`.
fn request(out: &mut Vec<u8>, rng: &mut Rng) {
    out.clear();
    let r = rng.next();
    let path: &[u8] = if r.is_multiple_of(10) {
        b"/health"
    } else {
        b"/orders/o-1"
    };
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path);
    out.extend_from_slice(
        b" HTTP/1.1\r\nhost: orders.internal:8080\r\nuser-agent: load/1.0\r\nx-tenant-id: acme\r\n",
    );
    if (r >> 8).is_multiple_of(2) {
        out.extend_from_slice(b"traceparent: 00-");
        hex(out, rng.next());
        hex(out, rng.next());
        out.push(b'-');
        hex(out, rng.next() | 1);
        out.extend_from_slice(if (r >> 16).is_multiple_of(10) {
            b"-01\r\n"
        } else {
            b"-00\r\n"
        });
    }
    out.extend_from_slice(b"\r\n");
}

/// The length of the response at the start of `buf`, once it is complete.
fn response_len(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let body = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    (buf.len() >= end + body).then_some(end + body)
}

async fn connection(addr: SocketAddr, seed: u64, counting: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let mut rng = Rng(seed | 1);
    let mut req = Vec::with_capacity(512);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0_u8; 4096];
    loop {
        request(&mut req, &mut rng);
        if stream.write_all(&req).await.is_err() {
            return;
        }
        loop {
            if let Some(n) = response_len(&buf) {
                buf.drain(..n);
                break;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        if counting.load(Ordering::Relaxed) {
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("usage: load <addr> <warm-up s> <seconds> <connections>"));
    let mut number = |default: u64| args.next().and_then(|a| a.parse().ok()).unwrap_or(default);
    let warm_up = Duration::from_secs(number(1));
    let window = Duration::from_secs(number(5));
    let connections = number(32);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let (done, secs) = rt.block_on(async {
        let counting = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        for c in 0..connections {
            tokio::spawn(connection(
                addr,
                0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(c + 1),
                counting.clone(),
                done.clone(),
            ));
        }
        tokio::time::sleep(warm_up).await;
        counting.store(true, Ordering::Relaxed);
        let start = Instant::now();
        tokio::time::sleep(window).await;
        counting.store(false, Ordering::Relaxed);
        (done.load(Ordering::Relaxed), start.elapsed().as_secs_f64())
    });
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{done} {secs:.3}");
    let _ = out.flush();
}
