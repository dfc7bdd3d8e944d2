//! The QEMU test guest on a hand-built pod attachment: a "node" namespace
//! with a bridge (10.244.1.1/24) and dnsmasq on it, a "pod" namespace whose
//! `eth0` (veth to the bridge) is joined to a tap by the two-way tc redirect
//! the plugin builds (ingress qdisc, u32 match-all, mirred egress redirect),
//! and a "client" namespace on the same bridge. The guest boots on the tap
//! with eth0's MAC, configures 10.244.1.5 from its boot arguments alone, and
//! the client fetches its page; the guest resolves a name through the node's
//! DNS. Each test builds its own namespaces, so they run in parallel.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tweed_testkit::qemu::{Guest, GuestImage, ready_fields};
use tweed_testkit::{TestNs, run_ok};

const MAC: &str = "02:42:0a:f4:01:05";
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

struct Lab {
    // Field order is drop order: DNS server first, then the namespaces.
    dns: Child,
    client: TestNs,
    pod: TestNs,
    /// Held for its drop: the node namespace goes last.
    _node: TestNs,
}

impl Drop for Lab {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; dnsmasq is our own
        // unreaped child.
        unsafe {
            libc::kill(self.dns.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.dns.wait();
    }
}

/// Builds node, pod and client namespaces. The pod's tap is created with
/// `ip tuntap add ... mode tap <tap_flags>` (`vnet_hdr`, `multi_queue`); `mtu` goes on the pod's eth0 and tap (and the node's
/// veth end), as the plugin would give the tap eth0's MTU.
fn lab(tag: &str, tap_flags: &[&str], mtu: u32, ipv6: bool) -> Lab {
    let node = TestNs::new(&format!("{tag}n"));
    let pod = TestNs::new(&format!("{tag}p"));
    let client = TestNs::new(&format!("{tag}c"));
    let (n, p, c) = (node.name.as_str(), pod.name.as_str(), client.name.as_str());
    let mtu = mtu.to_string();

    run_ok("ip", &["-n", n, "link", "add", "br0", "type", "bridge"]);
    run_ok(
        "ip",
        &["-n", n, "addr", "add", "10.244.1.1/24", "dev", "br0"],
    );
    run_ok("ip", &["-n", n, "link", "set", "br0", "up"]);

    // Pod: eth0 with the guest's MAC; its address is assigned like a CNI
    // plugin would, then removed: the guest owns it.
    run_ok(
        "ip",
        &[
            "-n", n, "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", p,
        ],
    );
    run_ok(
        "ip",
        &[
            "-n", n, "link", "set", "vpod", "mtu", &mtu, "master", "br0", "up",
        ],
    );
    run_ok(
        "ip",
        &[
            "-n", p, "link", "set", "eth0", "address", MAC, "mtu", &mtu, "up",
        ],
    );
    run_ok(
        "ip",
        &["-n", p, "addr", "add", "10.244.1.5/24", "dev", "eth0"],
    );
    run_ok(
        "ip",
        &["-n", p, "addr", "del", "10.244.1.5/24", "dev", "eth0"],
    );
    let mut tuntap = vec!["-n", p, "tuntap", "add", "dev", "tap0", "mode", "tap"];
    tuntap.extend_from_slice(tap_flags);
    run_ok("ip", &tuntap);
    run_ok("ip", &["-n", p, "link", "set", "tap0", "mtu", &mtu, "up"]);
    for (from, to) in [("eth0", "tap0"), ("tap0", "eth0")] {
        run_ok("tc", &["-n", p, "qdisc", "add", "dev", from, "ingress"]);
        run_ok(
            "tc",
            &[
                "-n", p, "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32",
                "match", "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", to,
            ],
        );
    }

    run_ok(
        "ip",
        &[
            "-n", n, "link", "add", "vcli", "type", "veth", "peer", "name", "eth0", "netns", c,
        ],
    );
    run_ok(
        "ip",
        &["-n", n, "link", "set", "vcli", "master", "br0", "up"],
    );
    run_ok(
        "ip",
        &["-n", c, "addr", "add", "10.244.1.9/24", "dev", "eth0"],
    );
    run_ok("ip", &["-n", c, "link", "set", "eth0", "up"]);
    if ipv6 {
        run_ok(
            "ip",
            &[
                "-n",
                n,
                "addr",
                "add",
                "fd00:10:244:1::1/64",
                "dev",
                "br0",
                "nodad",
            ],
        );
        run_ok(
            "ip",
            &[
                "-n",
                c,
                "addr",
                "add",
                "fd00:10:244:1::9/64",
                "dev",
                "eth0",
                "nodad",
            ],
        );
    }

    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        n,
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
    ])
    .args([
        "--no-resolv",
        "--no-hosts",
        "--port=53",
        "--listen-address=10.244.1.1",
    ])
    .args([
        "--bind-interfaces",
        "--address=/web.lab.test/10.244.1.77",
        "--pid-file=",
    ])
    .args(["--user=root", "--log-queries", "--log-facility=-"])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    // SAFETY: setpgid is async-signal-safe. Its own process group keeps a
    // terminal's ^C from reaching dnsmasq before the test's cleanup does.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            Ok(())
        });
    }
    // `ip netns exec` execs dnsmasq in place, so this pid is dnsmasq's.
    let dns = cmd.spawn().expect("start dnsmasq (Debian dnsmasq-base)");
    Lab {
        dns,
        client,
        pod,
        _node: node,
    }
}

