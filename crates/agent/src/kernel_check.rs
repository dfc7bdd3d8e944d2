//! What the backend needs from the kernel, tried before the agent leases
//! anything. Kernels differ between machines (one build here lacks
//! `CONFIG_IPV6_SEG6_LWTUNNEL`); without this check an SRv6 node leases a
//! subnet and then fails every route with a WARN every few seconds that
//! never says why. With it, the agent stays not ready with one error that
//! names the kernel option, and tries again now and then (a module may be
//! loaded later).
//!
//! The probes run in a network namespace of their own (a thread that
//! unshares one, which the kernel drops when the thread ends), so the
//! node's own state is never touched.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use thiserror::Error;
use tweed_netlink::{
    GeneveSpec, LinkKind, Netlink, NetlinkError, NewLink, Route, RouteEncap, VxlanSpec,
};

use crate::config::BackendConfig;

/// A kernel feature that a probe found missing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the kernel lacks {what} (build option {option}): {detail}")]
pub struct Missing {
    /// What tweed needed it for, in words.
    pub what: &'static str,
    /// The kernel build option that provides it.
    pub option: &'static str,
    /// What the kernel answered.
    pub detail: String,
}

/// One feature and how to try it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feature {
    Seg6Encap,
    Seg6LocalDx4,
    Seg6LocalDx6,
    Vxlan,
    Geneve,
    /// `encap ip` routes (IP tunnel metadata) on the Geneve device.
    IpTunnelEncap,
    /// WireGuard devices and their generic netlink family.
    Wireguard,
}

impl Feature {
    fn what(self) -> &'static str {
        match self {
            Feature::Seg6Encap => {
                "SRv6 encapsulation (seg6 lwtunnel), which the srv6 backend routes peers with"
            }
            Feature::Seg6LocalDx4 => {
                "the seg6local End.DX4 action, which the srv6 backend decapsulates IPv4 with"
            }
            Feature::Seg6LocalDx6 => {
                "the seg6local End.DX6 action, which the srv6 backend decapsulates IPv6 with"
            }
            Feature::Vxlan => "VXLAN devices, which the vxlan backend, segments and wires use",
            Feature::Geneve => "Geneve devices, which the geneve backend carries pod traffic with",
            Feature::IpTunnelEncap => {
                "routes with IP tunnel metadata (encap ip), which the geneve backend sends each peer's traffic with"
            }
            Feature::Wireguard => {
                "WireGuard devices, which the wireguard backend encrypts pod traffic with"
            }
        }
    }

    fn option(self) -> &'static str {
        match self {
            Feature::Seg6Encap | Feature::Seg6LocalDx4 | Feature::Seg6LocalDx6 => {
                "CONFIG_IPV6_SEG6_LWTUNNEL"
            }
            Feature::Vxlan => "CONFIG_VXLAN",
            Feature::Geneve => "CONFIG_GENEVE",
            Feature::IpTunnelEncap => "CONFIG_LWTUNNEL",
            Feature::Wireguard => "CONFIG_WIREGUARD",
        }
    }

    /// Tries the feature in the (throwaway) namespace `nl` is in.
    fn try_in(self, nl: &mut Netlink, lo: u32) -> Result<(), NetlinkError> {
        let net = |s: &str| s.parse::<IpNet>().expect("literal prefix");
        match self {
            Feature::Seg6Encap => {
                let mut r = Route::new(net("fd00:5e6:1::/64")).dev(lo);
                r.encap = Some(RouteEncap::Seg6 {
                    segments: vec![Ipv6Addr::new(0xfd00, 0x5e6, 0, 0, 0, 0, 0, 2)],
                });
                nl.add_route(&r)
            }
            Feature::Seg6LocalDx4 => {
                let mut r = Route::new(net("fd00:5e6:4::/128")).dev(lo);
                r.encap = Some(RouteEncap::EndDx4 {
                    nh4: Ipv4Addr::UNSPECIFIED,
                });
                nl.add_route(&r)
            }
            Feature::Seg6LocalDx6 => {
                let mut r = Route::new(net("fd00:5e6:6::/128")).dev(lo);
                r.encap = Some(RouteEncap::EndDx6 {
                    nh6: Ipv6Addr::UNSPECIFIED,
                });
                nl.add_route(&r)
            }
            Feature::Vxlan => nl.create_link(&NewLink::new(
                "probe-vxlan",
                LinkKind::Vxlan(VxlanSpec {
                    vni: 1,
                    port: 8472,
                    local: None,
                    underlay_index: None,
                    learning: false,
                    remote: None,
                }),
            )),
            Feature::Geneve => nl.create_link(&NewLink::new(
                PROBE_GENEVE,
                LinkKind::Geneve(GeneveSpec { port: 6081 }),
            )),
            // The device over rtnetlink, then its keys over the family.
            Feature::Wireguard => {
                nl.create_link(&NewLink::new("probe-wg", LinkKind::Wireguard))?;
                tweed_netlink::Wireguard::new().map(drop)
            }
            // Runs after Feature::Geneve, on the device it made.
            Feature::IpTunnelEncap => {
                let Some(dev) = nl.link_by_name(PROBE_GENEVE)? else {
                    return Err(NetlinkError::NotFound {
                        what: format!("link {PROBE_GENEVE} made by the Geneve probe"),
                    });
                };
                nl.set_link_up(dev.index, true)?;
                let mut r = Route::new(net("10.244.254.0/24")).dev(dev.index);
                r.encap = Some(RouteEncap::Ip {
                    id: 1,
                    dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 254)),
                });
                nl.add_route(&r)
            }
        }
    }
}

