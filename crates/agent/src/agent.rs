//! The agent's life: pick the underlay, lease a subnet, start the
//! reconciler, write the lease file, then follow the store until told to
//! stop. Stopping leaves the data plane and the lease in place, so pods
//! keep working through an agent restart and the node gets its subnet back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::shutdown::Shutdown;
use ipnet::IpNet;
use thiserror::Error;
use tweed_netlink::{Monitor, Netlink};
use tweed_node::{Family, Prefix, SubnetEnv};

use crate::backend::factory::BackendFactory;
use crate::backend::wg_key::{self, KeyPair};
use crate::backend::{BackendError, LocalNode};
use crate::backend::{geneve, vxlan};
use crate::config::{BackendConfig, NetConfig};
use crate::health::Health;
use crate::identity::{self, IdentityOptions};
use crate::kernel_check::Outcome;
use crate::lease::{Lease, LeaseKey};
use crate::leasing::{self, AcquireError};
use crate::metrics::Metrics;
use crate::reconcile::{self, Input, PeersMailbox, Reconciler};
use crate::segment_blocks::SegmentBlocks;
use crate::state::{self, NodeState};
use crate::store::any::AnyStore;
use crate::store::{LeaseStore, StoreError, WatchEvent};

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

/// The node's WireGuard key pair from the state directory (made on the
/// first start) and the configured pre-shared key.
fn wireguard_keys(
    opts: &AgentOptions,
    wg: &crate::config::WireguardConfig,
) -> Result<(KeyPair, Option<tweed_netlink::WgKey>), AgentError> {
    let (keys, created) = wg_key::load_or_create(&opts.state_dir)?;
    let file = opts.state_dir.join(wg_key::KEY_FILE);
    if created {
        tracing::info!(public_key = %keys.public, file = %file.display(), "made a new WireGuard key pair");
    } else {
        tracing::info!(public_key = %keys.public, file = %file.display(), "WireGuard key pair kept from the key file");
    }
    Ok((keys, wg_key::load_psk(&wg.psk)?))
}

/// How often a kernel that lacks what the backend needs is probed again.
const KERNEL_RECHECK: Duration = Duration::from_secs(30);

/// Waits until the kernel has what the configuration needs
/// ([`kernel_check`](crate::kernel_check)), staying not ready with the
/// missing option as the reason meanwhile. `false`: told to stop first.
async fn kernel_ready(
    config: &NetConfig,
    health: &Health,
    shutdown: &Shutdown,
) -> Result<bool, AgentError> {
    let mut reported = None;
    loop {
        match crate::kernel_check::check(&config.backend, !config.segments.is_empty()) {
            Outcome::Present => {
                if reported.is_some() {
                    tracing::info!("the kernel now has what the backend needs");
                }
                return Ok(true);
            }
            Outcome::NotProbed(why) => {
                tracing::warn!(%why, "kernel features not probed; a missing one shows as routing errors");
                return Ok(true);
            }
            Outcome::Missing(missing) => {
                let text = missing.to_string();
                if reported.as_ref() != Some(&text) {
                    tracing::error!(
                        backend = config.backend.type_name(),
                        "{text}; not ready, probing again every {}s",
                        KERNEL_RECHECK.as_secs()
                    );
                    reported = Some(text.clone());
                }
                health.set_not_ready(text);
            }
        }
        if shutdown
            .unless(tokio::time::sleep(KERNEL_RECHECK))
            .await
            .is_none()
        {
            return Ok(false);
        }
    }
}

