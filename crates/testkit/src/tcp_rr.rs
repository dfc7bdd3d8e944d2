//! Request/response over TCP, as netperf's TCP_RR and TCP_CRR measure it:
//! 1-byte round trips on one connection, and whole connections (connect,
//! one round trip, close). The sockets are made by the caller (in the
//! network namespaces it wants); the threads that drive them are pinned
//! to one CPU, because a wake-up across vCPUs costs a VM tens of µs and
//! would swamp the path being measured.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

/// Pins the calling thread to CPU `cpu`.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside
    // it, and sched_setaffinity(0, ..) only changes the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

/// Echoes every byte back, one connection after another, on a thread
/// pinned to `cpu`, until dropped.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    wake: std::net::SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(listener: TcpListener, cpu: usize) -> EchoServer {
        let wake = listener.local_addr().expect("the listener's address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            pin_to_cpu(cpu);
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut s) = conn else { continue };
                let _ = s.set_nodelay(true);
                let mut byte = [0u8; 1];
                while s.read_exact(&mut byte).is_ok() {
                    if s.write_all(&byte).is_err() {
                        break;
                    }
                }
            }
        });
        EchoServer {
            stop,
            wake,
            thread: Some(thread),
        }
    }

    /// Stops the server; `connect` must reach it (from where the clients
    /// are) to wake it from `accept`.
    pub fn stop(
        mut self,
        connect: impl FnOnce(std::net::SocketAddr) -> std::io::Result<TcpStream>,
    ) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = connect(self.wake);
        if let Some(t) = self.thread.take() {
            t.join().expect("the echo server");
        }
    }
}

/// `n` 1-byte round trips on `s` after `warmup` unmeasured ones, each in
/// µs, from a thread pinned to `cpu`.
pub fn round_trips(mut s: TcpStream, n: usize, warmup: usize, cpu: usize) -> Vec<f64> {
    std::thread::spawn(move || {
        pin_to_cpu(cpu);
        s.set_nodelay(true).expect("nodelay");
        let mut byte = [7u8; 1];
        let mut rtts = Vec::with_capacity(n);
        for i in 0..warmup + n {
            let sent = Instant::now();
            s.write_all(&byte).expect("send");
            s.read_exact(&mut byte).expect("receive");
            if i >= warmup {
                rtts.push(sent.elapsed().as_secs_f64() * 1e6);
            }
        }
        rtts
    })
    .join()
    .expect("the round trips")
}

/// `n` whole connections, each in µs: `connect()` (which makes the
/// socket wherever the caller wants it), one 1-byte round trip, close;
/// from a thread pinned to `cpu`.
pub fn connection_round_trips(
    n: usize,
    cpu: usize,
    connect: impl Fn() -> std::io::Result<TcpStream> + Send + 'static,
) -> Vec<f64> {
    std::thread::spawn(move || {
        pin_to_cpu(cpu);
        let mut byte = [7u8; 1];
        (0..n)
            .map(|_| {
                let started = Instant::now();
                let mut s = connect().expect("connect");
                s.set_nodelay(true).expect("nodelay");
                s.write_all(&byte).expect("send");
                s.read_exact(&mut byte).expect("receive");
                drop(s);
                started.elapsed().as_secs_f64() * 1e6
            })
            .collect()
    })
    .join()
    .expect("the connections")
}
