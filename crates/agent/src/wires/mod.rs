//! Wires: tweedd's side. The plugin records each pod's declared wire ends
//! (tweed_wire::record); this module publishes them in the node's lease,
//! reads the other nodes' ends, and cables every wire whose two ends exist
//! (see `plan` and `cable`). It also drops the records of pods whose
//! namespace is gone, and reports every end's state for `tweedctl status`.
//!
//! It runs on its own thread, every [`PASS_INTERVAL`] and whenever the
//! peers change, under the wire directory's lock, so it never cables a pod
//! that the plugin is taking apart.

pub mod cable;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tweed_netlink::{NetNs, Netlink};
use tweed_wire::record::{self, DirLock};
use tweed_wire::status::{self, WireState, WireStatus};
use tweed_wire::{Endpoint, WireRecord, wire_name, wire_vni};

use crate::lease::{Lease, WireEnds};
use cable::{CableError, PodEnd, Tunnel};
use plan::{RemoteEnd, Target};

/// How often the records are read and the wires checked.
pub const PASS_INTERVAL: Duration = Duration::from_millis(500);

/// How long a far end may be missing from the store before this node's end
/// is removed: long enough to ride out the far agent's restart (it
/// publishes its ends again within a second or two), short enough that a
/// deleted pod's wire goes away promptly.
const GRACE: Duration = Duration::from_secs(2);

pub enum Input {
    /// The other nodes' leases that publish wire ends.
    Peers(Vec<Arc<Lease>>),
    Stop,
}

