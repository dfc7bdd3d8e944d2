//! A node namespace with pods on a bridge, as a CNI bridge plugin leaves
//! them, and one more pod behind a route (as if on another node), for
//! tests of what crosses the node: TCP echo servers in every pod and
//! connects between them.
//!
//! node ([`BridgedPods::new`]): bridge `br0` 10.244.1.1/24 with pods a
//! (.2), b (.3) and c (.4); veth `remote` 10.244.2.1/24 to pod r
//! (10.244.2.2). The node forwards, and hands bridged IPv4 to the IP hooks
//! (`bridge-nf-call-iptables`). [`BridgedPods::on_subnets`] puts the
//! bridge and the remote pod in other /24s, so that several such nodes
//! give their pods distinct addresses (as a cluster's nodes do).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::netns::{TestNs, run_ok};

pub struct BridgedPods {
    pub node: TestNs,
    /// (name, namespace, address)
    pub pods: Vec<(String, TestNs, String)>,
}

fn ip(ns: &TestNs, args: &str) {
    let argv: Vec<&str> = args.split_whitespace().collect();
    run_ok("ip", &[&["-n", &ns.name], argv.as_slice()].concat());
}

/// Runs `f` with the calling thread in namespace `ns`, then returns it to
/// where it was.
pub fn in_ns<T>(ns: &str, f: impl FnOnce() -> T) -> T {
    let origin = File::open("/proc/thread-self/ns/net").expect("this thread's netns");
    let target = File::open(format!("/run/netns/{ns}")).expect("the target netns");
    // SAFETY: setns on a descriptor we hold open; the thread goes back below.
    let entered = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(entered, 0, "setns into {ns}");
    let out = f();
    // SAFETY: as above, back to where the thread was.
    let back = unsafe { libc::setns(origin.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(back, 0, "setns back from {ns}");
    out
}

impl BridgedPods {
    pub fn new() -> BridgedPods {
        BridgedPods::on_subnets(1, 2)
    }

    /// The node with its bridge in 10.244.`bridged`.0/24 (pods a, b, c at
    /// .2, .3, .4) and the remote pod r at 10.244.`remote`.2.
    pub fn on_subnets(bridged: u8, remote: u8) -> BridgedPods {
        let node = TestNs::new("bpn");
        ip(&node, "link add br0 type bridge");
        ip(&node, &format!("addr add 10.244.{bridged}.1/24 dev br0"));
        ip(&node, "link set br0 up");
        node.exec_ok(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
        node.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let mut pods = Vec::new();
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            let addr = format!("10.244.{bridged}.{}", i + 2);
            let pod = TestNs::new(&format!("bp{name}"));
            ip(
                &node,
                &format!("link add v{i} type veth peer name eth0 netns {}", pod.name),
            );
            ip(&node, &format!("link set v{i} master br0 up"));
            ip(&pod, &format!("addr add {addr}/24 dev eth0"));
            ip(&pod, "link set eth0 up");
            ip(&pod, &format!("route add default via 10.244.{bridged}.1"));
            pods.push((name.to_string(), pod, addr));
        }
        let r = TestNs::new("bpr");
        ip(
            &node,
            &format!("link add remote type veth peer name eth0 netns {}", r.name),
        );
        ip(&node, &format!("addr add 10.244.{remote}.1/24 dev remote"));
        ip(&node, "link set remote up");
        ip(&r, &format!("addr add 10.244.{remote}.2/24 dev eth0"));
        ip(&r, "link set eth0 up");
        ip(&r, &format!("route add default via 10.244.{remote}.1"));
        pods.push(("r".to_string(), r, format!("10.244.{remote}.2")));
        BridgedPods { node, pods }
    }

    fn pod(&self, name: &str) -> &(String, TestNs, String) {
        self.pods
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    pub fn addr(&self, pod: &str) -> &str {
        &self.pod(pod).2
    }

    /// The name of pod `pod`'s network namespace.
    pub fn netns(&self, pod: &str) -> &str {
        &self.pod(pod).1.name
    }

    /// Every pod listens on `port`, echoing what it reads.
    pub fn listen(&self, port: u16) {
        for (_, ns, addr) in &self.pods {
            let sock: SocketAddr = format!("{addr}:{port}").parse().unwrap();
            let listener = in_ns(&ns.name, || TcpListener::bind(sock)).expect("listen");
            std::thread::spawn(move || {
                for mut s in listener.incoming().flatten() {
                    std::thread::spawn(move || {
                        let mut b = [0u8; 1];
                        while s.read_exact(&mut b).is_ok() {
                            if s.write_all(&b).is_err() {
                                break;
                            }
                        }
                    });
                }
            });
        }
    }

    /// A TCP connection from pod `from` to pod `to`, if one is made within
    /// 700 ms.
    pub fn connect(&self, from: &str, to: &str, port: u16) -> Option<TcpStream> {
        let dst: SocketAddr = format!("{}:{port}", self.addr(to)).parse().unwrap();
        in_ns(&self.pod(from).1.name, || {
            TcpStream::connect_timeout(&dst, Duration::from_millis(700)).ok()
        })
    }

    /// Whether `from` reaches `to`'s echo server on `port`.
    pub fn passes(&self, from: &str, to: &str, port: u16) -> bool {
        self.connect(from, to, port)
            .is_some_and(|mut s| echo(&mut s))
    }
}

impl Default for BridgedPods {
    fn default() -> BridgedPods {
        BridgedPods::new()
    }
}

/// One byte there and back on an open connection.
pub fn echo(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut b = [0u8; 1];
    s.write_all(b"x").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"x"
}