pub async fn run(opts: AgentOptions, config: NetConfig, store: AnyStore) -> Result<(), AgentError> {
    // First of all: from here on a SIGTERM is heard in every wait.
    let shutdown = Shutdown::listen().map_err(AgentError::Health)?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new());
    health.set_not_ready("choosing the underlay and leasing a subnet");
    if let Some(addr) = opts.health_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(AgentError::Health)?;
        drop(listener);
        let (h, m) = (health.clone(), metrics.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::health::serve(addr, h, m).await {
                tracing::error!(error = %e, %addr, "health server stopped");
            }
        });
    }

    if !kernel_ready(&config, &health, &shutdown).await? {
        return Ok(());
    }

    let mut nl = Netlink::new()?;
    let mut id_opts = opts.identity.clone();
    match &config.backend {
        BackendConfig::Srv6 { .. } => id_opts.need_ipv6 = true,
        BackendConfig::Wireguard(wg) if wg.mode == crate::config::WireguardMode::Ipv6 => {
            id_opts.need_ipv6 = true
        }
        _ => id_opts.need_ipv4 = !id_opts.need_ipv6,
    }
    let underlay = identity::choose(&mut nl, &id_opts)?;
    tracing::info!(
        iface = %underlay.iface,
        ipv4 = ?underlay.ipv4,
        ipv6 = ?underlay.ipv6,
        public_ipv4 = ?underlay.public_ipv4,
        public_ipv6 = ?underlay.public_ipv6,
        mtu = underlay.mtu,
        reason = %underlay.reason,
        "underlay interface chosen"
    );
    let underlay_networks: Vec<IpNet> = nl
        .addresses(Some(underlay.index))?
        .into_iter()
        .filter(|a| !a.scope_link)
        .map(|a| a.addr.trunc())
        .collect();

    let mut saved = NodeState::load(&opts.state_dir);
    let vxlan_prefix = if opts.flannel_compat {
        vxlan::FLANNEL_DEVICE_PREFIX
    } else {
        vxlan::DEVICE_PREFIX
    };
    let mut existing_mac = |prefix: &str| {
        let device = match &config.backend {
            BackendConfig::Vxlan { vni, .. } => vxlan::device_name(prefix, *vni),
            BackendConfig::Geneve { .. } => geneve::DEVICE_NAME.to_string(),
            _ => return None,
        };
        nl.link_by_name(&device).ok().flatten().and_then(|l| l.mac)
    };
    // Taking over from flannel, its device's MAC comes first: flannel
    // peers have neighbour entries pointing at it, and keeping it is what
    // lets them go on reaching this node's pods without noticing.
    let flannel_mac = if opts.flannel_compat {
        existing_mac(vxlan::FLANNEL_DEVICE_PREFIX)
    } else {
        None
    };
    if let Some(mac) = flannel_mac {
        tracing::info!(%mac, "--flannel-compat: adopting flannel's VXLAN device and its MAC");
    }
    let vtep_mac = match flannel_mac.or_else(|| saved.vtep_mac()) {
        Some(mac) => mac,
        None => existing_mac(vxlan_prefix).unwrap_or_else(|| state::derived_mac(&opts.node_name)),
    };
    let wireguard_keys = match &config.backend {
        BackendConfig::Wireguard(wg) => Some(wireguard_keys(&opts, wg)?),
        _ => None,
    };
    let factory = BackendFactory {
        config: config.clone(),
        underlay: underlay.clone(),
        vtep_mac,
        vxlan_prefix,
        wireguard_keys,
    };
    let previous: Option<LeaseKey> = saved.lease.as_deref().and_then(|s| s.parse().ok());

    // The wire ends already recorded go into the lease from the start, so
    // far nodes never see them vanish across this agent's restart.
    let wire_ends = crate::wires::local_ends(&opts.wire_dir);
    let Some(acquired) = shutdown
        .unless(acquire_with_retry(
            &store, &config, &factory, &opts, &health, previous, &wire_ends,
        ))
        .await
    else {
        tracing::info!("stopping before a subnet was leased");
        return Ok(());
    };
    let mut lease = acquired?;
    saved.vtep_mac = Some(vtep_mac.to_string());
    saved.lease = Some(lease.key.to_string());
    if let Err(e) = saved.save(&opts.state_dir) {
        tracing::warn!(error = %e, dir = %opts.state_dir.display(), "cannot save state; the VTEP MAC stays derived from the node name");
    }

    // Before the reconciler makes the segments' bridges: the plugin takes
    // a bridge without a block file for a segment without addresses.
    let mut blocks = SegmentBlocks::new(
        &store,
        &config.segments,
        opts.segment_dir.clone(),
        &opts.node_name,
        underlay.public_ipv4,
    )
    .map_err(AgentError::SegmentBlocks)?;
    blocks.claim_missing(opts.lease_ttl, true).await;

    let mut local = Arc::new(LocalNode {
        name: opts.node_name.clone(),
        lease: lease.clone(),
        underlay: underlay.clone(),
        underlay_networks,
    });
    let backend = factory.build(&lease.key);
    let pod_mtu = backend.pod_mtu();

    // The reconciler and the kernel monitor live on their own threads with
    // their own netlink sockets, opened here, in this namespace.
    let (tx, rx) = std::sync::mpsc::channel::<Input>();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let managed = Arc::new(AtomicU32::new(0));
    let mailbox = Arc::new(PeersMailbox::default());
    let reconciler = Reconciler::new(
        Netlink::new()?,
        backend,
        metrics.clone(),
        opts.resync_interval,
        managed.clone(),
        mailbox.clone(),
    )
    .on_first_pass(first_tx);
    let reconcile_thread = std::thread::Builder::new()
        .name("reconcile".into())
        .spawn(move || reconciler.run(rx))
        .expect("spawn reconciler");
    let monitor = Monitor::new()?;
    // The devices whose loss calls for a pass: the pod network's VXLAN
    // (`tweed.<VNI>`), Geneve (`tweed.geneve`) or WireGuard (`tweed-wg`,
    // `tweed-wg-v6`) device and the segments' bridges and VXLAN devices.
    let monitor_prefix: &'static [&'static str] = if opts.flannel_compat {
        &["flannel.", "tweed-wg", "twx.", "tws-"]
    } else {
        &["tweed.", "tweed-wg", "twx.", "tws-"]
    };
    let monitor_tx = tx.clone();
    std::thread::Builder::new()
        .name("kernel-monitor".into())
        .spawn(move || reconcile::watch_kernel(monitor, monitor_prefix, managed, monitor_tx))
        .expect("spawn monitor");

    let (wire_tx, wire_rx) = std::sync::mpsc::channel();
    let wire_thread = std::thread::Builder::new()
        .name("wires".into())
        .spawn({
            let controller = crate::wires::WireController {
                dir: opts.wire_dir.clone(),
                node: Netlink::new()?,
                local_ip: underlay.ipv4.map(std::net::IpAddr::V4),
                port: match &config.backend {
                    BackendConfig::Vxlan { port, .. } => *port,
                    _ => crate::config::DEFAULT_VXLAN_PORT,
                },
                mtu: config
                    .wire_mtu
                    .unwrap_or(underlay.mtu.saturating_sub(vxlan::OVERHEAD_V4)),
                reserved_vnis: config.reserved_vnis(),
            };
            move || controller.run(wire_rx)
        })
        .expect("spawn wire controller");

    let mut peers = Peers {
        map: BTreeMap::new(),
        wires: wire_tx.clone(),
    };
    // The snapshot moves into the peer map: at 5000 peers every copy of
    // the set costs megabytes.
    let Some(snapshot) = shutdown.unless(list_with_retry(&store, &metrics)).await else {
        let _ = tx.send(Input::Stop);
        let _ = wire_tx.send(crate::wires::Input::Stop);
        let _ = reconcile_thread.join();
        let _ = wire_thread.join();
        return Ok(());
    };
    let mut revision = snapshot.revision;
    peers.replace(snapshot.leases, &lease.key);
    peers.send(&tx, &mailbox, &local);

    match first_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(AgentError::Backend(e)),
        Err(_) => return Err(AgentError::ReconcilerStopped),
    }
    write_subnet_files(&opts, &config, &lease, pod_mtu)?;
    if opts.ip_masq {
        let node_subnets: Vec<IpNet> =
            [lease.key.ipv4.map(IpNet::V4), lease.key.ipv6.map(IpNet::V6)]
                .into_iter()
                .flatten()
                .collect();
        crate::masq::install_for_node(
            &crate::masq::MasqRules {
                cluster_networks: config.networks(),
            },
            &node_subnets,
        )
        .map_err(AgentError::Masq)?;
    }
    health.set_ready();
    metrics.ready.set(1);
    tracing::info!(subnet = %lease.key, file = %opts.subnet_file.display(), mtu = pod_mtu, "ready");
    // Telling the store's world (kube: NetworkUnavailable=False) is retried
    // on the heartbeat until it works; the data plane does not wait for it.
    let mut announced = announce(&store, &lease).await;

    let mut watch = start_watch(&store, revision, &metrics).await;
    let mut renew = tokio::time::interval(opts.renew_interval);
    renew.tick().await;
    let mut relist = tokio::time::interval(opts.resync_interval);
    relist.tick().await;
    let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
    let mut rewatch_backoff = Duration::from_millis(200);
    // What this node publishes beyond its subnet: the MACs behind its end
    // of each segment (so peers send to them directly, segment_macs.rs)
    // and its wire ends (so the far nodes cable their side, wires/).
    let mut attrs_scan = tokio::time::interval(ATTRS_SCAN);
    let mut attrs_published = false;

    loop {
        let event = async {
            match watch.as_mut() {
                Some(rx) => rx.recv().await,
                // No watch (it could not be started): the branch below
                // waits its backoff, lists and tries again.
                None => None,
            }
        };
        tokio::select! {
            _ = shutdown.requested() => break,
            _ = heartbeat.tick() => {
                health.beat();
                blocks.claim_missing(opts.lease_ttl, false).await;
                if !announced {
                    announced = announce(&store, &lease).await;
                }
            }
            ev = event => {
                let lost = match ev {
                    Some(first) => {
                        // Take the whole burst that is already waiting (a
                        // thousand nodes joining, a relist's diff): one
                        // update of the peers serves all of it.
                        let mut batch = vec![first];
                        if let Some(rx) = watch.as_mut() {
                            while let Ok(e) = rx.try_recv() {
                                batch.push(e);
                            }
                        }
                        metrics.store_events.inc_by(batch.len() as u64);
                        tracing::debug!(events = ?batch, "store events");
                        let mut lost = false;
                        let mut resync = false;
                        for e in batch {
                            match e {
                                WatchEvent::Put(l) if l.key == lease.key => lost |= !l.same_owner(&lease.attrs),
                                WatchEvent::Put(l) => peers.put(l),
                                WatchEvent::Delete(k) if k == lease.key => lost = true,
                                WatchEvent::Delete(k) => peers.remove(&k),
                                WatchEvent::Resync => resync = true,
                            }
                        }
                        if resync {
                            let Some(s) = shutdown.unless(list_with_retry(&store, &metrics)).await else {
                                break;
                            };
                            lost |= !peers.apply_list(s.leases, &lease);
                        }
                        peers.send(&tx, &mailbox, &local);
                        lost
                    }
                    None => {
                        // The watch ended (store restarted, connection lost):
                        // list again and start a new one.
                        tokio::time::sleep(rewatch_backoff).await;
                        rewatch_backoff = (rewatch_backoff * 2).min(Duration::from_secs(5));
                        let Some(s) = shutdown.unless(list_with_retry(&store, &metrics)).await else {
                            break;
                        };
                        revision = s.revision;
                        let ours = peers.apply_list(s.leases, &lease);
                        peers.send(&tx, &mailbox, &local);
                        watch = start_watch(&store, revision, &metrics).await;
                        if watch.is_some() {
                            rewatch_backoff = Duration::from_millis(200);
                        }
                        !ours
                    }
                };
                if lost {
                    let Some(recovered) = shutdown.unless(recover_lease(&store, &config, &factory, &opts, &metrics, &health, &lease)).await else {
                        break;
                    };
                    lease = recovered?;
                    announced = announce(&store, &lease).await;
                    if local.lease.key != lease.key {
                        local = Arc::new(LocalNode { lease: lease.clone(), ..(*local).clone() });
                        let _ = tx.send(Input::SetBackend(factory.build(&lease.key)));
                        write_subnet_files(&opts, &config, &lease, pod_mtu)?;
                    }
                    peers.send(&tx, &mailbox, &local);
                }
            }
            _ = attrs_scan.tick() => {
                // A segment whose plugin filled this node's blocks.
                blocks.grow_requested(opts.lease_ttl).await;
                let mut wanted = lease.clone();
                match crate::segment_macs::local(&mut nl, &config.segments) {
                    Ok(macs) => wanted.attrs.segment_macs = macs,
                    Err(e) => tracing::warn!(error = %e, "cannot read the segment bridges' FDB"),
                }
                wanted.attrs.wire_ends = crate::wires::local_ends(&opts.wire_dir);
                if wanted.attrs != lease.attrs || !attrs_published {
                    match store.renew(&wanted, opts.lease_ttl).await {
                        Ok(l) => {
                            tracing::debug!(macs = ?l.attrs.segment_macs, wires = ?l.attrs.wire_ends, "published the segments' local MACs and the wire ends");
                            lease = l;
                            attrs_published = true;
                        }
                        Err(e) => {
                            attrs_published = false;
                            metrics.store_errors.inc();
                            tracing::warn!(error = %e, "cannot publish the segments' local MACs and the wire ends; retrying");
                        }
                    }
                }
            }
            _ = renew.tick() => {
                blocks.renew(opts.lease_ttl).await;
                match store.renew(&lease, opts.lease_ttl).await {
                    Ok(l) => {
                        lease = l;
                        metrics.lease_renewals.inc();
                        announced = announce(&store, &lease).await;
                    }
                    Err(StoreError::LeaseLost(_)) => {
                        let Some(recovered) = shutdown.unless(recover_lease(&store, &config, &factory, &opts, &metrics, &health, &lease)).await else {
                            break;
                        };
                        lease = recovered?;
                        announced = announce(&store, &lease).await;
                        local = Arc::new(LocalNode { lease: lease.clone(), ..(*local).clone() });
                        let _ = tx.send(Input::SetBackend(factory.build(&lease.key)));
                        write_subnet_files(&opts, &config, &lease, pod_mtu)?;
                        peers.send(&tx, &mailbox, &local);
                    }
                    Err(e) => {
                        metrics.store_errors.inc();
                        tracing::warn!(error = %e, "lease renewal failed; retrying at the next interval (the data plane is untouched)");
                    }
                }
            }
            _ = relist.tick() => {
                if let Ok(s) = store.list().await {
                    peers.apply_list(s.leases, &lease);
                    peers.send(&tx, &mailbox, &local);
                }
            }
        }
    }
    tracing::info!("stopping; the data plane and the lease stay in place");
    let _ = tx.send(Input::Stop);
    let _ = wire_tx.send(crate::wires::Input::Stop);
    let _ = reconcile_thread.join();
    let _ = wire_thread.join();
    Ok(())
}

