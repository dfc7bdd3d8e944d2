//! CNI call latency: tweed against Debian's reference `bridge` + `host-local`
//! on the same kind of network, interleaved in one run.
//!
//! Run as root: `sudo cargo bench -p tweed-plugin --bench cni_latency`
//! (`TWEED_BENCH_N` sets the number of measured pods per plugin, default
//! 100). See docs/benchmarks.md for what is measured and how.
//!
//! Each plugin gets its own "node" namespace, bridge and IPAM directory;
//! every pod gets its own namespace, created before the timed region. For
//! each pod i the two plugins' ADDs run back to back (which one goes first
//! alternates), then all DELs the same way. The first `WARMUP` pods are not
//! counted. tweed's DEL returns once the address is released and leaves the
//! device's unregistration to a detached child; the bench therefore also
//! records when the host veth is gone from the kernel and when that child
//! has exited, and waits for both before the next call, so no teardown
//! overlaps a measured call. The bench fails only if a plugin call fails or
//! the final state is wrong, never on a missed target.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tweed_netlink::{NetNs, Netlink};
use tweed_testkit::{CniCall, CniOutput, TestNs, reference_plugin, require_root};

/// Pods per plugin that run but are not counted (the first ADD creates the
/// bridge; caches and the page cache warm up).
const WARMUP: usize = 5;
/// Measured pods per plugin unless `TWEED_BENCH_N` says otherwise.
const DEFAULT_N: usize = 100;
/// How often the bench looks for the host veth after a DEL returned.
const POLL: Duration = Duration::from_micros(200);
/// A DEL whose device is not gone after this long is a failure.
const TEARDOWN_DEADLINE: Duration = Duration::from_secs(10);
/// The targets from the issue.
const TARGET_RATIO: f64 = 0.2;
const TARGET_RSS_BYTES: u64 = 5_000_000;
/// Both plugins speak it (Debian's reference plugins stop at 1.0.0).
const CNI_VERSION: &str = "1.0.0";
const NETWORK: &str = "benchnet";

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that does not name
    // this bench means another one was asked for.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"cni_latency".contains(a.as_str()))
    {
        return;
    }
    require_root();
    let n: usize = match std::env::var("TWEED_BENCH_N") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("TWEED_BENCH_N={s:?} is not a number")),
        Err(_) => DEFAULT_N,
    };
    assert!(n >= 1, "TWEED_BENCH_N must be at least 1");
    let total = n + WARMUP;
    assert!(
        total <= 1000,
        "at most 995 measured pods (one /22 per plugin)"
    );

    // tweed's DEL leaves a detached child behind; as a subreaper the bench
    // inherits it and can tell when the teardown has really finished.
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a process flag.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "prctl: {}", std::io::Error::last_os_error());

    let tweed_bin = PathBuf::from(env!("CARGO_BIN_EXE_tweed"));
    let mut tweed = Side::new(
        "tweed",
        tweed_bin.clone(),
        "10.244.200.0/22",
        |dir, subnet| {
            json!({
                "cniVersion": CNI_VERSION,
                "name": NETWORK,
                "type": "tweed",
                "bridge": "tweed0",
                "logFile": dir.join("cni.log"),
                "ipam": {
                    "ranges": [[{"subnet": subnet}]],
                    "dataDir": dir.join("ipam"),
                },
            })
        },
        total,
    );
    let mut reference = Side::new(
        "reference",
        reference_plugin("bridge"),
        "10.244.204.0/22",
        |dir, subnet| {
            json!({
                "cniVersion": CNI_VERSION,
                "name": NETWORK,
                "type": "bridge",
                "bridge": "refbr0",
                "isGateway": true,
                "isDefaultGateway": true,
                "hairpinMode": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "dataDir": dir.join("ipam"),
                },
            })
        },
        total,
    );
    eprintln!("cni_latency: {n} measured + {WARMUP} warm-up pods per plugin; namespaces ready");

    let load_before = loadavg();
    // ADDs, interleaved; the plugin that goes first alternates. Each round
    // also spawns /bin/true and a tweed call that is rejected at once, the
    // same way and in tweed's node: the floor any plugin pays on this
    // machine for fork + exec + wait, and tweed's own start-up, config
    // parse, log line and exit without any network work.
    let mut floor = Floor::default();
    for i in 0..total {
        let (first, second) = order(i, &mut tweed, &mut reference);
        first.add(i);
        second.add(i);
        floor.measure(i, &tweed);
    }
    // DELs, interleaved the same way.
    for i in 0..total {
        let (first, second) = order(i, &mut tweed, &mut reference);
        first.del(i);
        second.del(i);
    }

    let load_after = loadavg();

    tweed.assert_clean();
    reference.assert_clean();
    report(
        n,
        &tweed_bin,
        &tweed,
        &reference,
        &floor,
        (&load_before, &load_after),
    );
    // Drop order: pods, then the nodes (and their bridges), then temp dirs.
}

