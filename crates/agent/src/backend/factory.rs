//! Which backend a node runs, built from the configuration and what the
//! agent learnt at start (underlay, VTEP MAC): the pod network's backend,
//! wrapped with the layer-2 segments when net-conf.json declares any. The
//! agent builds it again when its lease changes (SRv6 SIDs follow the
//! subnet).

use tweed_netlink::MacAddr;

use super::Backend;
use super::geneve::GeneveBackend;
use super::hostgw::HostGwBackend;
use super::segments::WithSegments;
use super::srv6::{self, Srv6Backend};
use super::vxlan::VxlanBackend;
use super::wg_key::KeyPair;
use super::wireguard::WireguardBackend;
use crate::config::{BackendConfig, NetConfig};
use crate::identity::Underlay;
use crate::lease::{LeaseAttrs, LeaseKey};
use crate::pools::Family;

/// Everything needed to build the backend for a given lease.
pub struct BackendFactory {
    pub config: NetConfig,
    pub underlay: Underlay,
    pub vtep_mac: MacAddr,
    /// `tweed`, or `flannel` under `--flannel-compat`.
    pub vxlan_prefix: &'static str,
    /// The wireguard backend's node key pair and pre-shared key, read
    /// at start (see [`super::wg_key`]).
    pub wireguard_keys: Option<(KeyPair, Option<tweed_netlink::WgKey>)>,
}

impl BackendFactory {
    pub fn build(&self, key: &LeaseKey) -> Box<dyn Backend> {
        let pod_network = self.build_pod_network(key);
        if self.config.segments.is_empty() {
            return pod_network;
        }
        let port = match &self.config.backend {
            BackendConfig::Vxlan { port, .. } => *port,
            _ => crate::config::DEFAULT_VXLAN_PORT,
        };
        Box::new(WithSegments::new(
            pod_network,
            self.config.segments.clone(),
            port,
            self.underlay.mtu,
        ))
    }

    /// The backend of the pod network itself (`Backend.Type`).
    fn build_pod_network(&self, key: &LeaseKey) -> Box<dyn Backend> {
        let ipv6_underlay = self.underlay.ipv4.is_none();
        match &self.config.backend {
            BackendConfig::Vxlan {
                vni,
                port,
                direct_routing,
            } => Box::new(
                VxlanBackend::new(
                    *vni,
                    *port,
                    *direct_routing,
                    self.vtep_mac,
                    self.underlay.mtu,
                    ipv6_underlay,
                    self.config.mtu,
                )
                .with_device_prefix(self.vxlan_prefix)
                .with_qlen(self.config.qlen),
            ),
            BackendConfig::Geneve { vni, port } => Box::new(GeneveBackend::new(
                *vni,
                *port,
                self.vtep_mac,
                self.underlay.mtu,
                ipv6_underlay,
                self.config.mtu,
                self.config.qlen,
            )),
            BackendConfig::HostGw => {
                Box::new(HostGwBackend::new(self.underlay.mtu, self.config.mtu))
            }
            BackendConfig::Wireguard(wg) => {
                let (keys, psk) = self
                    .wireguard_keys
                    .clone()
                    .expect("the agent loads the WireGuard keys before building the backend");
                Box::new(WireguardBackend::new(
                    wg,
                    keys,
                    psk,
                    (
                        self.config.pools.ipv4.is_some(),
                        self.config.pools.ipv6.is_some(),
                    ),
                    self.underlay.mtu,
                    ipv6_underlay,
                    self.config.mtu,
                ))
            }
            BackendConfig::Srv6 { locator } => Box::new(Srv6Backend::new(
                *locator,
                node_number(&self.config, key),
                self.underlay.mtu,
                self.config.mtu,
            )),
        }
    }

    pub fn attrs(&self, key: &LeaseKey, node_name: &str) -> LeaseAttrs {
        let backend = self.build(key);
        LeaseAttrs {
            public_ip: self.underlay.public_ipv4,
            public_ipv6: self.underlay.public_ipv6,
            backend_type: backend.kind().to_string(),
            backend_data: backend.lease_data().into(),
            backend_v6_data: backend.lease_v6_data().into(),
            node_name: node_name.to_string(),
            segment_macs: Default::default(),
            wire_ends: Default::default(),
        }
    }
}

/// The node's number, its subnet's position in the pool, and how many bits
/// SRv6 SID blocks give it: every subnet of the pool gets its own block.
fn node_number(config: &NetConfig, key: &LeaseKey) -> (u128, u8) {
    match (&config.pools.ipv4, key.ipv4, &config.pools.ipv6, key.ipv6) {
        (Some(p), Some(k), _, _) => (k.index_in(&p.network), srv6::node_bits(p.subnet_bits())),
        (_, _, Some(p), Some(k)) => (k.index_in(&p.network), srv6::node_bits(p.subnet_bits())),
        _ => (0, srv6::node_bits(0)),
    }
}
