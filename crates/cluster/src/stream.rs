//! One long TCP connection between two pods while a test changes the
//! network under it: the client sends a numbered line every 0.1 s, the
//! server's lines are timestamped as they arrive, and at the end the
//! connection must still be open, with every line there in order. The
//! longest pause between arrivals says how long the path was broken (TCP
//! retransmits across a short break; a long one ends the connection).
//!
//! Both ends are busybox `nc` in the pods' network namespaces, entered from
//! their nodes as [`crate::pods::PingRun`] does: no kubelet, no API server.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Cluster;
use crate::pods::{Pod, pod_netns};

const PORT: &str = "9000";

/// A running stream from `client` to `server`.
pub struct TcpStream {
    server: Child,
    client: Child,
    arrivals: Arc<Mutex<Vec<(Instant, String)>>>,
    reader: JoinHandle<()>,
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

impl TcpStream {
    /// Starts the server in `server`'s namespace, then the client, and
    /// waits until the first lines have arrived.
    pub fn start(c: &Cluster, client: &Pod, server: &Pod) -> TcpStream {
        let server_ns = pod_netns(c, server);
        let mut server_child = c
            .node_command(
                c.node_index(&server.node),
                &[
                    "ip", "netns", "exec", &server_ns, "busybox", "nc", "-l", "-p", PORT,
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("nc -l in the server pod's namespace");
        let stdout = server_child.stdout.take().expect("server stdout");
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&arrivals);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        // Let the server listen before the client connects.
        std::thread::sleep(Duration::from_millis(500));
        let client_ns = pod_netns(c, client);
        let script = format!(
            "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done | busybox nc {} {PORT}",
            server.ip
        );
        let client_child = c
            .node_command(
                c.node_index(&client.node),
                &["ip", "netns", "exec", &client_ns, "sh", "-c", &script],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("nc in the client pod's namespace");
        let stream = TcpStream {
            server: server_child,
            client: client_child,
            arrivals,
            reader,
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

    /// Ends the stream: asserts the client was still connected, then
    /// stops both ends and checks what arrived.
    pub fn finish(mut self) -> StreamReport {
        let client_alive = self.client.try_wait().expect("try_wait").is_none();
        // The last lines sent must arrive before the client goes.
        let sent_by = self.arrivals.lock().unwrap().len();
        std::thread::sleep(Duration::from_secs(2));
        let got = self.arrivals.lock().unwrap().len();
        for child in [&self.client, &self.server] {
            // SAFETY: kill(2) on a process group our unreaped child leads.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
        }
        let client = self.client.wait_with_output().expect("client");
        let _ = self.server.wait();
        self.reader.join().expect("the reader thread");
        let arrivals = self.arrivals.lock().unwrap();
        assert!(
            client_alive && got > sent_by,
            "{}: the connection broke (client running: {client_alive}; lines before and \
             after the last 2 s: {sent_by}, {got}); client said: {}",
            self.what,
            String::from_utf8_lossy(&client.stderr)
        );
        for (i, (_, line)) in arrivals.iter().enumerate() {
            assert_eq!(
                line.trim(),
                (i + 1).to_string(),
                "{}: line {} out of order or missing",
                self.what,
                i + 1
            );
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
