//! `tweedctl flannel-cleanup` against the kernel: in a throwaway network
//! namespace, flannel's leftovers made the way flannel makes them (its
//! iptables rules through Debian's iptables-nft, its own nft tables, its
//! VXLAN device and bridge), next to other owners' rules that must survive;
//! flannel's files in a temporary tree.
//!
//! tweedctl refuses while a process named flanneld runs anywhere it can
//! see, and this machine may run real flanneld processes (the cluster
//! tests'). So the runs that must go ahead get a fresh PID namespace of
//! their own (`unshare --pid --mount-proc`), where no flanneld is, and the
//! refusal is shown in the host's, naming the fake flanneld's pid.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command};

use tweed_testkit::TestNs;

/// flannel's conflist from kube-flannel.yml.
const FLANNEL_CONFLIST: &str = r#"{
  "name": "cbr0",
  "cniVersion": "0.3.1",
  "plugins": [
    { "type": "flannel", "delegate": { "hairpinMode": true, "isDefaultGateway": true } },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}"#;

/// tweed's conflist from the migration manifest: flannel's network name and
/// bridge, another plugin.
const TWEED_CONFLIST: &str = r#"{
  "cniVersion": "1.1.0",
  "name": "cbr0",
  "plugins": [ { "type": "tweed", "bridge": "cni0" } ]
}"#;

/// Runs `cmd` (iptables or ip6tables) in `ns` with the words of `rule`;
/// `@masq` and `@forward` stand for flannel's comment matches, whose
/// comments hold a space.
fn ipt(ns: &TestNs, cmd: &str, rule: &str) {
    let mut argv = vec![cmd];
    for word in rule.split_whitespace() {
        match word {
            "@masq" => argv.extend(["-m", "comment", "--comment", "flanneld masq"]),
            "@forward" => argv.extend(["-m", "comment", "--comment", "flanneld forward"]),
            w => argv.push(w),
        }
    }
    ns.exec_ok(&argv);
}

/// What flannel v0.28 programs through iptables (pkg/trafficmngr/iptables)
/// for one node, IPv4 and IPv6: its chains and the jumps into them.
fn add_flannels_rules(ns: &TestNs) {
    for (cmd, cluster, node, multicast) in [
        ("iptables", "10.244.0.0/16", "10.244.1.0/24", "224.0.0.0/4"),
        (
            "ip6tables",
            "fd00:10:244::/56",
            "fd00:10:244:1::/64",
            "ff00::/8",
        ),
    ] {
        for rule in [
            "-t nat -N FLANNEL-POSTRTG".to_string(),
            "-t nat -A POSTROUTING @masq -j FLANNEL-POSTRTG".to_string(),
            "-t nat -A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 @masq -j RETURN".to_string(),
            format!("-t nat -A FLANNEL-POSTRTG -s {node} -d {cluster} @masq -j RETURN"),
            format!("-t nat -A FLANNEL-POSTRTG ! -s {cluster} -d {node} @masq -j RETURN"),
            format!(
                "-t nat -A FLANNEL-POSTRTG -s {cluster} ! -d {multicast} @masq -j MASQUERADE --random-fully"
            ),
            "-t filter -N FLANNEL-FWD".to_string(),
            "-t filter -A FORWARD @forward -j FLANNEL-FWD".to_string(),
            format!("-t filter -A FLANNEL-FWD -s {cluster} @forward -j ACCEPT"),
            format!("-t filter -A FLANNEL-FWD -d {cluster} @forward -j ACCEPT"),
        ] {
            ipt(ns, cmd, &rule);
        }
    }
    // With EnableNFTables flannel keeps its own tables instead. (nft reads
    // its arguments as one command line.)
    for (family, table) in [("ip", "flannel-ipv4"), ("ip6", "flannel-ipv6")] {
        for cmd in [
            format!("add table {family} {table} {{ comment \"rules for {table}\" ; }}"),
            format!(
                "add chain {family} {table} postrtg {{ type nat hook postrouting priority srcnat ; }}"
            ),
            format!("add rule {family} {table} postrtg meta mark 0x4000 return"),
        ] {
            ns.exec_ok(&["nft", &cmd]);
        }
    }
}

