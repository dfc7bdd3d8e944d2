//! Interoperability with the reference `host-local` IPAM plugin
//! (containernetworking/plugins; Debian's `containernetworking-plugins`
//! installs it at /usr/lib/cni/host-local). Both plugins must share one
//! store: each honours the other's reservations, cursor and lock.
//!
//! These tests need the real binary and fail loudly without it; set
//! `TWEED_HOST_LOCAL` to use another path.

mod common;

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::ip;
use serde_json::{Value, json};
use tweed_ipam::{IpamConf, IpamError, IpamSpec, Reservation, Store, allocate, release_attachment};

const DEFAULT_HOST_LOCAL: &str = "/usr/lib/cni/host-local";
const NETWORK: &str = "interop";
/// Dual stack; the IPv6 subnet is chosen so file names need RFC 5952
/// compression ("fd00:0:0:7::2"), which Go and Rust must print alike.
const RANGES: &str = r#"[[{"subnet": "10.244.7.0/29"}], [{"subnet": "fd00:0:0:7::/125"}]]"#;
const RANGES_V4_ONLY: &str = r#"[[{"subnet": "10.244.7.0/29"}]]"#;

fn host_local_binary() -> PathBuf {
    let path = std::env::var_os("TWEED_HOST_LOCAL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_HOST_LOCAL));
    assert!(
        path.is_file(),
        "the host-local interop tests need the reference CNI plugin at {} \
         (Debian/Ubuntu: apt-get install containernetworking-plugins), \
         or TWEED_HOST_LOCAL pointing at a host-local binary",
        path.display()
    );
    path
}

/// One network shared by host-local and tweed.
struct Shared {
    _tmp: tempfile::TempDir,
    data_dir: PathBuf,
    spec: IpamSpec,
    binary: PathBuf,
    ranges: &'static str,
}

impl Shared {
    fn new() -> Shared {
        Shared::with_ranges(RANGES)
    }

    fn with_ranges(ranges: &'static str) -> Shared {
        let binary = host_local_binary();
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("networks");
        let conf: IpamConf = serde_json::from_value(json!({
            "type": "host-local",
            "dataDir": data_dir,
            "ranges": serde_json::from_str::<Value>(ranges).unwrap(),
        }))
        .unwrap();
        let spec = conf.validate().unwrap();
        Shared {
            _tmp: tmp,
            data_dir,
            spec,
            binary,
            ranges,
        }
    }

    fn dir(&self) -> PathBuf {
        self.data_dir.join(NETWORK)
    }

    fn network_config(&self) -> String {
        json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "type": "bridge",
            "ipam": {
                "type": "host-local",
                "dataDir": self.data_dir,
                "ranges": serde_json::from_str::<Value>(self.ranges).unwrap(),
            }
        })
        .to_string()
    }

    fn command(&self, cmd: &str, id: &str, ifname: &str) -> Command {
        let mut c = Command::new(&self.binary);
        c.env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", "/proc/self/ns/net")
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", self.binary.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn spawn(&self, cmd: &str, id: &str, ifname: &str) -> std::process::Child {
        let mut child = self
            .command(cmd, id, ifname)
            .spawn()
            .expect("run host-local");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(self.network_config().as_bytes())
            .expect("write config");
        child
    }

    fn run(&self, cmd: &str, id: &str, ifname: &str) -> Output {
        self.spawn(cmd, id, ifname)
            .wait_with_output()
            .expect("host-local output")
    }

    /// host-local ADD; returns the addresses (without prefix) in set order.
    fn add(&self, id: &str, ifname: &str) -> Vec<IpAddr> {
        let out = self.run("ADD", id, ifname);
        assert!(
            out.status.success(),
            "host-local ADD {id}/{ifname} failed: {}",
            describe(&out)
        );
        addresses(&out)
    }

    /// host-local ADD expected to fail; returns its error message.
    fn add_fails(&self, id: &str, ifname: &str) -> String {
        let out = self.run("ADD", id, ifname);
        assert!(
            !out.status.success(),
            "host-local ADD {id}/{ifname} should fail: {}",
            describe(&out)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("CNI error JSON");
        v["msg"].as_str().unwrap_or_default().to_string()
    }

    fn del(&self, id: &str, ifname: &str) {
        let out = self.run("DEL", id, ifname);
        assert!(
            out.status.success(),
            "host-local DEL {id}/{ifname} failed: {}",
            describe(&out)
        );
    }

    fn check(&self, id: &str, ifname: &str) -> bool {
        self.run("CHECK", id, ifname).status.success()
    }

    fn tweed_add(
        &self,
        store: &Store,
        id: &str,
        requested: &[IpAddr],
    ) -> Result<Vec<IpAddr>, IpamError> {
        let g = store.lock()?;
        Ok(allocate(&self.spec, &g, id, "eth0", requested)?
            .into_iter()
            .map(|a| a.address.addr())
            .collect())
    }
}

