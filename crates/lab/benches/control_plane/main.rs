//! The control plane at scale: one agent (a 1-node lab, vxlan) facing N
//! peer leases that the bench writes into the store, against the floor —
//! `ip -batch` and `bridge -batch` programming the same 3×N entries on an
//! identical hand-made VXLAN device in a fresh namespace.
//!
//! Run as root: `sudo cargo bench -p tweed-lab --bench control_plane`
//! (`cargo build --release --workspace` first, with the same
//! CARGO_TARGET_DIR). Knobs: `TWEED_BENCH_PEERS` (comma-separated peer
//! counts, default `1000,5000`), `TWEED_BENCH_ROUNDS` (rounds per count,
//! default 3), `TWEED_BENCH_POLL_MS` (kernel poll interval, default 50),
//! `TWEED_BENCH_STORE` (`file`, the default, or `etcd`).
//! See docs/benchmarks.md.
//!
//! tweed, per round and count N:
//! 1. `add`: from the moment the bench starts writing until the kernel of
//!    the agent's node holds all N routes (protocol 77), N permanent
//!    neighbours and N FDB entries on `tweed.1`. The leases are created one
//!    after the other with tweedd's own store code (`LeaseStore::create`),
//!    so the records are exactly tweed's. A thread in the node's namespace
//!    dumps the three tables every poll interval; the time is taken when
//!    the first complete dump ends (an upper bound).
//! 2. the kernel's content is checked entry by entry;
//! 3. `remove`: every lease deleted (`LeaseStore::delete`), until the three
//!    tables are empty again.
//!
//! The floor, per round and count: a fresh namespace with a veth `eth0`
//! (198.18.0.1/24) and a VXLAN device made with `ip` exactly like tweed's
//! (VNI 1, port 8472, nolearning, MTU 1450, local address, `dev eth0`);
//! one `ip -batch` file (N `route replace ... onlink proto 77`, N `neigh
//! replace ... nud permanent`) and one `bridge -batch` file (N `fdb
//! replace ... self permanent`), timed from spawning `ip` until `bridge`
//! exits; then the same for removal. Sides alternate which goes first.
//!
//! The bench fails only if something it drives fails or the kernel's
//! content is wrong, never on a missed target.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ipnet::{IpNet, Ipv4Net};
use serde_json::json;
use tweed_lab::{Lab, LabSpec};
use tweed_netlink::{MacAddr, NetNs, Netlink, TABLE_MAIN};
use tweedd::lease::{Lease, LeaseAttrs, LeaseKey};
use tweedd::store::any::AnyStore;
use tweedd::store::etcd::EtcdOptions;
use tweedd::store::{Created, LeaseStore};

const PROTO: u8 = 77;
const DEVICE: &str = "tweed.1";
const TARGET_RATIO: f64 = 2.0;
const TARGET_HWM_BYTES: u64 = 20_000_000;
const DEADLINE: Duration = Duration::from_secs(300);

/// One peer's lease and the three kernel entries it must produce.
#[derive(Clone)]
struct Peer {
    subnet: Ipv4Net,
    public: Ipv4Addr,
    mac: MacAddr,
}

impl Peer {
    fn lease(&self, i: usize) -> Lease {
        Lease {
            key: LeaseKey {
                ipv4: Some(self.subnet),
                ipv6: None,
            },
            attrs: LeaseAttrs {
                public_ip: Some(self.public),
                public_ipv6: None,
                backend_type: "vxlan".into(),
                backend_data: json!({"VNI": 1, "VtepMAC": self.mac.to_string()}),
                backend_v6_data: serde_json::Value::Null,
                node_name: format!("peer{i}"),
            },
            expires: None,
        }
    }
}

/// N distinct peers: subnets 10.128.1.0/24, 10.128.2.0/24, ... (skipping
/// the agent's own), public addresses from 198.18.16.0 on (outside the
/// lab's 198.18.0.0/24; nothing is ever sent to them), distinct MACs.
fn peers(n: usize, own: Ipv4Net) -> Vec<Peer> {
    let base = u32::from(Ipv4Addr::new(10, 128, 0, 0));
    let mut out = Vec::with_capacity(n);
    let mut k = 1u32;
    while out.len() < n {
        let subnet = Ipv4Net::new(Ipv4Addr::from(base + (k << 8)), 24).expect("/24");
        k += 1;
        if subnet == own {
            continue;
        }
        let i = out.len() as u32;
        out.push(Peer {
            subnet,
            public: Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 16, 0)) + i),
            mac: MacAddr([0x02, 0xcb, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
        });
    }
    out
}