/// GET from the client namespace with busybox wget. (Not `wget -T`: Debian
/// 12's busybox-static 1.35 segfaults with it; `timeout` bounds the call.)
fn fetch(client: &TestNs, url: &str) -> Result<String, String> {
    let out = client.exec(&["timeout", "10", "busybox", "wget", "-q", "-O", "-", url]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "wget {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Boots the guest, checks its page and lookup from the client, returns the
/// running guest (QEMU stops when it is dropped) and its ready line.
fn boot_and_check(lab: &Lab, append: &str, hostname: &str) -> (Guest, String) {
    let image = GuestImage::build();
    let started = Instant::now();
    let guest = Guest::start(&lab.pod.name, "tap0", MAC, append, &image);
    let ready = guest
        .wait_ready(BOOT_TIMEOUT)
        .unwrap_or_else(|tail| panic!("{tail}"));
    let boot = started.elapsed();
    eprintln!(
        "boot to ready: {:.1} s under TCG: {ready}",
        boot.as_secs_f64()
    );

    let fields = ready_fields(&ready);
    assert_eq!(fields["ip"], "10.244.1.5/24", "{ready}");
    assert_eq!(fields["gw"], "10.244.1.1", "{ready}");
    assert_eq!(fields["dns"], "10.244.1.1", "{ready}");
    assert_eq!(fields["mac"], MAC, "{ready}");
    assert_eq!(fields["hostname"], hostname, "{ready}");
    assert_eq!(fields["lookup"], "web.lab.test:10.244.1.77", "{ready}");

    let page =
        fetch(&lab.client, "http://10.244.1.5/").unwrap_or_else(|e| panic!("{e}\n{}", guest.log()));
    assert!(
        page.contains(&format!("tweed-guest {hostname} 10.244.1.5")),
        "page: {page}"
    );
    let lookup = fetch(&lab.client, "http://10.244.1.5/lookup.txt")
        .unwrap_or_else(|e| panic!("{e}\n{}", guest.log()));
    assert_eq!(lookup.trim(), "10.244.1.77");
    // The pod netns itself cannot use eth0's address any more; the guest
    // answers ARP for it with eth0's MAC through the redirect.
    let neigh = lab.client.exec_ok(&["ip", "neigh", "show", "10.244.1.5"]);
    assert!(neigh.contains(MAC), "client's neighbour entry: {neigh}");
    (guest, ready)
}

#[test]
fn linux_ip_args_on_a_vnet_hdr_tap() {
    let lab = lab("qgl", &["vnet_hdr"], 1500, false);
    // The words after `--` are init's arguments (urunc passes a pod's
    // command there): they count as boot arguments.
    let (_guest, ready) = boot_and_check(
        &lab,
        "ip=10.244.1.5::10.244.1.1:255.255.255.0:guest-linux:eth0:off:10.244.1.1 tweed.lookup=web.lab.test \
         -- tweed.search=args.test",
        "guest-linux",
    );
    assert_eq!(ready_fields(&ready)["search"], "args.test", "{ready}");
    assert_eq!(ready_fields(&ready)["dhcp"], "off", "{ready}");
}

#[test]
fn unikraft_netdev_ip_args_on_a_plain_tap_with_ipv6_and_pod_mtu() {
    let lab = lab("qgu", &[], 1450, true);
    // As urunc passes them: application name, library parameters, `--`,
    // application arguments.
    let (_guest, ready) = boot_and_check(
        &lab,
        "c-http netdev.ip=10.244.1.5/24:10.244.1.1:10.244.1.1::guest-uk:lab.test \
         ip6=fd00:10:244:1::5/64,fd00:10:244:1::1 tweed.lookup=web.lab.test -- /server -v",
        "guest-uk",
    );
    let fields = ready_fields(&ready);
    assert_eq!(fields["format"], "unikraft");
    assert_eq!(fields["mtu"], "1450", "host_mtu from the tap: {ready}");
    assert_eq!(fields["ip6"], "fd00:10:244:1::5/64");
    let page = fetch(&lab.client, "http://[fd00:10:244:1::5]/").expect("IPv6 page");
    assert!(page.contains("tweed-guest guest-uk 10.244.1.5"), "{page}");
    let config = fetch(&lab.client, "http://10.244.1.5/config.txt").expect("config.txt");
    assert!(config.contains("search=lab.test"), "{config}");
}

/// Tap flags read back from sysfs inside the pod namespace.
fn tun_flags(pod: &TestNs) -> u32 {
    let text = pod.exec_ok(&["cat", "/sys/class/net/tap0/tun_flags"]);
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).expect("tun_flags is hex")
}

#[test]
fn qemu_sets_vnet_hdr_on_a_tap_created_without_it() {
    const IFF_VNET_HDR: u32 = 0x4000;
    let lab = lab("qgv", &[], 1500, false);
    assert_eq!(
        tun_flags(&lab.pod) & IFF_VNET_HDR,
        0,
        "created without vnet_hdr"
    );
    let image = GuestImage::build();
    let guest = Guest::start(
        &lab.pod.name,
        "tap0",
        MAC,
        "ip=10.244.1.5::10.244.1.1:255.255.255.0:g:eth0:off",
        &image,
    );
    // Attaching replaces the persistent tap's feature flags with QEMU's own
    // (IFF_TAP | IFF_NO_PI | IFF_ONE_QUEUE | IFF_VNET_HDR), whatever the
    // creator chose; they stay after QEMU is gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    while tun_flags(&lab.pod) & IFF_VNET_HDR == 0 {
        assert!(
            Instant::now() < deadline,
            "QEMU never attached:\n{}",
            guest.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    guest
        .wait_ready(BOOT_TIMEOUT)
        .unwrap_or_else(|tail| panic!("{tail}"));
    drop(guest);
    assert_ne!(tun_flags(&lab.pod) & IFF_VNET_HDR, 0);
}

#[test]
fn qemu_refuses_a_multi_queue_tap_and_the_harness_says_why() {
    let lab = lab("qgm", &["multi_queue"], 1500, false);
    let image = GuestImage::build();
    let guest = Guest::start(
        &lab.pod.name,
        "tap0",
        MAC,
        "ip=10.244.1.5:::255.255.255.0",
        &image,
    );
    let err = guest
        .wait_ready(Duration::from_secs(30))
        .expect_err("QEMU cannot attach to a multi-queue tap without queues=");
    assert!(err.contains("could not configure /dev/net/tun"), "{err}");
}

#[test]
fn guest_refuses_a_unikraft_address_without_prefix_length() {
    let lab = lab("qgb", &[], 1500, false);
    let image = GuestImage::build();
    let guest = Guest::start(
        &lab.pod.name,
        "tap0",
        MAC,
        "netdev.ip=10.244.1.5:10.244.1.1",
        &image,
    );
    let err = guest
        .wait_ready(BOOT_TIMEOUT)
        .expect_err("no /<len>: the guest must fail");
    assert!(
        err.contains("TWEED-GUEST-FAILED netdev.ip=: '10.244.1.5' has no /<len>"),
        "{err}"
    );
}