/// Starts watching the store from `revision`; a failure is logged and
/// counted, and the caller tries again after a backoff.
async fn start_watch(
    store: &AnyStore,
    revision: u64,
    metrics: &Metrics,
) -> Option<tokio::sync::mpsc::Receiver<WatchEvent>> {
    match store.watch(revision).await {
        Ok(rx) => Some(rx),
        Err(e) => {
            metrics.store_errors.inc();
            tracing::warn!(error = %e, "cannot watch the store; listing again and retrying");
            None
        }
    }
}

/// The peers as last seen in the store.
///
/// Each lease is shared (`Arc`) with the sets handed to the reconciler, so
/// handing over a set copies pointers, not leases.
struct Peers {
    map: BTreeMap<LeaseKey, Arc<Lease>>,
    /// The wire controller, which needs the peers that publish wire ends.
    wires: std::sync::mpsc::Sender<crate::wires::Input>,
}

impl Peers {
    fn replace(&mut self, leases: Vec<Lease>, ours: &LeaseKey) {
        self.map = leases
            .into_iter()
            .filter(|l| &l.key != ours)
            .map(|l| (l.key, Arc::new(l)))
            .collect();
    }

    /// Takes a full list of the store. A list without this node's own
    /// lease comes from a store that lost data (wiped, restored from an
    /// older backup) or in which we lost the lease: it cannot tell which
    /// peers are gone, so it only adds and updates them, and the data plane
    /// to peers that are re-claiming their subnets stays up. The next list
    /// that has our lease (at the latest the periodic relist) removes the
    /// peers that are really gone. Returns whether our lease was in it.
    fn apply_list(&mut self, leases: Vec<Lease>, ours: &Lease) -> bool {
        let present = leases
            .iter()
            .any(|l| l.key == ours.key && l.same_owner(&ours.attrs));
        if present {
            self.replace(leases, &ours.key);
        } else {
            for l in leases.into_iter().filter(|l| l.key != ours.key) {
                self.put(l);
            }
        }
        present
    }

