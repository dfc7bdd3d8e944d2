//! WireGuard: pod traffic between nodes encrypted, flannel's `wireguard`
//! backend in tweed's names.
//!
//! Each node has one key pair ([`wg_key`](super::wg_key), kept across
//! restarts) and publishes its public key in its lease
//! (`BackendData: {"PublicKey": ..}`, and `BackendV6Data` the same when
//! the pod network has IPv6, as flannel does). Devices, by `Mode`:
//! `separate` (the default) has `tweed-wg` for IPv4 pods over IPv4
//! endpoints on `ListenPort` and `tweed-wg-v6` for IPv6 pods over IPv6
//! endpoints on `ListenPortV6`; `auto`, `ipv4` and `ipv6` have one device,
//! `tweed-wg`, carrying both families over the endpoint family the mode
//! names (`auto`: IPv4 when both nodes have it).
//!
//! Per peer node: one WireGuard peer on each device (its public key, the
//! pre-shared key when configured, endpoint `<its public IP>:<port>`,
//! AllowedIPs = its pod subnets of the device's families) and one route per
//! pod subnet through the device. Peers are read back from the kernel on
//! every pass and put right when they differ (drift repair); a peer whose
//! lease is gone is removed, and so is its route.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::{Value, json};
use tweed_netlink::{Link, LinkKind, Netlink, NewLink, Route, WgKey, WgPeer, Wireguard};

use super::wg_key::KeyPair;
use super::{Backend, BackendError, LocalNode, tunnel};
use crate::backend::desired::Desired;
use crate::config::{WireguardConfig, WireguardMode};
use crate::lease::Lease;

/// The IPv4 device in `separate` mode, the one device otherwise.
pub const DEVICE_NAME: &str = tweed_node::names::WIREGUARD_DEVICE;
/// The IPv6 device in `separate` mode.
pub const DEVICE_NAME_V6: &str = tweed_node::names::WIREGUARD_DEVICE_V6;

/// Outer overhead over IPv4: IPv4 (20) + UDP (8) + WireGuard's data
/// header (16) and authentication tag (16). No inner Ethernet: WireGuard
/// carries IP packets.
pub const OVERHEAD_V4: u32 = 60;
/// The same over an IPv6 underlay (40-byte outer header).
pub const OVERHEAD_V6: u32 = 80;

/// Which underlay family a device reaches its peers over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoints {
    V4,
    V6,
    /// IPv4 when both ends have it, else IPv6 (`Mode: auto`).
    Auto,
}

/// One device: its name, port, the pod families it carries and how it
/// reaches peers.
#[derive(Debug, Clone)]
struct Device {
    name: &'static str,
    port: u16,
    ipv4_pods: bool,
    ipv6_pods: bool,
    endpoints: Endpoints,
    /// Learnt when the device is made sure of.
    index: Option<u32>,
}

pub struct WireguardBackend {
    keys: KeyPair,
    psk: Option<WgKey>,
    keepalive: u16,
    devices: Vec<Device>,
    mtu: u32,
    /// Opened on the reconciler's thread at the first pass.
    wg: Option<Wireguard>,
}

impl WireguardBackend {
    /// `ipv4_pods`/`ipv6_pods`: the pod network's families.
    pub fn new(
        config: &WireguardConfig,
        keys: KeyPair,
        psk: Option<WgKey>,
        (ipv4_pods, ipv6_pods): (bool, bool),
        underlay_mtu: u32,
        ipv6_underlay: bool,
        mtu_override: Option<u32>,
    ) -> WireguardBackend {
        let device = |name, port, ipv4_pods, ipv6_pods, endpoints| Device {
            name,
            port,
            ipv4_pods,
            ipv6_pods,
            endpoints,
            index: None,
        };
        let devices = match config.mode {
            WireguardMode::Separate => [
                ipv4_pods
                    .then(|| device(DEVICE_NAME, config.listen_port, true, false, Endpoints::V4)),
                ipv6_pods.then(|| {
                    device(
                        DEVICE_NAME_V6,
                        config.listen_port_v6,
                        false,
                        true,
                        Endpoints::V6,
                    )
                }),
            ]
            .into_iter()
            .flatten()
            .collect(),
            mode => {
                let endpoints = match mode {
                    WireguardMode::Ipv4 => Endpoints::V4,
                    WireguardMode::Ipv6 => Endpoints::V6,
                    _ => Endpoints::Auto,
                };
                vec![device(
                    DEVICE_NAME,
                    config.listen_port,
                    ipv4_pods,
                    ipv6_pods,
                    endpoints,
                )]
            }
        };
        // One pod MTU for every device: the worst case of the underlay
        // families in use.
        let over_v6 = devices.iter().any(|d| match d.endpoints {
            Endpoints::V6 => true,
            Endpoints::Auto => ipv6_underlay,
            Endpoints::V4 => false,
        });
        let overhead = if over_v6 { OVERHEAD_V6 } else { OVERHEAD_V4 };
        WireguardBackend {
            keys,
            psk,
            keepalive: config.keepalive,
            devices,
            mtu: mtu_override.unwrap_or(underlay_mtu.saturating_sub(overhead)),
            wg: None,
        }
    }

