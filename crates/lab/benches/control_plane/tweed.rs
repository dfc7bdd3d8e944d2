//! tweed's side: one agent (node n1 of a one-node lab) and the leases the
//! bench writes, deletes, renames in and out, and an agent start with the
//! leases already there.

use std::path::Path;
use std::time::{Duration, Instant};

use tweed_lab::Lab;
use tweed_netlink::NetNs;
use tweedd::lease::Lease;
use tweedd::store::any::AnyStore;
use tweedd::store::{Created, LeaseStore};

use crate::common::ipn;
use crate::kernel::{Counts, Tables, Watch, count_in, verify};
use crate::peers::Peer;

pub const DEVICE: &str = "tweed.1";
const DEADLINE: Duration = Duration::from_secs(300);
const TTL: Duration = Duration::from_secs(86400);

/// A runtime whose futures run with the calling thread inside the lab's
/// underlay namespace (where the lab's etcd listens; harmless for files).
pub struct StoreRt {
    pub rt: tokio::runtime::Runtime,
    pub ns: NetNs,
}

impl StoreRt {
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.ns
            .run(|| self.rt.block_on(f))
            .expect("enter the underlay namespace")
    }
}

/// One tweed round for N peers (seconds unless said otherwise).
#[derive(Default)]
pub struct TweedRound {
    /// Creating the N leases one after the other through the store API.
    pub write_s: f64,
    /// From the first create until the kernel held everything.
    pub add_s: f64,
    /// ... until the first entry arrived.
    pub first_s: f64,
    /// Deleting the N leases one by one, and until the kernel was clean.
    pub remove_write_s: f64,
    pub remove_s: f64,
    /// File store: the N lease files appear at once (renamed in from a
    /// staging store), and later vanish at once; the renames' duration.
    pub burst_add_s: Option<f64>,
    pub burst_rm_s: Option<f64>,
    pub burst_move_ms: Option<f64>,
    /// The agent started with the N leases in the store and nothing in the
    /// kernel (its device deleted): from spawning it until complete.
    pub start_s: f64,
    /// Reconcile passes during the one-by-one add.
    pub passes: f64,
    /// VmHWM of the agent that went through the add and remove phases
    /// (since its last start), and of the agent started facing N peers.
    pub hwm_churn: u64,
    pub hwm_start: u64,
    /// The kernel dropped notifications in some phase (end found by dumps).
    pub dumped: bool,
}