/// What the kernel of a namespace holds of an overlay.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    routes: usize,
    neighbours: usize,
    fdb: usize,
}

fn count(nl: &mut Netlink, dev: &str) -> Counts {
    let routes = nl
        .routes(false, TABLE_MAIN)
        .expect("dump routes")
        .iter()
        .filter(|r| r.protocol == PROTO)
        .count();
    let Some(link) = nl.link_by_name(dev).expect("link") else {
        return Counts {
            routes,
            ..Default::default()
        };
    };
    let neighbours = nl
        .neighbours(false, Some(link.index))
        .expect("dump neighbours")
        .iter()
        .filter(|n| n.permanent)
        .count();
    let fdb = nl
        .fdb(link.index)
        .expect("dump fdb")
        .iter()
        .filter(|e| e.own && e.permanent && e.dst.is_some())
        .count();
    Counts {
        routes,
        neighbours,
        fdb,
    }
}

/// Polls a namespace's overlay every `interval` from its own thread until
/// `done(counts)`; the result is when the first satisfying dump ended,
/// plus how long dumps took.
struct Poller {
    handle: std::thread::JoinHandle<PollResult>,
}

struct PollResult {
    /// End of the first dump that satisfied the condition.
    done_at: Option<Instant>,
    /// End of the first dump that saw any change from the start.
    first_change_at: Option<Instant>,
    dump_ms: Vec<f64>,
    last: Counts,
}

impl Poller {
    fn start(
        ns: &str,
        dev: &'static str,
        interval: Duration,
        done: impl Fn(Counts) -> bool + Send + 'static,
    ) -> Poller {
        let handle = NetNs::named(ns).expect("netns");
        let mut nl = Netlink::in_netns(&handle).expect("netlink in netns");
        let initial = count(&mut nl, dev);
        let handle = std::thread::spawn(move || {
            let mut r = PollResult {
                done_at: None,
                first_change_at: None,
                dump_ms: vec![],
                last: initial,
            };
            let deadline = Instant::now() + DEADLINE;
            while !interrupted() && Instant::now() < deadline {
                let t = Instant::now();
                let c = count(&mut nl, dev);
                let end = Instant::now();
                r.dump_ms.push((end - t).as_secs_f64() * 1e3);
                r.last = c;
                if r.first_change_at.is_none() && c != initial {
                    r.first_change_at = Some(end);
                }
                if done(c) {
                    r.done_at = Some(end);
                    break;
                }
                std::thread::sleep(interval.saturating_sub(end - t));
            }
            r
        });
        Poller { handle }
    }

    fn finish(self) -> PollResult {
        self.handle.join().expect("poller")
    }
}

/// Checks that the kernel holds exactly the peers' entries.
fn verify(ns: &str, dev: &str, peers: &[Peer]) {
    let handle = NetNs::named(ns).expect("netns");
    let mut nl = Netlink::in_netns(&handle).expect("netlink");
    let link = nl.link_by_name(dev).expect("link").expect("device");
    let routes: BTreeMap<IpNet, (Option<IpAddr>, Option<u32>, bool)> = nl
        .routes(false, TABLE_MAIN)
        .expect("routes")
        .into_iter()
        .filter(|r| r.protocol == PROTO)
        .map(|r| (r.dst, (r.gateway, r.oif, r.onlink)))
        .collect();
    let neigh: BTreeMap<IpAddr, Option<MacAddr>> = nl
        .neighbours(false, Some(link.index))
        .expect("neighbours")
        .into_iter()
        .filter(|n| n.permanent)
        .map(|n| (n.ip, n.mac))
        .collect();
    let fdb: BTreeSet<(MacAddr, Option<IpAddr>)> = nl
        .fdb(link.index)
        .expect("fdb")
        .into_iter()
        .filter(|e| e.own && e.permanent && e.dst.is_some())
        .map(|e| (e.mac, e.dst))
        .collect();
    assert_eq!(routes.len(), peers.len(), "{ns}: route count");
    assert_eq!(neigh.len(), peers.len(), "{ns}: neighbour count");
    assert_eq!(fdb.len(), peers.len(), "{ns}: FDB count");
    for p in peers {
        let gw = IpAddr::V4(p.subnet.network());
        assert_eq!(
            routes.get(&IpNet::V4(p.subnet)),
            Some(&(Some(gw), Some(link.index), true)),
            "{ns}: route to {}",
            p.subnet
        );
        assert_eq!(neigh.get(&gw), Some(&Some(p.mac)), "{ns}: neighbour {gw}");
        assert!(
            fdb.contains(&(p.mac, Some(IpAddr::V4(p.public)))),
            "{ns}: FDB {} -> {}",
            p.mac,
            p.public
        );
    }
}