    /// The device names in use, for the agent's kernel monitor and status.
    pub fn device_names(&self) -> Vec<&'static str> {
        self.devices.iter().map(|d| d.name).collect()
    }

    /// The WireGuard peers wanted on each device (in `self.devices`'
    /// order), from the leases.
    fn wanted(&self, local: &LocalNode, peers: &[Arc<Lease>]) -> Vec<Vec<WgPeer>> {
        self.devices
            .iter()
            .map(|dev| {
                let mut out: Vec<WgPeer> = Vec::new();
                for peer in peers {
                    let Some(p) = self.peer_on(dev, local, peer) else {
                        continue;
                    };
                    // Two leases with one key (a node's stale lease beside
                    // its new one): WireGuard has one peer per key; the
                    // first lease keeps it.
                    if out.iter().any(|o| o.public_key == p.public_key) {
                        tracing::warn!(peer = %peer.key, "another lease has the same WireGuard public key; skipping this one");
                        continue;
                    }
                    out.push(p);
                }
                out
            })
            .collect()
    }

    /// `peer` as a WireGuard peer of `dev`, or `None` (logged) when it
    /// runs another backend or lacks a key, an endpoint or a pod subnet
    /// of the device's families.
    fn peer_on(&self, dev: &Device, local: &LocalNode, peer: &Lease) -> Option<WgPeer> {
        if peer.attrs.backend_type != "wireguard" {
            tracing::debug!(peer = %peer.key, kind = %peer.attrs.backend_type, "skipping peer with another backend");
            return None;
        }
        // flannel publishes the IPv6 device's key in BackendV6Data.
        let v6_key = (dev.endpoints == Endpoints::V6 && !dev.ipv4_pods)
            .then(|| peer.attrs.backend_v6_data.get_str("PublicKey"))
            .flatten();
        let key = match v6_key.or_else(|| peer.attrs.backend_data.get_str("PublicKey")) {
            Some(text) => match text.parse::<WgKey>() {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(peer = %peer.key, error = %e, "skipping WireGuard peer with a bad PublicKey");
                    return None;
                }
            },
            None => {
                tracing::debug!(peer = %peer.key, "skipping WireGuard peer without a PublicKey");
                return None;
            }
        };
        if key == self.keys.public {
            tracing::warn!(peer = %peer.key, "a peer's lease has this node's own public key; skipping it");
            return None;
        }
        let v4 = peer.attrs.public_ip.map(IpAddr::V4);
        let v6 = peer.attrs.public_ipv6.map(IpAddr::V6);
        let address = match dev.endpoints {
            Endpoints::V4 => v4,
            Endpoints::V6 => v6,
            Endpoints::Auto if local.underlay.public_ipv4.is_some() => v4.or(v6),
            Endpoints::Auto => v6,
        };
        let Some(address) = address else {
            tracing::debug!(peer = %peer.key, device = dev.name, "skipping WireGuard peer without an underlay address of the device's family");
            return None;
        };
        let allowed_ips: Vec<IpNet> = [
            peer.key.ipv4.filter(|_| dev.ipv4_pods).map(IpNet::V4),
            peer.key.ipv6.filter(|_| dev.ipv6_pods).map(IpNet::V6),
        ]
        .into_iter()
        .flatten()
        .collect();
        if allowed_ips.is_empty() {
            return None;
        }
        Some(WgPeer {
            public_key: key,
            preshared_key: self.psk,
            endpoint: Some(SocketAddr::new(address, dev.port)),
            keepalive: self.keepalive,
            allowed_ips,
        })
    }

    /// Makes `dev` exist, up, with the pod MTU, the node subnet's
    /// address, this node's private key and the device's port.
    fn ensure_device(
        &mut self,
        i: usize,
        nl: &mut Netlink,
        local: &LocalNode,
    ) -> Result<(), BackendError> {
        let dev = &self.devices[i];
        if dev.endpoints == Endpoints::V6 && local.underlay.public_ipv6.is_none() {
            return Err(BackendError::Setup(format!(
                "{} reaches peers over IPv6 but the underlay {} has no IPv6 address; use Backend.Mode ipv4 or auto",
                dev.name, local.underlay.iface
            )));
        }
        let mut spec = NewLink::new(dev.name, LinkKind::Wireguard);
        spec.mtu = Some(self.mtu);
        spec.up = true;
        let is_wireguard = |l: &Link| l.kind.as_deref() == Some("wireguard");
        let link = tunnel::ensure_device(nl, &spec, "WireGuard", is_wireguard, local)?;
        let port = dev.port;
        self.devices[i].index = Some(link.index);
        let wg = match &mut self.wg {
            Some(wg) => wg,
            None => self.wg.insert(Wireguard::new()?),
        };
        let have = wg.device(link.index)?;
        if have.public_key != Some(self.keys.public) || have.listen_port != port {
            wg.set_identity(link.index, &self.keys.private, port)?;
            tracing::info!(device = %spec.name, public_key = %self.keys.public, port, "WireGuard device keyed");
        }
        Ok(())
    }
}

