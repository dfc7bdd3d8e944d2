//! A fake Kubernetes API server: the Node and Lease calls tweedd's kube
//! store makes (list, watch with bookmarks and 410 Gone, get, merge and
//! strategic merge patches of a node and its status, Lease create/replace),
//! served the way kube-apiserver serves them, plus an `/admin` interface
//! to compact the event log, end watches and inject 429 throttling.
//!
//! Test infrastructure, not product: one process, state in memory, plain
//! HTTP, no authorization beyond an optional bearer token. The kube store
//! is tested against a real kube-apiserver and etcd
//! (`tweed_testkit::kubeapi`: crates/agent/tests/kube_store.rs,
//! kube_tls.rs, kube_rbac.rs). This fake is kept only for what that cannot
//! do:
//!
//! - **Faults a real server cannot be made to produce on demand**
//!   (crates/agent/tests/kube_faults.rs): 429 Too Many Requests with
//!   `Retry-After`, as a Status and as kube-apiserver's plain-text body (the
//!   real one throttles only under real overload); watch connections
//!   dropped mid-stream, with bookmarks at a chosen interval (a real
//!   server sends them about once a minute); 410 Gone as a plain response
//!   to the watch request (the real server here answers with an ERROR
//!   event in a 200 stream, which the real-server tests cover).
//! - **The emulated lab's kube mode** (`tweedctl lab up --store kube`,
//!   crates/lab/src/kube.rs and its tests): the `fake-kube-apiserver`
//!   binary in the lab's underlay namespace, as etcd is there. The lab is
//!   the quick workbench that runs without the ~400 MB Kubernetes build
//!   (scripts/build-kubernetes.sh, five minutes on two cores), and its tests
//!   set nodes' pod CIDRs through the fake's `/admin` API.
//!
//! It runs either in-process ([`FakeApiServer::start`]) or as the
//! `fake-kube-apiserver` binary. The endpoints are listed in [`server`].

pub mod client;
pub mod cluster;
pub mod leases;
pub mod patch;
pub mod server;

use std::net::SocketAddr;

pub use cluster::node;
pub use server::Shared;

/// A fake API server on its own thread and runtime, stopped on drop.
pub struct FakeApiServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeApiServer {
    /// Serves on `addr` (port 0 picks a free one; see [`Self::addr`]).
    /// Callable from inside another runtime (async tests): the server's
    /// runtime lives on its own thread.
    pub fn start(addr: SocketAddr, token: Option<String>) -> std::io::Result<FakeApiServer> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = Shared::new(token);
        let thread = std::thread::Builder::new()
            .name("fake-kube-apiserver".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener)
                        .expect("a bound listener registers with the runtime");
                    tokio::select! {
                        _ = server::serve(listener, shared) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(FakeApiServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// A kubeconfig pointing at this server (plain HTTP).
    pub fn kubeconfig(&self, token: Option<&str>) -> String {
        kubeconfig(&format!("http://{}", self.addr), token)
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A kubeconfig for `server` (`http://host:port`), with a bearer token
/// when given.
pub fn kubeconfig(server: &str, token: Option<&str>) -> String {
    let user = match token {
        Some(t) => format!("    token: {t}\n"),
        None => "    {}\n".to_string(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n{user}"
    )
}
