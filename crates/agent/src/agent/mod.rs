//! The agent's life, as a state machine: a start step ([`start`]: pick the
//! underlay, lease a subnet, start the reconciler), then one method per
//! event — the lease acquired, renewed or lost, peers changing in the store,
//! a resync, the heartbeat, publishing this node's attributes — until told
//! to stop. Stopping leaves the data plane and the lease in place, so pods
//! keep working through an agent restart and the node gets its subnet back.

mod peers;
mod start;

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use thiserror::Error;
use tweed_netlink::Netlink;
use tweed_node::{Family, Prefix, SubnetEnv};

use crate::backend::factory::BackendFactory;
use crate::backend::{BackendError, LocalNode};
use crate::backoff::Backoff;
use crate::config::NetConfig;
use crate::health::Health;
use crate::identity::{self, IdentityOptions};
use crate::lease::{Lease, LeaseKey};
use crate::leasing::{self, AcquireError};
use crate::metrics::Metrics;
use crate::reconcile::{Input, PeersMailbox};
use crate::segment_blocks::SegmentBlocks;
use crate::shutdown::Shutdown;
use crate::store::any::AnyStore;
use crate::store::{LeaseStore, StoreError, WatchEvent};
use peers::Peers;

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub node_name: String,
    pub identity: IdentityOptions,
    pub subnet_file: PathBuf,
    pub flannel_subnet_file: Option<PathBuf>,
    pub ip_masq: bool,
    /// Rolling migration from flannel: see [`crate::agent`]'s `--flannel-compat`.
    pub flannel_compat: bool,
    pub health_addr: Option<SocketAddr>,
    pub state_dir: PathBuf,
    /// The plugin's wire records and this agent's report on them.
    pub wire_dir: PathBuf,
    /// Where each addressed segment's block is written for the plugin.
    pub segment_dir: PathBuf,
    /// Guests' DHCP records (`tweed urunc-hook` writes them; tweedd
    /// answers the guests).
    pub guest_dhcp_dir: PathBuf,
    pub lease_ttl: Duration,
    pub renew_interval: Duration,
    pub resync_interval: Duration,
}

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("choosing the underlay interface: {0}")]
    Identity(#[from] identity::IdentityError),
    #[error("{0}")]
    Acquire(#[from] AcquireError),
    #[error("netlink: {0}")]
    Netlink(#[from] tweed_netlink::NetlinkError),
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    #[error("backend: reconciler stopped")]
    ReconcilerStopped,
    #[error("writing the lease file {path}: {source}")]
    SubnetFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("masquerade: {0}")]
    Masq(#[from] crate::masq::MasqError),
    #[error("segment addresses: {0}")]
    SegmentBlocks(StoreError),
    #[error("health server: {0}")]
    Health(std::io::Error),
    #[error("{0}")]
    WireguardKey(#[from] crate::backend::wg_key::KeyError),
}

/// How often the segment bridges' learnt MACs and the wire records are
/// read for publishing.
const ATTRS_SCAN: Duration = Duration::from_secs(1);
/// How often the agent tells its health it is alive, claims missing segment
/// blocks and retries an announcement that failed.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// What every step reads and none changes once the agent has started.
struct Context {
    opts: AgentOptions,
    config: NetConfig,
    store: AnyStore,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    factory: BackendFactory,
}

/// The threads that program the kernel, and how to reach them.
struct Workers {
    tx: std::sync::mpsc::Sender<Input>,
    mailbox: Arc<PeersMailbox>,
    wires: std::sync::mpsc::Sender<crate::wires::Input>,
    reconcile_thread: std::thread::JoinHandle<()>,
    wire_thread: std::thread::JoinHandle<()>,
    guest_dhcp: std::sync::mpsc::Sender<()>,
    guest_dhcp_thread: std::thread::JoinHandle<()>,
}

impl Workers {
    fn stop(self) {
        let _ = self.tx.send(Input::Stop);
        let _ = self.wires.send(crate::wires::Input::Stop);
        let _ = self.guest_dhcp.send(());
        let _ = self.reconcile_thread.join();
        let _ = self.wire_thread.join();
        let _ = self.guest_dhcp_thread.join();
    }
}

/// The running agent: built by [`Agent::start`], then driven by events.
struct Agent {
    cx: Context,
    /// This namespace's netlink socket, for the segment bridges' FDB.
    nl: Netlink,
    /// This node's lease as last written to the store.
    lease: Lease,
    /// What the backend was last handed about this node.
    local: Arc<LocalNode>,
    pod_mtu: u32,
    blocks: SegmentBlocks,
    peers: Peers,
    workers: Workers,
    /// The store revision the watch goes on from.
    revision: u64,
    /// `None` while no watch could be started: the next event is then a
    /// [`watch_ended`](Agent::watch_ended).
    watch: Option<tokio::sync::mpsc::Receiver<WatchEvent>>,
    rewatch: Backoff,
    /// Whether the store's world has been told that this node is ready
    /// (kube: NetworkUnavailable=False).
    announced: bool,
    /// Whether the segments' MACs and wire ends are in the store.
    attrs_published: bool,
}

pub async fn run(opts: AgentOptions, config: NetConfig, store: AnyStore) -> Result<(), AgentError> {
    // First of all: from here on a SIGTERM is heard in every wait.
    let shutdown = Shutdown::listen().map_err(AgentError::Health)?;
    let Some(mut agent) = Agent::start(opts, config, store, shutdown).await? else {
        return Ok(());
    };
    agent.lease_acquired().await?;
    agent.follow().await?;
    agent.stop();
    Ok(())
}

impl Agent {
    /// The first lease is in place and the reconciler has made its first
    /// pass: write the lease file, masquerade, become ready, watch.
    async fn lease_acquired(&mut self) -> Result<(), AgentError> {
        let cx = &self.cx;
        cx.write_subnet_files(&self.lease, self.pod_mtu)?;
        if cx.opts.ip_masq {
            let node_subnets: Vec<IpNet> = [
                self.lease.key.ipv4.map(IpNet::V4),
                self.lease.key.ipv6.map(IpNet::V6),
            ]
            .into_iter()
            .flatten()
            .collect();
            crate::masq::install_for_node(
                &crate::masq::MasqRules {
                    cluster_networks: cx.config.networks(),
                },
                &node_subnets,
            )
            .map_err(AgentError::Masq)?;
        }
        cx.health.set_ready();
        cx.metrics.ready.set(1);
        tracing::info!(subnet = %self.lease.key, file = %cx.opts.subnet_file.display(), mtu = self.pod_mtu, "ready");
        // Telling the store's world (kube: NetworkUnavailable=False) is retried
        // on the heartbeat until it works; the data plane does not wait for it.
        self.announced = cx.announce(&self.lease).await;
        self.watch = cx.start_watch(self.revision).await;
        Ok(())
    }

    /// Follows the store and the timers until told to stop.
    async fn follow(&mut self) -> Result<(), AgentError> {
        let mut renew = tokio::time::interval(self.cx.opts.renew_interval);
        renew.tick().await;
        let mut relist = tokio::time::interval(self.cx.opts.resync_interval);
        relist.tick().await;
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        // What this node publishes beyond its subnet: the MACs behind its end
        // of each segment (so peers send to them directly, segment_macs.rs)
        // and its wire ends (so the far nodes cable their side, wires/).
        let mut attrs_scan = tokio::time::interval(ATTRS_SCAN);
        loop {
            let flow = tokio::select! {
                _ = self.cx.shutdown.requested() => ControlFlow::Break(()),
                _ = heartbeat.tick() => {
                    self.heartbeat().await;
                    ControlFlow::Continue(())
                }
                ev = next_event(&mut self.watch) => match ev {
                    Some(first) => self.peer_events(first).await?,
                    None => self.watch_ended().await?,
                },
                _ = attrs_scan.tick() => {
                    self.publish_attrs().await;
                    ControlFlow::Continue(())
                }
                _ = renew.tick() => self.renew().await?,
                _ = relist.tick() => {
                    self.resync().await;
                    ControlFlow::Continue(())
                }
            };
            if flow.is_break() {
                return Ok(());
            }
        }
    }

    /// Told to stop: the workers end, the data plane and the lease stay.
    fn stop(self) {
        tracing::info!("stopping; the data plane and the lease stay in place");
        self.workers.stop();
    }

    fn send_peers(&self) {
        self.peers
            .send(&self.workers.tx, &self.workers.mailbox, &self.local);
    }

    async fn heartbeat(&mut self) {
        self.cx.health.beat();
        self.blocks
            .claim_missing(self.cx.opts.lease_ttl, false)
            .await;
        if !self.announced {
            self.announced = self.cx.announce(&self.lease).await;
        }
    }

    /// Peers changed in the store (`first` and whatever already waits
    /// behind it), or the watch asks for a resync.
    async fn peer_events(&mut self, first: WatchEvent) -> Result<ControlFlow<()>, AgentError> {
        // Take the whole burst that is already waiting (a thousand nodes
        // joining, a relist's diff): one update of the peers serves all of it.
        let mut batch = vec![first];
        if let Some(rx) = self.watch.as_mut() {
            while let Ok(e) = rx.try_recv() {
                batch.push(e);
            }
        }
        self.cx.metrics.store_events.inc_by(batch.len() as u64);
        tracing::debug!(events = ?batch, "store events");
        let mut lost = false;
        let mut resync = false;
        for e in batch {
            match e {
                WatchEvent::Put(l) if l.key == self.lease.key => {
                    lost |= !l.same_owner(&self.lease.attrs)
                }
                WatchEvent::Put(l) => self.peers.put(l),
                WatchEvent::Delete(k) if k == self.lease.key => lost = true,
                WatchEvent::Delete(k) => self.peers.remove(&k),
                WatchEvent::Resync => resync = true,
            }
        }
        if resync {
            let Some(s) = self.cx.list().await else {
                return Ok(ControlFlow::Break(()));
            };
            lost |= !self.peers.apply_list(s.leases, &self.lease);
        }
        self.send_peers();
        if lost {
            return self.lease_lost().await;
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The watch ended (store restarted, connection lost) or could not be
    /// started: list again and start a new one.
    async fn watch_ended(&mut self) -> Result<ControlFlow<()>, AgentError> {
        self.rewatch.wait().await;
        let Some(s) = self.cx.list().await else {
            return Ok(ControlFlow::Break(()));
        };
        self.revision = s.revision;
        let ours = self.peers.apply_list(s.leases, &self.lease);
        self.send_peers();
        self.watch = self.cx.start_watch(self.revision).await;
        if self.watch.is_some() {
            self.rewatch.reset();
        }
        if !ours {
            return self.lease_lost().await;
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Publishes the segments' local MACs and the wire ends when they
    /// changed, and grows the segment blocks the plugin filled.
    async fn publish_attrs(&mut self) {
        let ttl = self.cx.opts.lease_ttl;
        // A segment whose plugin filled this node's blocks.
        self.blocks.grow_requested(ttl).await;
        let mut wanted = self.lease.clone();
        match crate::segment_macs::local(&mut self.nl, &self.cx.config.segments) {
            Ok(macs) => wanted.attrs.segment_macs = macs,
            Err(e) => tracing::warn!(error = %e, "cannot read the segment bridges' FDB"),
        }
        wanted.attrs.wire_ends = crate::wires::local_ends(&self.cx.opts.wire_dir);
        if wanted.attrs == self.lease.attrs && self.attrs_published {
            return;
        }
        match self.cx.store.renew(&wanted, ttl).await {
            Ok(l) => {
                tracing::debug!(macs = ?l.attrs.segment_macs, wires = ?l.attrs.wire_ends, "published the segments' local MACs and the wire ends");
                self.lease = l;
                self.attrs_published = true;
            }
            Err(e) => {
                self.attrs_published = false;
                self.cx.metrics.store_errors.inc();
                tracing::warn!(error = %e, "cannot publish the segments' local MACs and the wire ends; retrying");
            }
        }
    }

    /// Time to renew the lease (and the segment blocks).
    async fn renew(&mut self) -> Result<ControlFlow<()>, AgentError> {
        let ttl = self.cx.opts.lease_ttl;
        self.blocks.renew(ttl).await;
        match self.cx.store.renew(&self.lease, ttl).await {
            Ok(l) => {
                self.lease = l;
                self.cx.metrics.lease_renewals.inc();
                self.announced = self.cx.announce(&self.lease).await;
            }
            Err(StoreError::LeaseLost(_)) => return self.lease_lost().await,
            Err(e) => {
                self.cx.metrics.store_errors.inc();
                tracing::warn!(error = %e, "lease renewal failed; retrying at the next interval (the data plane is untouched)");
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The periodic relist: whatever a watch may have missed.
    async fn resync(&mut self) {
        if let Ok(s) = self.cx.store.list().await {
            self.peers.apply_list(s.leases, &self.lease);
            self.send_peers();
        }
    }

    /// Our lease vanished or was taken (seen by the watch, a list or a
    /// renewal): get one again; a different subnet means a new backend and
    /// lease file.
    async fn lease_lost(&mut self) -> Result<ControlFlow<()>, AgentError> {
        let Some(recovered) = self.cx.shutdown.unless(self.cx.recover(&self.lease)).await else {
            return Ok(ControlFlow::Break(()));
        };
        let lease = recovered?;
        let changed = lease.key != self.local.lease.key;
        self.lease = lease;
        self.announced = self.cx.announce(&self.lease).await;
        self.local = Arc::new(LocalNode {
            lease: self.lease.clone(),
            ..(*self.local).clone()
        });
        if changed {
            let _ = self
                .workers
                .tx
                .send(Input::SetBackend(self.cx.factory.build(&self.lease.key)));
            self.cx.write_subnet_files(&self.lease, self.pod_mtu)?;
        }
        self.send_peers();
        Ok(ControlFlow::Continue(()))
    }
}

/// The next event of the watch; `None` when it ended or there is none.
async fn next_event(
    watch: &mut Option<tokio::sync::mpsc::Receiver<WatchEvent>>,
) -> Option<WatchEvent> {
    match watch.as_mut() {
        Some(rx) => rx.recv().await,
        // No watch (it could not be started): the caller waits its
        // backoff, lists and tries again.
        None => None,
    }
}

impl Context {
    /// Starts watching the store from `revision`; a failure is logged and
    /// counted, and the caller tries again after a backoff.
    async fn start_watch(&self, revision: u64) -> Option<tokio::sync::mpsc::Receiver<WatchEvent>> {
        match self.store.watch(revision).await {
            Ok(rx) => Some(rx),
            Err(e) => {
                self.metrics.store_errors.inc();
                tracing::warn!(error = %e, "cannot watch the store; listing again and retrying");
                None
            }
        }
    }

    fn write_subnet_files(&self, lease: &Lease, mtu: u32) -> Result<(), AgentError> {
        let (opts, config) = (&self.opts, &self.config);
        let info = SubnetEnv {
            ipv4: lease.key.ipv4.map(|s| {
                let network = config.pools.ipv4.as_ref().map(|p| IpNet::V4(p.network));
                Family::new(network, IpNet::V4(s))
            }),
            ipv6: lease.key.ipv6.map(|s| {
                let network = config.pools.ipv6.as_ref().map(|p| IpNet::V6(p.network));
                Family::new(network, IpNet::V6(s))
            }),
            mtu: Some(mtu),
            ip_masq: opts.ip_masq,
        };
        info.write(&opts.subnet_file, Prefix::Tweed)
            .map_err(|source| AgentError::SubnetFile {
                path: opts.subnet_file.clone(),
                source,
            })?;
        if let Some(path) = &opts.flannel_subnet_file {
            info.write(path, Prefix::Flannel)
                .map_err(|source| AgentError::SubnetFile {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Lists the store, retrying until it answers; `None`: told to stop
    /// first.
    async fn list(&self) -> Option<crate::store::Snapshot> {
        self.shutdown
            .unless(async {
                let mut backoff = Backoff::new(Backoff::STORE);
                loop {
                    match self.store.list().await {
                        Ok(s) => return s,
                        Err(e) => {
                            self.metrics.store_errors.inc();
                            let delay = backoff.next_delay();
                            tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "listing leases failed");
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            })
            .await
    }

    /// Leases a subnet (`previous` if it is still free), retrying while the
    /// store is unreachable or has no subnet for this node.
    async fn acquire(
        &self,
        previous: Option<LeaseKey>,
        wire_ends: &crate::lease::WireEnds,
    ) -> Result<Lease, AgentError> {
        let mut backoff = Backoff::new(Backoff::STORE);
        loop {
            // Waiting is being alive: a liveness probe must not restart an
            // agent that waits for its store or for a subnet assignment.
            self.health.beat();
            let attrs_for = |k: &LeaseKey| {
                let mut a = self.factory.attrs(k, &self.opts.node_name);
                a.wire_ends = wire_ends.clone();
                a
            };
            match leasing::acquire(
                &self.store,
                &self.config.pools,
                attrs_for,
                previous,
                self.opts.lease_ttl,
            )
            .await
            {
                Ok(l) => return Ok(l),
                Err(AcquireError::Store(e)) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot reach the store to lease a subnet; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) if e.is_waiting() => {
                    let delay = backoff.next_delay();
                    // Repeated on purpose: this is what an operator searching
                    // the log (or /readyz) for "why is this node not ready"
                    // must find.
                    tracing::error!(
                        retry_in_ms = delay.as_millis() as u64,
                        "no subnet for this node: {e}"
                    );
                    self.health
                        .set_not_ready(format!("no subnet for this node: {e}"));
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// [`LeaseStore::announce_ready`]; `false` (logged) when it has to be
    /// tried again.
    async fn announce(&self, lease: &Lease) -> bool {
        match self.store.announce_ready(lease).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot announce that this node's network is ready; retrying");
                false
            }
        }
    }

    /// The one lease-lost path: say so loudly, get a lease again (the same
    /// subnet if it is still free). Pods keep working meanwhile: nothing in
    /// the kernel is touched.
    async fn recover(&self, lost: &Lease) -> Result<Lease, AgentError> {
        self.metrics.lease_losses.inc();
        tracing::error!(subnet = %lost.key, "LEASE LOST: this node's subnet lease was deleted, expired or taken; re-acquiring (existing pods keep their data plane meanwhile)");
        let lease = self.acquire(Some(lost.key), &lost.attrs.wire_ends).await?;
        // Ready again if waiting for an assignment had made it not ready.
        self.health.set_ready();
        if lease.key == lost.key {
            tracing::info!(subnet = %lease.key, "lease recovered with the same subnet");
        } else {
            tracing::error!(old = %lost.key, new = %lease.key, "lease recovered with a DIFFERENT subnet; pods started before keep old addresses that peers no longer route");
        }
        Ok(lease)
    }
}
