//! tweed under a real container runtime: Debian's podman 4.3 with its CNI
//! backend (the testkit's isolated [`Podman`] harness), running in a node
//! namespace. What is asserted comes from the kernel (iproute2 JSON read in
//! the container's namespace and the node's), from packets (ping, HTTP
//! between containers and from the node through a host port) and from the
//! IPAM files on disk — never from tweed's result alone.

mod common;

use std::path::Path;

use common::{Node, http_get, http_get_within, require_busybox, tweed_bin};
use serde_json::{Value, json};
use tweed_testkit::podman::Podman;
use tweed_testkit::{kernel, run_ok};

/// A podman instance whose processes run in `node`'s namespace and that
/// finds `tweed` (this build) and the reference plugins.
fn podman_on(node: &Node) -> Podman {
    require_busybox();
    let reference = Path::new(tweed_testkit::REFERENCE_PLUGIN_DIR);
    assert!(
        reference.join("portmap").exists(),
        "{} has no reference plugins: install containernetworking-plugins (scripts/install-deps.sh)",
        reference.display()
    );
    let podman_bin = ["/usr/bin/podman", "/usr/sbin/runc", "/usr/bin/conmon"];
    for b in podman_bin {
        assert!(
            Path::new(b).exists(),
            "{b} is missing: install podman, runc and conmon (scripts/install-deps.sh)"
        );
    }
    Podman::new(&node.ns.name, &[tweed_bin().as_path(), reference])
}

/// A conflist (cniVersion 1.0.0, what podman 4.3's libcni speaks) named
/// `name`: tweed on bridge `name` with 10.244.<third>.0/24, IPAM and log in
/// the node's temp dir, followed by `more` plugins.
fn conflist(node: &Node, name: &str, third: u8, more: &[Value]) -> Value {
    let mut plugins = vec![json!({
        "type": "tweed",
        "bridge": name,
        "logFile": node.log_file(),
        "ipam": {
            "type": "tweed",
            "ranges": [[{"subnet": format!("10.244.{third}.0/24")}]],
            "dataDir": node.data_dir(),
        }
    })];
    plugins.extend_from_slice(more);
    json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins})
}

