//! The API server as a node sees it. kube-apiserver listens on 127.0.0.1
//! in the control plane's namespace (its serving certificate names that
//! address) and every tweedd's kubeconfig says https://127.0.0.1:<port>;
//! a relay listens on that address in the node's namespace and joins
//! each connection to a new one opened in the control plane's. TLS passes
//! through untouched, and no traffic leaves the namespaces the bench made.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use tweed_testkit::bridged_pods::in_ns;

pub struct Relay {
    listener: TcpListener,
}

impl Relay {
    /// Relays `node_ns`'s 127.0.0.1:`port` to `control_plane_ns`'s.
    pub fn start(node_ns: &str, control_plane_ns: &str, port: u16) -> Relay {
        let listener = in_ns(node_ns, || TcpListener::bind(("127.0.0.1", port)))
            .unwrap_or_else(|e| panic!("relay in {node_ns}: {e}"));
        let accepting = listener.try_clone().expect("the relay's listener");
        let upstream_ns = control_plane_ns.to_string();
        std::thread::spawn(move || {
            // Ends when Drop shuts the listener down.
            for conn in accepting.incoming() {
                let Ok(down) = conn else { return };
                match in_ns(&upstream_ns, || TcpStream::connect(("127.0.0.1", port))) {
                    Ok(up) => join(down, up),
                    Err(e) => eprintln!("relay: cannot reach the API server: {e}"),
                }
            }
        });
        Relay { listener }
    }
}

/// Copies each way on a thread of its own until either side closes.
fn join(a: TcpStream, b: TcpStream) {
    for (from, to) in [(&a, &b), (&b, &a)] {
        let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
        let _ = from.set_nodelay(true);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // SAFETY: shutdown(2) on a socket this struct owns: the accepting
        // thread's accept() returns an error and the thread ends.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
    }
}