/// Spawn costs without plugin work, measured with the same driver.
#[derive(Default)]
struct Floor {
    true_bin: Vec<Duration>,
    rejected: Vec<Duration>,
    rejected_rss_kib: u64,
    true_rss_kib: u64,
}

impl Floor {
    /// `/bin/true`, and a tweed ADD whose config has no network name: tweed
    /// starts, reads and parses stdin, prints the error, logs the call
    /// (into the bench's log file) and exits, without touching the kernel
    /// or IPAM. (VERSION would do less, but always logs to the default
    /// /var/log/tweed/cni.log.)
    fn measure(&mut self, i: usize, tweed: &Side) {
        let out = tweed.spawn(i, CniCall::new("/bin/true", "VERSION"));
        assert!(out.ok(), "/bin/true failed: {}", out.stderr);
        let rejected = tweed.spawn(
            i,
            CniCall::new(&tweed.plugin, "ADD")
                .config(&json!({
                    "cniVersion": CNI_VERSION,
                    "logFile": tweed.dir.path().join("cni.log"),
                }))
                .container(&tweed.container_id(i), &tweed.pods[i].path(), "eth0"),
        );
        rejected.expect_error(7, "tweed ADD without a network name");
        if i < WARMUP {
            self.rejected_rss_kib = self.rejected_rss_kib.max(rejected.max_rss_kib);
            self.true_rss_kib = self.true_rss_kib.max(out.max_rss_kib);
        } else {
            self.true_bin.push(out.elapsed);
            self.rejected.push(rejected.elapsed);
        }
    }
}

/// The 1, 5 and 15 minute load averages: other work on the machine shows
/// up in every figure.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn order<'a>(i: usize, a: &'a mut Side, b: &'a mut Side) -> (&'a mut Side, &'a mut Side) {
    if i.is_multiple_of(2) { (a, b) } else { (b, a) }
}

/// One DEL's timings, all measured from the start of the plugin call.
#[derive(Clone, Copy)]
struct DelSample {
    /// The plugin exited.
    returned: Duration,
    /// The host veth no longer resolves in the node namespace.
    device_gone: Duration,
    /// Every process the call left behind has exited (for tweed: the
    /// detached teardown, whose RTM_DELLINK returns after the kernel's full
    /// unregister, as the reference's synchronous delete does).
    teardown_done: Duration,
}

struct Side {
    label: &'static str,
    plugin: PathBuf,
    conf: Value,
    subnet: ipnet::Ipv4Net,
    // Field order is drop order: the netlink socket and pods go before the
    // node namespace, the temp dir last.
    nl: Netlink,
    node_ns: NetNs,
    pods: Vec<TestNs>,
    node: TestNs,
    dir: tempfile::TempDir,
    host_veths: Vec<String>,
    /// Each pod's ADD result, handed back as `prevResult` on DEL the way
    /// libcni-based runtimes do.
    results: Vec<Value>,
    adds: Vec<Duration>,
    dels: Vec<DelSample>,
    add_rss_kib: u64,
    del_rss_kib: u64,
    /// Processes a call left behind and the bench reaped.
    orphans_after_add: usize,
    orphans_after_del: usize,
}