/// Other owners' rules: kube-proxy's chains with jumps from the same base
/// chains as flannel's, and an inet table of somebody else's.
fn add_other_rules(ns: &TestNs) {
    for cmd in ["iptables", "ip6tables"] {
        for rule in [
            "-t nat -N KUBE-POSTROUTING",
            "-t nat -A POSTROUTING -m comment --comment kubernetes-postrouting -j KUBE-POSTROUTING",
            "-t nat -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
            "-t filter -N KUBE-FORWARD",
            "-t filter -A FORWARD -j KUBE-FORWARD",
            "-t mangle -N KUBE-KUBELET-CANARY",
        ] {
            ipt(ns, cmd, rule);
        }
    }
    for cmd in [
        "add table inet other",
        "add chain inet other forward { type filter hook forward priority 10 ; }",
        "add rule inet other forward counter accept",
    ] {
        ns.exec_ok(&["nft", cmd]);
    }
}

/// flannel's files and some that are not flannel's, under `root`.
fn make_files(root: &Path) {
    let files: [(&str, &str); 13] = [
        ("conf/10-flannel.conflist.tweed-replaced", FLANNEL_CONFLIST),
        // An earlier copy the installer kept.
        (
            "conf/10-flannel.conflist.tweed-replaced.1",
            FLANNEL_CONFLIST,
        ),
        // flannel's by content whatever the name.
        (
            "conf/11-custom.conf",
            r#"{"cniVersion": "0.3.1", "name": "cbr0", "type": "flannel"}"#,
        ),
        ("conf/10-tweed.conflist", TWEED_CONFLIST),
        // Not flannel's whatever the name.
        (
            "conf/20-flannel-notes.conflist",
            r#"{"name": "flannel", "plugins": [{"type": "bridge"}]}"#,
        ),
        ("conf/README", "type flannel"),
        ("bin/flannel", "#!/bin/sh\n"),
        ("bin/bridge", "#!/bin/sh\n"),
        ("bin/tweed", "#!/bin/sh\n"),
        (
            "run/flannel/subnet.env",
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n",
        ),
        (
            "state/flannel/0a1b2c",
            r#"{"type": "bridge", "name": "cbr0"}"#,
        ),
        (
            "state/flannel/3d4e5f",
            r#"{"type": "bridge", "name": "cbr0"}"#,
        ),
        ("state/networks/cbr0/10.244.1.5", "0a1b2c\r\neth0"),
    ];
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// Every file under `root`, relative.
fn files_under(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// The namespace's whole ruleset as nft prints it (no traffic flows, so
/// the counters stay at zero and equal text means an equal ruleset).
fn ruleset(ns: &TestNs) -> String {
    ns.exec_ok(&["nft", "list", "ruleset"])
}

/// iptables-save's rules and chains without its timestamped comments.
fn saved(ns: &TestNs, cmd: &str) -> Vec<String> {
    ns.exec_ok(&[cmd])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// A process named flanneld (a copy of sleep), killed by its pid on drop.
struct FakeFlanneld(Child);

impl FakeFlanneld {
    fn start(dir: &Path) -> FakeFlanneld {
        let exe = dir.join("flanneld");
        std::fs::copy("/bin/sleep", &exe).unwrap();
        FakeFlanneld(Command::new(exe).arg("600").spawn().unwrap())
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for FakeFlanneld {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asserts that `text` (`what`) holds each of `present` and none of
/// `absent`.
fn assert_lines(what: &str, text: &str, present: &[&str], absent: &[&str]) {
    for p in present {
        assert!(text.contains(p), "{p:?} missing from {what}:\n{text}");
    }
    for a in absent {
        assert!(!text.contains(a), "{a:?} in {what}:\n{text}");
    }
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// `tweedctl flannel-cleanup` on the tree under `root`, inside `ns`; in a
/// PID namespace of its own (no flanneld there) when `own_pids`.
fn cleanup(ns: &TestNs, root: &Path, own_pids: bool, extra: &[&str]) -> Run {
    let path = |p: &str| root.join(p).display().to_string();
    let (conf, bin, run, state) = (
        path("conf"),
        path("bin"),
        path("run/flannel"),
        path("state"),
    );
    let mut argv = Vec::new();
    if own_pids {
        argv.extend(["unshare", "--pid", "--fork", "--mount-proc"]);
    }
    argv.extend([
        env!("CARGO_BIN_EXE_tweedctl"),
        "flannel-cleanup",
        "--conf-dir",
        &conf,
        "--bin-dir",
        &bin,
        "--flannel-run-dir",
        &run,
        "--cni-state-dir",
        &state,
    ]);
    argv.extend_from_slice(extra);
    let out = ns.exec(&argv);
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn removes_exactly_flannels_leftovers_and_keeps_what_tweed_uses() {
    let ns = TestNs::new("fcln");
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path();
    add_flannels_rules(&ns);
    add_other_rules(&ns);
    // flannel's VXLAN device and bridge, which tweed adopts.
    for cmd in [
        "ip link add flannel.1 type vxlan id 1 dstport 8472 nolearning",
        "ip link add cni0 type bridge",
    ] {
        ns.exec_ok(&cmd.split_whitespace().collect::<Vec<_>>());
    }
    make_files(root);
    let rules_before = ruleset(&ns);
    let files_before = files_under(root);
    assert!(rules_before.contains("FLANNEL-POSTRTG") && rules_before.contains("flannel-ipv6"));
    let unchanged = |what: &str| {
        assert_eq!(ruleset(&ns), rules_before, "{what} changed the ruleset");
        assert_eq!(files_under(root), files_before, "{what} changed the files");
    };

    // A running flanneld: --yes refuses and changes nothing; the plan says why.
    let bin = tempfile::tempdir().unwrap();
    let flanneld = FakeFlanneld::start(bin.path());
    let refused = cleanup(&ns, root, false, &["--yes"]);
    assert!(!refused.ok, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("flanneld is running (pid ")
            && refused.stderr.contains(&flanneld.pid().to_string())
            && refused.stderr.contains("nothing was changed"),
        "{}",
        refused.stderr
    );
    unchanged("the refused run");
    let plan = cleanup(&ns, root, false, &[]);
    assert!(plan.ok, "{}{}", plan.stdout, plan.stderr);
    unchanged("the plan");
    assert_lines(
        "the plan",
        &plan.stdout,
        &[
            "would remove (run again with --yes):",
            "nftables rule ip nat POSTROUTING handle",
            "(jump FLANNEL-POSTRTG)",
            "nftables rule ip6 filter FORWARD handle",
            "nftables chain ip nat FLANNEL-POSTRTG (with 4 rules)",
            "nftables chain ip6 filter FLANNEL-FWD (with 2 rules)",
            "nftables table ip flannel-ipv4",
            "nftables table ip6 flannel-ipv6",
            "conf/10-flannel.conflist.tweed-replaced (a CNI config using flannel)",
            "conf/10-flannel.conflist.tweed-replaced.1 (a CNI config using flannel)",
            "conf/11-custom.conf",
            "bin/flannel (flannel's CNI plugin)",
            "run/flannel/subnet.env (flanneld's lease file)",
            "state/flannel (delegate configs flannel's plugin saved for 2 pods)",
            "warning: flanneld is running",
            "kept: flannel.1 (tweed's VXLAN device under --flannel-compat)",
            "kept: cni0",
            "networks/cbr0 (host-local's addresses, shared with tweed's plugin)",
        ],
        &[
            "KUBE",
            "inet other",
            "10-tweed",
            "flannel-notes",
            "README",
            "bridge (",
            "bin/tweed",
        ],
    );
    let kept_env = cleanup(&ns, root, false, &["--keep-subnet-env"]);
    assert_lines(
        "the plan with --keep-subnet-env",
        &kept_env.stdout,
        &["subnet.env (--keep-subnet-env)"],
        &["(flanneld's lease file)"],
    );
    drop(flanneld);

    // --yes (where no flanneld is) removes flannel's and nothing else.
    let v4_before = saved(&ns, "iptables-save");
    let v6_before = saved(&ns, "ip6tables-save");
    let done = cleanup(&ns, root, true, &["--yes"]);
    assert!(done.ok, "{}{}", done.stdout, done.stderr);
    assert_lines(
        "the output of --yes",
        &done.stdout,
        &[
            "removed nftables chain ip nat FLANNEL-POSTRTG",
            "kept: flannel.1",
        ],
        &[],
    );
    let rules = ruleset(&ns);
    assert_lines(
        "the ruleset",
        &rules,
        &[
            "jump KUBE-POSTROUTING",
            "jump KUBE-FORWARD",
            "chain KUBE-KUBELET-CANARY",
            "table inet other",
        ],
        &["FLANNEL", "flannel"],
    );
    // iptables' own view: exactly the lines naming flannel's chains went.
    for (cmd, before) in [("iptables-save", v4_before), ("ip6tables-save", v6_before)] {
        let want: Vec<String> = before
            .into_iter()
            .filter(|l| !l.contains("FLANNEL"))
            .collect();
        assert_eq!(saved(&ns, cmd), want, "{cmd}");
    }
    for dev in ["flannel.1", "cni0"] {
        ns.exec_ok(&["ip", "link", "show", dev]);
    }
    let removed = [
        "conf/10-flannel.conflist.tweed-replaced",
        "conf/10-flannel.conflist.tweed-replaced.1",
        "conf/11-custom.conf",
        "bin/flannel",
        "run/flannel/subnet.env",
        "state/flannel/0a1b2c",
        "state/flannel/3d4e5f",
    ];
    let want: BTreeSet<String> = files_before
        .iter()
        .filter(|f| !removed.contains(&f.as_str()))
        .cloned()
        .collect();
    assert_eq!(files_under(root), want);
    assert!(!root.join("state/flannel").exists());

    // Again: nothing left, nothing changed.
    let rules_after = ruleset(&ns);
    let files_after = files_under(root);
    let again = cleanup(&ns, root, true, &["--yes"]);
    assert!(again.ok, "{}{}", again.stdout, again.stderr);
    assert_lines(
        "the second run",
        &again.stdout,
        &["nothing of flannel's left to remove"],
        &["removed"],
    );
    assert_eq!(ruleset(&ns), rules_after);
    assert_eq!(files_under(root), files_after);

    // --force goes ahead while flanneld runs.
    let flanneld = FakeFlanneld::start(bin.path());
    let forced = cleanup(&ns, root, false, &["--yes", "--force"]);
    assert!(forced.ok, "{}{}", forced.stdout, forced.stderr);
    assert_lines(
        "the forced run",
        &forced.stdout,
        &["nothing of flannel's left to remove"],
        &[],
    );
    drop(flanneld);
}

#[test]
fn one_failure_does_not_stop_the_rest_and_is_reported() {
    let ns = TestNs::new("fclf");
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path();
    make_files(root);
    // A directory where flannel's plugin should be: removing it as a file
    // fails.
    std::fs::remove_file(root.join("bin/flannel")).unwrap();
    std::fs::create_dir(root.join("bin/flannel")).unwrap();
    std::fs::write(root.join("bin/flannel/keep"), "").unwrap();

    let run = cleanup(&ns, root, true, &["--yes"]);
    assert!(!run.ok, "{}{}", run.stdout, run.stderr);
    assert_lines(
        "stderr",
        &run.stderr,
        &[
            "could not remove file ",
            "bin/flannel (flannel's CNI plugin): ",
        ],
        &[],
    );
    // The rest went all the same.
    for gone in [
        "conf/10-flannel.conflist.tweed-replaced",
        "run/flannel/subnet.env",
        "state/flannel",
    ] {
        assert!(!root.join(gone).exists(), "{gone} is still there");
    }
    assert!(root.join("bin/flannel/keep").exists());
}

/// `--then-wait`, as deploy/flannel-cleanup.yaml runs it: the cleanup is
/// done while the process stays, and SIGTERM ends it with status 0; a run
/// that fails exits at once, non-zero, so the DaemonSet's pod retries.
/// (`--force`: it runs in the host's PID namespace, to be signalled
/// directly.)
#[test]
fn then_wait_stays_after_a_complete_run_and_ends_on_sigterm() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    use tweed_testkit::process::{terminate_within, wait_within};

    let ns = TestNs::new("fclw");
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path();
    make_files(root);
    let path = |p: &str| root.join(p).display().to_string();
    let start = || {
        Command::new("nsenter")
            .arg(format!("--net={}", ns.path()))
            .args([env!("CARGO_BIN_EXE_tweedctl"), "flannel-cleanup"])
            .args(["--conf-dir", &path("conf"), "--bin-dir", &path("bin")])
            .args(["--flannel-run-dir", &path("run/flannel")])
            .args(["--cni-state-dir", &path("state")])
            .args(["--yes", "--force", "--then-wait"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    let mut child = start();
    let deadline = Instant::now() + Duration::from_secs(20);
    while root.join("state/flannel").exists() || root.join("bin/flannel").exists() {
        assert!(Instant::now() < deadline, "the cleanup did not happen");
        assert!(child.try_wait().unwrap().is_none(), "it exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "it did not stay");
    let out = terminate_within(child, Duration::from_secs(5), "--then-wait after SIGTERM");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("done; waiting for SIGTERM"), "{stdout}");

    // A run that cannot complete: flannel's plugin is a non-empty
    // directory, which it cannot remove.
    make_files(root);
    std::fs::remove_file(root.join("bin/flannel")).unwrap();
    std::fs::create_dir(root.join("bin/flannel")).unwrap();
    std::fs::write(root.join("bin/flannel/keep"), "").unwrap();
    let out = wait_within(start(), Duration::from_secs(20), "a failing run");
    assert!(!out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("waiting"));
}
