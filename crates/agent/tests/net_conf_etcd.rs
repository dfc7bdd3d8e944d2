//! tweedd with an etcd store and no net-conf file takes its network
//! configuration from flannel's `<prefix>/config` key; a missing key, bad
//! JSON there and a missing explicit `--net-conf` are errors that say what
//! to do. The real binary against Debian's etcd-server, both in a network
//! namespace of the test's own.
//!
//! tweedd runs under `ip netns exec`, which gives it a mount namespace of
//! its own (slave to the host's, so nothing mounted there reaches the
//! host); an empty tmpfs over `/etc/tweed` there makes sure the default
//! `/etc/tweed/net-conf.json` is absent whatever the host has.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tweed_testkit::TestNs;
use tweed_testkit::etcd::{EtcdOpts, EtcdServer};
use tweed_testkit::process::{terminate_within, wait_within};

const FLANNEL_PREFIX: &str = "/coreos.com/network";
/// Hides the host's /etc/tweed, then runs the arguments.
const HIDE_ETC_TWEED: &str =
    "if [ -d /etc/tweed ]; then mount -t tmpfs tmpfs /etc/tweed || exit 99; fi; exec \"$@\"";

/// Field order matters: etcd is killed before its namespace goes.
struct Lab {
    etcd: EtcdServer,
    ns: TestNs,
    dir: TempDir,
}

/// A namespace with etcd on 127.0.0.1 and an underlay interface `ul0`
/// (198.18.0.1/24) for tweedd.
fn lab(tag: &str) -> Lab {
    let ns = TestNs::new(tag);
    ns.exec_ok(&[
        "ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul1",
    ]);
    ns.exec_ok(&["ip", "addr", "add", "198.18.0.1/24", "dev", "ul0"]);
    ns.exec_ok(&["ip", "link", "set", "ul0", "up"]);
    ns.exec_ok(&["ip", "link", "set", "ul1", "up"]);
    let etcd = EtcdServer::start(
        &ns.name,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        EtcdOpts::default(),
    );
    Lab {
        etcd,
        ns,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Lab {
    fn subnet_env(&self) -> std::path::PathBuf {
        self.dir.path().join("subnet.env")
    }

    /// Starts tweedd in the namespace with the etcd store, the node's
    /// files in the test's directory and `extra` flags.
    fn tweedd(&self, extra: &[&str]) -> Child {
        let d = |name: &str| self.dir.path().join(name).display().to_string();
        let store = format!("etcd://{}", self.etcd.client_addr());
        let mut argv: Vec<String> = vec![
            env!("CARGO_BIN_EXE_tweedd").into(),
            "--store".into(),
            store,
            "--node-name".into(),
            "n1".into(),
            "--iface".into(),
            "ul0".into(),
            "--subnet-file".into(),
            d("subnet.env"),
            "--state-dir".into(),
            d("state"),
            "--wire-dir".into(),
            d("wires"),
            "--segment-dir".into(),
            d("segments"),
            "--guest-dhcp-dir".into(),
            d("guest-dhcp"),
        ];
        argv.extend(extra.iter().map(|a| a.to_string()));
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns.name,
                "sh",
                "-c",
                HIDE_ETC_TWEED,
                "sh",
            ])
            .args(&argv)
            .env("TWEED_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tweedd")
    }

    /// The keys under `prefix`.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self
            .etcd
            .etcdctl_ok(&["get", "--prefix", "--keys-only", prefix]);
        out.lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }
}

/// Waits for tweedd to exit by itself; its output.
fn exits(child: Child) -> Output {
    wait_within(child, Duration::from_secs(20), "tweedd did not exit")
}

/// Stops tweedd with SIGTERM (`ip netns exec` and `sh` exec into tweedd,
/// so the child's pid is tweedd's); its output.
fn stop(child: Child) -> Output {
    terminate_within(child, Duration::from_secs(5), "tweedd ignored SIGTERM")
}

