//! One long TCP connection between two pods while a test changes the
//! network under it: the client sends a numbered line every 0.1 s, the
//! server timestamps lines as they arrive, and at the end the connection
//! must still be open, with every line there in order. The longest pause
//! between arrivals says how long the path was broken (TCP retransmits
//! across a short break; a long one ends the connection).
//!
//! Both ends are threads of the test that entered the pods' network
//! namespaces (setns on the namespace file containerd mounted in the
//! node), so they depend on neither kubelet nor the API server, nor on a
//! tool in the pod's image.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream as Socket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Cluster;
use crate::pods::{Pod, pod_netns};

const PORT: u16 = 9000;

/// A running stream from one pod to another.
pub struct TcpStream {
    arrivals: Arc<Mutex<Vec<(Instant, String)>>>,
    sent: Arc<Mutex<Result<u64, String>>>,
    stop: Arc<AtomicBool>,
    client: JoinHandle<()>,
    server: JoinHandle<()>,
    what: String,
}

/// What the stream went through.
#[derive(Debug)]
pub struct StreamReport {
    /// Lines received, all in order, none missing.
    pub lines: usize,
    /// The longest time between two lines arriving.
    pub longest_pause: Duration,
}

/// `pod`'s network namespace file, as the host sees it (through its
/// node's root).
pub fn netns_path(c: &Cluster, pod: &Pod) -> String {
    let node = c.node_index(&pod.node);
    format!(
        "/proc/{}/root/run/netns/{}",
        c.node_init_pid(node),
        pod_netns(c, pod)
    )
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter(path: &str) {
    let ns = File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: setns(2) on a descriptor we hold open; it changes only this
    // thread's network namespace, which is what the thread is for.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl TcpStream {
    /// Starts the server in `server`'s namespace, then the client in
    /// `client`'s, and waits until the first lines have arrived.
    pub fn start(c: &Cluster, client: &Pod, server: &Pod) -> TcpStream {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let (listening_tx, listening_rx) = std::sync::mpsc::channel();
        let server_thread = {
            let (ns, sink) = (netns_path(c, server), Arc::clone(&arrivals));
            std::thread::spawn(move || {
                enter(&ns);
                let listener = TcpListener::bind(("0.0.0.0", PORT)).expect("listen");
                listening_tx.send(()).expect("the test waits");
                let (socket, _) = listener.accept().expect("accept");
                for line in BufReader::new(socket).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push((Instant::now(), line));
                }
            })
        };
        listening_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server listening");
        let sent = Arc::new(Mutex::new(Ok(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let client_thread = {
            let ns = netns_path(c, client);
            let (to, sent, stop) = (server.ip.clone(), Arc::clone(&sent), Arc::clone(&stop));
            std::thread::spawn(move || {
                enter(&ns);
                let result = (|| -> Result<(), String> {
                    let mut socket = Socket::connect((to.as_str(), PORT))
                        .map_err(|e| format!("connect: {e}"))?;
                    let mut n = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        socket
                            .write_all(format!("{n}\n").as_bytes())
                            .map_err(|e| format!("write of line {n}: {e}"))?;
                        *sent.lock().unwrap() = Ok(n);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    socket
                        .shutdown(Shutdown::Write)
                        .map_err(|e| format!("shutdown: {e}"))
                })();
                if let Err(e) = result {
                    *sent.lock().unwrap() = Err(e);
                }
            })
        };
        let stream = TcpStream {
            arrivals,
            sent,
            stop,
            client: client_thread,
            server: server_thread,
            what: format!(
                "TCP {} ({}) -> {} ({})",
                client.name, client.node, server.name, server.node
            ),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while stream.arrivals.lock().unwrap().len() < 5 {
            assert!(
                Instant::now() < deadline,
                "{}: no data after 10 s",
                stream.what
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        stream
    }

    /// Ends the stream: the client must never have failed, and every line
    /// it sent must arrive, in order, once it has closed.
    pub fn finish(self) -> StreamReport {
        self.stop.store(true, Ordering::SeqCst);
        self.client.join().expect("the client thread");
        let sent = self.sent.lock().unwrap().clone();
        let sent = sent.unwrap_or_else(|e| panic!("{}: the connection broke: {e}", self.what));
        // The server ends at the client's FIN, after the last line.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.server.is_finished() {
            assert!(
                Instant::now() < deadline,
                "{}: the last lines did not arrive",
                self.what
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.server.join().expect("the server thread");
        let arrivals = self.arrivals.lock().unwrap();
        assert_eq!(arrivals.len() as u64, sent, "{}: lines lost", self.what);
        for (i, (_, line)) in arrivals.iter().enumerate() {
            assert_eq!(line, &(i + 1).to_string(), "{}: line {}", self.what, i + 1);
        }
        let longest_pause = arrivals
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or_default();
        StreamReport {
            lines: arrivals.len(),
            longest_pause,
        }
    }

    pub fn what(&self) -> &str {
        &self.what
    }
}