/// The ends this node's records declare, for the lease (`WireEnds`).
pub fn local_ends(dir: &std::path::Path) -> WireEnds {
    let (records, _) = record::read_all(dir);
    records
        .iter()
        .flat_map(|r| {
            r.endpoints()
                .map(|(e, w)| (e.to_string(), w.peer.to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub struct WireController {
    pub dir: PathBuf,
    pub node: Netlink,
    /// This node's underlay address (the tunnels' local end).
    pub local_ip: Option<IpAddr>,
    pub port: u16,
    pub mtu: u32,
    /// VNIs a wire must not take (the pod network's, the segments').
    pub reserved_vnis: Vec<u32>,
}

struct State {
    remote: BTreeMap<Endpoint, RemoteEnd>,
    /// When each far end was last seen in the store.
    last_seen: HashMap<Endpoint, Instant>,
    /// Whether the peers have been heard at all: until then nothing is
    /// removed (a starting agent knows no far ends yet).
    heard: bool,
    last_report: Vec<WireStatus>,
}

impl WireController {
    pub fn run(mut self, rx: Receiver<Input>) {
        let mut st = State {
            remote: BTreeMap::new(),
            last_seen: HashMap::new(),
            heard: false,
            last_report: Vec::new(),
        };
        loop {
            match rx.recv_timeout(PASS_INTERVAL) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Input::Peers(leases)) => {
                    // Only the newest set matters.
                    let mut latest = leases;
                    while let Ok(next) = rx.try_recv() {
                        match next {
                            Input::Peers(l) => latest = l,
                            Input::Stop => return,
                        }
                    }
                    st.remote = remote_ends(&latest);
                    st.heard = true;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.pass(&mut st);
        }
    }

    fn pass(&mut self, st: &mut State) {
        let lock = match DirLock::take(&self.dir) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot lock the wire directory");
                return;
            }
        };
        let (records, bad) = record::read_all(&self.dir);
        for e in bad {
            tracing::warn!(error = %e, "unreadable wire record skipped");
        }
        // Pods whose namespace is gone lose their records (their devices
        // went with the namespace); the lease then stops publishing them
        // and the far nodes remove their ends.
        let mut live: Vec<(WireRecord, NetNs)> = Vec::new();
        for r in records {
            match NetNs::open(&r.netns) {
                Ok(ns) if ns.id().ok() == Some(r.netns_id) => live.push((r, ns)),
                _ => {
                    tracing::info!(pod = %r.pod, netns = %r.netns.display(), "the pod's namespace is gone; removing its wire record");
                    if let Err(e) = record::remove(&self.dir, &r.container_id, &lock) {
                        tracing::warn!(error = %e, "cannot remove a wire record");
                    }
                }
            }
        }
        let mut where_is: BTreeMap<Endpoint, (usize, Endpoint)> = BTreeMap::new();
        for (i, (r, _)) in live.iter().enumerate() {
            for (end, w) in r.endpoints() {
                where_is.insert(end, (i, w.peer.clone()));
            }
        }
        let declared: BTreeMap<Endpoint, Endpoint> = where_is
            .iter()
            .map(|(e, (_, p))| (e.clone(), p.clone()))
            .collect();
        let now = Instant::now();
        for e in st.remote.keys() {
            st.last_seen.insert(e.clone(), now);
        }
        st.last_seen
            .retain(|_, t| now.duration_since(*t) < GRACE * 10);
        let plans = plan::plan(&declared, &st.remote);

        let mut report = Vec::new();
        for (end, target) in &plans {
            let (i, peer) = &where_is[end];
            let (rec, ns) = &live[*i];
            let pod_end = PodEnd {
                ns,
                ifname: &end.ifname,
            };
            let vni = wire_vni(end, peer);
            let state = if self.reserved_vnis.contains(&vni) {
                Err(CableError::VniTaken(vni))
            } else {
                self.apply(st, &pod_end, end, peer, vni, target, &where_is, &live)
            };
            let state = match state {
                Ok(s) => s,
                Err(why) => {
                    tracing::warn!(pod = %rec.pod, end = %end, %why, "wire end not cabled");
                    WireState::Error {
                        why: why.to_string(),
                    }
                }
            };
            report.push(WireStatus {
                wire: wire_name(end, peer),
                vni,
                local: end.clone(),
                peer: peer.clone(),
                state,
            });
        }
        drop(lock);
        if report != st.last_report {
            if let Err(e) = status::write(&self.dir, &report) {
                tracing::warn!(error = %e, "cannot write the wire report");
            }
            st.last_report = report;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        st: &State,
        pod_end: &PodEnd,
        end: &Endpoint,
        peer: &Endpoint,
        vni: u32,
        target: &Target,
        where_is: &BTreeMap<Endpoint, (usize, Endpoint)>,
        live: &[(WireRecord, NetNs)],
    ) -> Result<WireState, CableError> {
        match target {
            Target::Veth { maker } => {
                if *maker {
                    let (j, _) = &where_is[peer];
                    let far = PodEnd {
                        ns: &live[*j].1,
                        ifname: &peer.ifname,
                    };
                    if cable::ensure_veth(pod_end, &far, vni, self.mtu)? {
                        tracing::info!(wire = %wire_name(end, peer), vni, "wire cabled (veth on this node)");
                    }
                }
                Ok(WireState::Up {
                    kind: "veth".into(),
                    node: None,
                })
            }
            Target::Vxlan { node, remote } => {
                let tunnel = Tunnel {
                    vni,
                    port: self.port,
                    local: self.local_ip,
                    remote: *remote,
                    mtu: self.mtu,
                };
                if cable::ensure_vxlan(&mut self.node, pod_end, &tunnel)? {
                    tracing::info!(wire = %wire_name(end, peer), vni, %node, %remote, "wire cabled (VXLAN to another node)");
                }
                Ok(WireState::Up {
                    kind: "vxlan".into(),
                    node: Some(node.clone()),
                })
            }
            Target::Waiting(why) => {
                // A far end that just vanished from the store may be an
                // agent restarting: keep the cable a little while.
                let recently = !st.remote.contains_key(peer)
                    && st.last_seen.get(peer).is_some_and(|t| t.elapsed() < GRACE);
                if st.heard && !recently && cable::remove(pod_end)? {
                    tracing::info!(wire = %wire_name(end, peer), %why, "far end gone; wire end removed");
                }
                Ok(WireState::WaitingForPeer { why: why.clone() })
            }
        }
    }
}

/// The far ends the other nodes publish, with where they are.
fn remote_ends(leases: &[Arc<Lease>]) -> BTreeMap<Endpoint, RemoteEnd> {
    let mut out = BTreeMap::new();
    for l in leases {
        let Some(ip) = l.attrs.public_ip.map(IpAddr::V4) else {
            continue;
        };
        let node = if l.attrs.node_name.is_empty() {
            ip.to_string()
        } else {
            l.attrs.node_name.clone()
        };
        for (end, peer) in &l.attrs.wire_ends {
            let (Ok(end), Ok(peer)) = (end.parse::<Endpoint>(), peer.parse::<Endpoint>()) else {
                continue;
            };
            out.insert(
                end,
                RemoteEnd {
                    node: node.clone(),
                    ip,
                    peer,
                },
            );
        }
    }
    out
}