impl Side {
    fn new(
        label: &'static str,
        plugin: PathBuf,
        subnet: &str,
        conf: impl Fn(&Path, &str) -> Value,
        pods: usize,
    ) -> Side {
        let node = TestNs::new(&format!("bn-{}", &label[..3]));
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = conf(dir.path(), subnet);
        let node_ns = NetNs::named(&node.name).expect("open node netns");
        let nl = Netlink::in_netns(&node_ns).expect("netlink in node netns");
        let pods = (0..pods)
            .map(|_| TestNs::new(&format!("bp-{}", &label[..3])))
            .collect();
        Side {
            label,
            plugin,
            conf,
            subnet: subnet.parse().expect("subnet"),
            nl,
            node_ns,
            pods,
            node,
            dir,
            host_veths: Vec::new(),
            results: Vec::new(),
            adds: Vec::new(),
            dels: Vec::new(),
            add_rss_kib: 0,
            del_rss_kib: 0,
            orphans_after_add: 0,
            orphans_after_del: 0,
        }
    }

    /// A realistic 64-hex-digit container ID, distinct per plugin and pod.
    fn container_id(&self, i: usize) -> String {
        let tag: u64 = if self.label == "tweed" {
            0x7eed
        } else {
            0x7ef0
        };
        format!("{tag:016x}{i:048x}")
    }

    fn call(&self, command: &str, i: usize) -> CniCall {
        let mut conf = self.conf.clone();
        if command == "DEL" {
            conf["prevResult"] = self.results[i].clone();
        }
        CniCall::new(&self.plugin, command).config(&conf).container(
            &self.container_id(i),
            &self.pods[i].path(),
            "eth0",
        )
    }

    /// Runs call `i` in the node namespace.
    ///
    /// Timed calls: this thread enters the namespace and spawns the plugin
    /// from there (posix_spawn, i.e. vfork + exec, as Go runtimes spawn
    /// plugins), so it inherits the namespace. `CniCall::in_node` would do
    /// setns between fork and exec, which forces a full fork of this
    /// process and adds the same constant to every call of both plugins.
    ///
    /// Warm-up calls go through `in_node` (fork) instead, because they
    /// provide the peak RSS: wait4's ru_maxrss is the larger of the
    /// process's own peak and the peak of the address space it replaced at
    /// exec, which for vfork is this whole bench process, and for fork only
    /// what fork copied (/bin/true spawned the same way shows how much).
    fn spawn(&self, i: usize, call: CniCall) -> CniOutput {
        if i < WARMUP {
            call.in_node(&self.node.name).run()
        } else {
            self.node_ns
                .run(|| call.run())
                .expect("enter the node namespace")
        }
    }

