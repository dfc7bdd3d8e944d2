//! WireGuard devices made and configured by the netlink crate (the device
//! over rtnetlink, keys and peers over generic netlink), cross-checked with
//! `wg show ... dump` from Debian's wireguard-tools and with traffic between
//! two namespaces, in the VM runner where the host lacks WireGuard.

use std::net::SocketAddr;

use ipnet::IpNet;
use tweed_netlink::{LinkKind, NetNs, Netlink, NewLink, Route, VethPeer, WgKey, WgPeer, Wireguard};
use tweed_testkit::netns::TestNs;
use tweed_testkit::vm::{KernelFeature, on_a_kernel_with};

fn nl(ns: &TestNs) -> Netlink {
    Netlink::in_netns(&NetNs::named(&ns.name).expect("open netns")).expect("netlink in netns")
}

fn wg(ns: &TestNs) -> Wireguard {
    NetNs::named(&ns.name)
        .unwrap()
        .run(Wireguard::new)
        .unwrap()
        .expect("the wireguard generic netlink family")
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A private key from `wg genkey`, and its public key from `wg pubkey`.
fn wg_keys(ns: &TestNs) -> (WgKey, WgKey) {
    let private = ns.exec_ok(&["wg", "genkey"]);
    let public = ns.exec_ok(&["sh", "-c", &format!("echo {} | wg pubkey", private.trim())]);
    (private.parse().unwrap(), public.parse().unwrap())
}

/// `wg show wg0 dump`: the device line, then one line per peer.
fn dump(ns: &TestNs) -> Vec<Vec<String>> {
    ns.exec_ok(&["wg", "show", "wg0", "dump"])
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

struct Node {
    ns: TestNs,
    dev: u32,
    keys: (WgKey, WgKey),
}

/// Namespace `ns` with underlay address 198.18.0.`n`/24 on `ul0` (made by
/// the caller) and wg0: MTU 1420, 10.244.`n`.1/32, keyed, port 51820.
fn node(ns: TestNs, n: u8) -> Node {
    let mut nl = nl(&ns);
    let ul = nl.link_by_name("ul0").unwrap().unwrap().index;
    nl.set_link_up(ul, true).unwrap();
    nl.add_address(ul, net(&format!("198.18.0.{n}/24")), true)
        .unwrap();
    let mut spec = NewLink::new("wg0", LinkKind::Wireguard);
    spec.mtu = Some(1420);
    spec.up = true;
    let dev = nl.create_link_and_get(&spec).unwrap().index;
    nl.add_address(dev, net(&format!("10.244.{n}.1/32")), true)
        .unwrap();
    let keys = wg_keys(&ns);
    wg(&ns).set_identity(dev, &keys.0, 51820).unwrap();
    Node { ns, dev, keys }
}

fn peer(public: WgKey, n: u8, allowed: &[&str], psk: Option<WgKey>) -> WgPeer {
    WgPeer {
        public_key: public,
        preshared_key: psk,
        endpoint: Some(SocketAddr::new(
            format!("198.18.0.{n}").parse().unwrap(),
            51820,
        )),
        keepalive: 0,
        allowed_ips: allowed.iter().map(|a| net(a)).collect(),
    }
}

#[test]
fn wireguard_keys_and_peers_read_back_and_carry_traffic() {
    if !on_a_kernel_with(&[KernelFeature::Wireguard]) {
        return; // ran, and passed, in the VM runner
    }
    let (a, b) = (TestNs::new("wgA"), TestNs::new("wgB"));
    let b_ns = NetNs::named(&b.name).unwrap();
    let mut veth = NewLink::new(
        "ul0",
        LinkKind::Veth(VethPeer {
            name: "ul0".into(),
            mac: None,
            netns: Some(&b_ns),
        }),
    );
    veth.up = true;
    nl(&a).create_link(&veth).unwrap();
    let (a, b) = (node(a, 1), node(b, 2));

    // The device as created: kind, MTU; its key and port as wg sees them.
    let link = nl(&a.ns).link_by_name("wg0").unwrap().unwrap();
    assert_eq!(link.kind.as_deref(), Some("wireguard"));
    assert_eq!(link.mtu, 1420);
    let d = dump(&a.ns);
    assert_eq!(d[0][0], a.keys.0.to_string(), "private key");
    assert_eq!(d[0][1], a.keys.1.to_string(), "public key (wg pubkey's)");
    assert_eq!(d[0][2], "51820");

    let psk: WgKey = a.ns.exec_ok(&["wg", "genpsk"]).parse().unwrap();
    wg(&a.ns)
        .set_peers(a.dev, &[peer(b.keys.1, 2, &["10.244.2.0/24"], Some(psk))])
        .unwrap();
    wg(&b.ns)
        .set_peers(b.dev, &[peer(a.keys.1, 1, &["10.244.1.0/24"], Some(psk))])
        .unwrap();
    for (n, other) in [(&a, 2), (&b, 1)] {
        nl(&n.ns)
            .add_route(&Route::new(net(&format!("10.244.{other}.0/24"))).dev(n.dev))
            .unwrap();
    }
    let d = dump(&a.ns);
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(
        d[1][..4],
        [
            b.keys.1.to_string(),
            psk.to_string(),
            "198.18.0.2:51820".to_string(),
            "10.244.2.0/24".to_string()
        ]
    );
    // Our reader says the same.
    let read = wg(&a.ns).device(a.dev).unwrap();
    assert_eq!(read.public_key, Some(a.keys.1));
    assert_eq!(read.listen_port, 51820);
    assert_eq!(
        read.peers,
        vec![peer(b.keys.1, 2, &["10.244.2.0/24"], Some(psk))]
    );

    // Traffic: A's address reaches B's through the tunnel, and the
    // handshake shows in wg's counters.
    a.ns.exec_ok(&[
        "ping",
        "-c",
        "3",
        "-W",
        "5",
        "-I",
        "10.244.1.1",
        "10.244.2.1",
    ]);
    let d = dump(&b.ns);
    assert_ne!(d[1][4], "0", "B saw a handshake from A: {d:?}");

    // Replacing a peer's allowed IPs replaces them; no PSK clears it.
    wg(&a.ns)
        .set_peers(
            a.dev,
            &[peer(
                b.keys.1,
                2,
                &["10.244.2.0/24", "fd00:10:244:2::/64"],
                None,
            )],
        )
        .unwrap();
    let d = dump(&a.ns);
    assert_eq!(d[1][1], "(none)");
    assert_eq!(d[1][3], "10.244.2.0/24,fd00:10:244:2::/64");

    // Removed: gone; removing an absent key is no error.
    wg(&a.ns).remove_peers(a.dev, &[b.keys.1]).unwrap();
    assert_eq!(dump(&a.ns).len(), 1);
    wg(&a.ns).remove_peers(a.dev, &[b.keys.1]).unwrap();
}

/// 300 peers: set in several messages, read back from a dump the kernel
/// splits over several messages, as wg reads them.
#[test]
fn many_wireguard_peers_are_set_and_read_in_several_messages() {
    if !on_a_kernel_with(&[KernelFeature::Wireguard]) {
        return; // ran, and passed, in the VM runner
    }
    let ns = TestNs::new("wgM");
    let mut nl = nl(&ns);
    let dev = nl
        .create_link_and_get(&NewLink::new("wg0", LinkKind::Wireguard))
        .unwrap()
        .index;
    let peers: Vec<WgPeer> = (0..300u32)
        .map(|i| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&(i + 1).to_be_bytes());
            WgPeer {
                public_key: WgKey(key),
                preshared_key: None,
                endpoint: Some(SocketAddr::new(
                    format!("198.18.{}.{}", i / 250, i % 250 + 1)
                        .parse()
                        .unwrap(),
                    51820,
                )),
                keepalive: 25,
                allowed_ips: vec![net(&format!("10.{}.{}.0/24", i / 256, i % 256))],
            }
        })
        .collect();
    let mut wg = wg(&ns);
    wg.set_peers(dev, &peers).unwrap();
    assert_eq!(dump(&ns).len(), 301, "wg sees every peer");
    let mut read = wg.device(dev).unwrap().peers;
    read.sort_by_key(|p| p.public_key);
    assert_eq!(read, peers);
    wg.remove_peers(dev, &peers.iter().map(|p| p.public_key).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(dump(&ns).len(), 1);
}