fn run(podman: &Podman, name: &str, network: &str, extra: &[&str], cmd: &[&str]) -> String {
    podman
        .run_detached(name, network, extra, cmd)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The name (under /run/netns) of the namespace podman made for `container`.
fn sandbox(podman: &Podman, container: &str) -> String {
    let out = podman.podman(&[
        "inspect",
        "--type",
        "container",
        "--format",
        "{{.NetworkSettings.SandboxKey}}",
        container,
    ]);
    assert!(out.status.success(), "podman inspect {container}: {out:?}");
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    key.strip_prefix("/run/netns/")
        .unwrap_or_else(|| panic!("unexpected SandboxKey {key:?} for {container}"))
        .to_string()
}

/// The one IPv4 address (`a.b.c.d/len`) the kernel shows on `eth0` in the
/// container's namespace.
fn eth0_address(podman: &Podman, container: &str) -> String {
    let addrs = kernel::addresses(&sandbox(podman, container), "eth0");
    assert_eq!(addrs.len(), 1, "{container} eth0 addresses: {addrs:?}");
    addrs[0].clone()
}

fn exec_ok(podman: &Podman, container: &str, cmd: &[&str]) -> String {
    let out = podman.exec(container, cmd);
    assert!(
        out.status.success(),
        "podman exec {container} {cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// HTTP GET from inside `container` (busybox wget), retried for up to
/// `secs` while the server starts.
fn exec_get_within(podman: &Podman, container: &str, url: &str, secs: u64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        // Debian's busybox 1.35 wget crashes (SIGSEGV) with `-T`, so the
        // time limit comes from busybox `timeout`.
        let out = podman.exec(container, &["timeout", "5", "wget", "-q", "-O", "-", url]);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{container}: GET {url} failed for {secs}s: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn reservation_content(node: &Node, network: &str, ip: &str) -> String {
    let path = node.data_dir().join(network).join(ip);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Two podman containers on a tweed network get distinct addresses from
/// tweed's IPAM, configured in their namespaces and matching what podman
/// recorded; they ping each other and one fetches a page from the other's
/// httpd; the IPAM store holds exactly their two reservations, named by
/// their IPs and holding podman's container IDs; each has a host veth on
/// the bridge; `podman rm` (CNI DEL) frees both reservations and the host
/// veths disappear.
#[test]
fn two_containers_talk_and_rm_releases_their_reservations() {
    let node = Node::new("pm2");
    let podman = podman_on(&node);
    let net = "twpm60";
    podman.write_network(net, &conflist(&node, net, 60, &[]));

    let id_web = run(
        &podman,
        "web",
        net,
        &[],
        &["httpd", "-f", "-p", "80", "-h", "/var/www"],
    );
    let id_cli = run(&podman, "cli", net, &[], &["sleep", "3600"]);
    assert_ne!(id_web, id_cli);

    // Addresses: what the kernel shows inside each container, in the
    // network's subnet, distinct, and what podman recorded.
    let web_cidr = eth0_address(&podman, "web");
    let cli_cidr = eth0_address(&podman, "cli");
    let (web, cli) = (common::bare(&web_cidr), common::bare(&cli_cidr));
    for (cidr, name) in [(&web_cidr, "web"), (&cli_cidr, "cli")] {
        assert!(
            cidr.starts_with("10.244.60.") && cidr.ends_with("/24"),
            "{name}: {cidr}"
        );
        let recorded = podman
            .inspect_ip(name, net)
            .unwrap_or_else(|| panic!("podman has no address for {name} on {net}"));
        assert_eq!(recorded.to_string(), common::bare(cidr), "{name}");
    }
    assert_ne!(web, cli);

    // Packets between the containers.
    exec_ok(&podman, "cli", &["ping", "-c", "1", "-W", "2", &web]);
    exec_ok(&podman, "web", &["ping", "-c", "1", "-W", "2", &cli]);
    let page = exec_get_within(&podman, "cli", &format!("http://{web}/"), 10);
    assert_eq!(page, "tweed-test-busybox\n");

    // The IPAM store: exactly these two, host-local's format, podman's IDs.
    assert_eq!(
        node.reservations(net),
        sorted(vec![web.clone(), cli.clone()])
    );
    assert_eq!(
        reservation_content(&node, net, &web),
        format!("{id_web}\r\neth0")
    );
    assert_eq!(
        reservation_content(&node, net, &cli),
        format!("{id_cli}\r\neth0")
    );

    // One host veth per container, a port of the network's bridge.
    let veths = node.host_veths();
    assert_eq!(veths.len(), 2, "{veths:?}");
    let mut aliases: Vec<String> = veths
        .iter()
        .map(|v| {
            let l = kernel::link(&node.ns.name, v).expect("host veth");
            assert_eq!(l["master"], net, "{v}");
            l["ifalias"].as_str().unwrap().to_string()
        })
        .collect();
    aliases.sort();
    assert_eq!(
        aliases,
        sorted(vec![
            format!("tweed/{net}/{id_web}/eth0"),
            format!("tweed/{net}/{id_cli}/eth0"),
        ])
    );

    // rm: reservations freed at once, host veths gone shortly.
    podman.rm_force("web").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(node.reservations(net), vec![cli.clone()]);
    podman.rm_force("cli").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        node.reservations(net).is_empty(),
        "{:?}",
        node.reservations(net)
    );
    node.wait_no_host_veths(10);
}

/// `podman run --ip` and `--mac-address` reach tweed as CNI_ARGS `IP=` and
/// `MAC=`: the container's eth0 has exactly that address and MAC (read in
/// its namespace from the node and from inside the container), the
/// reservation file is that address, and another container reaches it.
#[test]
fn static_ip_and_mac_from_podman_run() {
    let node = Node::new("pms");
    let podman = podman_on(&node);
    let net = "twpm61";
    podman.write_network(net, &conflist(&node, net, 61, &[]));
    let (ip, mac) = ("10.244.61.77", "02:42:0a:f4:3d:4d");

    let id = run(
        &podman,
        "fixed",
        net,
        &["--ip", ip, "--mac-address", mac],
        &["sleep", "3600"],
    );

    // From the node side, in the container's namespace.
    let ns = sandbox(&podman, "fixed");
    assert_eq!(kernel::addresses(&ns, "eth0"), vec![format!("{ip}/24")]);
    assert_eq!(kernel::link(&ns, "eth0").expect("eth0")["address"], mac);
    // From inside the container.
    let inside = exec_ok(
        &podman,
        "fixed",
        &["ip", "-o", "-4", "addr", "show", "eth0"],
    );
    assert!(inside.contains(&format!("inet {ip}/24")), "{inside}");
    let inside_mac = exec_ok(&podman, "fixed", &["cat", "/sys/class/net/eth0/address"]);
    assert_eq!(inside_mac.trim(), mac);
    assert_eq!(
        podman.inspect_ip("fixed", net).map(|a| a.to_string()),
        Some(ip.to_string())
    );

    assert_eq!(node.reservations(net), vec![ip.to_string()]);
    assert_eq!(reservation_content(&node, net, ip), format!("{id}\r\neth0"));

    // A second, dynamic container reaches the static one.
    run(&podman, "peer", net, &[], &["sleep", "3600"]);
    let peer = common::bare(&eth0_address(&podman, "peer"));
    assert_ne!(peer, ip);
    exec_ok(&podman, "peer", &["ping", "-c", "1", "-W", "2", ip]);

    podman.rm_force("fixed").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(node.reservations(net), vec![peer]);
}

/// tweed chained with the reference `portmap` under podman: `-p 8062:80`
/// puts a DNAT rule to the container into the node's nat table, and a
/// client in the node namespace fetching from the bridge address on port
/// 8062 gets the page only that container serves. `podman rm` removes the
/// rule, the reservation and the host veth, and the port stops answering.
#[test]
fn host_port_through_portmap_reaches_the_container() {
    let node = Node::new("pmp");
    let podman = podman_on(&node);
    let net = "twpm62";
    let portmap = json!({"type": "portmap", "capabilities": {"portMappings": true}});
    podman.write_network(net, &conflist(&node, net, 62, &[portmap]));
    let token = format!("served-by-pm62-{}", std::process::id());

    run(
        &podman,
        "srv",
        net,
        &["-p", "8062:80"],
        &[
            "sh",
            "-c",
            &format!(
                "mkdir -p /tmp/www && echo {token} > /tmp/www/index.html \
                 && exec httpd -f -p 80 -h /tmp/www"
            ),
        ],
    );
    let ip = common::bare(&eth0_address(&podman, "srv"));

    // The rule portmap wrote, read back from the node's nat table.
    let nat = run_ok(
        "ip",
        &["netns", "exec", &node.ns.name, "iptables-save", "-t", "nat"],
    );
    let dnat = format!("--dport 8062 -j DNAT --to-destination {ip}:80");
    assert!(nat.contains(&dnat), "no `{dnat}` in:\n{nat}");

    // A client in the node namespace, through the host port.
    let url = "http://10.244.62.1:8062/";
    assert_eq!(
        http_get_within(&node.ns.name, url, 10),
        format!("{token}\n")
    );

    podman.rm_force("srv").unwrap_or_else(|e| panic!("{e}"));
    let nat = run_ok(
        "ip",
        &["netns", "exec", &node.ns.name, "iptables-save", "-t", "nat"],
    );
    assert!(
        !nat.contains(&format!("{ip}:80")),
        "DNAT rule left after rm:\n{nat}"
    );
    assert!(node.reservations(net).is_empty());
    node.wait_no_host_veths(10);
    assert!(
        http_get(&node.ns.name, url).is_err(),
        "host port still answers after rm"
    );
}