impl Backend for WireguardBackend {
    fn kind(&self) -> &'static str {
        "wireguard"
    }

    fn lease_data(&self) -> Value {
        json!({"PublicKey": self.keys.public.to_string()})
    }

    fn lease_v6_data(&self) -> Value {
        if self.devices.iter().any(|d| d.ipv6_pods) {
            self.lease_data()
        } else {
            Value::Null
        }
    }

    fn pod_mtu(&self) -> u32 {
        self.mtu
    }

    fn ensure_devices(&mut self, nl: &mut Netlink, local: &LocalNode) -> Result<(), BackendError> {
        // One device failing does not keep the other down.
        let mut first_err = None;
        for i in 0..self.devices.len() {
            if let Err(e) = self.ensure_device(i, nl, local) {
                tracing::error!(device = self.devices[i].name, error = %e, "WireGuard device could not be set up");
                self.devices[i].index = None;
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn sync_peers(&mut self, local: &LocalNode, peers: &[Arc<Lease>]) -> Result<(), BackendError> {
        let wanted = self.wanted(local, peers);
        let Some(wg) = self.wg.as_mut() else {
            return Ok(());
        };
        for (dev, want) in self.devices.iter().zip(wanted) {
            let Some(index) = dev.index else {
                continue;
            };
            let have = wg.device(index)?.peers;
            let (set, remove) = peer_changes(&have, &want);
            if !set.is_empty() {
                wg.set_peers(index, &set)?;
            }
            if !remove.is_empty() {
                wg.remove_peers(index, &remove)?;
            }
            if !set.is_empty() || !remove.is_empty() {
                tracing::info!(
                    device = dev.name,
                    peers = want.len(),
                    set = set.len(),
                    removed = remove.len(),
                    "WireGuard peers reconciled"
                );
            }
        }
        Ok(())
    }

    fn desired(&self, local: &LocalNode, peers: &[Arc<Lease>]) -> Desired {
        let mut desired = Desired::default();
        for (dev, want) in self.devices.iter().zip(self.wanted(local, peers)) {
            let Some(index) = dev.index else {
                continue;
            };
            for peer in want {
                for net in peer.allowed_ips {
                    desired.routes.push(Route::new(net).dev(index));
                }
            }
        }
        desired
    }
}

/// The peers to set (new or different) and the keys to remove (no longer
/// wanted) to turn `have` into `want`. Allowed IPs compare as sets.
fn peer_changes(have: &[WgPeer], want: &[WgPeer]) -> (Vec<WgPeer>, Vec<WgKey>) {
    let normal = |p: &WgPeer| {
        let mut p = p.clone();
        p.allowed_ips.sort();
        p
    };
    let set = want
        .iter()
        .map(normal)
        .filter(|w| {
            !have
                .iter()
                .any(|h| h.public_key == w.public_key && normal(h) == *w)
        })
        .collect();
    let remove = have
        .iter()
        .filter(|h| !want.iter().any(|w| w.public_key == h.public_key))
        .map(|h| h.public_key)
        .collect();
    (set, remove)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PskSource;
    use crate::identity::Underlay;
    use crate::lease::{LeaseAttrs, LeaseKey};

    fn config(mode: WireguardMode) -> WireguardConfig {
        WireguardConfig {
            listen_port: 51820,
            listen_port_v6: 51821,
            keepalive: 0,
            mode,
            psk: None::<PskSource>,
        }
    }

    fn local() -> LocalNode {
        LocalNode {
            name: "n1".into(),
            lease: lease(
                "10.244.1.0/24",
                "fd00:10:244:1::/64",
                "",
                "198.18.0.1",
                "fd00:198::1",
            ),
            underlay: Underlay {
                iface: "eth0".into(),
                index: 2,
                mtu: 1500,
                ipv4: Some("198.18.0.1".parse().unwrap()),
                ipv6: Some("fd00:198::1".parse().unwrap()),
                public_ipv4: Some("198.18.0.1".parse().unwrap()),
                public_ipv6: Some("fd00:198::1".parse().unwrap()),
                reason: String::new(),
            },
            underlay_networks: vec![],
        }
    }

    fn lease(v4: &str, v6: &str, key: &str, ip: &str, ip6: &str) -> Lease {
        Lease {
            key: LeaseKey {
                ipv4: v4.parse().ok(),
                ipv6: v6.parse().ok(),
            },
            attrs: LeaseAttrs {
                public_ip: ip.parse().ok(),
                public_ipv6: ip6.parse().ok(),
                backend_type: "wireguard".into(),
                backend_data: json!({"PublicKey": key}).into(),
                backend_v6_data: crate::lease::BackendData::null(),
                node_name: String::new(),
                segment_macs: Default::default(),
                wire_ends: Default::default(),
            },
            expires: None,
        }
    }

    fn backend(mode: WireguardMode, families: (bool, bool)) -> WireguardBackend {
        let mut b = WireguardBackend::new(
            &config(mode),
            KeyPair::from_private(WgKey([1; 32])),
            Some(WgKey([5; 32])),
            families,
            1500,
            false,
            None,
        );
        for (i, d) in b.devices.iter_mut().enumerate() {
            d.index = Some(10 + i as u32);
        }
        b
    }

    /// n2 with both families and key [2; 32].
    fn dual_stack_peer() -> Vec<Arc<Lease>> {
        vec![Arc::new(lease(
            "10.244.2.0/24",
            "fd00:10:244:2::/64",
            &WgKey([2; 32]).to_string(),
            "198.18.0.2",
            "fd00:198::2",
        ))]
    }

    #[test]
    fn separate_mode_has_a_device_per_family_with_its_own_endpoints() {
        let b = backend(WireguardMode::Separate, (true, true));
        assert_eq!(b.device_names(), ["tweed-wg", "tweed-wg-v6"]);
        assert_eq!(b.pod_mtu(), 1420, "an IPv6 device: underlay - 80");
        let peers = dual_stack_peer();
        let wanted = b.wanted(&local(), &peers);
        assert_eq!(
            wanted[0][0].endpoint,
            Some("198.18.0.2:51820".parse().unwrap())
        );
        assert_eq!(
            wanted[0][0].allowed_ips,
            ["10.244.2.0/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(wanted[0][0].preshared_key, Some(WgKey([5; 32])));
        assert_eq!(
            wanted[1][0].endpoint,
            Some("[fd00:198::2]:51821".parse().unwrap())
        );
        assert_eq!(
            wanted[1][0].allowed_ips,
            ["fd00:10:244:2::/64".parse::<IpNet>().unwrap()]
        );
        let d = b.desired(&local(), &peers);
        let routes: Vec<(String, Option<u32>)> = d
            .routes
            .iter()
            .map(|r| (r.dst.to_string(), r.oif))
            .collect();
        assert_eq!(
            routes,
            [
                ("10.244.2.0/24".to_string(), Some(10)),
                ("fd00:10:244:2::/64".to_string(), Some(11))
            ]
        );
        assert_eq!(
            b.lease_data(),
            json!({"PublicKey": KeyPair::from_private(WgKey([1; 32])).public.to_string()})
        );
        assert_eq!(b.lease_v6_data(), b.lease_data());
    }

    #[test]
    fn one_device_modes_carry_both_families_over_one_endpoint() {
        let peers = dual_stack_peer();
        for (mode, endpoint, mtu) in [
            (WireguardMode::Auto, "198.18.0.2:51820", 1440),
            (WireguardMode::Ipv4, "198.18.0.2:51820", 1440),
            (WireguardMode::Ipv6, "[fd00:198::2]:51820", 1420),
        ] {
            let b = backend(mode, (true, true));
            assert_eq!(b.device_names(), ["tweed-wg"], "{mode:?}");
            assert_eq!(b.pod_mtu(), mtu, "{mode:?}");
            let wanted = b.wanted(&local(), &peers);
            assert_eq!(
                wanted[0][0].endpoint,
                Some(endpoint.parse().unwrap()),
                "{mode:?}"
            );
            assert_eq!(wanted[0][0].allowed_ips.len(), 2, "{mode:?}");
        }
        let b = backend(WireguardMode::Separate, (true, false));
        assert_eq!(b.device_names(), ["tweed-wg"]);
        assert_eq!(b.pod_mtu(), 1440, "IPv4 only: underlay - 60");
        assert_eq!(b.lease_v6_data(), Value::Null);
    }

    #[test]
    fn peers_without_a_usable_key_or_of_other_backends_are_skipped() {
        let b = backend(WireguardMode::Separate, (true, false));
        let own = KeyPair::from_private(WgKey([1; 32])).public.to_string();
        let mut vx = lease(
            "10.244.5.0/24",
            "",
            &WgKey([4; 32]).to_string(),
            "198.18.0.5",
            "",
        );
        vx.attrs.backend_type = "vxlan".into();
        let peers: Vec<Arc<Lease>> = [
            lease("10.244.2.0/24", "", "not-a-key", "198.18.0.2", ""),
            lease("10.244.3.0/24", "", &own, "198.18.0.3", ""),
            lease(
                "10.244.4.0/24",
                "",
                &WgKey([3; 32]).to_string(),
                "",
                "fd00:198::4",
            ),
            vx,
            lease(
                "10.244.6.0/24",
                "",
                &WgKey([6; 32]).to_string(),
                "198.18.0.6",
                "",
            ),
            lease(
                "10.244.7.0/24",
                "",
                &WgKey([6; 32]).to_string(),
                "198.18.0.7",
                "",
            ),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let wanted = b.wanted(&local(), &peers);
        assert_eq!(wanted[0].len(), 1, "{:?}", wanted[0]);
        assert_eq!(wanted[0][0].public_key, WgKey([6; 32]));
        assert_eq!(
            wanted[0][0].allowed_ips,
            ["10.244.6.0/24".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn peer_changes_set_what_differs_and_remove_what_is_gone() {
        let peer = |k: u8, nets: &[&str]| WgPeer {
            public_key: WgKey([k; 32]),
            preshared_key: None,
            endpoint: Some("198.18.0.2:51820".parse().unwrap()),
            keepalive: 0,
            allowed_ips: nets.iter().map(|n| n.parse().unwrap()).collect(),
        };
        let have = vec![
            peer(1, &["10.244.1.0/24", "fd00::/64"]),
            peer(2, &["10.244.2.0/24"]),
            peer(3, &["10.244.3.0/24"]),
        ];
        let mut moved = peer(2, &["10.244.2.0/24"]);
        moved.endpoint = Some("198.18.0.9:51820".parse().unwrap());
        let want = vec![
            peer(1, &["fd00::/64", "10.244.1.0/24"]),
            moved.clone(),
            peer(4, &["10.244.4.0/24"]),
        ];
        let (set, remove) = peer_changes(&have, &want);
        assert_eq!(set, vec![moved, peer(4, &["10.244.4.0/24"])]);
        assert_eq!(remove, vec![WgKey([3; 32])]);
        assert_eq!(peer_changes(&want, &want), (vec![], vec![]));
    }
}