fn wait_for_file(path: &Path, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("tweedd exited ({status}) before writing {}", path.display());
        }
        assert!(
            Instant::now() < deadline,
            "no {} after 30 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn env_value<'a>(env: &'a str, key: &str) -> &'a str {
    env.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {env}"))
}

#[test]
fn without_a_net_conf_file_the_network_comes_from_flannels_etcd_key() {
    let mut lab = lab("nce");
    let key = format!("{FLANNEL_PREFIX}/config");
    lab.etcd.etcdctl_ok(&[
        "put",
        &key,
        r#"{"Network": "10.123.0.0/16", "SubnetLen": 26, "Backend": {"Type": "vxlan", "VNI": 7}}"#,
    ]);
    // etcd down while tweedd starts: it waits for it with its usual backoff.
    lab.etcd.stop();
    let mut child = lab.tweedd(&[]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "tweedd gave up on etcd"
    );
    lab.etcd.start_again();

    let env = wait_for_file(&lab.subnet_env(), &mut child);
    let out = stop(child);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(env_value(&env, "TWEED_NETWORK"), "10.123.0.0/16", "{env}");
    let subnet = env_value(&env, "TWEED_SUBNET");
    assert!(
        subnet.starts_with("10.123.") && subnet.ends_with("/26"),
        "{env}"
    );
    // The lease in etcd is one of that network's /26s.
    let leases = lab.keys(&format!("{FLANNEL_PREFIX}/subnets/"));
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert!(
        leases[0].contains("/subnets/10.123.") && leases[0].ends_with("-26"),
        "{leases:?}"
    );
    // The log says where the configuration came from, and that etcd was
    // waited for.
    assert!(log.contains("store unreachable; retrying"), "{log}");
    assert!(
        log.contains("network config read from etcd") && log.contains(&key),
        "{log}"
    );
}

#[test]
fn a_missing_or_invalid_etcd_key_is_an_error_naming_it() {
    let lab = lab("ncm");
    // A prefix of its own: the error names the key actually looked up.
    let prefix = "/tweed-test/net";
    let key = format!("{prefix}/config");

    let out = exits(lab.tweedd(&["--etcd-prefix", prefix]));
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{log}");
    for part in [key.as_str(), "etcdctl put", "--net-conf FILE"] {
        assert!(log.contains(part), "log lacks {part:?}: {log}");
    }

    lab.etcd.etcdctl_ok(&[
        "put",
        &key,
        r#"{"Network": "10.123.0.0/16", "SubnetLen": 40}"#,
    ]);
    let out = exits(lab.tweedd(&["--etcd-prefix", prefix]));
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!(
            "invalid network config in etcd key {key}: SubnetLen"
        )),
        "{log}"
    );

    lab.etcd.etcdctl_ok(&["put", &key, "{not json"]);
    let out = exits(lab.tweedd(&["--etcd-prefix", prefix]));
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(
        log.contains(&key) && log.contains("not valid JSON"),
        "{log}"
    );

    // Nothing was leased or written.
    assert!(lab.keys(&format!("{prefix}/subnets/")).is_empty());
    assert!(!lab.subnet_env().exists());
}

#[test]
fn an_explicit_net_conf_that_is_missing_stays_an_error() {
    let lab = lab("ncx");
    lab.etcd.etcdctl_ok(&[
        "put",
        &format!("{FLANNEL_PREFIX}/config"),
        r#"{"Network": "10.123.0.0/16"}"#,
    ]);
    let missing = lab.dir.path().join("net-conf.json");
    let out = exits(lab.tweedd(&["--net-conf", &missing.display().to_string()]));
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!("cannot read --net-conf {}", missing.display())),
        "{log}"
    );
    assert!(!log.contains("read from etcd"), "{log}");
    assert!(lab.keys(&format!("{FLANNEL_PREFIX}/subnets/")).is_empty());
    assert!(!lab.subnet_env().exists());
}