    fn add(&mut self, i: usize) {
        let out = self.spawn(i, self.call("ADD", i));
        let what = format!("{} ADD pod {i}", self.label);
        let result = out.expect_ok(&what);
        // Light correctness: an address from this side's subnet, and the
        // host veth (interfaces[1] for both plugins) in the node namespace.
        let ip = result["ips"][0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no IP in the result: {result}"));
        let ip: ipnet::Ipv4Net = ip
            .parse()
            .unwrap_or_else(|e| panic!("{what}: bad address {ip}: {e}"));
        assert!(
            self.subnet.contains(&ip.addr()),
            "{what}: {ip} outside {}",
            self.subnet
        );
        let host = result["interfaces"][1]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no host interface in the result: {result}"))
            .to_string();
        assert!(
            self.nl.link_by_name(&host).expect("netlink").is_some(),
            "{what}: host veth {host} not in the node namespace"
        );
        self.orphans_after_add += reap_exited();
        self.host_veths.push(host);
        self.results.push(result);
        if i < WARMUP {
            self.add_rss_kib = self.add_rss_kib.max(out.max_rss_kib);
        } else {
            self.adds.push(out.elapsed);
        }
    }

    fn del(&mut self, i: usize) {
        let out = self.spawn(i, self.call("DEL", i));
        let returned_at = Instant::now();
        out.expect_ok(&format!("{} DEL pod {i}", self.label));
        let host = self.host_veths[i].clone();
        // From the call's own start: its elapsed time plus what followed.
        let since_start = |t: Instant| out.elapsed + t.duration_since(returned_at);
        let mut gone = None;
        let mut done = None;
        loop {
            let now = Instant::now();
            if gone.is_none() && self.nl.link_by_name(&host).expect("netlink").is_none() {
                gone = Some(since_start(now));
            }
            if done.is_none() {
                let (reaped, any_left) = reap();
                self.orphans_after_del += reaped;
                if !any_left {
                    done = Some(since_start(Instant::now()));
                }
            }
            if let (Some(device_gone), Some(teardown_done)) = (gone, done) {
                if i >= WARMUP {
                    self.dels.push(DelSample {
                        returned: out.elapsed,
                        device_gone,
                        teardown_done: teardown_done.max(device_gone),
                    });
                }
                break;
            }
            assert!(
                returned_at.elapsed() < TEARDOWN_DEADLINE,
                "{} DEL pod {i}: host veth {host} still there (or its teardown still running) \
                 after {TEARDOWN_DEADLINE:?}",
                self.label
            );
            std::thread::sleep(POLL);
        }
        if i < WARMUP {
            self.del_rss_kib = self.del_rss_kib.max(out.max_rss_kib);
        }
    }

    /// After every DEL: no reservation left in the store, no veth left in
    /// the node namespace, no interface left in any pod.
    fn assert_clean(&mut self) {
        let store = self.dir.path().join("ipam").join(NETWORK);
        let left: Vec<String> = std::fs::read_dir(&store)
            .unwrap_or_else(|e| panic!("{}: read {}: {e}", self.label, store.display()))
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
            .collect();
        assert!(
            left.is_empty(),
            "{}: reservations left after all DELs: {left:?}",
            self.label
        );
        let veths: Vec<String> = self
            .nl
            .links()
            .expect("netlink")
            .into_iter()
            .filter(|l| l.kind.as_deref() == Some("veth"))
            .map(|l| l.name)
            .collect();
        assert!(
            veths.is_empty(),
            "{}: veths left in the node namespace {}: {veths:?}",
            self.label,
            self.node.name
        );
        for pod in &self.pods {
            let mut nl =
                Netlink::in_netns(&NetNs::named(&pod.name).expect("open pod netns")).expect("nl");
            assert!(
                nl.link_by_name("eth0").expect("netlink").is_none(),
                "{}: eth0 left in {}",
                self.label,
                pod.name
            );
        }
    }
}

/// Reaps every exited child without blocking; returns how many were reaped
/// and whether any child is still running.
fn reap() -> (usize, bool) {
    let mut reaped = 0;
    loop {
        let mut status = 0;
        // SAFETY: plain waitpid on any child, status is a valid out pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => return (reaped, true),
            p if p > 0 => reaped += 1,
            _ => return (reaped, false), // ECHILD: no children at all
        }
    }
}

fn reap_exited() -> usize {
    reap().0
}

/// `durationUs` of the successful `cmd` calls in a tweed call log, in order.
fn logged_durations(log: &Path, cmd: &str) -> Vec<Duration> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["cmd"] == cmd && v["result"] == "ok")
        .filter_map(|v| v["durationUs"].as_u64())
        .map(Duration::from_micros)
        .collect()
}

/// Order statistics of a sample, in milliseconds.
struct Stats {
    median: f64,
    p90: f64,
    min: f64,
    max: f64,
}

fn stats(samples: impl IntoIterator<Item = Duration>) -> Stats {
    let mut v: Vec<f64> = samples.into_iter().map(|d| d.as_secs_f64() * 1e3).collect();
    assert!(!v.is_empty());
    v.sort_by(f64::total_cmp);
    Stats {
        median: quantile(&v, 0.5),
        p90: quantile(&v, 0.9),
        min: v[0],
        max: v[v.len() - 1],
    }
}

