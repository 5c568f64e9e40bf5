//! A TCP proxy on 127.0.0.1 in front of a real server (a database, a
//! broker) that can cut the network: every open connection dropped and new
//! ones refused, until it is let back. The server itself is untouched.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A cuttable TCP proxy; stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    /// The accept loop and every connection's copy task: aborted to cut.
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to
    /// `upstream`.
    ///
    /// # Panics
    /// When no loopback port can be bound (a broken test machine).
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let proxy = Self {
            addr,
            upstream,
            tasks: Arc::new(Mutex::new(JoinSet::new())),
        };
        proxy.accept(listener);
        proxy
    }

    fn accept(&self, listener: TcpListener) {
        let tasks = Arc::clone(&self.tasks);
        let upstream = self.upstream;
        self.lock().spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tasks
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .spawn(async move {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    });
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts the network: open connections are dropped (their sockets
    /// closed) and the port refuses new ones.
    pub fn cut(&self) {
        self.lock().abort_all();
    }

    /// Lets connections through again, on the same port.
    ///
    /// # Panics
    /// When the port was taken meanwhile (it never is on a test machine).
    pub async fn restore(&self) {
        // The aborted listener closes once its task is dropped.
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", self.addr),
            }
        };
        self.accept(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.lock().abort_all();
    }
}