/// `VmHWM` and `VmRSS` of a process, bytes.
pub fn memory(pid: i32) -> (u64, u64) {
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

fn agent_pid(lab: &Lab) -> i32 {
    lab.state.nodes[0].agent_pid.expect("agent pid")
}

/// Runs `act` while watching the node's kernel go from `initial` to
/// `want`; returns (how long `act` took, when the kernel got there, when
/// its first entry changed — all from the start of `act`).
fn phase(
    lab: &mut Lab,
    r: &mut TweedRound,
    initial: Tables,
    want: Counts,
    what: &str,
    act: impl FnOnce(&mut Lab),
) -> (f64, f64, f64) {
    let ns = lab.state.nodes[0].ns.clone();
    assert_eq!(count_in(&ns, DEVICE), initial.counts(), "{what}: before");
    let watch = Watch::start(&ns, DEVICE, initial, want, DEADLINE);
    let t0 = Instant::now();
    act(lab);
    let acted = t0.elapsed();
    let w = watch.finish();
    r.dumped |= w.dumped;
    let Some(done) = w.done_at else {
        panic!(
            "{what}: the kernel did not reach {want:?} within {}s (it holds {:?})\n{}",
            DEADLINE.as_secs(),
            w.last,
            lab.agent_logs()
        );
    };
    let since = |t: Option<Instant>| t.map_or(f64::NAN, |t| (t - t0).as_secs_f64());
    (
        acted.as_secs_f64(),
        since(Some(done)),
        since(w.first_change_at),
    )
}

pub fn tweed_round(
    rt: &StoreRt,
    store: &AnyStore,
    staging: Option<&Path>,
    lab: &mut Lab,
    peers: &[Peer],
) -> TweedRound {
    let ns = lab.state.nodes[0].ns.clone();
    let n = peers.len();
    let leases: Vec<Lease> = peers.iter().enumerate().map(|(i, p)| p.lease(i)).collect();
    let (none, all) = (Tables::default(), Tables::of(peers));
    let mut r = TweedRound::default();
    let runs_before = metric(lab, "tweed_reconcile_runs_total").unwrap_or(f64::NAN);

    // One by one: LeaseStore::create per lease (lock, write, fsync, rename).
    let create_all = |_: &mut Lab| {
        rt.block_on(async {
            for l in &leases {
                match store.create(l, TTL).await {
                    Ok(Created::Yes(_)) => {}
                    Ok(Created::Taken) => panic!("lease {} already taken", l.key),
                    Err(e) => panic!("writing lease {}: {e}", l.key),
                }
            }
        })
    };
    (r.write_s, r.add_s, r.first_s) =
        phase(lab, &mut r, none.clone(), Counts::all(n), "add", create_all);
    verify(&ns, DEVICE, peers);
    r.passes = metric(lab, "tweed_reconcile_runs_total").unwrap_or(f64::NAN) - runs_before;
    let delete_all = |_: &mut Lab| {
        rt.block_on(async {
            for l in &leases {
                store
                    .delete(&l.key)
                    .await
                    .unwrap_or_else(|e| panic!("deleting lease {}: {e}", l.key));
            }
        })
    };
    (r.remove_write_s, r.remove_s, _) = phase(
        lab,
        &mut r,
        all.clone(),
        Counts::default(),
        "remove",
        delete_all,
    );

    // All at once (file store): the same records, made by LeaseStore::create
    // in a staging store on the same file system, renamed into the live
    // store in one go — the final step of the store's own atomic write.
    let live = lab.state.dir().join("store").join("subnets");
    let names: Vec<String> = leases.iter().map(|l| l.key.to_string()).collect();
    let shuttle = |from: &Path, to: &Path| {
        for name in &names {
            std::fs::rename(from.join(name), to.join(name))
                .unwrap_or_else(|e| panic!("rename lease {name}: {e}"));
        }
    };
    if let Some(staging) = staging {
        let (moved, add, _) = phase(
            lab,
            &mut r,
            none.clone(),
            Counts::all(n),
            "burst add",
            |_| shuttle(staging, &live),
        );
        verify(&ns, DEVICE, peers);
        r.burst_add_s = Some(add);
        r.burst_move_ms = Some(moved * 1e3);
    } else {
        rt.block_on(async {
            for l in &leases {
                store.create(l, TTL).await.expect("lease");
            }
        });
    }
    r.hwm_churn = memory(agent_pid(lab)).0;

    // A start facing N peers: the node as after a reboot (the device and
    // with it every entry gone), the leases in the store.
    lab.stop_agent("n1").expect("stop agent");
    ipn(&ns, &format!("link del {DEVICE}"));
    (_, r.start_s, _) = phase(lab, &mut r, none, Counts::all(n), "start", |lab| {
        lab.start_agent("n1").expect("start agent")
    });
    verify(&ns, DEVICE, peers);
    r.hwm_start = memory(agent_pid(lab)).0;

    if let Some(staging) = staging {
        let (_, rm, _) = phase(lab, &mut r, all, Counts::default(), "burst remove", |_| {
            shuttle(&live, staging)
        });
        r.burst_rm_s = Some(rm);
    } else {
        rt.block_on(async {
            for l in &leases {
                store.delete(&l.key).await.expect("delete lease");
            }
        });
        crate::common::wait_until(60.0, "the kernel clean again", || {
            count_in(&ns, DEVICE) == Counts::default()
        });
    }
    r
}