/// Linear interpolation between closest ranks.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn report(
    n: usize,
    tweed_bin: &Path,
    tweed: &Side,
    reference: &Side,
    floor: &Floor,
    load: (&str, &str),
) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let ref_version = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "containernetworking-plugins"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| "?".into());
    let tweed_size = std::fs::metadata(tweed_bin).map_or(0, |m| m.len());

    println!();
    println!("CNI call latency: tweed vs reference bridge + host-local (cniVersion {CNI_VERSION})");
    println!(
        "machine: Linux {kernel}, nproc {cpus}, {model}; reference: containernetworking-plugins {ref_version} \
         ({}); tweed binary {} KiB",
        reference.plugin.display(),
        tweed_size / 1024
    );
    println!(
        "load average (1/5/15 min) before the timed region: {}, after: {}",
        load.0, load.1
    );
    println!(
        "pods: {n} measured per plugin (+{WARMUP} warm-up), ADDs then DELs, interleaved, \
         order alternating; times from spawn to exit (wait4)"
    );
    println!();
    println!(
        "{:<26} {:<10} {:>9} {:>9} {:>9} {:>9}",
        "command", "plugin", "median", "p90", "min", "max"
    );
    let row = |what: &str, side: &Side, s: &Stats| {
        println!(
            "{:<26} {:<10} {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>6.2} ms",
            what, side.label, s.median, s.p90, s.min, s.max
        );
    };
    let t_add = stats(tweed.adds.iter().copied());
    let r_add = stats(reference.adds.iter().copied());
    let t_del = stats(tweed.dels.iter().map(|d| d.returned));
    let r_del = stats(reference.dels.iter().map(|d| d.returned));
    let t_gone = stats(tweed.dels.iter().map(|d| d.device_gone));
    let r_gone = stats(reference.dels.iter().map(|d| d.device_gone));
    let t_done = stats(tweed.dels.iter().map(|d| d.teardown_done));
    row("ADD", tweed, &t_add);
    row("ADD", reference, &r_add);
    row("DEL (returned)", tweed, &t_del);
    row("DEL (returned)", reference, &r_del);
    row("DEL (host veth gone)", tweed, &t_gone);
    row("DEL (host veth gone)", reference, &r_gone);
    row("DEL (teardown exited)", tweed, &t_done);
    let floor_row = |what: &str, who: &str, s: &Stats| {
        println!(
            "{:<26} {:<10} {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>6.2} ms",
            what, who, s.median, s.p90, s.min, s.max
        );
    };
    // tweed's own view: `durationUs` in its call log is the time from the
    // start of main to the log write; the rest of a call is process
    // creation, loading, and exit.
    for cmd in ["ADD", "DEL"] {
        let inside = logged_durations(&tweed.dir.path().join("cni.log"), cmd);
        if !inside.is_empty() {
            floor_row(
                &format!("{cmd} inside main (log)"),
                "tweed",
                &stats(inside.into_iter().skip(WARMUP)),
            );
        }
    }
    floor_row(
        "floor: spawn /bin/true",
        "-",
        &stats(floor.true_bin.iter().copied()),
    );
    floor_row(
        "floor: tweed, bad config",
        "tweed",
        &stats(floor.rejected.iter().copied()),
    );
    println!();
    println!(
        "ratio tweed/reference of medians (reference DEL = returned; its veth is gone by then):"
    );
    let yes = |b: bool| if b { "yes" } else { "no" };
    let ratio = |what: &str, t: f64, r: f64| {
        let q = t / r;
        println!(
            "  {what:<24} {q:>6.3}   target <= {TARGET_RATIO}: {}",
            yes(q <= TARGET_RATIO)
        );
    };
    ratio("ADD", t_add.median, r_add.median);
    ratio("DEL (returned)", t_del.median, r_del.median);
    ratio("DEL (host veth gone)", t_gone.median, r_del.median);
    ratio("DEL (teardown exited)", t_done.median, r_del.median);
    println!();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let t_rss = tweed.add_rss_kib.max(tweed.del_rss_kib);
    println!(
        "peak RSS of one call (wait4 ru_maxrss, max over the {WARMUP} fork-spawned warm-up calls; \
         /bin/true spawned the same way: {} KiB, so figures above that are the plugin's own):",
        floor.true_rss_kib
    );
    for side in [tweed, reference] {
        println!(
            "  {:<10} ADD {:>5.2} MiB ({} KiB)   DEL {:>5.2} MiB ({} KiB)",
            side.label,
            mib(side.add_rss_kib),
            side.add_rss_kib,
            mib(side.del_rss_kib),
            side.del_rss_kib
        );
    }
    println!(
        "  tweed rejecting a config (start-up only)   {:>5.2} MiB ({} KiB)",
        mib(floor.rejected_rss_kib),
        floor.rejected_rss_kib
    );
    println!(
        "  tweed peak RSS <= 5 MB (5,000,000 bytes): {}",
        yes(t_rss * 1024 <= TARGET_RSS_BYTES)
    );
    println!(
        "processes left behind by a call and reaped by the bench: tweed ADD {} DEL {}, \
         reference ADD {} DEL {}",
        tweed.orphans_after_add,
        tweed.orphans_after_del,
        reference.orphans_after_add,
        reference.orphans_after_del
    );
    println!("final state: both IPAM stores empty, no veth in either node, no eth0 in any pod: ok");
}