    fn put(&mut self, lease: Lease) {
        self.map.insert(lease.key, Arc::new(lease));
    }

    fn remove(&mut self, key: &LeaseKey) {
        self.map.remove(key);
    }

    fn send(
        &self,
        tx: &std::sync::mpsc::Sender<Input>,
        mailbox: &PeersMailbox,
        local: &Arc<LocalNode>,
    ) {
        let peers = Arc::new(self.map.values().cloned().collect());
        if mailbox.post((local.clone(), peers)) {
            let _ = tx.send(Input::Peers);
        }
        let with_wires = self
            .map
            .values()
            .filter(|l| !l.attrs.wire_ends.is_empty())
            .cloned()
            .collect();
        let _ = self.wires.send(crate::wires::Input::Peers(with_wires));
    }
}

fn write_subnet_files(
    opts: &AgentOptions,
    config: &NetConfig,
    lease: &Lease,
    mtu: u32,
) -> Result<(), AgentError> {
    let info = SubnetEnv {
        ipv4: lease.key.ipv4.map(|s| {
            let network = config.ipv4.as_ref().map(|p| IpNet::V4(p.network));
            Family::new(network, IpNet::V4(s))
        }),
        ipv6: lease.key.ipv6.map(|s| {
            let network = config.ipv6.as_ref().map(|p| IpNet::V6(p.network));
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

async fn list_with_retry(store: &AnyStore, metrics: &Metrics) -> crate::store::Snapshot {
    let mut backoff = Duration::from_millis(200);
    loop {
        match store.list().await {
            Ok(s) => return s,
            Err(e) => {
                metrics.store_errors.inc();
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "listing leases failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn acquire_with_retry(
    store: &AnyStore,
    config: &NetConfig,
    factory: &BackendFactory,
    opts: &AgentOptions,
    health: &Health,
    previous: Option<LeaseKey>,
    wire_ends: &crate::lease::WireEnds,
) -> Result<Lease, AgentError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        // Waiting is being alive: a liveness probe must not restart an
        // agent that waits for its store or for a subnet assignment.
        health.beat();
        let attrs_for = |k: &LeaseKey| {
            let mut a = factory.attrs(k, &opts.node_name);
            a.wire_ends = wire_ends.clone();
            a
        };
        match leasing::acquire(store, config, attrs_for, previous, opts.lease_ttl).await {
            Ok(l) => return Ok(l),
            Err(AcquireError::Store(e)) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot reach the store to lease a subnet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) if e.is_waiting() => {
                // Repeated on purpose: this is what an operator searching
                // the log (or /readyz) for "why is this node not ready"
                // must find.
                tracing::error!(
                    retry_in_ms = backoff.as_millis() as u64,
                    "no subnet for this node: {e}"
                );
                health.set_not_ready(format!("no subnet for this node: {e}"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// [`LeaseStore::announce_ready`]; `false` (logged) when it has to be
/// tried again.
async fn announce(store: &AnyStore, lease: &Lease) -> bool {
    match store.announce_ready(lease).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot announce that this node's network is ready; retrying");
            false
        }
    }
}

/// Our lease vanished or was taken: say so loudly, get one again (the same
/// subnet if it is still free). Pods keep working meanwhile: nothing in the
/// kernel is touched.
async fn recover_lease(
    store: &AnyStore,
    config: &NetConfig,
    factory: &BackendFactory,
    opts: &AgentOptions,
    metrics: &Metrics,
    health: &Health,
    lost: &Lease,
) -> Result<Lease, AgentError> {
    metrics.lease_losses.inc();
    tracing::error!(subnet = %lost.key, "LEASE LOST: this node's subnet lease was deleted, expired or taken; re-acquiring (existing pods keep their data plane meanwhile)");
    let lease = acquire_with_retry(
        store,
        config,
        factory,
        opts,
        health,
        Some(lost.key),
        &lost.attrs.wire_ends,
    )
    .await?;
    // Ready again if waiting for an assignment had made it not ready.
    health.set_ready();
    if lease.key == lost.key {
        tracing::info!(subnet = %lease.key, "lease recovered with the same subnet");
    } else {
        tracing::error!(old = %lost.key, new = %lease.key, "lease recovered with a DIFFERENT subnet; pods started before keep old addresses that peers no longer route");
    }
    Ok(lease)
}
