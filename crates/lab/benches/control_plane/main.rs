//! The control plane at scale: one agent (a 1-node lab, vxlan) facing N
//! peer leases that the bench writes into the store, against the floor —
//! `ip -batch` and `bridge -batch` programming the same 3×N entries on an
//! identical hand-made VXLAN device in a fresh namespace.
//!
//! Run as root: `sudo cargo bench -p tweed-lab --bench control_plane`
//! (`cargo build --release --workspace` first, with the same
//! CARGO_TARGET_DIR). Knobs: `TWEED_BENCH_PEERS` (comma-separated peer
//! counts, default `1000,5000`), `TWEED_BENCH_ROUNDS` (rounds per count,
//! default 3), `TWEED_BENCH_STORE` (`file`, the default, or `etcd`).
//! See docs/benchmarks.md.
//!
//! tweed, per round and count N, each phase timed until the kernel's own
//! notifications show every route (protocol 77), permanent neighbour and
//! FDB entry of the N peers in place (or gone), then checked by a dump:
//! 1. one by one: the N leases created one after the other with tweedd's
//!    store code (`LeaseStore::create`), then deleted the same way;
//! 2. all at once (file store): the N records, made beforehand in a
//!    staging store, renamed into the live store in one go;
//! 3. start: the agent stopped, its VXLAN device deleted (as after a
//!    reboot), the agent started with the N leases in the store;
//! 4. all at once, removal: the N files renamed out again.
//!
//! The agent's peak RSS (`VmHWM`) is read after phase 2 (the agent that
//! went through 1 and 2 since its last start) and after phase 3 (a fresh
//! agent facing N peers).
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

#[path = "../common/mod.rs"]
mod common;
mod floor;
mod kernel;
mod peers;
mod tweed;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use floor::{FloorRound, floor_round};
use ipnet::Ipv4Net;
use serde_json::json;
use tweed::{StoreRt, TweedRound, memory, tweed_round};
use tweed_lab::{Lab, LabSpec};
use tweed_netlink::NetNs;
use tweedd::lease::LeaseKey;
use tweedd::store::any::AnyStore;
use tweedd::store::etcd::EtcdOptions;
use tweedd::store::{Created, LeaseStore};

const TARGET_RATIO: f64 = 2.0;
const TARGET_HWM_BYTES: u64 = 20_000_000;
const MIB: f64 = 1048576.0;

