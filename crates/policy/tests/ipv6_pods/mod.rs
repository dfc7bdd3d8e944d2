//! Pods a, b and c on a bridge with IPv6 addresses only (fd00:244:1::2-4,
//! the node at ::1), bridged IPv6 handed to the ip6 hooks
//! (`bridge-nf-call-ip6tables`), and TCP echo servers and connects between
//! them: the IPv6 twin of tweed_testkit::bridged_pods.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use tweed_testkit::bridged_pods::in_ns;
use tweed_testkit::netns::{TestNs, run_ok};

pub struct Ipv6Pods {
    pub node: TestNs,
    pods: Vec<(String, TestNs, Ipv6Addr)>,
}

fn ip(ns: &TestNs, args: &str) {
    let argv: Vec<&str> = args.split_whitespace().collect();
    run_ok("ip", &[&["-n", &ns.name], argv.as_slice()].concat());
}

impl Ipv6Pods {
    pub fn new() -> Ipv6Pods {
        let node = TestNs::new("v6n");
        ip(&node, "link add br0 type bridge");
        ip(&node, "-6 addr add fd00:244:1::1/64 dev br0 nodad");
        ip(&node, "link set br0 up");
        node.exec_ok(&["sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=1"]);
        let mut pods = Vec::new();
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            let addr: Ipv6Addr = format!("fd00:244:1::{}", i + 2).parse().unwrap();
            let pod = TestNs::new(&format!("v6{name}"));
            ip(
                &node,
                &format!("link add w{i} type veth peer name eth0 netns {}", pod.name),
            );
            ip(&node, &format!("link set w{i} master br0 up"));
            ip(&pod, &format!("-6 addr add {addr}/64 dev eth0 nodad"));
            ip(&pod, "link set eth0 up");
            pods.push((name.to_string(), pod, addr));
        }
        Ipv6Pods { node, pods }
    }

    fn pod(&self, name: &str) -> &(String, TestNs, Ipv6Addr) {
        self.pods
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    /// Pod `name`'s address; pods not here (r) get one nothing answers.
    pub fn addr(&self, name: &str) -> Ipv6Addr {
        self.pods
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|p| p.2)
            .unwrap_or_else(|| "fd00:244:2::2".parse().unwrap())
    }

    /// Every pod listens on `port`, echoing what it reads.
    pub fn listen(&self, port: u16) {
        for (_, ns, addr) in &self.pods {
            let listener = in_ns(&ns.name, || {
                TcpListener::bind(SocketAddr::from((*addr, port)))
            })
            .expect("listen");
            std::thread::spawn(move || {
                for mut s in listener.incoming().flatten() {
                    std::thread::spawn(move || {
                        let mut b = [0u8; 1];
                        while s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {}
                    });
                }
            });
        }
    }

    /// Whether `from` reaches `to`'s echo server on `port` within 700 ms.
    pub fn passes(&self, from: &str, to: &str, port: u16) -> bool {
        let dst = SocketAddr::from((self.pod(to).2, port));
        let Some(mut s) = in_ns(&self.pod(from).1.name, || {
            TcpStream::connect_timeout(&dst, Duration::from_millis(700)).ok()
        }) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut b = [0u8; 1];
        s.write_all(b"x").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"x"
    }
}