fn describe(out: &Output) -> String {
    format!(
        "status {}, stdout {}, stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn addresses(out: &Output) -> Vec<IpAddr> {
    let v: Value = serde_json::from_slice(&out.stdout).expect("CNI result JSON");
    v["ips"]
        .as_array()
        .expect("ips in result")
        .iter()
        .map(|i| {
            let cidr = i["address"].as_str().expect("address");
            cidr.split('/')
                .next()
                .unwrap_or(cidr)
                .parse()
                .expect("address parses")
        })
        .collect()
}

fn res(ip_: &str, id: &str, ifname: Option<&str>) -> Reservation {
    Reservation {
        ip: ip(ip_),
        container_id: id.to_string(),
        ifname: ifname.map(str::to_string),
    }
}

#[test]
fn tweed_honours_state_written_by_host_local() {
    let net = Shared::new();
    assert_eq!(
        net.add("h1", "eth0"),
        [ip("10.244.7.2"), ip("fd00:0:0:7::2")]
    );
    assert_eq!(
        net.add("h2", "eth0"),
        [ip("10.244.7.3"), ip("fd00:0:0:7::3")]
    );
    assert_eq!(
        net.add("h1", "net1"),
        [ip("10.244.7.4"), ip("fd00:0:0:7::4")]
    );

    let store = Store::open(&net.data_dir, NETWORK).unwrap();
    assert_eq!(store.dir(), net.dir());
    {
        let g = store.lock().unwrap();
        assert_eq!(
            g.reservations().unwrap(),
            vec![
                res("10.244.7.2", "h1", Some("eth0")),
                res("10.244.7.3", "h2", Some("eth0")),
                res("10.244.7.4", "h1", Some("net1")),
                res("fd00:0:0:7::2", "h1", Some("eth0")),
                res("fd00:0:0:7::3", "h2", Some("eth0")),
                res("fd00:0:0:7::4", "h1", Some("net1")),
            ]
        );
        assert_eq!(g.last_reserved(0).unwrap(), Some(ip("10.244.7.4")));
        assert_eq!(g.last_reserved(1).unwrap(), Some(ip("fd00:0:0:7::4")));
        assert_eq!(
            g.find_by_id("h1", "net1").unwrap(),
            [ip("10.244.7.4"), ip("fd00:0:0:7::4")]
        );
    }

    // tweed continues after host-local's cursor and sees h1 as holding addresses.
    assert_eq!(
        net.tweed_add(&store, "t1", &[]).unwrap(),
        [ip("10.244.7.5"), ip("fd00:0:0:7::5")]
    );
    assert!(matches!(
        net.tweed_add(&store, "h1", &[]),
        Err(IpamError::DuplicateAllocation { .. })
    ));
    assert!(matches!(
        net.tweed_add(&store, "x", &[ip("10.244.7.3")]),
        Err(IpamError::AlreadyReserved { ref owner, .. }) if owner == "h2"
    ));

    // tweed releases host-local's reservation by ID + ifname; host-local agrees.
    {
        let g = store.lock().unwrap();
        let released = g.release_by_id("h2", "eth0").unwrap();
        assert_eq!(released, [ip("10.244.7.3"), ip("fd00:0:0:7::3")]);
    }
    assert!(
        !net.check("h2", "eth0"),
        "host-local still finds h2 after tweed released it"
    );
    assert!(net.check("h1", "eth0"));

    // Wrap-around skips every address host-local reserved.
    assert_eq!(
        net.tweed_add(&store, "t2", &[]).unwrap()[0],
        ip("10.244.7.6")
    );
    assert_eq!(
        net.tweed_add(&store, "t3", &[]).unwrap()[0],
        ip("10.244.7.3")
    );
    let err = net.tweed_add(&store, "t4", &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no free address in range set 0 (10.244.7.1-10.244.7.6): all 5 addresses are reserved"
    );
    let msg = net.add_fails("h3", "eth0");
    assert!(
        msg.contains("no IP addresses available in range set: 10.244.7.1-10.244.7.6"),
        "{msg}"
    );
}

#[test]
fn host_local_honours_state_written_by_tweed() {
    let net = Shared::new();
    let store = Store::open(&net.data_dir, NETWORK).unwrap();
    assert_eq!(
        net.tweed_add(&store, "t1", &[]).unwrap(),
        [ip("10.244.7.2"), ip("fd00:0:0:7::2")]
    );
    assert_eq!(
        net.tweed_add(&store, "t2", &[]).unwrap(),
        [ip("10.244.7.3"), ip("fd00:0:0:7::3")]
    );
    // A requested address moves tweed's cursor to .5; host-local continues there.
    assert_eq!(
        net.tweed_add(&store, "t3", &[ip("10.244.7.5")]).unwrap(),
        [ip("10.244.7.5"), ip("fd00:0:0:7::4")]
    );
    assert_eq!(
        net.add("h1", "eth0"),
        [ip("10.244.7.6"), ip("fd00:0:0:7::5")]
    );
    // host-local wraps past .6 and skips tweed's .2 and .3.
    assert_eq!(net.add("h2", "eth0")[0], ip("10.244.7.4"));

    // host-local recognises tweed's reservations as the container's own.
    assert!(net.check("t2", "eth0"));
    let msg = net.add_fails("t1", "eth0");
    assert!(
        msg.contains("10.244.7.2 has been allocated to t1, duplicate allocation is not allowed"),
        "{msg}"
    );

    // host-local's DEL releases tweed's reservation (ID + ifname match).
    net.del("t1", "eth0");
    assert!(!net.dir().join("10.244.7.2").exists());
    assert!(!net.dir().join("fd00:0:0:7::2").exists());
    let g = store.lock().unwrap();
    assert_eq!(g.find_by_id("t1", "eth0").unwrap(), Vec::<IpAddr>::new());
    assert_eq!(g.reservations().unwrap().len(), 8);
}

/// Runs the same DELs through host-local and through tweed on identical
/// stores (new-format and legacy ID-only files) and compares what is left.
fn compare_legacy_release(ranges: &'static str) -> Vec<Vec<String>> {
    let setup = |dir: &Path| {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("10.244.7.2"), "c1\r\neth0").unwrap();
        std::fs::write(dir.join("10.244.7.3"), "c1").unwrap();
        std::fs::write(dir.join("10.244.7.4"), "c2").unwrap();
    };
    let remaining = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect();
        names.sort();
        names
    };
    let reference = Shared::with_ranges(ranges);
    let ours = Shared::with_ranges(ranges);
    setup(&reference.dir());
    setup(&ours.dir());
    let store = Store::open(&ours.data_dir, NETWORK).unwrap();
    let mut states = Vec::new();
    for (id, ifname) in [("c1", "eth0"), ("c2", "eth0"), ("c1", "eth0")] {
        reference.del(id, ifname);
        release_attachment(
            &store.lock().unwrap(),
            id,
            ifname,
            ours.spec.range_sets.len(),
        )
        .unwrap();
        let left = remaining(&ours.dir());
        assert_eq!(
            remaining(&reference.dir()),
            left,
            "after DEL {id}/{ifname} ({ranges})"
        );
        states.push(left);
    }
    states
}

#[test]
fn legacy_release_semantics_match_host_local() {
    // One range set: the legacy file of c1 survives the first DEL.
    assert_eq!(
        compare_legacy_release(RANGES_V4_ONLY),
        [vec!["10.244.7.3", "10.244.7.4"], vec!["10.244.7.3"], vec![]]
    );
    // Two range sets: host-local's second per-set release removes it too.
    assert_eq!(
        compare_legacy_release(RANGES),
        [vec!["10.244.7.4"], vec![], vec![]]
    );
}

#[test]
fn host_local_waits_for_tweeds_lock() {
    let net = Shared::new();
    let store = Store::open(&net.data_dir, NETWORK).unwrap();
    let guard = store.lock().unwrap();
    let mut child = net.spawn("ADD", "h1", "eth0");
    thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "host-local finished while tweed held the store lock"
    );
    // Reserve under the lock: host-local must see it once it gets in.
    assert!(guard.reserve(ip("10.244.7.2"), "t1", "eth0", 0).unwrap());
    drop(guard);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "host-local never got the lock");
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(addresses(&out)[0], ip("10.244.7.3"));
}
