//! Shared fixtures for the plugin's integration tests: a "node" namespace
//! the plugin runs in, its own IPAM directory and log file, and pods.

#![allow(dead_code)]

pub mod state;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tweed_testkit::{CniCall, CniOutput, TestNs, kernel};

/// The plugin binary Cargo built for these tests.
pub fn tweed_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tweed"))
}

/// One emulated node: the plugin runs in `ns`; state lives in `dir`.
pub struct Node {
    pub ns: TestNs,
    pub dir: tempfile::TempDir,
}

impl Node {
    pub fn new(tag: &str) -> Node {
        Node {
            ns: TestNs::new(tag),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("cni.log")
    }

    /// A single-plugin config for network `name` with the given ranges
    /// (host-local's `ranges` shape), IPAM and log inside this node's dir.
    pub fn conf(&self, name: &str, version: &str, ranges: Value) -> Value {
        json!({
            "cniVersion": version,
            "name": name,
            "type": "tweed",
            "bridge": "tweed0",
            "logFile": self.log_file(),
            "ipam": {
                "type": "tweed",
                "ranges": ranges,
                "dataDir": self.data_dir(),
            }
        })
    }

    /// An IPv4 network 10.244.<third>.0/24.
    pub fn conf_v4(&self, name: &str, third: u8) -> Value {
        self.conf(
            name,
            "1.1.0",
            json!([[{"subnet": format!("10.244.{third}.0/24")}]]),
        )
    }

    /// A config whose pod subnet comes from the node lease file
    /// `subnet_file` (as tweedd writes it), IPAM and log in this node's dir.
    pub fn lease_conf(&self, name: &str, subnet_file: &Path) -> Value {
        json!({
            "cniVersion": "1.1.0",
            "name": name,
            "type": "tweed",
            "subnetFile": subnet_file,
            "logFile": self.log_file(),
            "ipam": {"dataDir": self.data_dir()},
        })
    }

    /// The reference bridge plugin's entry (gateway and default route,
    /// bridge `refbr0`, host-local on 10.244.<third>.0/24 in this node's
    /// IPAM directory), for tweed chained after it.
    pub fn reference_bridge(&self, third: u8) -> Value {
        json!({
            "type": "bridge",
            "bridge": "refbr0",
            "isGateway": true,
            "isDefaultGateway": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": format!("10.244.{third}.0/24")}]],
                "dataDir": self.data_dir(),
            },
        })
    }

    pub fn call(&self, command: &str, conf: &Value) -> CniCall {
        CniCall::new(tweed_bin(), command)
            .config(conf)
            .in_node(&self.ns.name)
    }

    pub fn add(&self, conf: &Value, id: &str, pod: &TestNs, ifname: &str) -> CniOutput {
        self.call("ADD", conf)
            .container(id, &pod.path(), ifname)
            .run()
    }

    pub fn del(&self, conf: &Value, id: &str, netns: &str, ifname: &str) -> CniOutput {
        self.call("DEL", conf).container(id, netns, ifname).run()
    }

    /// Reservation file names (the IPs) in this node's store for `network`.
    pub fn reservations(&self, network: &str) -> Vec<String> {
        let dir = self.data_dir().join(network);
        let mut out: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Host-side veths tweed made in this node (veths carrying tweed's
    /// alias).
    pub fn host_veths(&self) -> Vec<String> {
        kernel::links(&self.ns.name)
            .iter()
            .filter(|l| l["linkinfo"]["info_kind"] == "veth")
            .filter(|l| {
                l["ifalias"]
                    .as_str()
                    // "tweed/..." for live attachments, "tweed-deleting/..." while
                    // DEL's detached deletion is still under way.
                    .is_some_and(|a| a.starts_with("tweed"))
            })
            .filter_map(|l| l["ifname"].as_str().map(str::to_string))
            .collect()
    }

    /// Waits until no tweed host veth remains (DEL hands the kernel's slow
    /// device teardown to a detached process) and panics after `secs`.
    pub fn wait_no_host_veths(&self, secs: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let left = self.host_veths();
            if left.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "host veths still present after {secs}s: {left:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The lines of the call log, parsed.
    pub fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.log_file())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("log line is JSON"))
            .collect()
    }
}

/// The first address of the interface at `interface_index` in a 1.x result.
pub fn result_ip(result: &Value, family_v4: bool) -> String {
    result["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .map(|ip| ip["address"].as_str().unwrap().to_string())
        .find(|a| a.contains('.') == family_v4)
        .expect("address of that family")
}

/// The address without its prefix length.
pub fn bare(addr: &str) -> String {
    addr.split('/').next().unwrap().to_string()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// A process started inside a network namespace (`ip netns exec` execs
/// the command itself, so the child's pid is the server's); killed by pid
/// and reaped on drop.
pub struct NsProcess {
    child: std::process::Child,
    what: String,
}

impl NsProcess {
    pub fn spawn(ns: &str, argv: &[&str]) -> NsProcess {
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {argv:?} in {ns}: {e}"));
        NsProcess {
            child,
            what: format!("{argv:?} in {ns}"),
        }
    }

    /// busybox httpd serving `dir` on TCP `port` in `ns`, in the foreground.
    pub fn httpd(ns: &str, port: u16, dir: &Path) -> NsProcess {
        let dir = dir.to_str().expect("utf-8 path");
        NsProcess::spawn(
            ns,
            &[BUSYBOX, "httpd", "-f", "-p", &port.to_string(), "-h", dir],
        )
    }

    /// Panics if the process has already exited (a server that failed to
    /// bind, say).
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("{} exited early: {status}", self.what);
        }
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's busybox-static, used for servers and clients in namespaces.
pub const BUSYBOX: &str = "/bin/busybox";

/// Panics with an installation hint unless busybox-static is present.
pub fn require_busybox() {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install busybox-static (scripts/install-deps.sh)"
    );
}

/// One HTTP GET with busybox wget from inside `ns`, limited to 5 s: the
/// body, or the client's error output. (Debian's busybox 1.35 wget crashes
/// with its own `-T` timeout option, so busybox `timeout` sets the limit.)
pub fn http_get(ns: &str, url: &str) -> Result<String, String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, BUSYBOX, "timeout", "5"])
        .args([BUSYBOX, "wget", "-q", "-O", "-", url])
        .output()
        .expect("run busybox wget");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "wget {url} in {ns}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// [`http_get`] retried until it succeeds (a server just started may not
/// listen yet); panics with the last error after `secs`.
pub fn http_get_within(ns: &str, url: &str, secs: u64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        match http_get(ns, url) {
            Ok(body) => return body,
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!("no HTTP answer within {secs}s: {e}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

/// Polls `cond` every 20 ms; panics with `what` after `secs`.
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "after {secs}s still not: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
