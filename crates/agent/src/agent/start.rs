//! The agent's start step: wait for a kernel that has what the backend
//! needs, pick the underlay, lease a subnet, start the workers (reconciler,
//! kernel monitor, wire controller) and hand them the peers' first set.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use ipnet::IpNet;
use tweed_netlink::{Monitor, Netlink};

use super::peers::Peers;
use super::{Agent, AgentError, AgentOptions, Context, Workers};
use crate::backend::factory::BackendFactory;
use crate::backend::wg_key::{self, KeyPair};
use crate::backend::{BackendError, LocalNode, geneve, vxlan};
use crate::backoff::Backoff;
use crate::config::{BackendConfig, NetConfig};
use crate::health::Health;
use crate::identity::{self, Underlay};
use crate::kernel_check::Outcome;
use crate::lease::LeaseKey;
use crate::metrics::Metrics;
use crate::reconcile::{self, Input, PeersMailbox, Reconciler};
use crate::segment_blocks::SegmentBlocks;
use crate::shutdown::Shutdown;
use crate::state::{self, NodeState};
use crate::store::any::AnyStore;

/// How often a kernel that lacks what the backend needs is probed again.
const KERNEL_RECHECK: Duration = Duration::from_secs(30);

impl Agent {
    /// Everything up to the reconciler's first pass. `None`: told to stop
    /// first.
    pub(super) async fn start(
        opts: AgentOptions,
        config: NetConfig,
        store: AnyStore,
        shutdown: Shutdown,
    ) -> Result<Option<Agent>, AgentError> {
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new());
        health.set_not_ready("choosing the underlay and leasing a subnet");
        serve_health(&opts, &health, &metrics).await?;

        if !kernel_ready(&config, &health, &shutdown).await? {
            return Ok(None);
        }

        let mut nl = Netlink::new()?;
        let (underlay, underlay_networks) = choose_underlay(&mut nl, &opts, &config)?;
        let mut saved = NodeState::load(&opts.state_dir);
        let factory = backend_factory(&mut nl, &opts, &config, &saved, underlay.clone())?;
        let previous: Option<LeaseKey> = saved.lease.as_deref().and_then(|s| s.parse().ok());
        let cx = Context {
            opts,
            config,
            store,
            shutdown,
            metrics,
            health,
            factory,
        };

        // The wire ends already recorded go into the lease from the start, so
        // far nodes never see them vanish across this agent's restart.
        let wire_ends = crate::wires::local_ends(&cx.opts.wire_dir);
        let Some(acquired) = cx.shutdown.unless(cx.acquire(previous, &wire_ends)).await else {
            tracing::info!("stopping before a subnet was leased");
            return Ok(None);
        };
        let lease = acquired?;
        saved.vtep_mac = Some(cx.factory.vtep_mac.to_string());
        saved.lease = Some(lease.key.to_string());
        if let Err(e) = saved.save(&cx.opts.state_dir) {
            tracing::warn!(error = %e, dir = %cx.opts.state_dir.display(), "cannot save state; the VTEP MAC stays derived from the node name");
        }

        // Before the reconciler makes the segments' bridges: the plugin takes
        // a bridge without a block file for a segment without addresses.
        let mut blocks = SegmentBlocks::new(
            &cx.store,
            &cx.config.segments,
            cx.opts.segment_dir.clone(),
            &cx.opts.node_name,
            underlay.public_ipv4,
        )
        .map_err(AgentError::SegmentBlocks)?;
        blocks.claim_missing(cx.opts.lease_ttl, true).await;

        let local = Arc::new(LocalNode {
            name: cx.opts.node_name.clone(),
            lease: lease.clone(),
            underlay: underlay.clone(),
            underlay_networks,
        });
        let backend = cx.factory.build(&lease.key);
        let pod_mtu = backend.pod_mtu();
        let (workers, first_pass) = Workers::spawn(&cx, backend, &underlay)?;
        let mut peers = Peers::new(workers.wires.clone());

        // The snapshot moves into the peer map: at 5000 peers every copy of
        // the set costs megabytes.
        let Some(snapshot) = cx.list().await else {
            workers.stop();
            return Ok(None);
        };
        peers.replace(snapshot.leases, &lease.key);
        peers.send(&workers.tx, &workers.mailbox, &local);