/// `VmHWM` and `VmRSS` of a process, bytes.
fn memory(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn metric(lab: &Lab, name: &str) -> Option<f64> {
    let (code, body) = lab.http_get(&lab.state.nodes[0], "/metrics")?;
    if code != 200 {
        return None;
    }
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// One tweed round for N peers.
struct TweedRound {
    /// Writing the N leases one by one through the store API.
    write_s: f64,
    /// From the start of writing until the kernel held everything.
    add_s: f64,
    /// ... until the first dump that saw any entry.
    first_entry_s: f64,
    /// Deleting the N leases through the store API.
    remove_write_s: f64,
    /// From the first delete until the kernel was clean.
    remove_s: f64,
    /// File store only: all N lease files appear at once (renamed into
    /// place from a staging store); time from the first rename until the
    /// kernel held everything, and the time the renames took.
    burst_add_s: Option<f64>,
    burst_rm_s: Option<f64>,
    burst_move_ms: Option<f64>,
    /// Reconcile passes during the incremental add.
    passes: f64,
    dump_ms: f64,
    hwm: u64,
    rss: u64,
}

/// A runtime whose futures run with the calling thread inside the lab's
/// underlay namespace (where the lab's etcd listens; harmless for files).
struct StoreRt {
    rt: tokio::runtime::Runtime,
    ns: NetNs,
}

impl StoreRt {
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.ns
            .run(|| self.rt.block_on(f))
            .expect("enter the underlay namespace")
    }
}

/// Runs `act` with a poller watching for `want` entries of each kind;
/// returns (how long `act` took, when the kernel got there — both from
/// the start of `act` —, when the first change was seen, dump times).
fn phase(
    lab: &Lab,
    poll: Duration,
    want: usize,
    what: &str,
    act: impl FnOnce(),
) -> (f64, f64, f64, Vec<f64>) {
    let node = &lab.state.nodes[0];
    let poller = Poller::start(&node.ns, DEVICE, poll, move |c| {
        c.routes == want && c.neighbours == want && c.fdb == want
    });
    let t0 = Instant::now();
    act();
    let acted = t0.elapsed();
    let r = poller.finish();
    let Some(done) = r.done_at else {
        panic!(
            "{what}: the kernel did not reach {want} entries of each kind within {}s (it holds {:?})\n{}",
            DEADLINE.as_secs(),
            r.last,
            lab.agent_logs()
        );
    };
    let first = r
        .first_change_at
        .map(|t| (t - t0).as_secs_f64())
        .unwrap_or(f64::NAN);
    (
        acted.as_secs_f64(),
        (done - t0).as_secs_f64(),
        first,
        r.dump_ms,
    )
}

fn tweed_round(
    rt: &StoreRt,
    store: &AnyStore,
    staging: Option<&std::path::Path>,
    lab: &Lab,
    peers: &[Peer],
    poll: Duration,
) -> TweedRound {
    let node = &lab.state.nodes[0];
    let pid = node.agent_pid.expect("agent pid");
    let n = peers.len();
    let leases: Vec<Lease> = peers.iter().enumerate().map(|(i, p)| p.lease(i)).collect();
    let runs_before = metric(lab, "tweed_reconcile_runs_total").unwrap_or(f64::NAN);

    // Incremental: the leases are created one after the other.
    let (write_s, add_s, first_entry_s, mut dump_ms) = phase(lab, poll, n, "add", || {
        rt.block_on(async {
            for l in &leases {
                match store.create(l, Duration::from_secs(86400)).await {
                    Ok(Created::Yes(_)) => {}
                    Ok(Created::Taken) => panic!("lease {} already taken", l.key),
                    Err(e) => panic!("writing lease {}: {e}", l.key),
                }
            }
        })
    });
    verify(&node.ns, DEVICE, peers);
    let (hwm, rss) = memory(pid);
    let runs_after = metric(lab, "tweed_reconcile_runs_total").unwrap_or(f64::NAN);

    let (remove_write_s, remove_s, _, d) = phase(lab, poll, 0, "remove", || {
        rt.block_on(async {
            for l in &leases {
                store
                    .delete(&l.key)
                    .await
                    .unwrap_or_else(|e| panic!("deleting lease {}: {e}", l.key));
            }
        })
    });
    dump_ms.extend(d);

    // Burst (file store): the same records, made by LeaseStore::create in
    // a staging store on the same file system, renamed into the live
    // store in one go — the final step of the store's own atomic write —
    // and renamed back out for the removal.
    let (mut burst_add_s, mut burst_rm_s, mut burst_move_ms) = (None, None, None);
    if let Some(staging) = staging {
        let live = lab.state.dir().join("store").join("subnets");
        let names: Vec<String> = leases.iter().map(|l| l.key.to_string()).collect();
        let shuttle = |from: &std::path::Path, to: &std::path::Path| {
            for name in &names {
                std::fs::rename(from.join(name), to.join(name))
                    .unwrap_or_else(|e| panic!("rename lease {name}: {e}"));
            }
        };
        let (moved, add, _, d) = phase(lab, poll, n, "burst add", || shuttle(staging, &live));
        dump_ms.extend(d);
        verify(&node.ns, DEVICE, peers);
        let (_, rm, _, d) = phase(lab, poll, 0, "burst remove", || shuttle(&live, staging));
        dump_ms.extend(d);
        burst_add_s = Some(add);
        burst_rm_s = Some(rm);
        burst_move_ms = Some(moved * 1e3);
    }
    let (hwm2, rss2) = memory(pid);
    TweedRound {
        write_s,
        add_s,
        first_entry_s,
        remove_write_s,
        remove_s,
        burst_add_s,
        burst_rm_s,
        burst_move_ms,
        passes: runs_after - runs_before,
        dump_ms: percentile(&dump_ms, 90.0),
        hwm: hwm.max(hwm2),
        rss: rss.max(rss2),
    }
}

/// One floor round: a fresh namespace, the device, two batches in, two out.
struct FloorRound {
    add_s: f64,
    remove_s: f64,
}

fn floor_round(
    scratch: &mut Scratch,
    name: &str,
    peers: &[Peer],
    dir: &std::path::Path,
) -> FloorRound {
    let ns = scratch.netns(name);
    ipn(&ns, "link add eth0 type veth peer name eth0p");
    ipn(&ns, "addr add 198.18.0.1/24 dev eth0");
    ipn(&ns, "link set eth0p up");
    ipn(&ns, "link set eth0 up");
    ipn(
        &ns,
        "link add flannel.1 address 02:42:0a:80:00:01 mtu 1450 type vxlan id 1 local 198.18.0.1 dev eth0 dstport 8472 nolearning",
    );
    ipn(&ns, "addr add 10.128.0.0/32 dev flannel.1");
    ipn(&ns, "link set flannel.1 up");

    let mut ip_add = String::new();
    let mut br_add = String::new();
    let mut ip_del = String::new();
    let mut br_del = String::new();
    for p in peers {
        let gw = p.subnet.network();
        ip_add.push_str(&format!(
            "route replace {} via {gw} dev flannel.1 onlink proto {PROTO}\n",
            p.subnet
        ));
        br_add.push_str(&format!(
            "fdb replace {} dev flannel.1 dst {} self permanent\n",
            p.mac, p.public
        ));
        ip_del.push_str(&format!("route del {} via {gw} dev flannel.1\n", p.subnet));
        br_del.push_str(&format!(
            "fdb del {} dev flannel.1 dst {} self\n",
            p.mac, p.public
        ));
    }
    for p in peers {
        ip_add.push_str(&format!(
            "neigh replace {} lladdr {} dev flannel.1 nud permanent\n",
            p.subnet.network(),
            p.mac
        ));
        ip_del.push_str(&format!("neigh del {} dev flannel.1\n", p.subnet.network()));
    }
    let files: Vec<std::path::PathBuf> = [
        ("ip-add", &ip_add),
        ("br-add", &br_add),
        ("ip-del", &ip_del),
        ("br-del", &br_del),
    ]
    .iter()
    .map(|(f, text)| {
        let path = dir.join(f);
        std::fs::write(&path, text).expect("write batch");
        path
    })
    .collect();
    let batch = |tool: &str, file: &std::path::Path| {
        run(Command::new(tool).args(["-n", &ns, "-batch", &file.display().to_string()]));
    };
    let t = Instant::now();
    batch("ip", &files[0]);
    batch("bridge", &files[1]);
    let add = t.elapsed();
    verify(&ns, "flannel.1", peers);
    let t = Instant::now();
    batch("ip", &files[2]);
    batch("bridge", &files[3]);
    let remove = t.elapsed();
    let handle = NetNs::named(&ns).expect("netns");
    let c = count(
        &mut Netlink::in_netns(&handle).expect("netlink"),
        "flannel.1",
    );
    assert_eq!(c, Counts::default(), "floor: entries left after removal");
    // Deleting the namespace is not part of the figure.
    let _ = Command::new("ip").args(["netns", "del", &ns]).output();
    scratch.namespaces.retain(|x| x != &ns);
    FloorRound {
        add_s: add.as_secs_f64(),
        remove_s: remove.as_secs_f64(),
    }
}

fn main() {
    if filtered_out("control_plane") {
        return;
    }
    require_root("control_plane");
    catch_interrupts();
    let sizes: Vec<usize> = std::env::var("TWEED_BENCH_PEERS")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("TWEED_BENCH_PEERS: comma-separated numbers")
        })
        .collect();
    assert!(
        sizes.iter().all(|n| (1..=30000).contains(n)),
        "1..=30000 peers"
    );
    let rounds = env_usize("TWEED_BENCH_ROUNDS", 3).max(1);
    let poll = Duration::from_millis(env_usize("TWEED_BENCH_POLL_MS", 50).max(1) as u64);
    let store_kind = std::env::var("TWEED_BENCH_STORE").unwrap_or_else(|_| "file".into());
    assert!(
        ["file", "etcd"].contains(&store_kind.as_str()),
        "TWEED_BENCH_STORE: file or etcd"
    );
    let binaries = binaries();
    let tag = std::process::id() % 10000;

    println!(
        "control_plane: one tweedd (vxlan, {store_kind} store) facing N peer leases, against ip/bridge -batch"
    );
    println!("{}", machine_line());
    println!("{}", binaries_line(&binaries));
    println!("tools: {}", tool_version(&["ip", "-V"]));
    println!("date: {}", today());

    let mut overrides = serde_json::Map::new();
    overrides.insert("Network".into(), json!("10.128.0.0/9"));
    overrides.insert("SubnetLen".into(), json!(24));
    let spec = LabSpec {
        name: format!("cp{tag}"),
        nodes: 1,
        backend: "vxlan".into(),
        store: store_kind.clone(),
        pods_per_node: 0,
        ip_masq: true,
        ipv6: false,
        net_conf_overrides: overrides,
        binaries: binaries.clone(),
    };
    let guard = LabGuard(Some(
        Lab::up(&spec).unwrap_or_else(|e| panic!("lab up: {e}")),
    ));
    let lab = guard.lab();
    let node = &lab.state.nodes[0];
    let own: Ipv4Net = {
        let key: LeaseKey = lab
            .lease_of(&node.name)
            .expect("agent lease")
            .parse()
            .expect("key");
        key.ipv4.expect("ipv4 lease")
    };
    let pid = node.agent_pid.expect("agent pid");
    let (hwm0, rss0) = memory(pid);
    println!(
        "lab {}: agent pid {pid} holds {own}; idle VmHWM {:.1} MiB, VmRSS {:.1} MiB",
        lab.state.name,
        hwm0 as f64 / 1048576.0,
        rss0 as f64 / 1048576.0
    );

    // The bench's own handle on the store: tweedd's store code. For etcd,
    // the runtime lives on a thread inside the underlay namespace, where
    // the lab's etcd listens.
    let rt = StoreRt {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
        ns: NetNs::named(&lab.state.underlay_ns).expect("underlay ns"),
    };
    let url = lab.state.store_url.clone();
    let store = rt
        .block_on(AnyStore::open(&url, EtcdOptions::default()))
        .unwrap_or_else(|e| panic!("open store {url}: {e}"));

    let mut scratch = Scratch::default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut tweed: BTreeMap<usize, Vec<TweedRound>> = BTreeMap::new();
    let mut floor: BTreeMap<usize, Vec<FloorRound>> = BTreeMap::new();

    // The burst phases' records, made once per count by tweedd's store
    // code in a staging store beside the live one (same file system).
    let mut staging: BTreeMap<usize, std::path::PathBuf> = BTreeMap::new();
    if store_kind == "file" {
        for &n in &sizes {
            let root = lab.state.dir().join(format!("staging-{n}"));
            let fs = tweedd::store::file::FileStore::open(&root).expect("staging store");
            let ps = peers(n, own);
            rt.block_on(async {
                for (i, p) in ps.iter().enumerate() {
                    let l = p.lease(i);
                    match fs.create(&l, Duration::from_secs(86400)).await {
                        Ok(Created::Yes(_)) => {}
                        other => panic!("staging lease {}: {other:?}", l.key),
                    }
                }
            });
            staging.insert(n, root.join("subnets"));
        }
    }

    println!(
        "{} rounds per count, counts {:?}, kernel polled every {} ms; load average before: {}",
        rounds,
        sizes,
        poll.as_millis(),
        loadavg()
    );
    println!();
    println!(
        "per round (seconds; add/remove from the first write or delete until the kernel was complete/clean):"
    );
    println!(
        "{:>3} {:>5} {:>6} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} | {:>7} {:>7} {:>6} | {:>6} {:>6} {:>5} {:>5} | {:>7} {:>7}",
        "rnd",
        "N",
        "side",
        "write",
        "add",
        "lag",
        "first",
        "rm wr",
        "remove",
        "b.add",
        "b.rm",
        "b.mv",
        "passes",
        "dump",
        "HWM",
        "RSS",
        "add",
        "remove"
    );
    println!(
        "{:>3} {:>5} {:>6} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} | {:>7} {:>7} {:>6} | {:>6} {:>6} {:>5} {:>5} | {:>7} {:>7}",
        "", "", "", "", "", "", "", "", "", "", "", "ms", "", "p90ms", "MiB", "MiB", "", ""
    );
    let opt = |v: Option<f64>, prec: usize| {
        v.map(|x| format!("{x:.prec$}"))
            .unwrap_or_else(|| "-".into())
    };
    for round in 0..rounds {
        for &n in &sizes {
            check_interrupted();
            let ps = peers(n, own);
            let mut do_tweed = || {
                let r = tweed_round(
                    &rt,
                    &store,
                    staging.get(&n).map(|p| p.as_path()),
                    lab,
                    &ps,
                    poll,
                );
                println!(
                    "{:>3} {:>5} {:>6} | {:>7.3} {:>7.3} {:>7.3} {:>7.3} | {:>7.3} {:>7.3} | {:>7} {:>7} {:>6} | {:>6} {:>6.1} {:>5.1} {:>5.1} |",
                    round + 1,
                    n,
                    "tweed",
                    r.write_s,
                    r.add_s,
                    r.add_s - r.write_s,
                    r.first_entry_s,
                    r.remove_write_s,
                    r.remove_s,
                    opt(r.burst_add_s, 3),
                    opt(r.burst_rm_s, 3),
                    opt(r.burst_move_ms, 0),
                    r.passes,
                    r.dump_ms,
                    r.hwm as f64 / 1048576.0,
                    r.rss as f64 / 1048576.0
                );
                tweed.entry(n).or_default().push(r);
            };
            let mut do_floor = |scratch: &mut Scratch| {
                let r = floor_round(scratch, &format!("cpf{tag}"), &ps, tmp.path());
                println!(
                    "{:>3} {:>5} {:>6} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} | {:>7} {:>7} {:>6} | {:>6} {:>6} {:>5} {:>5} | {:>7.3} {:>7.3}",
                    round + 1,
                    n,
                    "floor",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    r.add_s,
                    r.remove_s
                );
                floor.entry(n).or_default().push(r);
            };
            if round % 2 == 0 {
                do_tweed();
                do_floor(&mut scratch);
            } else {
                do_floor(&mut scratch);
                do_tweed();
            }
        }
    }
    println!("load average after: {}", loadavg());
    let (hwm_end, _) = memory(pid);

    println!();
    println!("medians over {rounds} rounds (seconds):");
    println!(
        "{:>5} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} | {:>7} {:>7} | {:>7} {:>7} {:>7}",
        "N",
        "floor",
        "add",
        "ratio",
        "store",
        "b.add",
        "ratio",
        "floor",
        "remove",
        "b.rm",
        "ratio",
        "lag"
    );
    println!(
        "{:>5} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} | {:>7} {:>7} | {:>7} {:>7} {:>7}",
        "", "add", "", "", "write", "", "", "rm", "", "", "b.rm", "add"
    );
    let med = |v: Vec<f64>| median(&v);
    let mut verdicts = Vec::new();
    for &n in &sizes {
        let t = &tweed[&n];
        let f = &floor[&n];
        let add = med(t.iter().map(|r| r.add_s).collect());
        let write = med(t.iter().map(|r| r.write_s).collect());
        let lag = med(t.iter().map(|r| r.add_s - r.write_s).collect());
        let rm = med(t.iter().map(|r| r.remove_s).collect());
        let badd = med(t.iter().filter_map(|r| r.burst_add_s).collect());
        let brm = med(t.iter().filter_map(|r| r.burst_rm_s).collect());
        let fadd = med(f.iter().map(|r| r.add_s).collect());
        let frm = med(f.iter().map(|r| r.remove_s).collect());
        println!(
            "{n:>5} | {fadd:>7.3} {add:>7.3} {:>7.2} {write:>7.3} | {badd:>7.3} {:>7.2} | {frm:>7.3} {rm:>7.3} | {brm:>7.3} {:>7.2} {lag:>7.3}",
            add / fadd,
            badd / fadd,
            brm / frm
        );
        verdicts.push(format!(
            "  N={n}: add from the first write (store writes included) / floor = {:.2}  target <= {TARGET_RATIO}: {}",
            add / fadd,
            yes_no(add / fadd <= TARGET_RATIO)
        ));
        if !badd.is_nan() {
            verdicts.push(format!(
                "  N={n}: add with all leases appearing at once (agent only) / floor = {:.2}  target <= {TARGET_RATIO}: {}",
                badd / fadd,
                yes_no(badd / fadd <= TARGET_RATIO)
            ));
            verdicts.push(format!(
                "  N={n}: removal, all at once / floor = {:.2}; one by one: {:.2}",
                brm / frm,
                rm / frm
            ));
        }
    }
    println!();
    for v in verdicts {
        println!("{v}");
    }
    let max_n = *sizes.iter().max().expect("sizes");
    let hwm_max = tweed[&max_n]
        .iter()
        .map(|r| r.hwm)
        .max()
        .unwrap_or(0)
        .max(hwm_end);
    println!(
        "  agent peak RSS (VmHWM) with {max_n} peers: {:.1} MiB ({hwm_max} bytes)  target <= 20 MB: {}",
        hwm_max as f64 / 1048576.0,
        yes_no(hwm_max <= TARGET_HWM_BYTES)
    );
    println!(
        "  poll resolution: the kernel is dumped every {} ms (a dump of the three tables took up to the 'dump' column, p90); \
         'add'/'remove' end when the first complete (or empty) dump ended",
        poll.as_millis()
    );

    drop(store);
    drop(rt);
    scratch.cleanup();
    drop(guard);
    println!(
        "cleanup: lab down (store, staging stores and agent with it), floor namespaces deleted"
    );
}