/// The device the Geneve probes make (in their own namespace).
const PROBE_GENEVE: &str = "probe-geneve";

/// The features a configuration needs.
fn needed(backend: &BackendConfig, vxlan_elsewhere: bool) -> Vec<Feature> {
    let mut out = match backend {
        BackendConfig::Vxlan { .. } => vec![Feature::Vxlan],
        BackendConfig::Geneve { .. } => vec![Feature::Geneve, Feature::IpTunnelEncap],
        BackendConfig::HostGw => vec![],
        BackendConfig::Wireguard(_) => vec![Feature::Wireguard],
        BackendConfig::Srv6 { .. } => vec![
            Feature::Seg6Encap,
            Feature::Seg6LocalDx4,
            Feature::Seg6LocalDx6,
        ],
    };
    if vxlan_elsewhere && !out.contains(&Feature::Vxlan) {
        out.push(Feature::Vxlan);
    }
    out
}

/// The outcome of [`check`].
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every feature the configuration needs works.
    Present,
    /// The first missing one.
    Missing(Missing),
    /// The probe could not run (no CAP_SYS_ADMIN for a namespace of its
    /// own): the backend's own errors will tell.
    NotProbed(String),
}

/// Probes what `backend` needs (and VXLAN when `vxlan_elsewhere`: segments
/// with nodes to reach, wires) in a network namespace of its own.
pub fn check(backend: &BackendConfig, vxlan_elsewhere: bool) -> Outcome {
    let features = needed(backend, vxlan_elsewhere);
    if features.is_empty() {
        return Outcome::Present;
    }
    let probe = std::thread::Builder::new()
        .name("kernel-check".into())
        .spawn(move || {
            // Only this thread moves; the namespace goes when it ends.
            if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
                return Outcome::NotProbed(format!("cannot make a namespace to probe in: {e}"));
            }
            let mut nl = match Netlink::new() {
                Ok(nl) => nl,
                Err(e) => return Outcome::NotProbed(e.to_string()),
            };
            let lo = match nl.link_by_name("lo") {
                Ok(Some(l)) => l.index,
                Ok(None) => return Outcome::NotProbed("no loopback device to probe on".into()),
                Err(e) => return Outcome::NotProbed(format!("no loopback to probe on: {e}")),
            };
            if let Err(e) = nl.set_link_up(lo, true) {
                return Outcome::NotProbed(e.to_string());
            }
            for f in features {
                if let Err(e) = f.try_in(&mut nl, lo) {
                    return Outcome::Missing(Missing {
                        what: f.what(),
                        option: f.option(),
                        detail: e.to_string(),
                    });
                }
            }
            Outcome::Present
        });
    match probe.map(|h| h.join()) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Outcome::NotProbed("the probe thread panicked".into()),
        Err(e) => Outcome::NotProbed(format!("cannot start the probe thread: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_backend_needs_what_it_programs() {
        let srv6 = BackendConfig::Srv6 {
            locator: "fd00:5e6::/48".parse().unwrap(),
        };
        assert_eq!(
            needed(&srv6, false),
            vec![
                Feature::Seg6Encap,
                Feature::Seg6LocalDx4,
                Feature::Seg6LocalDx6
            ]
        );
        assert_eq!(needed(&srv6, true).last(), Some(&Feature::Vxlan));
        assert!(needed(&BackendConfig::HostGw, false).is_empty());
        let vxlan = BackendConfig::Vxlan {
            vni: 1,
            port: 8472,
            direct_routing: false,
        };
        assert_eq!(needed(&vxlan, true), vec![Feature::Vxlan]);
        let geneve = BackendConfig::Geneve { vni: 1, port: 6081 };
        assert_eq!(
            needed(&geneve, false),
            vec![Feature::Geneve, Feature::IpTunnelEncap]
        );
        assert_eq!(
            needed(&geneve, true),
            vec![Feature::Geneve, Feature::IpTunnelEncap, Feature::Vxlan]
        );
    }

    /// On this kernel the probe's verdict on Geneve is the VM runner's
    /// (an independent `ip link add ... type geneve`): a kernel without
    /// it is named by its option, one with it passes.
    #[test]
    fn the_geneve_probe_agrees_with_the_kernel() {
        let geneve = BackendConfig::Geneve { vni: 1, port: 6081 };
        let has = tweed_testkit::vm::KernelFeature::Geneve.present();
        match check(&geneve, false) {
            Outcome::Present => assert!(has, "probe says present, ip says absent"),
            Outcome::Missing(m) => {
                assert!(!has, "probe says missing, ip says present: {m}");
                assert_eq!(m.option, "CONFIG_GENEVE", "{m}");
            }
            Outcome::NotProbed(why) => panic!("the probe could not run: {why}"),
        }
    }

    /// The same for WireGuard: on this host (no CONFIG_WIREGUARD) the
    /// agent's readiness error names the option; in a kernel with it the
    /// probe passes.
    #[test]
    fn the_wireguard_probe_agrees_with_the_kernel() {
        let wg = crate::config::NetConfig::parse(
            r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard"}}"#,
        )
        .unwrap()
        .backend;
        assert_eq!(needed(&wg, false), vec![Feature::Wireguard]);
        let has = tweed_testkit::vm::KernelFeature::Wireguard.present();
        match check(&wg, false) {
            Outcome::Present => assert!(has, "probe says present, ip says absent"),
            Outcome::Missing(m) => {
                assert!(!has, "probe says missing, ip says present: {m}");
                assert_eq!(m.option, "CONFIG_WIREGUARD", "{m}");
                let text = m.to_string();
                assert!(text.contains("wireguard backend"), "{text}");
            }
            Outcome::NotProbed(why) => panic!("the probe could not run: {why}"),
        }
    }

    #[test]
    fn the_error_names_the_kernel_option() {
        let m = Missing {
            what: Feature::Seg6Encap.what(),
            option: Feature::Seg6Encap.option(),
            detail: "Operation not supported".into(),
        };
        let text = m.to_string();
        assert!(text.contains("CONFIG_IPV6_SEG6_LWTUNNEL"), "{text}");
        assert!(text.contains("srv6 backend"), "{text}");
    }
}
