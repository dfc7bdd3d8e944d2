//! The hand-built copy of a 2-node lab: every device, address and route
//! made with `ip`, the way flannel configures its backends.

use std::process::Command;

use crate::common::{Scratch, ipn, run};
use crate::iperf::Path;

/// Builds, with `ip` only, a copy of a 2-node lab for `backend` under the
/// namespace prefix `prefix` (`<prefix>.ul`, `.n1`, `.n2`, `.n1.p`,
/// `.n2.p`), configured the way flannel configures its backends. Returns
/// the path from pod 1 to pod 2.
pub fn hand_built(s: &mut Scratch, prefix: &str, backend: &str) -> Path {
    let ul = s.netns(&format!("{prefix}.ul"));
    // The underlay switch, as the lab makes it.
    ipn(&ul, "link add ul0 type bridge");
    ipn(&ul, "link set ul0 up");
    ipn(&ul, "addr add 198.18.0.254/24 dev ul0");
    ipn(&ul, "addr add fd00:198::fe/64 dev ul0 nodad");
    let pod_mtu = match backend {
        "vxlan" | "geneve" => 1450,
        "wireguard" => 1440,
        "srv6" => 1420,
        _ => 1500,
    };
    let mut nodes = Vec::new();
    for i in 1..=2u8 {
        let node = s.netns(&format!("{prefix}.n{i}"));
        ipn(
            &ul,
            &format!("link add n{i} type veth peer name eth0 netns {node}"),
        );
        ipn(&ul, &format!("link set n{i} master ul0 up"));
        ipn(&node, &format!("addr add 198.18.0.{i}/24 dev eth0"));
        ipn(&node, &format!("addr add fd00:198::{i}/64 dev eth0 nodad"));
        ipn(&node, "link set eth0 up");
        ipn(&node, "route add default via 198.18.0.254 dev eth0");
        ipn(&node, "-6 route add default via fd00:198::fe dev eth0");
        sysctl(&node, "net/ipv4/ip_forward", "1");
        sysctl(&node, "net/ipv6/conf/all/forwarding", "1");
        // The pod: a bridge with the gateway address, a single-queue veth
        // (as tweed's plugin makes it), the pod's address and default route.
        let pod = s.netns(&format!("{prefix}.n{i}.p"));
        ipn(
            &node,
            &format!("link add cni0 mtu {pod_mtu} type bridge stp_state 0 forward_delay 0"),
        );
        ipn(&node, &format!("addr add 10.244.{i}.1/24 dev cni0"));
        ipn(&node, "link set cni0 up");
        ipn(
            &node,
            &format!(
                "link add vethp mtu {pod_mtu} numtxqueues 1 numrxqueues 1 type veth \
                 peer name eth0 netns {pod} mtu {pod_mtu} numtxqueues 1 numrxqueues 1"
            ),
        );
        ipn(&node, "link set vethp master cni0 up");
        // Hairpin on the pod's port, as tweed's plugin (and flannel's
        // delegate, the bridge plugin with hairpinMode) sets it.
        ipn(&node, "link set vethp type bridge_slave hairpin on");
        ipn(&pod, &format!("addr add 10.244.{i}.2/24 dev eth0"));
        ipn(&pod, "link set eth0 up");
        ipn(
            &pod,
            &format!("route add default via 10.244.{i}.1 dev eth0"),
        );
        nodes.push(node);
    }
    let mac = |i: u8| format!("02:42:0a:f4:{i:02x}:00");
    let keys = if backend == "wireguard" {
        [wg_keypair(), wg_keypair()]
    } else {
        Default::default()
    };
    for i in 1..=2u8 {
        let node = &nodes[usize::from(i - 1)];
        let j = 3 - i;
        match backend {
            "vxlan" => {
                ipn(
                    node,
                    &format!(
                        "link add flannel.1 address {} mtu 1450 type vxlan id 1 local 198.18.0.{i} dev eth0 dstport 8472 nolearning",
                        mac(i)
                    ),
                );
                ipn(node, &format!("addr add 10.244.{i}.0/32 dev flannel.1"));
                ipn(node, "link set flannel.1 up");
                ipn(
                    node,
                    &format!(
                        "neigh replace 10.244.{j}.0 lladdr {} dev flannel.1 nud permanent",
                        mac(j)
                    ),
                );
                run(Command::new("bridge").args([
                    "-n",
                    node,
                    "fdb",
                    "append",
                    &mac(j),
                    "dev",
                    "flannel.1",
                    "dst",
                    &format!("198.18.0.{j}"),
                    "self",
                    "permanent",
                ]));
                ipn(
                    node,
                    &format!("route add 10.244.{j}.0/24 via 10.244.{j}.0 dev flannel.1 onlink"),
                );
            }
            "geneve" => {
                ipn(
                    node,
                    &format!(
                        "link add gnv0 address {} mtu 1450 type geneve external dstport 6081",
                        mac(i)
                    ),
                );
                ipn(node, &format!("addr add 10.244.{i}.0/32 dev gnv0"));
                ipn(node, "link set gnv0 up");
                ipn(
                    node,
                    &format!(
                        "neigh replace 10.244.{j}.0 lladdr {} dev gnv0 nud permanent",
                        mac(j)
                    ),
                );
                ipn(
                    node,
                    &format!(
                        "route add 10.244.{j}.0/24 via 10.244.{j}.0 dev gnv0 onlink encap ip id 1 dst 198.18.0.{j}"
                    ),
                );
            }
            "wireguard" => {
                let (private, _) = &keys[usize::from(i - 1)];
                let (_, peer_public) = &keys[usize::from(j - 1)];
                ipn(node, "link add flannel-wg mtu 1440 type wireguard");
                let key_file = format!("/run/{prefix}.n{i}.key");
                std::fs::write(&key_file, private).expect("write the private key");
                run(Command::new("ip").args([
                    "netns",
                    "exec",
                    node,
                    "wg",
                    "set",
                    "flannel-wg",
                    "listen-port",
                    "51820",
                    "private-key",
                    &key_file,
                    "peer",
                    peer_public,
                    "endpoint",
                    &format!("198.18.0.{j}:51820"),
                    "allowed-ips",
                    &format!("10.244.{j}.0/24"),
                ]));
                let _ = std::fs::remove_file(&key_file);
                ipn(node, &format!("addr add 10.244.{i}.0/32 dev flannel-wg"));
                ipn(node, "link set flannel-wg up");
                ipn(node, &format!("route add 10.244.{j}.0/24 dev flannel-wg"));
            }
            "srv6" => {
                sysctl(node, "net/ipv6/conf/all/seg6_enabled", "1");
                sysctl(node, "net/ipv6/conf/eth0/seg6_enabled", "1");
                ipn(
                    node,
                    &format!(
                        "-6 route add fd00:5:0:{i}::4/128 encap seg6local action End.DX4 nh4 0.0.0.0 dev eth0"
                    ),
                );
                ipn(
                    node,
                    &format!("-6 route add fd00:5:0:{j}::/64 via fd00:198::{j} dev eth0"),
                );
                ipn(
                    node,
                    &format!(
                        "route add 10.244.{j}.0/24 encap seg6 mode encap segs fd00:5:0:{j}::4 dev eth0 mtu 1420"
                    ),
                );
            }
            _ => {
                ipn(
                    node,
                    &format!("route add 10.244.{j}.0/24 via 198.18.0.{j} dev eth0"),
                );
            }
        }
    }
    Path::new(
        &format!("hand {backend}"),
        &format!("{prefix}.n1.p"),
        &format!("{prefix}.n2.p"),
        "10.244.2.2",
    )
}

/// A WireGuard key pair from `wg genkey` / `wg pubkey`.
fn wg_keypair() -> (String, String) {
    let private = run(Command::new("wg").arg("genkey")).trim().to_string();
    let mut child = Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wg pubkey (wireguard-tools)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(private.as_bytes())
        .expect("write to wg pubkey");
    let out = child.wait_with_output().expect("wg pubkey");
    assert!(out.status.success(), "wg pubkey failed");
    (
        private,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

fn sysctl(ns: &str, key: &str, value: &str) {
    let handle = tweed_netlink::NetNs::named(ns).expect("netns");
    let parts: Vec<&str> = key.split('/').collect();
    handle
        .run(|| tweed_netlink::sysctl::write(&parts, value))
        .expect("enter netns")
        .unwrap_or_else(|e| panic!("sysctl {key} in {ns}: {e}"));
}
