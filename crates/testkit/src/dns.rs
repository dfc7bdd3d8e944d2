//! Debian's dnsmasq in a namespace for tests: a DNS server answering fixed
//! records (started only when it answers), or a DHCP server on one
//! interface; stopped by pid on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dnsmasq {
    child: Child,
    dir: PathBuf,
}

impl Dnsmasq {
    /// Serves `records` (name → IPv4 address) on `listen`:53 inside the
    /// named namespace `ns`, and waits until a query from inside `ns`
    /// gets the first record's answer (panics after 15 s, with dnsmasq's
    /// own output).
    pub fn start(ns: &str, listen: &str, records: &[(&str, &str)]) -> Dnsmasq {
        crate::require_root();
        let dir = std::env::temp_dir().join(format!("tweed-dnsmasq-{ns}"));
        let _ = std::fs::create_dir_all(&dir);
        let log = dir.join("dnsmasq.log");
        let mut args = base_args(ns, &dir);
        args.extend([
            format!("--listen-address={listen}"),
            "--bind-interfaces".into(),
        ]);
        for (name, addr) in records {
            args.push(format!("--address=/{name}/{addr}"));
        }
        let server = Dnsmasq::spawn(&args, dir);
        if let Some((name, addr)) = records.first() {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let out = Command::new("ip")
                    .args(["netns", "exec", ns, "busybox", "nslookup", name, listen])
                    .output()
                    .expect("busybox nslookup");
                if String::from_utf8_lossy(&out.stdout).contains(addr) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "dnsmasq on {listen} in {ns} does not answer for {name}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        server
    }
}

impl Dnsmasq {
    /// A DHCP server only (no DNS) on `interface` inside `ns`, handing out
    /// `first..=last` with `netmask`. The interface must already carry an
    /// address in that range's subnet.
    pub fn start_dhcp(
        ns: &str,
        interface: &str,
        first: &str,
        last: &str,
        netmask: &str,
    ) -> Dnsmasq {
        crate::require_root();
        let dir = std::env::temp_dir().join(format!("tweed-dhcp-{ns}-{interface}"));
        let _ = std::fs::create_dir_all(&dir);
        let mut args = base_args(ns, &dir);
        args.extend([
            // DNS off.
            "--port=0".into(),
            format!("--interface={interface}"),
            "--bind-interfaces".into(),
            format!("--dhcp-range={first},{last},{netmask},1h"),
            format!("--dhcp-leasefile={}", dir.join("leases").display()),
            "--log-dhcp".into(),
        ]);
        let server = Dnsmasq::spawn(&args, dir);
        // Serving once it has logged its range (it binds before that).
        let deadline = Instant::now() + Duration::from_secs(15);
        while !server.log().contains("DHCP, IP range") {
            assert!(
                Instant::now() < deadline,
                "dnsmasq (DHCP) on {interface} in {ns} did not start: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// dnsmasq's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }
}

impl Dnsmasq {
    /// Starts `ip <args>` (`netns exec <ns> dnsmasq ...`), output to its log.
    fn spawn(args: &[String], dir: PathBuf) -> Dnsmasq {
        let child = Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq (install it: scripts/install-deps.sh)");
        Dnsmasq { child, dir }
    }
}

/// `ip netns exec <ns> dnsmasq` in the foreground with nothing from the
/// machine's own configuration, its pid file and log in `dir`.
fn base_args(ns: &str, dir: &std::path::Path) -> Vec<String> {
    vec![
        "netns".to_string(),
        "exec".into(),
        ns.into(),
        "dnsmasq".into(),
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--user=root".into(),
        format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
        format!("--log-facility={}", dir.join("dnsmasq.log").display()),
    ]
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        // `ip netns exec` execs dnsmasq in place: this pid is dnsmasq's.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