        match first_pass.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(AgentError::Backend(e)),
            Err(_) => return Err(AgentError::ReconcilerStopped),
        }
        Ok(Some(Agent {
            cx,
            nl,
            lease,
            local,
            pod_mtu,
            blocks,
            peers,
            workers,
            revision: snapshot.revision,
            watch: None,
            rewatch: Backoff::new(Backoff::WATCH),
            announced: false,
            attrs_published: false,
        }))
    }
}

/// Binds the health address at once (a taken port is an error at start),
/// then serves `/healthz`, `/readyz` and `/metrics` from a task.
async fn serve_health(
    opts: &AgentOptions,
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
) -> Result<(), AgentError> {
    let Some(addr) = opts.health_addr else {
        return Ok(());
    };
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
    Ok(())
}

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

/// The underlay interface (of the address family the backend needs) and
/// the networks on it, which host-gw and DirectRouting reach directly.
fn choose_underlay(
    nl: &mut Netlink,
    opts: &AgentOptions,
    config: &NetConfig,
) -> Result<(Underlay, Vec<IpNet>), AgentError> {
    let mut id_opts = opts.identity.clone();
    match &config.backend {
        BackendConfig::Srv6 { .. } => id_opts.need_ipv6 = true,
        BackendConfig::Wireguard(wg) if wg.mode == crate::config::WireguardMode::Ipv6 => {
            id_opts.need_ipv6 = true
        }
        _ => id_opts.need_ipv4 = !id_opts.need_ipv6,
    }
    let underlay = identity::choose(nl, &id_opts)?;
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
    let networks = nl
        .addresses(Some(underlay.index))?
        .into_iter()
        .filter(|a| !a.scope_link)
        .map(|a| a.addr.trunc())
        .collect();
    Ok((underlay, networks))
}

/// What builds the backend for a lease: the configuration, the underlay,
/// the VTEP MAC (kept across restarts) and the WireGuard keys.
fn backend_factory(
    nl: &mut Netlink,
    opts: &AgentOptions,
    config: &NetConfig,
    saved: &NodeState,
    underlay: Underlay,
) -> Result<BackendFactory, AgentError> {
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
        BackendConfig::Wireguard(wg) => Some(wireguard_keys(opts, wg)?),
        _ => None,
    };
    Ok(BackendFactory {
        config: config.clone(),
        underlay,
        vtep_mac,
        vxlan_prefix,
        wireguard_keys,
    })
}

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

impl Workers {
    /// The reconciler and the kernel monitor live on their own threads with
    /// their own netlink sockets, opened here, in this namespace; so does
    /// the wire controller. The receiver hears the reconciler's first pass.
    fn spawn(
        cx: &Context,
        backend: Box<dyn crate::backend::Backend>,
        underlay: &Underlay,
    ) -> Result<
        (
            Workers,
            tokio::sync::oneshot::Receiver<Result<(), BackendError>>,
        ),
        AgentError,
    > {
        let (tx, rx) = std::sync::mpsc::channel::<Input>();
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let managed = Arc::new(AtomicU32::new(0));
        let mailbox = Arc::new(PeersMailbox::default());
        let reconciler = Reconciler::new(
            Netlink::new()?,
            backend,
            cx.metrics.clone(),
            cx.opts.resync_interval,
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
        let monitor_prefix: &'static [&'static str] = if cx.opts.flannel_compat {
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
        let config = &cx.config;
        let wire_thread = std::thread::Builder::new()
            .name("wires".into())
            .spawn({
                let controller = crate::wires::WireController {
                    dir: cx.opts.wire_dir.clone(),
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
        let (guest_dhcp, guest_dhcp_rx) = std::sync::mpsc::channel();
        let guest_dhcp_thread = std::thread::Builder::new()
            .name("guest-dhcp".into())
            .spawn({
                let server = crate::guest_dhcp::GuestDhcp {
                    dir: cx.opts.guest_dhcp_dir.clone(),
                };
                move || server.run(guest_dhcp_rx)
            })
            .expect("spawn guest DHCP");
        let workers = Workers {
            tx,
            mailbox,
            wires: wire_tx,
            reconcile_thread,
            wire_thread,
            guest_dhcp,
            guest_dhcp_thread,
        };
        Ok((workers, first_rx))
    }
}