fn main() {
    if filtered_out("control_plane") {
        return;
    }
    require_root("control_plane");
    catch_interrupts();
    let sizes = env_list("TWEED_BENCH_PEERS", "1000,5000");
    assert!(
        sizes.iter().all(|n| (1..=30000).contains(n)),
        "1..=30000 peers"
    );
    let rounds = env_usize("TWEED_BENCH_ROUNDS", 3).max(1);
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
        underlay_subnets: 1,
        net_conf_overrides: overrides,
        vm_nodes: Vec::new(),
        vm_options: Default::default(),
        binaries: binaries.clone(),
    };
    let mut guard = LabGuard(Some(
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
        hwm0 as f64 / MIB,
        rss0 as f64 / MIB
    );

    // The bench's own handle on the store: tweedd's store code. For etcd,
    // the runtime runs inside the underlay namespace, where etcd listens.
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
    let staging = if store_kind == "file" {
        make_staging(&rt, lab, &sizes, own)
    } else {
        BTreeMap::new()
    };

    let mut scratch = Scratch::default();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut tweed: BTreeMap<usize, Vec<TweedRound>> = BTreeMap::new();
    let mut floor: BTreeMap<usize, Vec<FloorRound>> = BTreeMap::new();
    println!(
        "{rounds} rounds per count, counts {sizes:?}; load average before: {}",
        loadavg()
    );
    println!();
    for round in 0..rounds {
        for &n in &sizes {
            check_interrupted();
            let ps = peers::peers(n, own);
            let label = format!("round {} N={n}", round + 1);
            let mut do_tweed = || {
                let stage = staging.get(&n).map(PathBuf::as_path);
                let r = tweed_round(&rt, &store, stage, guard.lab_mut(), &ps);
                print_tweed(&label, &r);
                tweed.entry(n).or_default().push(r);
            };
            let mut do_floor = |scratch: &mut Scratch| {
                let r = floor_round(scratch, &format!("cpf{tag}"), &ps, tmp.path());
                println!(
                    "{label} floor: add {:.3} s, remove {:.3} s",
                    r.add_s, r.remove_s
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
    summary(&sizes, rounds, &tweed, &floor);

    drop(store);
    drop(rt);
    scratch.cleanup();
    drop(guard);
    println!(
        "cleanup: lab down (store, staging stores and agent with it), floor namespaces deleted"
    );
}

/// The all-at-once phases' records, made once per count by tweedd's store
/// code in a staging store beside the live one (same file system).
fn make_staging(
    rt: &StoreRt,
    lab: &Lab,
    sizes: &[usize],
    own: Ipv4Net,
) -> BTreeMap<usize, PathBuf> {
    let mut staging = BTreeMap::new();
    for &n in sizes {
        let root = lab.state.dir().join(format!("staging-{n}"));
        let fs = tweedd::store::file::FileStore::open(&root).expect("staging store");
        rt.block_on(async {
            for (i, p) in peers::peers(n, own).iter().enumerate() {
                let l = p.lease(i);
                match fs.create(&l, std::time::Duration::from_secs(86400)).await {
                    Ok(Created::Yes(_)) => {}
                    other => panic!("staging lease {}: {other:?}", l.key),
                }
            }
        });
        staging.insert(n, root.join("subnets"));
    }
    staging
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.3}"))
}

fn print_tweed(label: &str, r: &TweedRound) {
    println!(
        "{label} tweed: one by one: add {:.3} s (writes {:.3}, lag {:.3}, first entry {:.3}, {} passes), \
         remove {:.3} s (deletes {:.3}); all at once: add {} s (renames {} ms), remove {} s; \
         start {:.3} s; VmHWM {:.1} MiB after the adds, {:.1} MiB fresh start{}",
        r.add_s,
        r.write_s,
        r.add_s - r.write_s,
        r.first_s,
        r.passes,
        r.remove_s,
        r.remove_write_s,
        opt(r.burst_add_s),
        r.burst_move_ms
            .map_or_else(|| "-".into(), |m| format!("{m:.0}")),
        opt(r.burst_rm_s),
        r.start_s,
        r.hwm_churn as f64 / MIB,
        r.hwm_start as f64 / MIB,
        if r.dumped {
            " (notifications dropped: ends found by dumping)"
        } else {
            ""
        }
    );
}

fn summary(
    sizes: &[usize],
    rounds: usize,
    tweed: &BTreeMap<usize, Vec<TweedRound>>,
    floor: &BTreeMap<usize, Vec<FloorRound>>,
) {
    println!();
    println!("medians over {rounds} rounds (seconds), ratio = tweed / floor:");
    println!(
        "{:>5} | {:>7} | {:>7} {:>6} | {:>7} {:>6} | {:>7} {:>6} {:>6} | {:>7} | {:>7} {:>6} | {:>7}",
        "N",
        "floor",
        "at once",
        "ratio",
        "start",
        "ratio",
        "1 by 1",
        "ratio",
        "lag",
        "floor",
        "at once",
        "ratio",
        "1 by 1"
    );
    println!(
        "{:>5} | {:>7} | {:>14} | {:>14} | {:>21} | {:>7} | {:>14} | {:>7}",
        "", "add", "add", "start", "add incl. writes", "remove", "remove", "remove"
    );
    let mut verdicts = Vec::new();
    for &n in sizes {
        let t = &tweed[&n];
        let f = &floor[&n];
        let m = |get: &dyn Fn(&TweedRound) -> Option<f64>| {
            median(&t.iter().filter_map(get).collect::<Vec<_>>())
        };
        let fadd = median(&f.iter().map(|r| r.add_s).collect::<Vec<_>>());
        let frm = median(&f.iter().map(|r| r.remove_s).collect::<Vec<_>>());
        let badd = m(&|r| r.burst_add_s);
        let start = m(&|r| Some(r.start_s));
        let add = m(&|r| Some(r.add_s));
        let lag = m(&|r| Some(r.add_s - r.write_s));
        let brm = m(&|r| r.burst_rm_s);
        let rm = m(&|r| Some(r.remove_s));
        println!(
            "{n:>5} | {fadd:>7.3} | {badd:>7.3} {:>6.2} | {start:>7.3} {:>6.2} | {add:>7.3} {:>6.1} {lag:>6.3} | {frm:>7.3} | {brm:>7.3} {:>6.2} | {rm:>7.3}",
            badd / fadd,
            start / fadd,
            add / fadd,
            brm / frm
        );
        for (what, v) in [
            ("leases appearing all at once", badd),
            ("agent start facing them", start),
        ] {
            if !v.is_nan() {
                verdicts.push(format!(
                    "  N={n}: {what}: {:.2}x the floor  target <= {TARGET_RATIO}x: {}",
                    v / fadd,
                    yes_no(v / fadd <= TARGET_RATIO)
                ));
            }
        }
    }
    println!();
    for v in verdicts {
        println!("{v}");
    }
    let max_n = *sizes.iter().max().expect("sizes");
    let peak = |get: fn(&TweedRound) -> u64| tweed[&max_n].iter().map(get).max().unwrap_or(0);
    for (what, hwm) in [
        ("fresh agent started facing them", peak(|r| r.hwm_start)),
        (
            "agent after the one-by-one and all-at-once adds",
            peak(|r| r.hwm_churn),
        ),
    ] {
        println!(
            "  peak RSS (VmHWM) at {max_n} peers, {what}: {:.1} MiB ({hwm} bytes)  target <= 20 MB: {}",
            hwm as f64 / MIB,
            yes_no(hwm <= TARGET_HWM_BYTES)
        );
    }
}
